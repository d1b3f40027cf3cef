"""Exercise checks: small named predicates on the real database and the revision files.

Each returns a `Check`: what was checked, whether it holds, and, when it does
not, hints that say what to do next - never a bare "wrong". Hints are
graduated: the concept first, then the API to use, the code only at the last
level. "Check my work" shows the first level, numbered ("Hint 1 of 3"); `ch.hint()` the next one
("Hint 2 of 3"), and `ch.hints()` every level shown so far.
"""

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..errors import BrokenHistory
from ..lab import Lab
from ..workspace.edits import load_models

Hints = str | Sequence[str]  # one hint, or its levels: concept, API, code


def levels(hints: Hints) -> tuple[str, ...]:
    return (hints,) if isinstance(hints, str) else tuple(hints)


@dataclass(frozen=True, init=False)
class Check:
    name: str
    passed: bool
    hints: tuple[str, ...] = field(default=())

    def __init__(self, name: str, passed: bool, hints: Hints = ()) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "passed", bool(passed))
        object.__setattr__(self, "hints", levels(hints))

    @property
    def hint(self) -> str:
        """The first level: what "Check my work" shows."""
        return self.hints[0] if self.hints else ""

    def label(self, level: int) -> str:
        """How hint `level` (from 1) is introduced: "Hint 2 of 3", or just "Hint" when there is one level."""
        return f"Hint {level} of {len(self.hints)}" if len(self.hints) > 1 else "Hint"

    def __str__(self) -> str:
        return f"✔ {self.name}" if self.passed else f"✘ {self.name}\n    {self.label(1)}: {self.hint}"


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    # How many levels of the first failing check's hints the learner has seen (its first level is shown here).
    hints_shown: int = 1

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def first_failing(self) -> Check | None:
        return next((c for c in self.checks if not c.passed), None)

    def __str__(self) -> str:
        """Every check; the first hint of the first one that fails (the later ones may follow from it)."""
        first = self.first_failing
        lines = [str(c) if c is first else f"{'✔' if c.passed else '✘'} {c.name}" for c in self.checks]
        if first is None:
            return "\n".join([*lines, "All checks pass. Well done!"])
        total = len(first.hints)
        if total <= 1:
            more = ""
        elif self.hints_shown < total:
            more = f" Stuck? ch.hint() gives hint {self.hints_shown + 1} of {total}."
        else:
            more = f" ch.hints() shows the {total} hints again; ch.solution() shows the solution."
        return "\n".join([*lines, f"Not yet: fix the first ✘ and check again.{more}"])


def _columns(lab: Lab, table: str) -> dict[str, Any]:
    inspector = sa.inspect(lab.db.engine)
    if not inspector.has_table(table):
        return {}
    return {c["name"]: c for c in inspector.get_columns(table)}


def column_exists(lab: Lab, table: str, column: str, hint: Hints) -> Check:
    return Check(f"the database has column {table}.{column}", column in _columns(lab, table), hint)


def column_absent(lab: Lab, table: str, column: str, hint: Hints) -> Check:
    return Check(f"the database no longer has column {table}.{column}", column not in _columns(lab, table), hint)


def _imports(source: str, module: str) -> bool:
    """The code imports `module` (or something in it), anywhere: at the top, inside upgrade(), under an alias.
    Comments and strings that mention it import nothing; a file that is not Python yet imports nothing either."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == module:
            return True
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == module for alias in node.names):
            return True
    return False


def no_revision_imports(lab: Lab, module: str, what: str, hint: Hints) -> Check:
    """No revision file imports `module`: judged on the code (its import statements), not on its text."""
    found = [p.name for p in lab.project.revision_files() if _imports(p.read_text(), module)]
    return Check(
        f"no revision file {what}", not found, _with_detail(hint, f" (found in {', '.join(found)})" if found else "")
    )


def _with_detail(hint: Hints, detail: str) -> tuple[str, ...]:
    """The hint's levels, the first one followed by what was found."""
    first, *rest = levels(hint) or ("",)
    return (first + detail, *rest)


def database_heads(lab: Lab) -> str:
    """Where the database is, as one word: a revision id, "base" or "several heads"."""
    heads = lab.db.heads()
    return heads[0] if len(heads) == 1 else ("base" if not heads else "several heads")


def database_at(
    lab: Lab, revision: str, hints: dict[str, Hints], default_hint: Hints, name: str | None = None
) -> Check:
    """The database is at `revision`; the hint depends on where it is instead."""
    at = database_heads(lab)
    return Check(name or f"the database is at {revision}", at == revision, hints.get(at, default_hint))


