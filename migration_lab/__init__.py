"""Migration Lab: a hands-on course kit for Alembic migrations on a real PostgreSQL.

The Python API is the core; the CLI (`python -m migration_lab`), the widgets
and the notebooks are thin layers over it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database.backend import Backend
    from .database.choice import choose_backend
    from .database.compose import ComposeBackend
    from .database.embedded import EmbeddedBackend
    from .database.url import UrlBackend
    from .errors import LabError
    from .lab import Lab
    from .project import Project
    from .running.runner import Runner, RunResult
    from .tools.review import review

# Imported on first use, so that `python3 -m migration_lab` can start with a Python that has none of the
# course's packages yet and make the venv itself (install.py).
_WHERE = {
    "Backend": "database.backend",
    "ComposeBackend": "database.compose",
    "EmbeddedBackend": "database.embedded",
    "UrlBackend": "database.url",
    "choose_backend": "database.choice",
    "LabError": "errors",
    "Lab": "lab",
    "Project": "project",
    "review": "tools.review",
    "Runner": "running.runner",
    "RunResult": "running.runner",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


def reset(number: str, lab: Lab | None = None):
    """Restore ai-service/ files and the database to the start of chapter `number` (e.g. "02")."""
    from .course import registry

    return registry.reset(number, lab)


def restore_backup(name: str | None = None, lab: Lab | None = None) -> None:
    """Bring back the work a reset replaced: the newest backup, or the one named (e.g. "20261125-101500")."""
    from .lab import Lab
    from .workspace import backups

    print(backups.restore(lab or Lab(), name))


def chapter(number: str, lab: Lab | None = None):
    """Start a chapter in a notebook: reset to its checkpoint, return its `Chapter`."""
    from .front.notebook import chapter as start  # imports IPython: only notebooks need it

    return start(number, lab)


def preflight(lab: Lab | None = None) -> None:
    """Check the installation and the lab database; print what was found."""
    from .lab import Lab

    print("\n".join((lab or Lab()).preflight()[1]))


__all__ = [
    "Backend",
    "ComposeBackend",
    "EmbeddedBackend",
    "Lab",
    "LabError",
    "Project",
    "RunResult",
    "Runner",
    "UrlBackend",
    "chapter",
    "choose_backend",
    "preflight",
    "reset",
    "restore_backup",
    "review",
]
