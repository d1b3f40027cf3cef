"""Where the lab database runs: the interface of its three backends (embedded, compose, url).

Alembic always runs in this process; a backend only says how to reach the
database, and starts, stops or empties it.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """The default progress callback: say nothing."""


class Backend(ABC):
    """Where the lab database runs and how to reach it. Alembic always runs in this process."""

    name: str

    @abstractmethod
    def url(self) -> str:
        """The SQLAlchemy URL of the lab database, reachable from this machine."""

    @abstractmethod
    def where(self) -> str:
        """One line a learner understands: which database, and where."""

    @abstractmethod
    def is_running(self) -> bool:
        """True when the database accepts connections (or the stack is up)."""

    @abstractmethod
    def start(self, progress: Progress = quiet) -> None:
        """Make sure the database runs; fast when it already does."""

    @abstractmethod
    def stop(self, progress: Progress = quiet) -> None:
        """Stop the database, keeping its data."""

    @abstractmethod
    def nuke(self, progress: Progress = quiet) -> None:
        """Drop all data and start a fresh, empty database."""

    def problem(self) -> str | None:
        """What keeps the lab database from being used although its server runs; None when nothing."""
        return None

    def start_hint(self) -> str:
        """What to type when the database is not reachable."""
        return "Start it with `python -m migration_lab up` (or `make lab`)."
