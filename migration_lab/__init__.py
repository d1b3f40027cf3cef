"""Migration Lab: a hands-on course kit for Alembic migrations on a real PostgreSQL.

The Python API is the core; the CLI (`python -m migration_lab`), the widgets
and the notebooks are thin layers over it.
"""

from .database import Backend, ComposeBackend, EmbeddedBackend, UrlBackend, choose_backend
from .errors import LabError
from .lab import Lab
from .project import Project
from .runner import RunResult, Runner

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
    "choose_backend",
]
