"""The unsafe-operations catalogue the reviewer knows (chapters 14 and 15), each with its safe recipe in a sentence.

Each rule says what the operation does to a running app, then "Instead, ..." with the recipe, as strong_migrations
words its messages. Three sources prove them, each the right tool for its question:

- the revision's own `op.` calls, read with `ast` and never run, each with whether it runs inside an
  `autocommit_block()` (its own transaction): a foreign key added validated, a VALIDATE in the transaction that
  added the constraint, a UNIQUE constraint, SET NOT NULL, a concurrent build that a rerun would skip;
- its rehearsal on a copy: which tables it rewrote (the relfilenode changed: a type change decided by what
  PostgreSQL did, not guessed from the types), which tables it renamed, which columns it dropped, against what
  main.py maps;
- the lock trace (`review(..., locks=True)`): the session's lock_timeout when each strong lock was asked for,
  however it was set (env.py, SET LOCAL, a helper), and long statements run under a lock held since an earlier one.

Rules about a scan or a rewrite fire from LARGE_TABLE_ROWS rows on: on the course's three-row tables they would be
noise, on a real table they are outages.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ..lab import Lab
from ..running.rehearsal import Rehearsal
from ..workspace.edits import load_models
from .finding import Finding
from .lock_trace import STRENGTH, LockTrace

LARGE_TABLE_ROWS = 10_000  # from here on, a scan or a rewrite under a strong lock is worth a warning
LONG_SECONDS = 0.1  # a statement this long under a lock held since an earlier statement is worth a warning
STOPS_THE_APP = STRENGTH["ShareLock"]  # ShareLock and stronger: writes (or reads and writes) wait


@dataclass(frozen=True)
class Call:
    """One `op.<name>(...)` call of upgrade(), its literal arguments, and whether it runs in an autocommit_block."""

    name: str
    args: tuple
    kwargs: dict
    autocommit: bool
    line: int

    def arg(self, index: int, keyword: str) -> object:
        return self.args[index] if len(self.args) > index else self.kwargs.get(keyword)

    @property
    def sql(self) -> str:
        """The statement of an op.execute("...") with a literal string, upper-cased; "" otherwise."""
        text = self.arg(0, "sqltext")
        return " ".join(text.split()).upper() if self.name == "execute" and isinstance(text, str) else ""


def _literal(node: ast.AST) -> object:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("f", "text")
        and len(node.args) == 1
    ):
        node = node.args[0]  # op.f('ix_name'), sa.text('...'): the string inside
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return node  # not a literal (sa.Column(...)): keep the node


@dataclass
class _Calls(ast.NodeVisitor):
    found: list[Call] = field(default_factory=list)
    autocommit: bool = False

    def visit_With(self, node: ast.With) -> None:
        inside = any(
            isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr == "autocommit_block"
            for item in node.items
        )
        outer, self.autocommit = self.autocommit, self.autocommit or inside
        self.generic_visit(node)
        self.autocommit = outer

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "op":
            self.found.append(
                Call(
                    func.attr,
                    tuple(_literal(a) for a in node.args),
                    {k.arg: _literal(k.value) for k in node.keywords if k.arg},
                    self.autocommit,
                    node.lineno,
                )
            )
        self.generic_visit(node)


def calls(path: Path, function: str = "upgrade") -> list[Call]:
    """The op. calls of a revision's upgrade() (nested helpers and lambdas included), in the order written."""
    tree = ast.parse(path.read_text())
    body = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    visitor = _Calls()
    if body is not None:
        visitor.visit(body)
    return sorted(visitor.found, key=lambda c: c.line)


def _rows(lab: Lab, table: str) -> int:
    with lab.db.engine.connect() as conn:
        if not sa.inspect(conn).has_table(table):
            return 0
        return conn.scalar(sa.select(sa.func.count()).select_from(sa.table(table))) or 0


def _indexed(lab: Lab, table: str, columns: list[str]) -> bool:
    """Some index (or the primary key) of `table` starts with `columns`."""
    with lab.db.engine.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(table):
            return False
        leading = [list(index["column_names"]) for index in inspector.get_indexes(table)]
        leading.append(list(inspector.get_pk_constraint(table)["constrained_columns"]))
    return any(list(names[: len(columns)]) == columns for names in leading)


