"""Does the history survive `downgrade base` + `upgrade head`? Tried on a throw-away copy of the database.

A downgrade that runs is not a downgrade that undoes: an initial revision whose
downgrade() drops the tables but leaves an ENUM type behind runs fine, and the
next `upgrade head` fails on CREATE TYPE (DuplicateObject). Only the round trip
shows it, so the exercise checks of chapters 06-10 make it, on a copy: the
learner's database is never touched. `replay` is the one-step form: down to
the exercise's start and back, on a copy that keeps the rows, with what the
exercise wants inspected at each step (chapters 01-03, 06).
"""

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..database.schema import Snapshot, diff, snapshot
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


@dataclass(frozen=True)
class Replayed:
    """What went wrong when the learner's revisions were replayed on a copy: at which step, and what was found.

    step: "copy" (no copy could be made), "upgrade" (`upgrade head` failed), "at head" (the state at head is not
    what the exercise wants), "downgrade" (the downgrade failed), "downgraded" (it ran but left something),
    "upgrade again" (the second upgrade failed) or "compare" (head after the round trip is not head before).
    """

    step: str
    problem: str

    def __str__(self) -> str:
        return self.problem


Inspect = Callable[[LabDatabase], str | None]


@dataclass(frozen=True)
class Shape:
    """What a round trip must give back: tables and columns (types, NULL, defaults; in any order), the names of
    indexes and constraints, and the enum types with their values."""

    columns: Snapshot
    names: frozenset[str]
    enums: frozenset[tuple[str, tuple[str, ...]]]

    def difference(self, other: "Shape") -> str:
        """What `other` has that this one has not, and the reverse, in a few words."""
        changed = diff(self.columns, other.columns)
        if changed:
            return ", ".join(changed.lines())
        gone, made = sorted(self.names - other.names), sorted(other.names - self.names)
        if gone or made:
            return "; ".join([f"gone: {', '.join(gone)}"] * bool(gone) + [f"new: {', '.join(made)}"] * bool(made))
        return "the enum types' values differ"


def shape(conn: sa.Connection) -> Shape:
    inspector = sa.inspect(conn)
    names: set[str] = set()
    for table in inspector.get_table_names():
        for found in (
            inspector.get_indexes(table),
            inspector.get_unique_constraints(table),
            inspector.get_check_constraints(table),
            inspector.get_foreign_keys(table),
        ):
            names.update(f"{table}.{item['name']}" for item in found)
    enum_types = inspector.get_enums()  # type: ignore[attr-defined]  # PostgreSQL's inspector has it
    enums = frozenset((e["name"], tuple(e["labels"])) for e in enum_types)
    # Columns by name: a branch replayed in another order adds its columns in another order, the same schema.
    columns = {table: tuple(sorted(cols, key=lambda c: c.name)) for table, cols in snapshot(conn).items()}
    return Shape(columns, frozenset(names), enums)


def replay(
    lab: Lab,
    down_to: str,
    at_head: Inspect | None = None,
    downgraded: Inspect | None = None,
    prepare: Callable[[LabDatabase], None] | None = None,
) -> Replayed | None:
    """The learner's revisions, replayed on a copy of their database: `upgrade head`, `downgrade <down_to>`,
    `upgrade head` again; None when every step runs and each inspection finds nothing wrong.

    `at_head` inspects the copy at head (before the round trip), `downgraded` after the downgrade (say, the
    column is gone); both return what is wrong, or None. `prepare` puts rows on the copy first (a round trip
    over empty tables proves nothing about data: a NOT NULL with NULLs in it succeeds there). After the round
    trip the schema must be what it was at head: a downgrade that leaves something behind, or an upgrade that
    only works once, shows there. The learner's database is never touched.
    """
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            if prepare is not None:
                prepare(copy)
            up = runner.run("upgrade head")
            if not up.ok:
                return Replayed("upgrade", f"`alembic upgrade head` fails: {up.error}")
            found = at_head(copy) if at_head else None
            if found:
                return Replayed("at head", found)
            with copy.connect() as conn:
                before = shape(conn)
            down = runner.run(["downgrade", down_to])
            if not down.ok:
                return Replayed("downgrade", f"`alembic downgrade {down_to}` fails: {down.error}")
            found = downgraded(copy) if downgraded else None
            if found:
                return Replayed("downgraded", f"after `alembic downgrade {down_to}`, {found}")
            again = runner.run("upgrade head")
            if not again.ok:
                return Replayed(
                    "upgrade again", f"`alembic upgrade head` after `downgrade {down_to}` fails: {again.error}"
                )
            with copy.connect() as conn:
                after = shape(conn)
            if after != before:
                return Replayed(
                    "compare",
                    f"after `alembic downgrade {down_to}` and `upgrade head` the schema is not what it was at "
                    f"head: {before.difference(after)}",
                )
    except CopyUnavailable as why:
        return Replayed("copy", f"the lab could not copy the database to try it: {why.what}")
    return None
