"""One rule for every command that changes the database, used by the console and the notebooks.

A command that changes the database (upgrade, downgrade, stamp) is first
*planned*: rehearsed on a copy, which tells where it would take the database
and what data it would destroy. The plan is aimed at that absolute target
(`downgrade -1` from a1c4 becomes `downgrade 8b7e`) and remembers where the
database was. Running a plan runs exactly that, and only if the database is
still where it was when the plan was made; otherwise nothing happens and the
learner is asked again. A plan that would destroy data, or that could not be
rehearsed, needs a confirmation.

`Confirmation` is that conversation, plan -> ask -> run exactly what was asked
about -> plan and ask again if the database moved, for both fronts: `ch.alembic`
(a `confirm=True` answers) and the console's "Yes, run it".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .command import Command, parse
from .rehearsal import Rehearsal, rehearse
from .runner import Runner, RunResult, at


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
            move = f" takes the database from {at(rehearsal.before)} to {at(rehearsal.after)}"
        if rehearsal.losses:
            return f"{lead}{move} and would destroy data: " + "; ".join(map(str, rehearsal.losses)) + "."
        return f"{lead}{move or ' changes the database'}; the rehearsal found no data lost."


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


Stage = Literal["planning", "stopped", "running"]


@dataclass(frozen=True)
class Turn:
    """What one request came to: a result, a question to answer first, or both (the database moved)."""

    plan: Plan
    result: RunResult | None = None  # None: nothing ran
    question: Plan | None = None  # asked, waiting for an answer (`Confirmation.answer`)


class Confirmation:
    """Plan -> ask when it could destroy data -> run exactly what was asked about -> after a move, ask again.

    Questions are remembered by a key (the command line, or a button's name):
    an answer runs the plan it was asked about, never a newer one.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._asked: dict[str, tuple[Plan, bool]] = {}

    def request(
        self,
        line: str | Command,
        key: str | None = None,
        ask: bool = False,
        confirmed: bool = False,
        on_log: Callable[[str], None] | None = None,
        say: Callable[[Stage], None] | None = None,
    ) -> Turn:
        """Check a command and run it, unless it needs an answer first (or `ask`: always ask).

        `confirmed` answers the question asked before under `key` (or, if none
        was, runs without asking). Raises `CommandLineError` for a line alembic
        refuses, and LabError when the database cannot be reached to plan it.
        """
        key = key or (line if isinstance(line, str) else line.local)
        asked = self._asked.pop(key, None) if confirmed else None
        if asked is not None:
            return self._run(key, *asked, on_log, say)
        if say:
            say("planning")
        checked = plan(self.runner, line)
        if (ask or checked.needs_confirmation) and not confirmed:
            self._asked[key] = (checked, ask)
            if say:
                say("stopped")
            return Turn(checked, question=checked)
        return self._run(key, checked, ask, on_log, say)

    def asked(self, key: str) -> Plan | None:
        """The question open under `key`, if any."""
        asked = self._asked.get(key)
        return asked[0] if asked else None

    def answer(self, key: str, yes: bool, on_log: Callable[[str], None] | None = None) -> Turn | None:
        """The learner's answer to the question asked under `key`; None when none is open (a double click)."""
        asked = self._asked.pop(key, None)
        if asked is None:
            return None
        return self._run(key, *asked, on_log, None) if yes else Turn(asked[0])

    def forget(self) -> None:
        """Drop every open question (a reset: the plans they were about no longer apply)."""
        self._asked.clear()

    def _run(
        self,
        key: str,
        checked: Plan,
        ask: bool,
        on_log: Callable[[str], None] | None,
        say: Callable[[Stage], None] | None,
    ) -> Turn:
        if say:
            say("running")
        result = execute(self.runner, checked, on_log)
        if not moved(result):
            return Turn(checked, result)
        again = plan(self.runner, checked.command)
        if ask or again.needs_confirmation:
            self._asked[key] = (again, ask)
            return Turn(checked, result, again)
        return Turn(checked, result)
