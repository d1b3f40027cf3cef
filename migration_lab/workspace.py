"""The learner's files and checkpoints: edits to main.py, revision files, reset.

A checkpoint is the state a chapter starts from: ai-service's files (the
pristine baseline in `checkpoints/baseline/`, plus model edits and revision
files of earlier chapters) and the database (emptied, upgraded to a target,
seeded with rows). `reset` restores both, in well under a second, so every
chapter runs in any order, and again.
"""

import ast
import difflib
import importlib.util
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from .backups import Backup, Backups
from .errors import LabError
from .lab import Lab
from .project import Project
from .runner import parse

CHECKPOINTS_DIR = Path(__file__).parent / "checkpoints"
BASELINE = CHECKPOINTS_DIR / "baseline"
REVISIONS = CHECKPOINTS_DIR / "revisions"

ModelEdit = Callable[[str], str]


# --- editing main.py as a learner would ------------------------------------------


def _parse(source: str, path: str = "ai-service/main.py") -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise LabError(
            f"{path} has a syntax error on line {error.lineno}: {error.msg}",
            "Fix that line in the editor (or reset the chapter), then run the cell again.",
        ) from error


def _model_class(tree: ast.Module, model: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == model:
            return node
    names = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    raise LabError(f"main.py has no model class {model!r}.", f"The models are: {', '.join(names)}.")


def _attribute(cls: ast.ClassDef, name: str) -> ast.Assign | None:
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


def model_attributes(source: str, model: str) -> list[str]:
    """The attribute names a model class assigns (its columns), in order."""
    cls = _model_class(_parse(source), model)
    return [t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]


def add_column(model: str, line: str) -> ModelEdit:
    """An edit that appends `line` (e.g. "phone_number = Column(String, nullable=True)") to a model."""

    def edit(source: str) -> str:
        cls = _model_class(_parse(source), model)
        lines = source.splitlines(keepends=True)
        indent = " " * cls.body[-1].col_offset
        end = cls.body[-1].end_lineno
        return "".join(lines[:end] + [f"{indent}{line.strip()}\n"] + lines[end:])

    return edit


def rename_column(model: str, old: str, new: str) -> ModelEdit:
    """An edit that renames a model attribute (what autogenerate will see as drop + add)."""

    def edit(source: str) -> str:
        node = _attribute(_model_class(_parse(source), model), old)
        if node is None:
            raise LabError(
                f"{model} has no attribute {old!r}.", f"Its attributes: {', '.join(model_attributes(source, model))}."
            )
        lines = source.splitlines(keepends=True)
        target = lines[node.lineno - 1]
        lines[node.lineno - 1] = target[: node.col_offset] + target[node.col_offset :].replace(old, new, 1)
        return "".join(lines)

    return edit


def replace_function_body(function: str, body: str) -> ModelEdit:
    """An edit that replaces the body of `def <function>():` (a revision's upgrade or downgrade).

    The docstring, if any, stays; the body is re-indented to fit.
    """

    def edit(source: str) -> str:
        tree = _parse(source, "the revision file")
        node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
        if node is None:
            raise LabError(
                f"The revision file has no function {function}().", "Reset the chapter and generate it again."
            )
        first = node.body[0]
        keep_docstring = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
        start = (first.end_lineno or first.lineno) if keep_docstring else first.lineno - 1
        indent = " " * first.col_offset
        lines = source.splitlines(keepends=True)
        end = node.body[-1].end_lineno or len(lines)
        while end < len(lines) and lines[end].startswith(indent + "#"):
            end += 1  # comments after the last statement (autogenerate's "end" marker) go too
        new_body = [f"{indent}{line}\n" if line.strip() else "\n" for line in body.strip().splitlines()]
        return "".join(lines[:start] + new_body + lines[end:])

    return edit


def replace_text(old: str, new: str) -> ModelEdit:
    """An edit that replaces one exact piece of text."""

    def edit(source: str) -> str:
        if old not in source:
            raise LabError(f"The text {old!r} is not in the file.", "Reset the chapter, or edit the file by hand.")
        return source.replace(old, new, 1)

    return edit


def apply_edit(path: Path, edit: ModelEdit, root: Path) -> str:
    """Apply an edit to a file; return the unified diff (empty if nothing changed)."""
    before = path.read_text()
    after = edit(before)
    path.write_text(after)
    name = str(path.relative_to(root))
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )


