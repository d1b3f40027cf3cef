"""Where the lab's files are: the project folder, the ai-service, the lab's own state."""

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError


@dataclass(frozen=True)
class Project:
    """A Migration Lab checkout (or a temporary copy of one, in tests)."""

    root: Path

    def __post_init__(self) -> None:
        # Accept a str too; always absolute, so paths printed to learners are unambiguous.
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def service_dir(self) -> Path:
        """The application being migrated: models, alembic.ini, migrations/."""
        return self.root / "ai-service"

    @property
    def versions_dir(self) -> Path:
        return self.service_dir / "migrations" / "versions"

    def revision_files(self) -> list[Path]:
        """The revision files alembic reads, sorted: not an editor's lock file (Emacs' `.#name.py`, a link to
        nowhere) nor `__init__.py`, which alembic skips too, and nothing that is not a file (reading one made a
        chapter's check end in a traceback)."""
        return [
            path
            for path in sorted(self.versions_dir.glob("*.py"))
            if not path.name.startswith((".#", "__init__")) and path.is_file()
        ]

    @property
    def state_dir(self) -> Path:
        """Git-ignored: the embedded database's data lives here between sessions."""
        return self.root / ".lab"

    @classmethod
    def find(cls, start: Path | None = None) -> "Project":
        """The project holding `start` (default: the working directory, or LAB_PROJECT_DIR).

        Notebooks run in notebooks/ and terminals anywhere in the checkout, so
        walk up until a folder has ai-service/alembic.ini.
        """
        if start is None and os.environ.get("LAB_PROJECT_DIR"):
            start = Path(os.environ["LAB_PROJECT_DIR"])
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "ai-service" / "alembic.ini").is_file():
                return cls(folder)
        raise LabError(
            f"No Migration Lab project found in {here} or any folder above it.",
            "Run the command from inside your Migration Lab checkout, or set LAB_PROJECT_DIR to it.",
        )


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), atomically; nothing when unchanged.

    The temporary file is 0600 from birth (mkstemp) and in the same folder, so
    the secret is never readable by others and readers never see half a file.
    """
    if _holds(path, text):
        return
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _holds(path: Path, text: str) -> bool:
    """`path` is already this account's regular 0600 file holding `text`. Opened without following a symlink and
    without waiting (a FIFO someone planted there, in a folder others may write, would hang a plain read), and
    judged by what was opened, not by a look at the name before."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # not there, a symlink: written anew
        return False
    with os.fdopen(handle, "rb") as file:
        info = os.fstat(handle)
        mine = stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o600
        return mine and file.read() == text.encode()
