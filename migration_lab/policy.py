"""One rule for every command that changes the database, used by the console, the notebooks and the CLI.

A command that changes the database (upgrade, downgrade, stamp) is first
*planned*: rehearsed on a copy, which tells where it would take the database
and what data it would destroy. The plan is aimed at that absolute target
(`downgrade -1` from a1c4 becomes `downgrade 8b7e`) and remembers where the
database was. Running a plan runs exactly that, and only if the database is
still where it was when the plan was made; otherwise nothing happens and the
learner is asked again. A plan that would destroy data, or that could not be
rehearsed, needs a confirmation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from .rehearsal import Rehearsal, rehearse
from .runner import Command, Runner, RunResult, parse


@dataclass(frozen=True)
class Plan:
    """A command, checked: where it goes, what it would destroy, and from where."""

    command: Command  # as the learner typed it
    resolved: Command  # aimed at the absolute target the rehearsal reached
    before: tuple[str, ...] | None  # the database's revisions when planned (None: not a database change)
    rehearsal: Rehearsal | None

    @property
    def needs_confirmation(self) -> bool:
        """True when running it could destroy data: losses seen, or no rehearsal to tell."""
        if self.rehearsal is None:
            return False
        return not self.rehearsal.rehearsed or bool(self.rehearsal.losses)

    def question(self) -> str:
        """What the learner is asked before a confirmed run, in one or two sentences."""
        lead = f"alembic {' '.join(self.command.args)}"
        rehearsal = self.rehearsal
        if rehearsal is None:
            return f"{lead} does not change the database."
        if not rehearsal.rehearsed:
            return (
                f"{lead} could not be rehearsed ({rehearsal.unavailable}): the kit cannot tell what it would destroy."
            )
        move = ""
        if rehearsal.after is not None and rehearsal.before != rehearsal.after:
            move = f" takes the database from {_at(rehearsal.before)} to {_at(rehearsal.after)}"
        if rehearsal.losses:
            return f"{lead}{move} and would destroy data: " + "; ".join(map(str, rehearsal.losses)) + "."
        return f"{lead}{move or ' changes the database'}; the rehearsal found no data lost."


def _at(heads: tuple[str, ...] | None) -> str:
    return ", ".join(heads) if heads else "base"


def plan(runner: Runner, line: str | list[str] | Command) -> Plan:
    """Check a command before it runs: rehearse it if it changes the database."""
    command = line if isinstance(line, Command) else parse(line)
    if not command.changes_database:
        return Plan(command, command, None, None)
    rehearsal = rehearse(runner, command)
    if not rehearsal.rehearsed:
        return Plan(command, command, runner.db.heads(), rehearsal)
    resolved = command
    after = rehearsal.after
    if rehearsal.result is not None and rehearsal.result.ok and after is not None and len(after) <= 1:
        resolved = command.with_target(after[0] if after else "base")
    return Plan(command, resolved, rehearsal.before, rehearsal)


def execute(runner: Runner, checked: Plan, on_log: Callable[[str], None] | None = None) -> RunResult:
    """Run exactly what was planned, if the database is still where it was; say it as typed."""
    result = runner.run(checked.resolved, on_log=on_log, expect=checked.before)
    return dataclasses.replace(
        result,
        args=checked.command.args,
        local_command=checked.command.local,
        workflow_command=checked.command.workflow,
    )


def moved(result: RunResult) -> bool:
    """True when a plan was refused because the database moved after it was made."""
    return result.refused == "moved"
