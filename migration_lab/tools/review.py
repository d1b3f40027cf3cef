"""Review a revision before it runs: what a careful teammate would point out.

Four sources, each the right tool for its question (and the catalogue of unsafe operations of chapters 14-15,
`unsafe_operations`, reads the same ones):

- the script's own operations (read with `ast`, never run): a drop + add that
  looks like a rename, a NOT NULL column without a server default, an index
  built without CONCURRENTLY;
- a rehearsal (run, measured, rolled back): which columns and tables would be
  dropped with how many values, and which renames keep their data;
- the models against the database's enum types: values autogenerate cannot see;
- squawk, on the SQL of `alembic upgrade <parent>:<revision> --sql`.
"""

import ast
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..errors import LabError
from ..lab import Lab
from ..running.rehearsal import rehearse
from ..workspace.edits import load_models
from . import unsafe_operations
from .finding import Finding
from .lock_trace import LockTrace, trace

LARGE_TABLE_ROWS = 10_000  # above this, a blocking index build is worth a warning
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
SQUAWK = Path(sys.executable).with_name("squawk")


@dataclass(frozen=True)
class Review:
    revision: str
    path: Path
    findings: tuple[Finding, ...]
    trace: LockTrace | None = None  # review(..., locks=True): each statement's locks, rewrites and cost

    def __str__(self) -> str:
        text = self.findings_text()
        return text if self.trace is None else f"{text}\n{self.trace}"

    def findings_text(self) -> str:
        head = f"Review of {self.revision} ({self.path.name}):"
        if not self.findings:
            return f"{head} nothing to point out."
        if self.clean:
            head += " no errors, no warnings; good to know:"
        return "\n".join([head, *map(str, self.findings)])

    @property
    def clean(self) -> bool:
        """Nothing worse than "good to know"."""
        return all(f.severity == "info" for f in self.findings)

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}


@dataclass(frozen=True)
class _Op:
    name: str
    args: tuple
    kwargs: dict


def _literal(node: ast.AST):
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "f"
        and len(node.args) == 1
    ):
        node = node.args[0]  # op.f('ix_name'): a name already following the naming convention
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError):
        return node  # not a literal (sa.Column(...), sa.text(...)): keep the node


def operations(path: Path, function: str = "upgrade") -> list[_Op]:
    """The `op.<name>(...)` calls of a revision's upgrade() (or downgrade()), in order."""
    tree = ast.parse(path.read_text())
    body = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    found = []
    for node in ast.walk(body) if body else ():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "op"
        ):
            found.append(
                _Op(
                    node.func.attr,
                    tuple(_literal(a) for a in node.args),
                    {k.arg: _literal(k.value) for k in node.keywords},
                )
            )
    return found


def _column_call(op: _Op) -> tuple[str, dict] | None:
    """(name, keywords) of the sa.Column(...) an add_column adds."""
    column = op.args[1] if len(op.args) > 1 else None
    if isinstance(column, ast.Call) and column.args:
        name = _literal(column.args[0])
        return (name, {k.arg: _literal(k.value) for k in column.keywords}) if isinstance(name, str) else None
    return None


def _rows(lab: Lab, table: str) -> int:
    with lab.db.engine.connect() as conn:
        if not sa.inspect(conn).has_table(table):
            return 0
        return conn.scalar(sa.select(sa.func.count()).select_from(sa.table(table))) or 0