def pending(lab: Lab) -> bool:
    """Some revision file is not applied (or the database is past the files): its heads are not the scripts'."""
    return set(lab.db.heads()) != set(lab.runner.script().get_heads())


def database_at_head(lab: Lab, hint: Hints) -> Check:
    return Check("the database is at head", bool(lab.db.heads()) and not pending(lab), hint)


def one_history(lab: Lab) -> Check:
    """Every revision file's parent is a file too: without that alembic answers nothing, so no other check can."""
    try:
        lab.runner.script()
    except BrokenHistory as error:
        return Check("the revision files form one history", False, f"{error.what} {error.next_step}")
    return Check("the revision files form one history", True)


def models_match_database(lab: Lab, hint: Hints) -> Check:
    """`alembic check`: no difference between main.py's models and the database."""
    result = lab.runner.run("check")
    name = "main.py's models match the database (alembic check)"
    if result.error and "not up to date" in result.error:  # alembic compares a database at head only
        return Check(
            name,
            False,
            (
                "`alembic check` compares the models with a database at head, and a revision is not applied yet.",
                'Upgrade first (ch.alembic("upgrade head")), then check again.',
                'ch.alembic("upgrade head")',
            ),
        )
    if result.error and "upgrade operations detected" not in result.error:
        # alembic could not compare at all: saying the tables differ would send the learner after a difference
        env = (
            " env.py's target_metadata must be the models' metadata (from main import Base; target_metadata = "
            "Base.metadata): alembic compares nothing else."
            if "MetaData" in result.error
            else ""
        )
        said = f"`alembic check` could not compare: {result.error.rstrip('.')}.{env}"
        return Check(name, False, (said, *levels(hint)[1:]))
    detail = f" (alembic check says: {result.error})" if result.error else ""
    return Check(name, result.ok, _with_detail(hint, detail))


def column_values(lab: Lab, table: str, column: str) -> list[Any] | None:
    """The values of a column, or None if the database has no such column."""
    if column not in _columns(lab, table):
        return None
    with lab.db.engine.connect() as conn:
        return list(conn.scalars(sa.select(sa.column(column)).select_from(sa.table(table))))


def answer_is(answer: object, expected: object, what: str, hint: Hints) -> Check:
    return Check(what, answer == expected, hint)


def revision_texts(lab: Lab) -> dict[str, str]:
    """{file name: text} of every revision file."""
    return {p.name: p.read_text() for p in lab.project.revision_files()}


def model_line(lab: Lab, model: str, name: str) -> str | None:
    """The text of main.py that defines `model`'s attribute `name` (`x = Column(...)`, `x: Mapped[...] = ...`), or
    else the attribute that maps the column `name` (`seen = Column("name", ...)`): as written, over as many lines
    as it takes, what a hint's `ch.edit_model(old, new)` replaces. The last such definition, the one Python keeps.
    None when there is none; in a main.py that does not parse, the attribute's first line."""
    source = (lab.project.service_dir / "main.py").read_text()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        match = re.search(rf"(?ms)^class {model}\(.*?(?=^\S|\Z)", source)
        found = re.search(rf"(?m)^\s+{name}\s*(?::[^=\n]*)?=.*$", match.group(0)) if match else None
        return found.group(0).strip() if found else None
    body = next((c.body for c in tree.body if isinstance(c, ast.ClassDef) and c.name == model), [])
    defined = [node for node in body if _defines(node, name)] or [node for node in body if _maps(node, name)]
    return ast.get_source_segment(source, defined[-1]) if defined else None


def _assigned(node: ast.stmt) -> tuple[list[ast.expr], ast.expr | None]:
    """An assignment's targets and value (`x = ...`, `x: T = ...`); nothing for any other statement."""
    if isinstance(node, ast.Assign):
        return node.targets, node.value
    if isinstance(node, ast.AnnAssign):
        return [node.target], node.value
    return [], None


def _defines(node: ast.stmt, attribute: str) -> bool:
    return any(isinstance(target, ast.Name) and target.id == attribute for target in _assigned(node)[0])


def _maps(node: ast.stmt, column: str) -> bool:
    """`x = Column("column", ...)` or `mapped_column("column", ...)`: the column's name as the first argument."""
    value = _assigned(node)[1]
    first = value.args[0] if isinstance(value, ast.Call) and value.args else None
    return isinstance(first, ast.Constant) and first.value == column


