"""Rehearse a command on a throw-away copy of the database: see what it would do.

The copy is made with `CREATE DATABASE ... TEMPLATE` (about 30 ms for the
lab's database), the command runs there for real, the copy is measured and
dropped. Whatever the revision does — COMMIT, END, an `autocommit_block`,
`CREATE INDEX CONCURRENTLY`, a string of several statements — happens to the
copy only; the learner's database is never touched and no lock is taken on
its tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..database import schema
from ..database.connection import LabDatabase
from ..errors import CopyUnavailable
from .command import Command, parse
from .runner import Runner, RunResult, at


@dataclass(frozen=True)
class Rehearsal:
    """What a command would do, found by running it on a copy; or why it could not be rehearsed."""

    command: Command
    result: RunResult | None  # None when it could not be rehearsed
    changes: schema.SchemaDiff = schema.SchemaDiff()
    losses: tuple[schema.Loss, ...] = ()
    renames: tuple[schema.Rename | schema.TableRename, ...] = ()
    preview: tuple[tuple, ...] | None = None  # rows of `show_table` as they would be afterwards
    preview_columns: tuple[str, ...] = ()
    unavailable: str | None = None  # why there was no rehearsal
    rewritten: tuple[str, ...] = ()  # tables the command rewrote (a new relfilenode): every row copied

    @property
    def rehearsed(self) -> bool:
        return self.result is not None

    @property
    def before(self) -> tuple[str, ...] | None:
        """The database's revisions the rehearsal started from."""
        return self.result.before if self.result else None

    @property
    def after(self) -> tuple[str, ...] | None:
        """Where the command would leave the database."""
        return self.result.after if self.result else None

    def __str__(self) -> str:
        if self.result is None:
            return (
                f"Could not rehearse {self.command.local}: {self.unavailable}.\n"
                "Nothing was run; the kit cannot tell what it would destroy."
            )
        lines = [f"Rehearsal on a throw-away copy of the database (yours is untouched): {self.command.local}"]
        if not self.result.ok:
            lines.append(f"It would FAIL: {self.result.error}")
            if self.result.stray_commits:
                lines.append(
                    f"... after committing {self.result.stray_commits} statement(s) itself "
                    "(autocommit_block or COMMIT): those would stay."
                )
        if self.result.before != self.result.after and self.result.after is not None:
            lines.append(f"It would move the database: {at(self.result.before)} → {at(self.result.after)}")
        lines += self.changes.lines() or ["No change to tables or columns."]
        lines += [f"Renamed: {rename}" for rename in self.renames]
        lines += [f"DATA LOSS: {loss}" for loss in self.losses]
        return "\n".join(lines)


def rehearse(runner: Runner, line: str | list[str] | Command, show_table: str | None = None) -> Rehearsal:
    """Run upgrade/downgrade/stamp on a copy of the database and report what it would do."""
    command = line if isinstance(line, Command) else parse(line)
    if not command.changes_database:
        raise ValueError(f"only upgrade, downgrade and stamp change the database, not {command.name!r}")
    try:
        with runner.db.copy() as copy:
            return _on_copy(runner, copy, command, show_table)
    except CopyUnavailable as why:
        return Rehearsal(command, None, unavailable=why.what)


def _on_copy(runner: Runner, copy: LabDatabase, command: Command, show_table: str | None) -> Rehearsal:
    with copy.connect() as conn:
        snap_before = schema.snapshot(conn)
        counts_before = schema.counts(conn, snap_before)
        oids_before = schema.table_oids(conn)
        files_before = schema.table_files(conn)
    result = runner.on(copy).run(command)
    with copy.connect() as conn:
        snap_after = schema.snapshot(conn)
        counts_after = schema.counts(conn, snap_after)
        changes = schema.diff(snap_before, snap_after)
        oids_after = schema.table_oids(conn)
        moved = schema.table_renames(changes, oids_before, oids_after, schema.views(conn))
        rewritten = schema.rewritten(files_before, schema.table_files(conn), oids_after)
        added = schema.fingerprints(conn, changes.added_columns)
        preview = None
        if show_table and show_table in snap_after:
            rows = conn.execute(sa.select(sa.text("*")).select_from(sa.table(show_table)).order_by(sa.text("1")))
            preview = (tuple(rows.keys()), tuple(tuple(r) for r in rows))
    dropped = {}
    if changes.dropped_columns and added:
        # The values of the dropped columns, from before: the original holds them still.
        with runner.db.connect() as conn:
            dropped = {key: schema.fingerprint(conn, *key) for key in changes.dropped_columns}
    renames = schema.renames(changes, dropped, added)
    losses = schema.losses(changes, counts_before, counts_after, renames, moved)
    columns, shown = preview or ((), None)
    return Rehearsal(
        command, result, changes, tuple(losses), (*moved, *renames), shown, tuple(columns), rewritten=rewritten
    )