def load_models(project: Project) -> ModuleType:
    """ai-service/main.py imported afresh, under a name of its own (sys.modules is left alone)."""
    spec = importlib.util.spec_from_file_location("_migration_lab_models", project.service_dir / "main.py")
    if spec is None or spec.loader is None:
        raise LabError("ai-service/main.py is missing.", "Reset the chapter to bring it back.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_script(scripts: ScriptDirectory, fragment: str) -> Script:
    """The revision `fragment` names: an id (or its start, as alembic accepts), or part of its message or file name."""
    try:
        found = scripts.get_revision(fragment)
        if found is not None:
            return found
    except CommandError:
        pass
    words = fragment.replace("_", " ").lower()  # "activate_everyone", as in the file name, or the message's words
    matches = [s for s in scripts.walk_revisions() if words in (s.doc or "").lower() or fragment in Path(s.path).name]
    if len(matches) != 1:
        raise LabError(
            f"{len(matches)} revisions match {fragment!r}.",
            "Use the revision id (`alembic history` lists them), or more of its message.",
        )
    return matches[0]


def newest_script(scripts: ScriptDirectory, generated: str | None = None) -> Script:
    """The revision a learner means by "the new one": the one just generated here, else the single head."""
    if generated is not None:
        script = next((s for s in scripts.walk_revisions() if s.revision == generated), None)
        if script is not None:
            return script
    heads = [s for s in scripts.get_revisions("heads") if s is not None]
    if not heads:
        raise LabError("There are no revision files yet.", 'Generate one: alembic revision -m "..."')
    if len(heads) > 1:
        raise LabError(
            f"There are {len(heads)} heads ({', '.join(sorted(h.revision for h in heads))}).",
            'Name the revision you mean, e.g. ch.show_revision("<id>").',
        )
    return heads[0]


# --- checkpoints ---------------------------------------------------------------------

SEED_PROFILES = """
INSERT INTO user_profiles (name, email) VALUES
    ('Ada Lovelace', 'ada@example.org'),
    ('Grace Hopper', 'grace@example.org'),
    ('Alan Turing', 'alan@example.org');
INSERT INTO user_settings (user_id, theme) SELECT id, 'dark' FROM user_profiles;
INSERT INTO job_entries (user_id, prompt) SELECT id, 'summarise my inbox' FROM user_profiles;
"""
SEED_PHONES = """
UPDATE user_profiles SET phone_number = '+44 20 7946 0001' WHERE name = 'Ada Lovelace';
UPDATE user_profiles SET phone_number = '+1 202 555 0102' WHERE name = 'Grace Hopper';
"""
PHONE_NUMBER = add_column("UserProfile", "phone_number = Column(String, nullable=True)")

# Teammates whose branches started from the same revision (a1c4e7f20b13) as yours:
# (their revision file, the model line they added to UserSettings).
TEAMMATES = {
    "bob": ("b7d1e5f3c9a2_add_language_to_user_settings.py", "language = Column(String(8), nullable=True)"),
    "carol": ("c3e8a6d2f4b5_add_timezone_to_user_settings.py", "timezone = Column(String(40), nullable=True)"),
}


def teammate_arrives(project: Project, name: str) -> tuple[str, str]:
    """A teammate's branch lands, as `git pull` would bring it: their revision file and model line.

    Returns (the revision's file name, the diff of main.py).
    """
    revision, line = TEAMMATES[name]
    shutil.copy(REVISIONS / revision, project.versions_dir / revision)
    return revision, apply_edit(project.service_dir / "main.py", add_column("UserSettings", line), project.root)


@dataclass(frozen=True)
class Checkpoint:
    """Where a chapter starts: files, database revision and rows."""

    edits: tuple[ModelEdit, ...] = ()
    revisions: tuple[str, ...] = ()  # file names in checkpoints/revisions/
    target: str = "head"
    seed: tuple[str, ...] = field(default=(SEED_PROFILES,))


BASELINE_CHECKPOINT = Checkpoint()
WITH_PHONE_NUMBER = Checkpoint(
    edits=(PHONE_NUMBER,),
    revisions=("a1c4e7f20b13_add_phone_number_to_profile.py",),
    seed=(SEED_PROFILES, SEED_PHONES),
)


@dataclass(frozen=True)
class ResetReport:
    revision: tuple[str, ...]
    tables: int
    rows: int
    seconds: float
    backup: Backup | None = None

    def __str__(self) -> str:
        at = ", ".join(self.revision) or "base (empty)"
        text = (
            f"ai-service/ files and the database are reset: database at {at}, {self.tables} tables, {self.rows} rows."
        )
        return f"{text}\n{self.backup}" if self.backup else text


def pristine_files() -> dict[Path, bytes]:
    """ai-service's files as a fresh checkout has them ({path under ai-service/: content})."""
    files = {
        Path("main.py"): (BASELINE / "main.py").read_bytes(),
        Path("migrations/env.py"): (BASELINE / "env.py").read_bytes(),
    }
    files.update({Path("migrations/versions") / p.name: p.read_bytes() for p in BASELINE.glob("versions/*.py")})
    return files


def restore_files(project: Project, checkpoint: Checkpoint) -> None:
    """ai-service's models, env.py and versions/ exactly as the checkpoint has them."""
    main = BASELINE.joinpath("main.py").read_text()
    for edit in checkpoint.edits:
        main = edit(main)
    project.service_dir.joinpath("main.py").write_text(main)
    shutil.copy(BASELINE / "env.py", project.service_dir / "migrations" / "env.py")
    wanted = {p.name: p for p in BASELINE.joinpath("versions").glob("*.py")}
    wanted.update({name: REVISIONS / name for name in checkpoint.revisions})
    project.versions_dir.mkdir(parents=True, exist_ok=True)
    for path in project.versions_dir.glob("*.py"):
        if path.name not in wanted:
            path.unlink()
    shutil.rmtree(project.versions_dir / "__pycache__", ignore_errors=True)
    for name, source in wanted.items():
        shutil.copy(source, project.versions_dir / name)


def restore_checkpoint(lab: Lab, checkpoint: Checkpoint) -> ResetReport:
    """Restore files and database to the checkpoint, after backing up the learner's work.

    The database is reached (and the migration lock taken) before any file is
    touched: with the database down, nothing changes and a LabError says what to do.
    A workshop learner's database is cloned again from the checkpoint's template
    when the server has it (tens of ms, see `templates`); otherwise it is wiped,
    upgraded and seeded.
    """
    from .templates import reclone, reclone_source

    started = time.perf_counter()
    backups = Backups(lab.project, lab.db.url)
    with lab.runner.exclusive() as conn:
        backup = backups.save(pristine_files())
        restore_files(lab.project, checkpoint)
        template = reclone_source(conn, checkpoint) if lab.backend.name == "url" else None
        if template is not None:
            reclone(lab, conn, template)  # ends `conn`, and with it the lock, once the old database is gone
        else:
            lab.db.wipe(conn)
            result = lab.runner.run_locked(conn, parse(["upgrade", checkpoint.target]))
            if not result.ok:
                raise LabError(
                    f"Reset could not upgrade the database: {result.error}",
                    "Run `python -m migration_lab nuke`, then reset again.",
                )
            with conn.begin():
                for sql in checkpoint.seed:
                    conn.execute(sa.text(sql))
            conn.commit()
    with lab.db.connect() as conn:
        heads = lab.db.heads(conn)
        tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
        rows = sum(conn.scalar(sa.select(sa.func.count()).select_from(sa.table(t))) or 0 for t in tables)
    backups.remember_reset()
    return ResetReport(heads, len(tables), rows, time.perf_counter() - started, backup)


def restore_backup(lab: Lab, name: str | None = None) -> str:
    """Put a backup's files and database back (the newest if no name); the current work is backed up first."""
    backups = Backups(lab.project, lab.db.url)
    path = backups.find(name)
    with lab.runner.exclusive() as conn:
        current = backups.save(pristine_files())
        files = backups.restore_files(path)
        database = backups.restore_database(path, conn, lab.db.wipe)
        conn.commit()
    text = f"Restored backup {path.name}: {files} file(s)" + (" and the database." if database else ".")
    return f"{text}\n{current}" if current else text
