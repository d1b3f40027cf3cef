"""Do the downgrades undo? Tried on a throw-away copy of the database, never the learner's.

`round_trip`: does the history survive `downgrade base` + `upgrade head`? `undo_and_redo`: which revision's
downgrade takes a given thing away, and does its upgrade bring it back as it was?

A downgrade that runs is not a downgrade that undoes: an initial revision whose
downgrade() drops the tables but leaves an ENUM type behind runs fine, and the
next `upgrade head` fails on CREATE TYPE (DuplicateObject). Only the round trip
shows it, so the exercise checks of chapters 06-10 make it, on a copy: the
learner's database is never touched.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..database.connection import LabDatabase
from ..errors import CopyUnavailable
from ..lab import Lab
from .checks import Check, Hints, levels

# The revision chapters 02-13 start from (checkpoints.WITH_PHONE_NUMBER): the floor of a replay, below which the
# initial revisions drop whole tables and types.
WITH_PHONE_NUMBER_HEAD = "a1c4e7f20b13"

NAME = "the history survives `alembic downgrade base` then `upgrade head` (tried on a copy)"


def round_trip(lab: Lab, hints: Hints) -> Check:
    """Downgrade to base and upgrade to head again on a copy; the first hint says which step failed and how."""
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            for step in ("downgrade base", "upgrade head"):
                result = runner.run(step)
                if not result.ok:
                    first, *rest = levels(hints) or ("",)
                    return Check(NAME, False, (f"On a copy, `alembic {step}` failed: {result.error}. {first}", *rest))
    except CopyUnavailable as why:
        return Check(NAME, False, (f"The lab could not copy the database to try it: {why.what}.", *levels(hints)[1:]))
    return Check(NAME, True, hints)


@dataclass(frozen=True)
class Undo:
    """One revision's downgrade and upgrade, replayed on a copy: the one whose downgrade took something away."""

    revision: str | None = None  # whose downgrade took it away; None: no downgrade did, down to the floor
    before: Any = None  # what the probe saw at that revision, before its downgrade
    down: Any = None  # after its downgrade
    up: Any = None  # after `upgrade <revision>` again
    problem: str = ""  # a step that failed, or a copy that could not be made

    @property
    def restored(self) -> bool:
        """The upgrade brought back exactly what the downgrade took."""
        return self.revision is not None and not self.problem and self.up == self.before


def undo_and_redo(lab: Lab, probe: Callable[[LabDatabase], Any], present: Callable[[Any], bool], floor: str) -> Undo:
    """On a copy of the database: `downgrade -1`, one revision at a time, until `present(probe(copy))` no longer
    holds, then `upgrade` that revision again.

    A downgrade that runs is not one that undoes: a `pass` runs fine and leaves everything. Stepping down from
    where the learner is finds the revision whose downgrade really takes the thing away, however the revisions are
    written, and the upgrade after it shows whether it comes back as it was. Never below `floor` (the chapter's
    start), whose older revisions drop whole tables and types.
    """
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            while True:
                heads = copy.heads()
                if len(heads) != 1 or heads[0] == floor:
                    return Undo()
                before = probe(copy)
                down = runner.run(["downgrade", "-1"])
                if not down.ok:
                    return Undo(heads[0], before, problem=f"`alembic downgrade -1` from {heads[0]} fails: {down.error}")
                after = probe(copy)
                if not present(after):
                    up = runner.run(["upgrade", heads[0]])
                    if not up.ok:
                        return Undo(heads[0], before, after, problem=f"`alembic upgrade {heads[0]}` fails: {up.error}")
                    return Undo(heads[0], before, after, probe(copy))
    except CopyUnavailable as why:
        return Undo(problem=f"the lab could not copy the database to try it ({why.what})")