def _created_tables(found: list[Call]) -> set[str]:
    return {c.args[0] for c in found if c.name == "create_table" and c.args and isinstance(c.args[0], str)}


def _columns(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []


_ADD_NOT_VALID = re.compile(r"ADD CONSTRAINT (\w+) .*NOT VALID")
_VALIDATE = re.compile(r"VALIDATE CONSTRAINT (\w+)")
_SQL_FOREIGN_KEY = re.compile(r"ALTER TABLE (?:ONLY )?(\w+) ADD CONSTRAINT (\w+) FOREIGN KEY")
_SQL_UNIQUE = re.compile(r"ALTER TABLE (?:ONLY )?(\w+) ADD CONSTRAINT (\w+) UNIQUE \(")


def script_findings(lab: Lab, path: Path) -> list[Finding]:
    """What the revision's calls say, with the table sizes the database has."""
    found = calls(path)
    created = _created_tables(found)
    findings: list[Finding] = []
    findings += _foreign_keys(lab, found, created)
    findings += _validated_in_the_same_transaction(found)
    findings += _unique_constraints(lab, found, created)
    findings += _not_null(lab, found, created)
    findings += _rerun_skips_invalid(lab, found, path.read_text())
    return findings


def _foreign_keys(lab: Lab, found: list[Call], created: set[str]) -> list[Finding]:
    findings = []
    indexed_here = {
        (c.arg(1, "table_name"), tuple(_columns(c.arg(2, "columns")))) for c in found if c.name == "create_index"
    }
    keys = [
        (
            c.arg(0, "constraint_name"),
            c.arg(1, "source_table"),
            c.arg(2, "referent_table"),
            _columns(c.arg(3, "local_cols")),
            bool(c.kwargs.get("postgresql_not_valid")),
        )
        for c in found
        if c.name == "create_foreign_key"
    ]
    keys += [
        (m.group(2).lower(), m.group(1).lower(), "", [], "NOT VALID" in c.sql)
        for c in found
        if (m := _SQL_FOREIGN_KEY.search(c.sql))
    ]
    for name, source, referent, local, not_valid in keys:
        if not isinstance(source, str) or source in created:
            continue  # a new table has no rows to check: safe (it still locks its referent briefly)
        rows = _rows(lab, source)
        if rows < LARGE_TABLE_ROWS:
            continue
        if not not_valid:
            findings.append(
                Finding(
                    "warning",
                    "foreign-key-validates-under-lock",
                    f"adding foreign key {name} checks all {rows:,} rows of {source} while {source}"
                    + (f" and {referent} are" if referent else " is")
                    + " locked against writes (ShareRowExclusiveLock, until the migration commits).",
                    f"Instead, add it with postgresql_not_valid=True, then run ALTER TABLE {source} VALIDATE "
                    f"CONSTRAINT {name} in a separate transaction (inside `with op.get_context().autocommit_block():`, "
                    "or in the next revision).",
                )
            )
        if (
            local
            and not any(t == source and list(cols[: len(local)]) == local for t, cols in indexed_here)
            and not (_indexed(lab, source, local))
        ):
            findings.append(
                Finding(
                    "warning",
                    "foreign-key-without-index",
                    f"deleting (or re-keying) a row of {referent or 'the referenced table'} looks for the rows of "
                    f"{source} that reference it: without an index on {source}({', '.join(local)}) each one scans "
                    f"all {rows:,} rows.",
                    f"Instead, add op.create_index('ix_{source}_{local[0]}', '{source}', {local}, "
                    "postgresql_concurrently=True) inside `with op.get_context().autocommit_block():` "
                    "(index=True in the model).",
                )
            )
    return findings


def _validated_in_the_same_transaction(found: list[Call]) -> list[Finding]:
    findings = []
    added: set[str] = set()  # NOT VALID constraints added in the transaction that is open
    for c in found:
        if c.autocommit:
            added.clear()  # the block committed the transaction before it; its statements are their own
            continue
        name = c.arg(0, "constraint_name")
        adds = c.name in ("create_foreign_key", "create_check_constraint") and c.kwargs.get("postgresql_not_valid")
        if adds and isinstance(name, str):
            added.add(name.lower())
        if match := _ADD_NOT_VALID.search(c.sql):
            added.add(match.group(1).lower())
        match = _VALIDATE.search(c.sql)
        if match and match.group(1).lower() in added:
            findings.append(
                Finding(
                    "warning",
                    "validate-in-same-transaction",
                    f"VALIDATE CONSTRAINT {match.group(1).lower()} runs in the transaction that added it: the lock "
                    "the ADD took (ShareRowExclusiveLock for a foreign key, AccessExclusiveLock for a CHECK or NOT "
                    "NULL) is still held while it scans every row.",
                    "Instead, run the VALIDATE inside `with op.get_context().autocommit_block():`, or in the next "
                    "revision.",
                )
            )
    return findings


def _unique_constraints(lab: Lab, found: list[Call], created: set[str]) -> list[Finding]:
    uniques = [
        (c.arg(0, "constraint_name"), c.arg(1, "table_name"), _columns(c.arg(2, "columns")))
        for c in found
        if c.name == "create_unique_constraint"
    ]
    uniques += [(m.group(2).lower(), m.group(1).lower(), []) for c in found if (m := _SQL_UNIQUE.search(c.sql))]
    findings = []
    for name, table, columns in uniques:
        if not isinstance(table, str) or table in created or (rows := _rows(lab, table)) < LARGE_TABLE_ROWS:
            continue
        findings.append(
            Finding(
                "warning",
                "unique-constraint-builds-under-lock",
                f"adding UNIQUE {name} builds its index over all {rows:,} rows of {table} while {table} is locked "
                "against reads and writes (AccessExclusiveLock).",
                f"Instead, op.create_index('{name}', '{table}', {columns or ['...']}, unique=True, "
                "postgresql_concurrently=True) inside `autocommit_block()`, then "
                f"op.execute('ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}') (milliseconds).",
            )
        )
    return findings


def _server_version(lab: Lab) -> int:
    with lab.db.engine.connect() as conn:
        return int(conn.scalar(sa.text("SHOW server_version_num")) or 0)


def _added_columns(found: list[Call]) -> set[tuple[object, object]]:
    """(table, column) of each add_column(table, sa.Column('name', ...)) of the revision."""
    added = set()
    for c in found:
        column = c.args[1] if c.name == "add_column" and len(c.args) > 1 else None
        if isinstance(column, ast.Call) and column.args:
            added.add((c.args[0], _literal(column.args[0])))
    return added


def _not_null(lab: Lab, found: list[Call], created: set[str]) -> list[Finding]:
    added = _added_columns(found)
    findings = []
    for c in found:
        table, column = c.arg(0, "table_name"), c.arg(1, "column_name")
        if c.name != "alter_column" or c.kwargs.get("nullable") is not False or not isinstance(table, str):
            continue
        if table in created or (table, column) in added or (rows := _rows(lab, table)) < LARGE_TABLE_ROWS:
            continue
        name = f"{table}_{column}_not_null"
        recipe = (
            f"Instead, op.execute('ALTER TABLE {table} ADD CONSTRAINT {name} NOT NULL {column} NOT VALID') (new rows "
            f"are checked at once), then op.execute('ALTER TABLE {table} VALIDATE CONSTRAINT {name}') in a separate "
            "transaction (PostgreSQL 18)."
            if _server_version(lab) >= 180000
            else f"Instead, add CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE it in a separate transaction; SET "
            "NOT NULL then skips the scan; drop the CHECK."
        )
        findings.append(
            Finding(
                "warning",
                "not-null-scans-under-lock",
                f"SET NOT NULL on {table}.{column} checks all {rows:,} rows while {table} is locked against reads and "
                "writes (AccessExclusiveLock).",
                recipe,
            )
        )
    return findings


def _rerun_skips_invalid(lab: Lab, found: list[Call], text: str) -> list[Finding]:
    findings = []
    rerun = [
        c
        for c in found
        if (c.name == "create_index" and c.kwargs.get("postgresql_concurrently") and c.kwargs.get("if_not_exists"))
        or "CONCURRENTLY IF NOT EXISTS" in c.sql
    ]
    guarded = "indisvalid" in text or any(  # a leftover is checked for, or dropped before the build
        (c.name == "drop_index" and c.kwargs.get("postgresql_concurrently")) or "DROP INDEX CONCURRENTLY" in c.sql
        for c in found
    )
    if rerun and not guarded:
        findings.append(
            Finding(
                "warning",
                "concurrent-index-rerun-invalid",
                "if this concurrent build fails (a duplicate, a lock_timeout while it waits for old transactions), it "
                "leaves an INVALID index behind, and IF NOT EXISTS then skips it: the rerun reports success with an "
                "index no query uses (one that failed while building enforces nothing either).",
                "Instead, drop a leftover before the build: DROP INDEX CONCURRENTLY IF EXISTS (or only when "
                "pg_index.indisvalid says it is INVALID).",
            )
        )
    names = {c.arg(0, "index_name") for c in found if c.name == "create_index"}
    tables = {c.arg(1, "table_name") for c in found if c.name == "create_index"}
    with lab.db.engine.connect() as conn:
        invalid = conn.execute(
            sa.text(
                "SELECT i.relname, t.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_class t ON t.oid = x.indrelid WHERE NOT x.indisvalid "
                "AND t.relnamespace = 'public'::regnamespace ORDER BY 1"
            )
        ).all()
    for index, table in invalid:
        if index in names or table in tables:
            findings.append(
                Finding(
                    "error",
                    "invalid-index-present",
                    f"{index} on {table} is INVALID (a concurrent build failed): no query uses it"
                    + (", and IF NOT EXISTS would skip it." if index in names else "."),
                    f"Instead, drop it first (DROP INDEX CONCURRENTLY {index}), then build it again.",
                )
            )
    return findings


# --- what the rehearsal measured ------------------------------------------------------------------------


def _mapped(lab: Lab) -> dict[str, set[str]]:
    """{table: its mapped columns} of main.py's models, loaded afresh; empty when main.py does not import."""
    try:
        tables = load_models(lab.project).Base.metadata.tables.values()
    except Exception:  # a learner's main.py mid-edit: the other rules still run
        return {}
    return {table.name: {column.name for column in table.columns} for table in tables}


def rehearsal_findings(lab: Lab, path: Path, rehearsal: Rehearsal) -> list[Finding]:
    """Rewrites, renamed tables and dropped columns the rehearsal saw, against what main.py maps."""
    if rehearsal.result is None or not rehearsal.result.ok:
        return []
    findings = []
    retyped = [c for c in calls(path) if c.name == "alter_column" and "type_" in c.kwargs]
    for c in retyped:
        table, column = c.arg(0, "table_name"), c.arg(1, "column_name")
        if not isinstance(table, str) or (rows := _rows(lab, table)) < LARGE_TABLE_ROWS:
            continue
        if table in rehearsal.rewritten:
            findings.append(
                Finding(
                    "warning",
                    "column-type-rewrites",
                    f"changing the type of {table}.{column} rewrites all {rows:,} rows of {table} (measured on a "
                    "copy: a new relfilenode) and rebuilds its indexes, under AccessExclusiveLock for all of it.",
                    "Instead, add a new column, keep it in step with a trigger, backfill it in batches, build its "
                    "index concurrently, then swap the columns in one short transaction (chapter 14).",
                )
            )
        else:
            findings.append(
                Finding(
                    "info",
                    "column-type-keeps-rows",
                    f"changing the type of {table}.{column} keeps the rows as they are (measured on a copy: no "
                    "rewrite), but still takes AccessExclusiveLock for a moment.",
                    "Give it a short lock_timeout and retries.",
                )
            )
    mapped = _mapped(lab)
    for renamed in rehearsal.renames:
        old = getattr(renamed, "old", None)
        if hasattr(renamed, "view_left") and old in mapped and not renamed.view_left:  # a table
            findings.append(
                Finding(
                    "error",
                    "rename-table-still-mapped",
                    f"main.py still maps the table {old}: once it is renamed to {renamed.new}, every query the running "
                    "app makes on it fails.",
                    f"Instead, rename it and op.execute('CREATE VIEW {old} AS SELECT * FROM {renamed.new}') in the "
                    "same transaction (a simple view takes reads and inserts), deploy the code with "
                    f"__tablename__ = '{renamed.new}', then drop the view in a later revision.",
                )
            )
    column_renames = {(r.table, r.old) for r in rehearsal.renames if hasattr(r, "table")}
    for table, column in rehearsal.changes.dropped_columns:
        if column in mapped.get(table, set()) and (table, column) not in column_renames:
            findings.append(
                Finding(
                    "error",
                    "drop-column-still-mapped",
                    f"main.py still maps {table}.{column}: once it is dropped, every query the running app makes on "
                    f"{table} names it and fails.",
                    "Instead, stop mapping it first (remove it from the model and deploy that code), then drop it in "
                    "a later release.",
                )
            )
    return findings


# --- what the lock trace measured --------------------------------------------------------------------------


def trace_findings(found: LockTrace) -> list[Finding]:
    """Strong locks asked for with no lock_timeout, and long statements under a lock held since an earlier one."""
    findings = []
    waits = [
        step
        for step in found.steps
        if step.lock_timeout in ("0", "")
        and any(STRENGTH.get(lock.mode, -1) >= STOPS_THE_APP for lock in step.locks)
        and step.locks
    ]
    for step in waits:
        strongest = max(step.locks, key=lambda lock: STRENGTH.get(lock.mode, -1))
        findings.append(
            Finding(
                "warning",
                "lock-without-timeout",
                f"line {step.line} asks for {strongest.mode} on {strongest.table} with no lock_timeout (the lock "
                "trace read the session): behind any open transaction on the table it waits, and every query queues "
                "behind it.",
                "Instead, set a short lock_timeout and retry: SET LOCAL lock_timeout = '200ms' with a deploy that "
                "retries SQLSTATE 55P03, or with_lock_retries around the statement (chapter 15).",
            )
        )
    for step in found.steps:
        held = [lock for lock in step.already if STRENGTH.get(lock.mode, -1) >= STOPS_THE_APP]
        if held and step.duration >= LONG_SECONDS and not step.autocommit:
            lock = max(held, key=lambda k: STRENGTH.get(k.mode, -1))
            findings.append(
                Finding(
                    "warning",
                    "long-statement-under-held-lock",
                    f"line {step.line} ran {step.duration * 1000:.0f} ms while the revision still held {lock.mode} on "
                    f"{lock.table} from an earlier statement: every query on {lock.table} waited all that time.",
                    "Instead, commit the schema change first and do the long work in batches outside it "
                    "(`autocommit_block()`, or the next revision); SET LOCAL transaction_timeout (PostgreSQL 17+) "
                    "bounds the whole transaction, and ends its session.",
                )
            )
    return findings


def timeouts_set_by_the_session(found: LockTrace) -> bool:
    """Every statement that took a strong lock had a lock_timeout in its session (env.py, SET LOCAL, a helper)."""
    strong = [s for s in found.steps if any(STRENGTH.get(k.mode, -1) >= STOPS_THE_APP for k in s.locks)]
    return bool(strong) and all(s.lock_timeout not in ("0", "") for s in strong)


# --- the deploy's settings ------------------------------------------------------------------------------


def settings_findings(lab: Lab) -> list[Finding]:
    """env.py's migration lock and the URL the migrations use: what a connection pooler breaks."""
    findings = []
    env = lab.project.service_dir / "migrations" / "env.py"
    text = env.read_text() if env.is_file() else ""
    if "pg_advisory_xact_lock" in text and re.search(r"transaction_per_migration\s*=\s*True", text):
        findings.append(
            Finding(
                "warning",
                "xact-lock-per-revision",
                "env.py takes pg_advisory_xact_lock, which is released when its transaction ends: with "
                "transaction_per_migration=True, after the first revision, and the next ones run unguarded.",
                "Instead, a session lock (pg_advisory_lock) on the connection alembic migrates on, released in a "
                "`finally:`, over a direct connection to PostgreSQL (chapter 13).",
            )
        )
    url = sa.engine.make_url(lab.db.url)
    if url.port == 6432 or "bouncer" in (url.host or ""):
        findings.append(
            Finding(
                "info",
                "migrations-through-pooler",
                f"the migrations connect to port {url.port} on {url.host}: if that is PgBouncer in transaction "
                "pooling, a session advisory lock belongs to whichever server connection ran it (two deploys can "
                "both hold it), and SET outlives your session.",
                "Instead, run migrations over a direct connection (or a session-pooling port); the app may use the "
                "pooler.",
            )
        )
    return findings
