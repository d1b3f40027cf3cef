"""Exercise checks: small named predicates on the real database and the revision files.

Each returns a `Check`: what was checked, whether it holds, and, when it does
not, a hint that says precisely what to do next - never a bare "wrong".
"""

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .errors import LabError
from .lab import Lab
from .workspace import model_attributes


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    hint: str = ""

    def __str__(self) -> str:
        return f"✔ {self.name}" if self.passed else f"✘ {self.name}\n    Hint: {self.hint}"


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def __str__(self) -> str:
        verdict = "All checks pass. Well done!" if self.passed else "Not yet: fix the first ✘ and check again."
        return "\n".join([*map(str, self.checks), verdict])


def _columns(lab: Lab, table: str) -> dict[str, Any]:
    inspector = sa.inspect(lab.db.engine)
    if not inspector.has_table(table):
        return {}
    return {c["name"]: c for c in inspector.get_columns(table)}


def model_has(lab: Lab, model: str, attribute: str, hint: str) -> Check:
    source = (lab.project.service_dir / "main.py").read_text()
    try:
        found = attribute in model_attributes(source, model)
    except LabError as error:
        return Check(f"{model}.{attribute} is in main.py", False, error.what)
    return Check(f"{model}.{attribute} is in main.py", found, hint)


def model_lacks(lab: Lab, model: str, attribute: str, hint: str) -> Check:
    source = (lab.project.service_dir / "main.py").read_text()
    try:
        gone = attribute not in model_attributes(source, model)
    except LabError as error:
        return Check(f"{model}.{attribute} is gone from main.py", False, error.what)
    return Check(f"{model}.{attribute} is gone from main.py", gone, hint)


def column_exists(lab: Lab, table: str, column: str, hint: str) -> Check:
    return Check(f"the database has column {table}.{column}", column in _columns(lab, table), hint)


def column_absent(lab: Lab, table: str, column: str, hint: str) -> Check:
    return Check(f"the database no longer has column {table}.{column}", column not in _columns(lab, table), hint)


def column_has_server_default(lab: Lab, table: str, column: str, hint: str) -> Check:
    info = _columns(lab, table).get(column)
    return Check(f"{table}.{column} has a default in the database", bool(info and info.get("default")), hint)


def a_revision_file_matches(lab: Lab, pattern: str, what: str, hint: str) -> Check:
    """Some revision file's text matches the regular expression `pattern`."""
    found = any(re.search(pattern, p.read_text()) for p in lab.project.versions_dir.glob("*.py"))
    return Check(f"a revision file {what}", found, hint)


def no_revision_file_matches(lab: Lab, pattern: str, what: str, hint: str) -> Check:
    found = [p.name for p in lab.project.versions_dir.glob("*.py") if re.search(pattern, p.read_text())]
    return Check(f"no revision file {what}", not found, f"{hint} (found in {', '.join(found)})" if found else hint)


def database_at(lab: Lab, revision: str, hints: dict[str, str], default_hint: str) -> Check:
    """The database is at `revision`; the hint depends on where it is instead."""
    heads = lab.runner.database_heads()
    at = heads[0] if len(heads) == 1 else ("base" if not heads else "several heads")
    return Check(f"the database is at {revision}", heads == (revision,), hints.get(at, default_hint))


def database_at_head(lab: Lab, hint: str) -> Check:
    heads = lab.runner.database_heads()
    script_heads = lab.runner.script().get_heads()
    return Check("the database is at head", bool(heads) and set(heads) == set(script_heads), hint)


def models_match_database(lab: Lab, hint: str) -> Check:
    """`alembic check`: no difference between main.py's models and the database."""
    result = lab.runner.check()
    detail = f" (alembic check says: {result.error})" if result.error else ""
    return Check("main.py's models match the database (alembic check)", result.ok, hint + detail)


def values_preserved(lab: Lab, table: str, column: str, expected: list[str], hint: str) -> Check:
    columns = _columns(lab, table)
    if column not in columns:
        return Check(f"the rows of {table}.{column} survived", False, hint)
    with lab.db.engine.connect() as conn:
        found: list[Any] = list(conn.scalars(sa.select(sa.column(column)).select_from(sa.table(table))))
        values = sorted(v for v in found if v)
    return Check(f"the rows of {table}.{column} survived", values == sorted(expected), hint)


def answer_is(answer: object, expected: object, what: str, hint: str) -> Check:
    return Check(what, answer == expected, hint)
