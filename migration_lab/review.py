"""Review a revision before it runs: what a careful teammate would point out.

Four sources, each the right tool for its question:

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
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .errors import LabError
from .lab import Lab
from .rehearsal import rehearse
from .workspace import load_models

LARGE_TABLE_ROWS = 10_000  # above this, a blocking index build is worth a warning
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
SQUAWK = Path(sys.executable).with_name("squawk")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": will fail or lose data; "warning": risky; "info": good to know
    rule: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {"error": "✘", "warning": "⚠", "info": "ℹ"}[self.severity]
        return f"{mark} {self.severity} [{self.rule}] {self.message}" + (f"\n    Fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Review:
    revision: str
    path: Path
    findings: tuple[Finding, ...]

    def __str__(self) -> str:
        head = f"Review of {self.revision} ({self.path.name}):"
        if not self.findings:
            return f"{head} nothing to point out."
        return "\n".join([head, *map(str, self.findings)])

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
                        f"op.execute(\"ALTER TYPE {name} ADD VALUE '{value}'\") (in "
                        "`with op.get_context().autocommit_block():` if the same migration uses it), "
                        "or let alembic-postgresql-enum write it.",
                    )
                )
    return findings


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
    return [
        Finding(
            "error" if item["level"] == "Error" else "warning",
            f"squawk:{item['rule_name']}",
            item["message"],
            item.get("help") or "",
        )
        for item in json.loads(done.stdout)
    ]


def review(revision: str = "head", lab: Lab | None = None) -> Review:
    """Review one revision (an id, "head", or a unique prefix) of the lab's project."""
    lab = lab or Lab()
    script = lab.runner.script().get_revision(revision)
    if script is None:
        raise LabError(f"There is no revision {revision!r}.", "`alembic history` lists the revisions.")
    parent = script.down_revision
    if not isinstance(parent, (str, type(None))):
        raise LabError(f"{script.revision} is a merge point.", "Review each of the revisions it merges.")
    path = Path(script.path)
    findings = _script_findings(lab, operations(path))

    heads = lab.runner.database_heads()
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

    sql = lab.runner.run(["upgrade", f"{parent}:{script.revision}" if parent else script.revision, "--sql"])
    if sql.ok:
        findings += squawk(sql.stdout)
    else:
        findings.append(Finding("warning", "no-offline-sql", f"alembic could not render the SQL: {sql.error}"))
    findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return Review(script.revision, path, tuple(findings))
