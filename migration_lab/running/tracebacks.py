"""A raw traceback, as `alembic` prints it in a terminal.

The lab's buttons condense a failure to one line and a hint. A terminal prints the whole traceback, mostly
frames of alembic and of Python's import machinery. Chapter 08 teaches reading it from the bottom up: the
error, then the last frame in a file of your project (migrations/env.py): that line is where to look.
"""

import re
import traceback
from pathlib import Path
from typing import TextIO

from alembic.config import CommandLine

from ..errors import LabError
from ..project import Project
from . import alembic_process

SITE_PACKAGES = re.compile(r"^.*?/site-packages/")


def _shown(path: str, root: Path) -> str:
    """A path as the learner should read it: the project's relative to it, installed packages from site-packages/."""
    if path.startswith(f"{root}/"):
        return path[len(f"{root}/") :]
    return SITE_PACKAGES.sub(".../site-packages/", path)


def cli_traceback(project: Project, *args: str) -> str | None:
    """The traceback `alembic <args>` (default: `current`) prints in ai-service/, or None when it does not fail.

    Run in-process through alembic's own command line entry point, so the frames are the terminal's, from
    alembic's `main()` down; paths are shortened so the text is the same on every machine.
    """
    ini = project.service_dir / "alembic.ini"

    def call(stdout: TextIO) -> object:
        CommandLine(prog="alembic").main(argv=["-c", str(ini), *(args or ("current",))])
        return None

    if not alembic_process.PROCESS_LOCK.acquire(timeout=10):
        raise LabError("Another alembic command is still running.", "Wait for it to finish, then try again.")
    try:
        execution = alembic_process.execute(call, None, project.service_dir)
    finally:
        alembic_process.PROCESS_LOCK.release()
    if execution.error is None or isinstance(execution.error, SystemExit):
        return None
    error = traceback.TracebackException.from_exception(execution.error)
    frames = list(error.stack)
    # The kit's own frames come first; a terminal starts at alembic's entry point.
    start = next((i for i, f in enumerate(frames) if f.filename.endswith("/alembic/config.py")), 0)
    root = project.root.resolve()
    for frame in frames:
        frame.filename = _shown(frame.filename, root)
    error.stack = traceback.StackSummary.from_list(frames[start:])
    return "".join(error.format()).replace(f"{root}/", "")