def _script_findings(lab: Lab, ops: list[_Op]) -> list[Finding]:
    findings = []
    added = {(op.args[0], col[0]): col[1] for op in ops if op.name == "add_column" and (col := _column_call(op))}
    dropped = [(op.args[0], op.args[1]) for op in ops if op.name == "drop_column" and len(op.args) > 1]
    for table, old in dropped:
        for added_table, new in added:
            if added_table == table:
                findings.append(
                    Finding(
                        "warning",
                        "rename-as-drop-add",
                        f"{table}: drops {old} and adds {new}. If that is a rename, the values of {old} are lost.",
                        f"op.alter_column({table!r}, {old!r}, new_column_name={new!r}) instead (and the reverse "
                        "in downgrade()).",
                    )
                )
    for (table, column), kwargs in added.items():
        if kwargs.get("nullable") is False and "server_default" not in kwargs:
            rows = _rows(lab, table)
            findings.append(
                Finding(
                    "error" if rows else "warning",
                    "not-null-without-default",
                    f"{table}.{column} is added NOT NULL without a server default: "
                    + (
                        f"this fails on the {rows} rows {table} has."
                        if rows
                        else f"{table} is empty here, but this fails wherever it has rows."
                    ),
                    "Give it a server_default, or add it nullable, backfill it, then alter it to NOT NULL.",
                )
            )
    for op in ops:
        if op.name == "create_index" and len(op.args) > 1 and not op.kwargs.get("postgresql_concurrently"):
            rows = _rows(lab, op.args[1])
            if rows >= LARGE_TABLE_ROWS:
                findings.append(
                    Finding(
                        "warning",
                        "non-concurrent-index",
                        f"index {op.args[0]} on {op.args[1]} ({rows} rows) is built without CONCURRENTLY: "
                        "writes to the table wait until it is done.",
                        "op.create_index(..., postgresql_concurrently=True) inside "
                        "`with op.get_context().autocommit_block():`",
                    )
                )
    return findings


def _model_enums(lab: Lab) -> dict[str, tuple[str, ...]]:
    """Enum types the models in main.py declare: {type name: values}. Loaded afresh."""
    return {
        column.type.name: tuple(column.type.enums)
        for table in load_models(lab.project).Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, sa.Enum) and column.type.name
    }


def _database_enums(lab: Lab) -> dict[str, tuple[str, ...]]:
    query = sa.text(
        "SELECT t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
        "ORDER BY t.typname, e.enumsortorder"
    )
    found: dict[str, list[str]] = {}
    with lab.db.engine.connect() as conn:
        for name, label in conn.execute(query):
            found.setdefault(name, []).append(label)
    return {name: tuple(labels) for name, labels in found.items()}


def _where(value: str, values: tuple[str, ...], existing: tuple[str, ...]) -> str:
    """AFTER (or BEFORE) which existing value ADD VALUE must put `value` so the database keeps the model's order.

    Said even at the end: a bare ADD VALUE appends, right only by luck (squawk: require-enum-value-ordering).
    """
    index = values.index(value)
    before = next((v for v in reversed(values[:index]) if v in existing), None)
    if before is not None:
        return f" AFTER '{before}'"
    after = next((v for v in values[index + 1 :] if v in existing), None)
    return f" BEFORE '{after}'" if after is not None else ""


def _enum_findings(lab: Lab, scripts: list[Path]) -> list[Finding]:
    text = "\n".join(p.read_text() for p in scripts)
    findings = []
    database = _database_enums(lab)
    for name, values in _model_enums(lab).items():
        if name not in database:
            continue  # a new type: autogenerate creates it with its table
        for value in values:
            if value not in database[name] and f"'{value}'" not in text:
                findings.append(
                    Finding(
                        "warning",
                        "enum-change-unseen",
                        f"the models give ENUM {name} the value {value!r}, the database does not have it, and "
                        "autogenerate cannot see enum changes.",
                        f"op.execute(\"ALTER TYPE {name} ADD VALUE '{value}'{_where(value, values, database[name])}\")"
                        " (ADD VALUE appends unless told AFTER or BEFORE: keep the model's order, or `alembic check` "
                        "with alembic-postgresql-enum reports the difference). A new value cannot be used before the "
                        "transaction that adds it commits: with alembic's default env.py that is the whole "
                        "`alembic upgrade` run, later revisions included (UnsafeNewEnumValueUsage); with "
                        "transaction_per_migration=True, as here, the revision itself. So run it in "
                        "`with op.get_context().autocommit_block():` (alembic-postgresql-enum's op.add_enum_value "
                        "too), or let alembic-postgresql-enum write it.",
                    )
                )
    return findings


