"""Migration Lab: a hands-on course kit for Alembic migrations on a real PostgreSQL.

The Python API is the core; the CLI (`python -m migration_lab`), the widgets
and the notebooks are thin layers over it.
"""

from .database import Backend, ComposeBackend, EmbeddedBackend, UrlBackend, choose_backend
from .errors import LabError
from .lab import Lab
from .project import Project
from .review import review
from .runner import Runner, RunResult


def reset(number: str, lab: Lab | None = None):
    """Restore ai-service/ files and the database to the start of chapter `number` (e.g. "02")."""
    from .chapters import reset as reset_chapter

    return reset_chapter(number, lab)


def restore_backup(name: str | None = None, lab: Lab | None = None) -> None:
    """Bring back the work a reset replaced: the newest backup, or the one named (e.g. "20261125-101500")."""
    from .workspace import restore_backup as restore

    print(restore(lab or Lab(), name))


def chapter(number: str, lab: Lab | None = None):
    """Start a chapter in a notebook: reset to its checkpoint, return its `Chapter`."""
    from .notebook import chapter as start  # imports IPython: only notebooks need it

    return start(number, lab)


def preflight(lab: Lab | None = None) -> None:
    """Check the installation and the lab database; print what was found."""
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
