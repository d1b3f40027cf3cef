"""The live schema: what tables and columns the database has, and what changed.

A snapshot is read with SQLAlchemy's inspector (never by parsing psql output);
a diff between two snapshots is what the schema view highlights and what the
rehearsal of a destructive command reports.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

HIDDEN_TABLES = {"alembic_version"}  # alembic's bookkeeping, shown by `current` instead


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None

    def describe(self) -> str:
        parts = [self.type, "NULL" if self.nullable else "NOT NULL"]
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        return " ".join(parts)


Snapshot = dict[str, tuple[Column, ...]]


def _type_name(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    """The type as PostgreSQL names it (TIMESTAMP WITH TIME ZONE), an ENUM with its values."""
    if isinstance(type_, sa.Enum):
        return f"ENUM {type_.name}({', '.join(type_.enums)})"
    return type_.compile(dialect=dialect)


def snapshot(bind: sa.Connection | sa.Engine) -> Snapshot:
    """Tables of schema public (but alembic_version) and their columns, in order."""
    inspector = sa.inspect(bind)
    return {
        table: tuple(
            Column(c["name"], _type_name(c["type"], bind.dialect), bool(c["nullable"]), c.get("default"))
            for c in inspector.get_columns(table)
        )
        for table in sorted(inspector.get_table_names())
        if table not in HIDDEN_TABLES
    }


# What the marks of lines(), render_text() and render_html() mean.
MEANING = {"+": "added", "-": "dropped", "~": "changed"}


@dataclass(frozen=True)
class SchemaDiff:
    """What changed between two snapshots; empty (falsy) when nothing did."""

    added_tables: tuple[str, ...] = ()
    dropped_tables: tuple[str, ...] = ()
    added_columns: tuple[tuple[str, str], ...] = ()
    dropped_columns: tuple[tuple[str, str], ...] = ()
    changed_columns: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return any(
            (self.added_tables, self.dropped_tables, self.added_columns, self.dropped_columns, self.changed_columns)
        )

    def lines(self) -> list[str]:
        return (
            [f"+ table {t}" for t in self.added_tables]
            + [f"- table {t}" for t in self.dropped_tables]
            + [f"+ column {t}.{c}" for t, c in self.added_columns]
            + [f"- column {t}.{c}" for t, c in self.dropped_columns]
            + [f"~ column {t}.{c}" for t, c in self.changed_columns]
        )

    def said(self) -> list[str]:
        """lines() with each mark said in a word, so that no colour is needed to tell them apart."""
        return [f"{line} ({MEANING[line[0]]})" for line in self.lines()]

    def mark(self, table: str, column: str | None = None) -> str:
        """'+', '-', '~' or '' for a table (column None) or a column."""
        if column is None:
            return "+" if table in self.added_tables else "-" if table in self.dropped_tables else ""
        key = (table, column)
        if key in self.added_columns:
            return "+"
        if key in self.dropped_columns:
            return "-"
        return "~" if key in self.changed_columns else ""


def diff(before: Snapshot, after: Snapshot) -> SchemaDiff:
    common = sorted(before.keys() & after.keys())
    added, dropped, changed = [], [], []
    for table in common:
        old = {c.name: c for c in before[table]}
        new = {c.name: c for c in after[table]}
        added += [(table, c) for c in new if c not in old]
        dropped += [(table, c) for c in old if c not in new]
        changed += [(table, c) for c in new if c in old and new[c] != old[c]]
    return SchemaDiff(
        added_tables=tuple(sorted(after.keys() - before.keys())),
        dropped_tables=tuple(sorted(before.keys() - after.keys())),
        added_columns=tuple(added),
        dropped_columns=tuple(dropped),
        changed_columns=tuple(changed),
    )


@dataclass(frozen=True)
class Loss:
    """Data a command would destroy: a dropped table's rows, a dropped column's values,
    deleted rows, or values set to NULL."""

    table: str
    column: str | None
    count: int
    kind: str = ""  # "" (dropped), "deleted" (rows), "cleared" (values set to NULL)

    def __str__(self) -> str:
        if self.kind == "deleted":
            return f"{self.count} row(s) deleted from table {self.table}"
        if self.kind == "cleared":
            return f"{self.count} value(s) of column {self.table}.{self.column} set to NULL"
        if self.column is None:
            return f"table {self.table} and its {self.count} row(s)"
        return f"column {self.table}.{self.column} and its {self.count} value(s)"


Counts = dict[str, dict[str | None, int]]  # {table: {None: rows, column: non-null values}}


def counts(conn: sa.Connection, snap: Snapshot) -> Counts:
    """Rows per table and non-null values per column: what a command could destroy."""
    quote = conn.dialect.identifier_preparer.quote
    found: Counts = {}
    for table, cols in snap.items():
        parts = ["count(*)"] + [f"count({quote(c.name)})" for c in cols]
        row = conn.execute(sa.text(f"SELECT {', '.join(parts)} FROM {quote(table)}")).one()
        found[table] = {None: row[0], **{c.name: n for c, n in zip(cols, row[1:], strict=True)}}
    return found


def losses(
    changes: SchemaDiff, before: Counts, after: Counts, renames: list[Rename], moved: Sequence[TableRename] = ()
) -> list[Loss]:
    """Everything that held data before and holds less after, renamed columns and tables excepted."""
    renamed = {(r.table, r.old) for r in renames}
    gone = set(changes.dropped_tables) - {m.old for m in moved}
    found = [Loss(t, None, before[t][None]) for t in sorted(gone) if before[t][None]]
    found += [Loss(t, c, before[t][c]) for t, c in changes.dropped_columns if before[t][c] and (t, c) not in renamed]
    for table, old in before.items():
        new = after.get(table)
        if new is None:
            continue
        if new[None] < old[None]:
            found.append(Loss(table, None, old[None] - new[None], "deleted"))
        elif new[None] == old[None]:
            found += [
                Loss(table, c, old[c] - new[c], "cleared")
                for c in old
                if c is not None and c in new and new[c] < old[c]
            ]
    return found


def fingerprint(conn: sa.Connection, table: str, column: str) -> str | None:
    """A digest of a column's non-null values as a multiset (None when it has none)."""
    quote = conn.dialect.identifier_preparer.quote
    value = f"CAST({quote(column)} AS text)"
    return conn.scalar(sa.text(f"SELECT md5(string_agg({value}, E'\\n' ORDER BY {value})) FROM {quote(table)}"))