# squawk's findings the lab expects at some stage of the course, said where they first appear (the console's
# review after every autogenerate from chapter 01 on): what they mean here, and what makes them go away.
TIMEOUTS_FIX = (
    "Expected on every revision until chapter 10: alembic sets no timeouts. On a busy table an ALTER that waits "
    "for its lock makes every query behind it wait too. The fix (chapter 10): begin upgrade() with "
    "op.execute(\"SET LOCAL lock_timeout = '1s'\") and op.execute(\"SET LOCAL statement_timeout = '10s'\") "
    "(LOCAL: they end with the revision's transaction); a migration that cannot get its lock then fails fast, "
    "ready to retry."
)
# A concurrent index build (or drop) waits for older transactions, but blocks no reads or writes meanwhile. What it
# waits for: a build, the writers of its table and whoever holds an older snapshot (a REPEATABLE READ report on any
# table, not a READ COMMITTED one idle between statements); a drop, every transaction that used its table, readers too.
CONCURRENT_NO_LOCK_TIMEOUT = (
    "Not for a build or drop CONCURRENTLY: while it waits (a build for the transactions that wrote the table or hold "
    "an older snapshot, on any table; a drop for every transaction that used the table) it blocks no reads or "
    "writes, and a lock_timeout would only cancel it and leave an INVALID index behind. A statement_timeout bounds "
    "it instead."
)
EXPLAINED = {
    "require-lock-timeout": ("warning", TIMEOUTS_FIX),
    "require-statement-timeout": (
        "warning",
        "Expected on every revision until chapter 10, with require-lock-timeout: a statement with no time limit "
        "can hold its locks for as long as it runs. Same fix: a SET statement_timeout at the start of upgrade().",
    ),
    "adding-not-nullable-field": (
        "warning",
        "Fine on a small table (the last step of add nullable, backfill, NOT NULL). On a big one the scan holds "
        "an ACCESS EXCLUSIVE lock: first op.create_check_constraint(..., 'col IS NOT NULL', postgresql_not_valid="
        "True), then VALIDATE CONSTRAINT (it lets writes go on); SET NOT NULL then skips the scan.",
    ),
    "renaming-column": (
        "info",
        "Expected when a rename is what you mean: the app must use the new name when the migration runs "
        "(deploy them together, or add the new column first and drop the old one later).",
    ),
    "renaming-table": (
        "info",
        "Expected when a rename is what you mean: the running code must find the table under either name until "
        "it is deployed: in the same transaction create a view under the old name, deploy, then drop the view "
        "(chapter 15).",
    ),
}
CONCURRENT_INDEX_HELP = "Use an explicit name for a concurrently created index"


def _in_transaction(sql: str) -> list[bool]:
    """For each line of alembic's offline SQL: is it between a BEGIN; and its COMMIT;?"""
    inside, found = False, []
    for line in sql.splitlines():
        statement = line.strip().upper()
        if statement == "BEGIN;":
            inside = True
        found.append(inside)
        if statement == "COMMIT;":
            inside = False
    return found


