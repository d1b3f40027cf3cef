"""Do the downgrades undo? Tried on a throw-away copy of the database, never the learner's.

`round_trip`: does the history survive `downgrade base` + `upgrade head`? `undo_and_redo`: which revision's
downgrade takes a given thing away, and does its upgrade bring it back as it was?

A downgrade that runs is not a downgrade that undoes: an initial revision whose
downgrade() drops the tables but leaves an ENUM type behind runs fine, and the
next `upgrade head` fails on CREATE TYPE (DuplicateObject), or passes when the
upgrade clears the type first. So the round trip wants nothing left at base and
head's schema back as it was (types, defaults, constraints), and the one-step
forms compare the schema before and after too. The exercise checks of chapters
06-10 make it, on a copy: the learner's database is never touched. `replay` is
the one-step form: down to the exercise's start and back, on a copy that keeps
the rows (and gets rows of its own where the exercise needs them), with what
the exercise wants inspected at each step (chapters 01-03, 06).
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..database.schema import Snapshot, diff, snapshot
from ..errors import CopyUnavailable, LabError
from ..lab import Lab
from ..running.runner import Runner
from .checks import Check, Hints, levels

# The revision chapters 02-13 start from (checkpoints.WITH_PHONE_NUMBER): the floor of a replay, below which the
# initial revisions drop whole tables and types.
WITH_PHONE_NUMBER_HEAD = "a1c4e7f20b13"

NAME = "the history survives `alembic downgrade base` then `upgrade head` (tried on a copy)"


def a_profile(conn: sa.Connection) -> int:
    """The id of a profile on a copy the check writes rows to: the first there is, or one made for the check (a
    copy of a database emptied by the learner has none)."""
    found = conn.scalar(sa.text("SELECT min(id) FROM user_profiles"))
    if found is None:
        found = conn.scalar(
            sa.text("INSERT INTO user_profiles (name, email) VALUES ('Check', 'check@example.com') RETURNING id")
        )
    return int(found)


def _first(error: sa.exc.SQLAlchemyError) -> str:
    """PostgreSQL's message (or SQLAlchemy's), first line: what went wrong, without the statement."""
    said = str(error.orig if isinstance(error, sa.exc.DBAPIError) else error).strip()
    return said.splitlines()[0] if said else type(error).__name__


def upgrade_fails(lab: Lab) -> str | None:
    """The SQLSTATE `upgrade head` fails with on a throw-away copy ("" for a failure without one); None when it
    works, or when no copy can be made (the check that needs it says so itself)."""
    try:
        with lab.db.copy() as copy:
            result = lab.runner.on(copy).run("upgrade head")
    except CopyUnavailable:
        return None
    return None if result.ok else result.sqlstate or ""


def round_trip(lab: Lab, hints: Hints) -> Check:
    """On a copy: upgrade to head, downgrade to base, upgrade to head again, and head's schema must come back as
    it was (a downgrade that leaves a type or a default behind runs fine); the first hint says what went wrong."""
    first, *rest = levels(hints) or ("",)
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            shapes = []
            for step in ("upgrade head", "downgrade base", "upgrade head"):
                result = runner.run(step)
                if not result.ok:
                    return Check(NAME, False, (f"On a copy, `alembic {step}` failed: {result.error}. {first}", *rest))
                with copy.connect() as conn:
                    shapes.append(shape(conn))
            at_head, at_base, again = shapes
            left = at_base.leftovers()
            if left:  # an upgrade that tolerates them (DROP TYPE IF EXISTS, checkfirst) hides them from the rest
                said = (
                    f"On a copy, `alembic downgrade base` leaves {left} behind: a downgrade misses it (or it was "
                    "made outside the revisions)."
                )
                return Check(NAME, False, (f"{said} {first}", *rest))
            if again != at_head:
                changed = at_head.difference(again)
                return Check(
                    NAME, False, (f"On a copy, after the round trip the schema differs: {changed}. {first}", *rest)
                )
    except CopyUnavailable as why:
        return Check(NAME, False, (f"The lab could not copy the database to try it: {why.what}.", *levels(hints)[1:]))
    return Check(NAME, True, hints)


@dataclass(frozen=True)
class Replayed:
    """What went wrong when the learner's revisions were replayed on a copy: at which step, and what was found.

    step: "copy" (no copy could be made, or the check's rows could not be written on it), "upgrade" (`upgrade
    head` failed), "at head" (the state at head is not what the exercise wants), "downgrade" (the downgrade
    failed), "downgraded" (it ran but left something, or the rows the check writes there do not fit), "upgrade
    again" (the second upgrade failed), "upgraded again" (it ran, but what the revisions make of the rows is not
    what the exercise wants) or "compare" (head after the round trip is not head before).
    """

    step: str
    problem: str
    sqlstate: str | None = None  # PostgreSQL's code of a step that failed (23502: NOT NULL on rows already there)

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

    def leftovers(self) -> str:
        """What is still here when nothing should be (at base), in a few words; "" when nothing is."""
        tables = sorted(self.columns)
        types = sorted(name for name, _ in self.enums)
        return ", ".join([f"table {t}" for t in tables] + [f"type {t}" for t in types])

    def lost_in(self, now: "Shape") -> str:
        """What of this shape `now` lacks or has changed, in a few words; "" when nothing: its tables with their
        columns (a column the downgrade gave back without its NOT NULL, its default, its type; or one it left
        there), its indexes and constraints, its enum types. What `now` has besides (tables, names and types made
        outside the revisions) is not judged here."""
        types = dict(self.enums)
        kept = Shape(
            {table: columns for table, columns in now.columns.items() if table in self.columns},
            self.names & now.names,
            frozenset(e for e in now.enums if e[0] in types),
        )
        return "" if kept == self else self.difference(kept)

    def difference(self, other: "Shape") -> str:
        """What `other` has that this one has not, and the reverse, in a few words."""
        changed = diff(self.columns, other.columns)
        if changed:
            was = {(t, c.name): c for t, cols in self.columns.items() for c in cols}
            now = {(t, c.name): c for t, cols in other.columns.items() for c in cols}
            told = {
                f"~ column {t}.{c}": f"column {t}.{c}: {was[t, c].describe()} became {now[t, c].describe()}"
                for t, c in changed.changed_columns
            }
            return ", ".join(told.get(line, line) for line in changed.lines())
        gone, made = sorted(self.names - other.names), sorted(other.names - self.names)
        if gone or made:
            return "; ".join([f"gone: {', '.join(gone)}"] * bool(gone) + [f"new: {', '.join(made)}"] * bool(made))
        types_were, types_are = dict(self.enums), dict(other.enums)
        return "; ".join(
            f"type {name}: "
            + (f"({', '.join(types_were[name])})" if name in types_were else "none")
            + " became "
            + (f"({', '.join(types_are[name])})" if name in types_are else "none")
            for name in sorted(set(types_were) | set(types_are))
            if types_were.get(name) != types_are.get(name)
        )


def built_to(lab: Lab, heads: tuple[str, ...]) -> Shape | None:
    """The schema the revision files build from an empty database up to `heads` (each branch's, in turn), on a
    wiped copy: what a downgrade to them must give back (a NOT NULL the next upgrade sets again hides from a
    comparison at head). None when it cannot be had: no copy, or a build that fails (the checks that run the
    revisions say why)."""
    try:
        with lab.db.copy() as fresh:
            with fresh.connect() as conn:
                fresh.wipe(conn)
            runner = lab.runner.on(fresh)
            if not all(runner.run(["upgrade", head]).ok for head in heads):
                return None
            with fresh.connect() as conn:
                return shape(conn)
    except LabError:  # CopyUnavailable, or a wipe refused
        return None


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


TableRows = dict[str, list[dict[str, str]]]


def table_rows(conn: sa.Connection, schema: Shape) -> TableRows:
    """Every row of every table of `schema`, each value as its repr (JSON values and arrays compare too; bytea
    as its bytes, not the memoryview psycopg2 gives, whose repr is an address)."""
    quote = conn.dialect.identifier_preparer.quote
    return {
        table: [
            {name: repr(bytes(value) if isinstance(value, memoryview) else value) for name, value in row.items()}
            for row in conn.execute(sa.text(f"SELECT * FROM {quote(table)}")).mappings()
        ]
        for table in schema.columns
    }


def rows_changed(conn: sa.Connection, was: TableRows, before: Shape, after: Shape) -> str:
    """What a downgrade (from `before` to `after`) did to rows it should have left alone, in a few words; "" when
    nothing. Every table both have keeps its rows, whole: the values of every column the downgrade did not change
    (same name, type, NULL and default), row by row (values swapped between rows count too). The columns it drops,
    adds or alters are the exercise's to judge."""
    now = table_rows(conn, after)
    for table in sorted(set(was) & set(now)):
        if len(now[table]) != len(was[table]):
            return f"{table} has {len(now[table])} row(s), where it had {len(was[table])}"
        left = sorted(c.name for c in set(before.columns[table]) & set(after.columns[table]))
        whole = Counter(tuple(row[name] for name in left) for row in was[table])
        whole.subtract(tuple(row[name] for name in left) for row in now[table])
        changed = sum(count for count in whole.values() if count > 0)
        if changed:
            columns = [
                name
                for name in left
                if Counter(row[name] for row in was[table]) != Counter(row[name] for row in now[table])
            ]
            which = f"{table}.{columns[0]}" if columns else f"{table} ({', '.join(left)}, between rows)"
            return f"{which} changed in {changed} row(s) (a column the downgrade does not alter)"
    return ""


def replay(
    lab: Lab,
    down_to: str,
    at_head: Inspect | None = None,
    downgraded: Inspect | None = None,
    prepare: Callable[[LabDatabase], None] | None = None,
    upgraded_again: Inspect | None = None,
    below: Callable[[LabDatabase], None] | None = None,
) -> Replayed | None:
    """The learner's revisions, replayed on a copy of their database: `upgrade head`, `downgrade <down_to>`,
    `upgrade head` again; None when every step runs and each inspection finds nothing wrong.

    `at_head` inspects the copy at head (before the round trip), `downgraded` after the downgrade (say, the
    column is gone), `upgraded_again` after the revisions ran again over the rows (say, they filled them: what
    the learner did by hand in their own database shows at head, not here); each returns what is wrong, or None.
    `prepare` puts rows on the copy first (a round trip over empty tables proves nothing about data: a NOT NULL
    with NULLs in it succeeds there). `below` writes rows at `down_to`, between the downgrade and the upgrade
    again: what production holds there by now, which the upgrade must keep. After the round trip the schema
    must be what it was at head: a downgrade that leaves something behind, or an upgrade that only works once,
    shows there. The learner's database is never touched.
    """
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            if prepare is not None:
                try:
                    prepare(copy)
                except sa.exc.SQLAlchemyError as why:
                    return Replayed("copy", f"the rows the check puts on a copy could not be written: {_first(why)}")
            up = runner.run("upgrade head")
            if not up.ok:
                return Replayed("upgrade", f"`alembic upgrade head` fails: {up.error}", up.sqlstate)
            found = at_head(copy) if at_head else None
            if found:
                return Replayed("at head", found)
            with copy.connect() as conn:
                before = shape(conn)
                rows = table_rows(conn, before)
            down = runner.run(["downgrade", down_to])
            if not down.ok:
                return Replayed("downgrade", f"`alembic downgrade {down_to}` fails: {down.error}")
            found = downgraded(copy) if downgraded else None
            if found:
                return Replayed("downgraded", f"after `alembic downgrade {down_to}`, {found}")
            floor = copy.heads()  # down_to, and any branch the downgrade leaves applied beside it
            with copy.connect() as conn:
                at_floor = shape(conn)
                changed = rows_changed(conn, rows, before, at_floor)
            if changed:
                return Replayed(
                    "downgraded",
                    f"after `alembic downgrade {down_to}`, {changed}: a downgrade takes away what its upgrade added "
                    "(a column, an index, rows it inserted), never the rows that were there, nor the values of the "
                    "columns it leaves",
                )
            later = _up_again(copy, runner, down_to, before, below, upgraded_again)
    except CopyUnavailable as why:
        return Replayed("copy", f"the lab could not copy the database to try it: {why.what}")
    built = built_to(lab, floor)  # after the copy is gone: two copies at once may be more than a learner may hold
    lost = built.lost_in(at_floor) if built is not None else ""
    if lost:
        return Replayed(
            "downgraded",
            f"after `alembic downgrade {down_to}` the schema is not what the revisions build up to "
            f"{', '.join(floor) or 'base'}: {lost}",
        )
    return later


def _up_again(
    copy: LabDatabase,
    runner: Runner,
    down_to: str,
    before: "Shape",
    below: Callable[[LabDatabase], None] | None,
    upgraded_again: Inspect | None,
) -> Replayed | None:
    """The replay's second half, on the copy at `down_to`: rows written there, `upgrade head` again, compared."""
    if below is not None:
        try:
            below(copy)
        except sa.exc.SQLAlchemyError as why:
            return Replayed(
                "downgraded",
                f"after `alembic downgrade {down_to}` the rows the check writes there could not be written: "
                f"{_first(why)}",
            )
    again = runner.run("upgrade head")
    if not again.ok:
        return Replayed(
            "upgrade again", f"`alembic upgrade head` after `downgrade {down_to}` fails: {again.error}", again.sqlstate
        )
    found = upgraded_again(copy) if upgraded_again else None
    if found:
        return Replayed("upgraded again", f"after `alembic downgrade {down_to}` and `upgrade head`, {found}")
    with copy.connect() as conn:
        after = shape(conn)
    if after != before:
        return Replayed(
            "compare",
            f"after `alembic downgrade {down_to}` and `upgrade head` the schema is not what it was at "
            f"head: {before.difference(after)}",
        )
    return None


@dataclass(frozen=True)
class Undo:
    """One revision's downgrade and upgrade, replayed on a copy: the one whose downgrade took something away."""

    revision: str | None = None  # whose downgrade took it away; None: no downgrade did, down to the floor
    before: Any = None  # what the probe saw at that revision, before its downgrade
    down: Any = None  # after its downgrade
    up: Any = None  # after `upgrade <revision>` again
    problem: str = ""  # a step that failed, or a copy that could not be made
    changed: str = ""  # how the schema after the downgrade and upgrade differs from the schema before them

    @property
    def restored(self) -> bool:
        """The upgrade brought back exactly what the downgrade took, and the schema around it is as it was (a
        default the downgrade dropped and never set again, a renamed type left behind)."""
        return self.revision is not None and not self.problem and self.up == self.before and not self.changed


def undo_and_redo(
    lab: Lab,
    probe: Callable[[LabDatabase], Any],
    present: Callable[[Any], bool],
    floor: str,
    prepare: Callable[[LabDatabase], None] | None = None,
) -> Undo:
    """On a copy of the database: `downgrade -1`, one revision at a time, until `present(probe(copy))` no longer
    holds, then `upgrade` that revision again.

    A downgrade that runs is not one that undoes: a `pass` runs fine and leaves everything. Stepping down from
    where the learner is finds the revision whose downgrade really takes the thing away, however the revisions are
    written, and the upgrade after it shows whether it comes back as it was. Never below `floor` (the chapter's
    start), whose older revisions drop whole tables and types. `prepare` puts rows on the copy first: a downgrade
    tried over empty tables shows nothing of what it does to the rows that use the thing it takes away.
    """
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            if prepare is not None:
                try:
                    prepare(copy)
                except sa.exc.SQLAlchemyError as why:
                    return Undo(problem=f"the rows the check puts on a copy could not be written: {_first(why)}")
            while True:
                heads = copy.heads()
                if len(heads) != 1 or heads[0] == floor:
                    return Undo()
                before = probe(copy)
                with copy.connect() as conn:
                    schema = shape(conn)
                down = runner.run(["downgrade", "-1"])
                if not down.ok:
                    return Undo(heads[0], before, problem=f"`alembic downgrade -1` from {heads[0]} fails: {down.error}")
                after = probe(copy)
                if not present(after):
                    up = runner.run(["upgrade", heads[0]])
                    if not up.ok:
                        return Undo(heads[0], before, after, problem=f"`alembic upgrade {heads[0]}` fails: {up.error}")
                    with copy.connect() as conn:
                        again = shape(conn)
                    changed = "" if again == schema else schema.difference(again)
                    return Undo(heads[0], before, after, probe(copy), changed=changed)
    except CopyUnavailable as why:
        return Undo(problem=f"the lab could not copy the database to try it ({why.what})")