def fingerprints(conn: sa.Connection, columns: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, str]]:
    """{fingerprint: (table, column)} for the columns that hold any values."""
    found = {fingerprint(conn, *key): key for key in columns}
    return {digest: key for digest, key in found.items() if digest is not None}


@dataclass(frozen=True)
class Rename:
    """A dropped column whose values all reappear in an added column of the same table."""

    table: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"column {self.table}.{self.old} renamed to {self.new}: its values are kept"


def renames(
    changes: SchemaDiff, dropped: dict[tuple[str, str], str | None], added: dict[str, tuple[str, str]]
) -> list[Rename]:
    """Dropped columns whose values all reappear in an added column of the same table.

    `dropped` holds fingerprints of the dropped columns taken before the change,
    `added` is `fingerprints()` of the added columns taken after.
    """
    found = []
    for (table, column), digest in dropped.items():
        target = added.get(digest) if digest is not None else None
        if target is not None and target[0] == table:
            found.append(Rename(table, column, target[1]))
    return found


@dataclass(frozen=True)
class TableRename:
    """A table that is gone under its old name and there under a new one: the same table (its OID), rows and all."""

    old: str
    new: str
    view_left: bool = False  # a view now answers under the old name (old code keeps working through it)

    def __str__(self) -> str:
        said = f"table {self.old} renamed to {self.new}: its rows are kept"
        return f"{said}; a view answers as {self.old}" if self.view_left else said


TABLE_OIDS = (
    "SELECT c.oid::int, c.relname, c.relfilenode::int FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
    "AND c.relkind IN ('r', 'p')"
)