def _explained(finding: Finding, in_transaction: bool = False, statement: str = "", before: str = "") -> Finding:
    """squawk's finding, said for this course; `statement` is the SQL line it is about, `before` the lines above."""
    rule = finding.rule.removeprefix("squawk:")
    concurrently = re.search(r"(?i)\bINDEX\s+CONCURRENTLY\b", statement)
    if rule == "require-lock-timeout" and concurrently:
        return Finding("info", finding.rule, finding.message, CONCURRENT_NO_LOCK_TIMEOUT)
    if rule == "prefer-robust-stmts" and finding.message.startswith("Missing transaction") and in_transaction:
        # Once a file has a statement outside any transaction (an autocommit_block's), squawk says this of
        # every statement; this one runs between alembic's BEGIN and COMMIT, so a failure rolls it back.
        return Finding(
            "info",
            finding.rule,
            finding.message,
            "Not so here: alembic runs this statement between BEGIN and COMMIT, so a failure rolls it back; "
            "squawk says it because another statement of the file runs outside a transaction.",
        )
    if rule in EXPLAINED:
        severity, fix = EXPLAINED[rule]
        return Finding(severity, finding.rule, finding.message, fix)
    if rule == "prefer-robust-stmts" and finding.fix == CONCURRENT_INDEX_HELP:
        # squawk's help is about unnamed indexes (alembic always names them), and its IF NOT EXISTS is not enough
        # here: a failed concurrent build leaves an INVALID index, which IF NOT EXISTS would skip.
        name = re.search(r"(?i)\bCONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)", statement)
        dropped = name is not None and re.search(
            rf"(?i)DROP\s+INDEX\s+CONCURRENTLY\s+IF\s+EXISTS\s+{re.escape(name.group(1))}\b", before
        )
        if dropped:
            return Finding(
                "info",
                finding.rule,
                finding.message,
                "Done here, the way that works: the DROP INDEX CONCURRENTLY IF EXISTS above removes what a failed "
                "run left (an INVALID index), so a rerun builds it again. IF NOT EXISTS alone would skip it.",
            )
        return Finding(
            finding.severity,
            finding.rule,
            finding.message,
            "A failed concurrent build leaves an INVALID index, which IF NOT EXISTS would skip (and report "
            'success): drop a leftover first, op.execute("DROP INDEX CONCURRENTLY IF EXISTS <name>"), then build.',
        )
    return finding


