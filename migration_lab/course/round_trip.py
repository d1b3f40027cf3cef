"""Does the history survive `downgrade base` + `upgrade head`? Tried on a throw-away copy of the database.

A downgrade that runs is not a downgrade that undoes: an initial revision whose
downgrade() drops the tables but leaves an ENUM type behind runs fine, and the
next `upgrade head` fails on CREATE TYPE (DuplicateObject). Only the round trip
shows it, so the exercise checks of chapters 06-10 make it, on a copy: the
learner's database is never touched.
"""

from ..errors import CopyUnavailable
from ..lab import Lab
from .checks import Check, Hints, levels

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