# A whole word of hex digits, as long as a revision id or a prefix alembic accepts for one (`alembic upgrade 8b7e`);
# a file name's id counts too (8b7e5d2c6a41_add_job_entries.py). Shorter prefixes (`8b`) count given alone.
_HEX_WORD = re.compile(r"(?<![0-9A-Za-z_])[0-9A-Fa-f]{4,12}(?![0-9A-Za-z])")
_SHORT_PREFIX = re.compile(r"[\s'\"]*([0-9A-Fa-f]{2,3})[\s'\"]*")
# A line alembic prints for one revision after its parent(s): history's "<parent> -> <rev> (head), <message>", an
# upgrade's "Running upgrade <parent> -> <rev>, <message>". It names the revision after the arrow; a downgrade's
# line names the one before it (the revision undone).
# Read from its first arrow on, never searched for from every position: a pasted line of a megabyte is read once.
_AFTER_ARROW = re.compile(r"\s*([0-9A-Fa-f]+)(?:\s*\([\w ]+\))*\s*,\s*\S")


def _step(line: str) -> str | None:
    """The part of a line alembic prints for one step that names its revision; None for any other line."""
    before, arrow, after = line.partition("->")
    found = _AFTER_ARROW.match(after) if arrow else None
    if found is None:
        return None
    return before.split("Running downgrade")[-1] if "Running downgrade" in before else found[1]


def hex_words(parts: list[str]) -> list[str]:
    """The words of an answer that may name a revision, in order: hex words (from a step's line, only the one
    after its arrow, or before it for a downgrade), or a short prefix given alone on its line. Read in one pass
    per line, however long a pasted line is."""
    words: list[str] = []
    for line in (line for part in parts for line in part.splitlines()):
        step = _step(line)
        short = _SHORT_PREFIX.fullmatch(line)
        if step is not None:
            words += _HEX_WORD.findall(step)
        elif short:
            words.append(short[1])
        else:
            words += _HEX_WORD.findall(line)
    return words


def revisions_named(lab: Lab, answer: object) -> list[str] | None:
    """The revisions an answer names, in its order: ids (or prefixes alembic resolves to one revision) in a
    string, a list or a tuple of strings, whatever else surrounds them ("(head)", a file name, a message), in any
    case. A line alembic prints for a step (`history`'s "parent -> revision (head), message", an upgrade's "Running
    upgrade parent -> revision, message") names its revision, not the parent.

    A whole 12-digit id that no revision here has is named too, as given: it names a revision, a wrong one (a typo,
    another chapter's), and must not vanish from the answer. A shorter word that is no revision's prefix ("added",
    "face") is just a word. None when the answer is not text. What it names is graded, not how it is written.
    """
    if isinstance(answer, str):
        parts = [answer]
    elif isinstance(answer, list | tuple) and all(isinstance(a, str) for a in answer):
        parts = list(answer)
    else:
        return None
    known = [s.revision for s in lab.runner.script().walk_revisions()]
    named: list[str] = []
    for word in hex_words(parts):
        matches = [r for r in known if r.startswith(word.lower())]
        if len(matches) == 1:
            named.append(matches[0])
        elif len(word) == 12:
            named.append(word.lower())
    return named


def _model_table(lab: Lab, model: str) -> sa.Table | str:
    """`model`'s table as alembic loads main.py, or why it cannot be had (a main.py mid-edit, no such class)."""
    try:
        models = load_models(lab.project)
    except Exception as error:  # a learner's main.py mid-edit: SyntaxError, NameError, anything
        return f" (main.py does not load: {type(error).__name__}: {error})"
    found = getattr(models, model, None)
    table = getattr(found, "__table__", None)
    return table if isinstance(table, sa.Table) else f" (main.py has no model class {model})"


def model_column(lab: Lab, model: str, column: str) -> sa.Column | None:
    """The column `column` of main.py's `model` as alembic loads it (whatever its spelling), or None."""
    table = _model_table(lab, model)
    return None if isinstance(table, str) else table.columns.get(column)


def model_maps(lab: Lab, model: str, column: str, hint: Hints) -> Check:
    """main.py's `model` maps a column named `column` in the database, whatever the attribute's name or style
    (`Column(...)`, `mapped_column(...)`, `Mapped[...]`): the models loaded as alembic loads them."""
    name = f"{model} in main.py maps the column {column}"
    table = _model_table(lab, model)
    if isinstance(table, str):
        return Check(name, False, _with_detail(hint, table))
    return Check(name, column in table.columns, hint)


def model_unmaps(lab: Lab, model: str, column: str, hint: Hints) -> Check:
    """main.py's `model` no longer maps `column`, under any attribute name (`phone = Column("phone_number", ...)`
    still maps it): the models loaded as alembic loads them."""
    name = f"{model} in main.py no longer maps the column {column}"
    table = _model_table(lab, model)
    if isinstance(table, str):
        return Check(name, False, _with_detail(hint, table))
    return Check(name, column not in table.columns, hint)