def table_oids(conn: sa.Connection) -> dict[int, str]:
    """{OID: name} of the tables of schema public: an OID outlives a rename."""
    return {oid: name for oid, name, _file in conn.execute(sa.text(TABLE_OIDS))}


def table_files(conn: sa.Connection) -> dict[int, int]:
    """{OID: relfilenode} of the tables of schema public: a new file number means every row was copied."""
    return {oid: file for oid, _name, file in conn.execute(sa.text(TABLE_OIDS))}


def rewritten(before: dict[int, int], after: dict[int, int], names: dict[int, str]) -> tuple[str, ...]:
    """The tables (by their names `names`) whose file changed between two `table_files`."""
    return tuple(sorted(names[oid] for oid, file in before.items() if after.get(oid) not in (None, file)))


VIEWS = "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm')"


def views(conn: sa.Connection) -> set[str]:
    """The views of schema public."""
    return set(conn.scalars(sa.text(VIEWS)))


def table_renames(
    changes: SchemaDiff, before: dict[int, str], after: dict[int, str], views_after: Collection[str] = ()
) -> list[TableRename]:
    """Dropped tables whose OID is there after, under an added name (and whether a view took the old name)."""
    return [
        TableRename(name, after[oid], name in views_after)
        for oid, name in sorted(before.items(), key=lambda item: item[1])
        if name in changes.dropped_tables and after.get(oid) in changes.added_tables
    ]


def render_text(snap: Snapshot, changes: SchemaDiff | None = None, only: str | None = None) -> str:
    """The tables as plain text, changed lines marked +, - or ~."""
    changes = changes or SchemaDiff()
    lines = []
    for table, cols in snap.items():
        if only and table != only:
            continue
        lines.append(f"{changes.mark(table) or ' '} {table}")
        width = max((len(c.name) for c in cols), default=0)
        lines += [f"{changes.mark(table, c.name) or ' '}   {c.name:<{width}}  {c.describe()}" for c in cols]
    if not only:
        lines += [f"- {t}" for t in changes.dropped_tables]
        lines += [f"-   {t}.{c}  (dropped)" for t, c in changes.dropped_columns if t in snap]
    return "\n".join(lines) if lines else "(no tables yet: the database is empty)"


_STYLE = {
    "+": "background:#d4f8d4",
    "-": "background:#fbd4d4;text-decoration:line-through",
    "~": "background:#fff3c4",
    "": "",
}


def _said(mark: str) -> str:
    """A mark for the HTML view, with its word: the colours alone do not say it (WCAG 1.4.1)."""
    return f"{mark} {MEANING[mark]}" if mark else ""


def render_html(snap: Snapshot, changes: SchemaDiff | None = None) -> str:
    """The tables as HTML for the schema view: added green, dropped red, changed yellow, each said in a word too."""
    changes = changes or SchemaDiff()
    if not snap and not changes.dropped_tables:
        return "<p><i>No tables yet: the database is empty.</i></p>"
    blocks = []
    for table, cols in snap.items():
        rows = "".join(
            f'<tr style="{_STYLE[changes.mark(table, c.name)]}"><td>{_said(changes.mark(table, c.name))}</td>'
            f"<td><code>{html.escape(c.name)}</code></td><td>{html.escape(c.describe())}</td></tr>"
            for c in cols
        )
        rows += "".join(
            f'<tr style="{_STYLE["-"]}"><td>{_said("-")}</td><td><code>{html.escape(c)}</code></td><td></td></tr>'
            for t, c in changes.dropped_columns
            if t == table
        )
        blocks.append(
            f'<table style="{_STYLE[changes.mark(table)]}"><caption style="text-align:left">'
            f"<b>{html.escape(table)}</b>{f' ({MEANING[changes.mark(table)]})' if changes.mark(table) else ''}"
            f"</caption>{rows}</table>"
        )
    blocks += [f'<p style="{_STYLE["-"]}"><b>{html.escape(t)}</b> (dropped)</p>' for t in changes.dropped_tables]
    return '<div style="display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start">' + "".join(blocks) + "</div>"
