"""A reset or a restore killed half-way (`kill -9`, a kernel that died, a laptop closed): the next command says so.

Between its backup of the work and its end, a reset or a restore leaves a mark in `.lab/under-way.json`: what it
is, the backup that holds the work from before it, and its process. It ends with the command (a failure that is
said names the backup itself). A mark whose process is gone is an interruption: the files and the database may
not match. The next reset or restore still backs up what is there (the learner may have worked since), names the
marked backup too, and clears the mark; `restore` with no name brings the marked backup back; `status` says it;
and no pruning removes it while the mark stands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from ..project import Project, write_private

MARK = "under-way.json"
SAME_PROCESS = 1.0  # seconds: psutil's start time of one process may move by a tick as the boot time is re-read


@dataclass(frozen=True)
class Interrupted:
    """A reset or restore whose process ended half-way; `backup`: the one holding the work from before it, if it
    is still there."""

    command: str
    backup: str | None

    def __str__(self) -> str:
        said = f"A {self.command} was stopped half-way (its process ended): files and database may not match."
        if self.backup:
            return f"{said} {self._kept('it')}"
        return f"{said} No backup was taken before it (nothing had changed since a reset): reset the chapter again."

    def behind(self) -> str:
        """What the interrupted command left, once a reset has finished since: files and database match again,
        and what is left to say is where the work from before the interruption is."""
        said = f"An earlier {self.command} was stopped half-way; this reset put files and database in step again."
        return f"{said} {self._kept(f'that {self.command}')}" if self.backup else said

    def _kept(self, before: str) -> str:
        return (
            f"Your work from before {before} is in .lab/backups/{self.backup}/: "
            f"`python -m migration_lab restore {self.backup}` brings it back."
        )


@contextmanager
def under_way(project: Project, command: str, backup: str | None) -> Iterator[None]:
    """`command` is under way in this process while the block runs; `backup` holds the work from before it. The
    mark goes when the block ends, however it ends (a failure that is said names the backup itself); only a
    process that dies in it leaves the mark."""
    me = psutil.Process()
    path = project.state_dir / MARK
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps({"command": command, "backup": backup, "pid": me.pid, "since": me.create_time()}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def found(project: Project) -> Interrupted | None:
    """The command a process left half-way; None when there is none, or it is still running."""
    try:
        left = json.loads((project.state_dir / MARK).read_text())
        pid, since = int(left["pid"]), float(left["since"])
        command, backup = str(left["command"]), left.get("backup")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        if abs(psutil.Process(pid).create_time() - since) < SAME_PROCESS:
            return None  # still running (another process's reset, now)
    except psutil.Error:
        pass  # gone
    there = isinstance(backup, str) and (project.state_dir / "backups" / backup).is_dir()
    return Interrupted(command, backup if there else None)
