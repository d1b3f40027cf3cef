"""A raw traceback, as `alembic` prints it in a terminal, and the frame in it that is your own code.

The lab's buttons condense a failure to one line and a hint. A terminal prints the whole traceback, mostly
frames of alembic and of Python's import machinery. Chapter 08 teaches reading it from the bottom up: the
error, then the last frame in a file of your project (migrations/env.py): that line is where to look.
"""

import re
import traceback
from pathlib import Path
from typing import TextIO

from alembic.config import CommandLine

from . import alembic_process
from .errors import LabError
from .lab import Lab

SITE_PACKAGES = re.compile(r"^.*?/site-packages/")


def _shown(path: str, root: Path) -> str:
    """A path as the learner should read it: the project's relative to it, installed packages from site-packages/."""
    if path.startswith(f"{root}/"):
        return path[len(f"{root}/") :]
    return SITE_PACKAGES.sub(".../site-packages/", path)


def cli_traceback(lab: Lab, *args: str) -> str | None:
    """The traceback `alembic <args>` (default: `current`) prints in ai-service/, or None when it does not fail.

    Run in-process through alembic's own command line entry point, so the frames are the terminal's, from
    alembic's `main()` down; paths are shortened so the text is the same on every machine.
    """
    ini = lab.project.service_dir / "alembic.ini"

    def call(stdout: TextIO) -> object:
        CommandLine(prog="alembic").main(argv=["-c", str(ini), *(args or ("current",))])
        return None

    if not alembic_process.PROCESS_LOCK.acquire(timeout=10):
        raise LabError("Another alembic command is still running.", "Wait for it to finish, then try again.")
    try:
        execution = alembic_process.execute(call, None, lab.project.service_dir)
    finally:
        alembic_process.PROCESS_LOCK.release()
    if execution.error is None or isinstance(execution.error, SystemExit):
        return None
    error = traceback.TracebackException.from_exception(execution.error)
    frames = list(error.stack)
    # The kit's own frames come first; a terminal starts at alembic's entry point.
    start = next((i for i, f in enumerate(frames) if f.filename.endswith("/alembic/config.py")), 0)
    root = lab.project.root.resolve()
    for frame in frames:
        frame.filename = _shown(frame.filename, root)
    error.stack = traceback.StackSummary.from_list(frames[start:])
    return "".join(error.format()).replace(f"{root}/", "")


def failing_line(path: Path, pattern: str) -> tuple[int, str] | None:
    """(line number, text) of the first line of `path` matching `pattern`: the line a traceback points at."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(pattern, line):
            return number, line.strip()
    return None


def names_the_line(answer: object, file: str, number: int, text: str) -> bool:
    """Does the answer name that line: "file:number" (any leading folders), or the line's own text?"""
    if not isinstance(answer, str):
        return False
    given = answer.strip().strip("\"'")
    found = re.fullmatch(r"(?:.*/)?([\w.]+)\s*[:, ]\s*(?:line\s+)?(\d+)", given)
    if found:
        return found.group(1) == Path(file).name and int(found.group(2)) == number
    return given.split("#")[0].strip() == text.split("#")[0].strip()