def squawk(sql: str) -> list[Finding]:
    """squawk's findings on a migration's SQL."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        file.write(sql)
        file.flush()
        # alembic's SQL carries its own BEGIN/COMMIT, which tells squawk about the transaction.
        done = subprocess.run(
            [str(SQUAWK), "--reporter", "json", file.name], capture_output=True, text=True, timeout=60
        )
    if not done.stdout.strip():
        raise LabError(f"squawk gave no report: {done.stderr.strip()}", "Check that squawk-cli is installed.")
    in_transaction = _in_transaction(sql)
    lines = sql.splitlines()
    found = []
    for item in json.loads(done.stdout):
        line = item.get("line", -1)
        known = 0 <= line < len(lines)
        found.append(
            _explained(
                Finding(
                    "error" if item["level"] == "Error" else "warning",
                    f"squawk:{item['rule_name']}",
                    item["message"],
                    item.get("help") or "",
                ),
                known and in_transaction[line],
                lines[line] if known else "",
                "\n".join(lines[:line]) if known else "",
            )
        )
    return _once(found)


def _once(findings: list[Finding]) -> list[Finding]:
    """squawk reports a rule once per statement; say each finding once, with how many statements it concerns."""
    counts: dict[Finding, int] = {}
    for finding in findings:
        counts[finding] = counts.get(finding, 0) + 1
    return [
        finding
        if n == 1
        else Finding(finding.severity, finding.rule, f"{finding.message} ({n} statements)", finding.fix)
        for finding, n in counts.items()
    ]


def review(revision: str = "head", lab: Lab | None = None, locks: bool = False) -> Review:
    """Review one revision (an id, "head", or a unique prefix) of the lab's project.

    `locks`: also trace each statement's locks, rewrites and duration on a copy (see lock_trace).
    """
    lab = lab or Lab()
    script = lab.runner.script().get_revision(revision)
    if script is None:
        raise LabError(f"There is no revision {revision!r}.", "`alembic history` lists the revisions.")
    parent = script.down_revision
    if not isinstance(parent, (str, type(None))):
        raise LabError(f"{script.revision} is a merge point.", "Review each of the revisions it merges.")
    path = Path(script.path)
    findings = _script_findings(lab, operations(path)) + unsafe_operations.script_findings(lab, path)
    rehearsal = None

    heads = lab.db.heads()
    if heads == ((parent,) if parent else ()):
        rehearsal = rehearse(lab.runner, ["upgrade", script.revision])
        if rehearsal.result is None:
            findings.append(Finding("info", "not-rehearsed", f"could not be rehearsed: {rehearsal.unavailable}."))
        elif not rehearsal.result.ok:
            findings.append(
                Finding(
                    "error",
                    "fails",
                    f"rehearsed, the upgrade fails: {rehearsal.result.error}",
                    rehearsal.result.hint or "Fix the script and rehearse again.",
                )
            )
        findings += [
            Finding(
                "error",
                "drops-data",
                f"drops the {loss}.",
                "Keep the data: rename instead of drop + add, or copy it first.",
            )
            for loss in rehearsal.losses
        ]
        findings += [Finding("info", "rename-keeps-data", str(rename)) for rename in rehearsal.renames]
        findings += unsafe_operations.rehearsal_findings(lab, path, rehearsal)
    else:
        findings.append(
            Finding(
                "info",
                "not-rehearsed",
                f"the database is at {', '.join(heads) or 'base'}, not at this revision's parent "
                f"({parent or 'base'}): data effects were not measured.",
            )
        )
    findings += _enum_findings(lab, [path])
    findings += unsafe_operations.settings_findings(lab)

    sql = lab.runner.run(["upgrade", f"{parent}:{script.revision}" if parent else script.revision, "--sql"])
    if sql.ok:
        findings += squawk(sql.stdout)
    else:
        findings.append(Finding("warning", "no-offline-sql", f"alembic could not render the SQL: {sql.error}"))
    traced = trace(script.revision, lab) if locks else None
    if traced is not None and traced.unavailable is None:
        findings += unsafe_operations.trace_findings(traced)
    findings = _measured(findings, rehearsal.rewritten if rehearsal and rehearsal.result else None, traced)
    findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return Review(script.revision, path, tuple(findings), traced)


# squawk's rules that a finding of the catalogue says again, with what was measured and the recipe.
SAID_AGAIN = {
    "foreign-key-validates-under-lock": ("squawk:adding-foreign-key-constraint", "squawk:constraint-missing-not-valid"),
    "unique-constraint-builds-under-lock": (
        "squawk:disallowed-unique-constraint",
        "squawk:constraint-missing-not-valid",
    ),
    "not-null-scans-under-lock": ("squawk:adding-not-nullable-field",),
    "column-type-rewrites": ("squawk:changing-column-type",),
    "column-type-keeps-rows": ("squawk:changing-column-type",),
    "lock-without-timeout": ("squawk:require-lock-timeout",),
}


def _measured(findings: list[Finding], rewritten: tuple[str, ...] | None, traced: LockTrace | None) -> list[Finding]:
    """squawk's guesses corrected by what was measured: each said once, by the finding that measured it.

    A type change the rehearsal saw rewrite nothing is not a rewrite; a lock_timeout set in env.py or by a
    helper, which squawk cannot see in the SQL, counts when the lock trace read it in the migration's session.
    """
    fired = {f.rule for f in findings}
    repeated = {rule for mine, theirs in SAID_AGAIN.items() if mine in fired for rule in theirs}
    kept = []
    for finding in findings:
        if finding.rule in repeated:
            continue
        if finding.rule == "squawk:changing-column-type" and rewritten == ():
            finding = Finding(
                "info",
                finding.rule,
                finding.message,
                "Not here: rehearsed on a copy, it rewrote no table (the same relfilenode). It still takes "
                "AccessExclusiveLock for a moment: a short lock_timeout and retries.",
            )
        if (
            finding.rule == "squawk:require-lock-timeout"
            and traced is not None
            and unsafe_operations.timeouts_set_by_the_session(traced)
        ):
            finding = Finding(
                "info",
                finding.rule,
                finding.message,
                "Not here: the lock trace read a lock_timeout in the migration's session before each strong lock "
                "(set in env.py, by SET LOCAL or by a helper, which squawk cannot see in the SQL).",
            )
        kept.append(finding)
    return kept
