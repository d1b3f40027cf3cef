"""Editing the learner's files as a learner would: main.py's models, a revision's functions, any text.

An edit is a function from the file's text to its new text; `apply_edit`
writes it and returns the diff the notebook shows.
"""

import ast
import difflib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ..errors import LabError
from ..project import Project
from ..running.alembic_process import SERVICE_MODULES_LOCK, environment_kept, ignore_fastapi_alias_warning

ModelEdit = Callable[[str], str]


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

    The docstring, if any, stays; the body is re-indented to fit. Where the body
    starts and ends is asked of `ast` (a body on the `def` line too, `def f(): pass`);
    a body that is not Python is refused before any file is read.
    """
    lines = [line.rstrip() for line in body.strip().splitlines()]
    _check_body(function, lines)

    def edit(source: str) -> str:
        tree = _parse(source, "the revision file")
        node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
        if node is None:
            raise LabError(
                f"The revision file has no function {function}().", "Reset the chapter and generate it again."
            )
        head, indent, kept = _before_body(source, node)
        old = source.splitlines(keepends=True)
        end = node.body[-1].end_lineno or len(old)
        while end < len(old) and old[end].startswith(indent + "#"):
            end += 1  # comments after the last statement (autogenerate's "end" marker) go too
        new_body = [f"{indent}{line}\n" if line.strip() else "\n" for line in kept + lines]
        return "".join(head + new_body + old[end:])

    return edit


def _before_body(source: str, node: ast.FunctionDef) -> tuple[list[str], str, list[str]]:
    """(the lines up to the body, the body's indent, the docstring lines to keep): the docstring stays where it is,
    and a body on the `def` line (`def downgrade() -> None: pass`) moves below it, one level in."""
    lines = source.splitlines(keepends=True)
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    before = lines[first.lineno - 1][: first.col_offset]
    if before.strip():  # the body starts on the def line: cut it there
        kept = [ast.get_source_segment(source, first) or ""] if docstring else []
        return lines[: first.lineno - 1] + [before.rstrip() + "\n"], " " * (node.col_offset + 4), kept
    start = (first.end_lineno or first.lineno) if docstring else first.lineno - 1
    return lines[:start], " " * first.col_offset, []


def _check_body(function: str, lines: list[str]) -> None:
    """Refuse a body that is not Python, saying the line of the body and what Python says of it."""
    try:
        ast.parse("def f():\n" + "".join(f"    {line}\n" for line in lines or ["pass"]))
    except SyntaxError as error:
        where = max((error.lineno or 2) - 1, 1)
        raise LabError(
            f"The {function}() body you gave is not Python: line {where} of it, {error.msg}. Nothing was written.",
            f"Fix that line of the body (statements as inside {function}(), one per line), then run the cell again.",
        ) from None


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
    name = str(path.relative_to(root))
    broken = _syntax_error(after, name) if path.suffix == ".py" else None
    if broken is not None and _syntax_error(before, name) is None:  # a file already broken may be mended in steps
        line = f" on line {broken.lineno}" if isinstance(broken, SyntaxError) else ""
        said = broken.msg if isinstance(broken, SyntaxError) else str(broken)
        raise LabError(
            f"That change would leave {name} with a syntax error{line}: {said}. Nothing was written.",
            "Check the text you gave (indentation, brackets, colons, quotes), then run the cell again.",
        )
    path.write_text(after)
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )


def _syntax_error(source: str, name: str) -> SyntaxError | ValueError | None:
    """Why `source` does not compile, or None: a revision file that no longer parses stops every alembic command
    (and a broken main.py, the app and autogenerate), so the kit never writes one."""
    try:
        compile(source, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        return error
    return None


def load_models(project: Project) -> ModuleType:
    """ai-service/main.py imported afresh, under a name of its own; sys.path is left alone.

    main.py imports its helper database_url.py by name, as uvicorn (ai-service/
    on sys.path) lets it: that one module is put into sys.modules from this
    project's file, since sys.path must not change under an alembic command
    another thread may be running.
    """
    spec = importlib.util.spec_from_file_location("_migration_lab_models", project.service_dir / "main.py")
    if spec is None or spec.loader is None:
        raise LabError("ai-service/main.py is missing.", "Reset the chapter to bring it back.")
    module = importlib.util.module_from_spec(spec)
    ignore_fastapi_alias_warning()
    with SERVICE_MODULES_LOCK, environment_kept():  # main.py's load_dotenv must not outlive the import
        helper = project.service_dir / "database_url.py"
        if helper.is_file():
            sys.modules["database_url"] = _module_from(helper, "database_url")
        spec.loader.exec_module(module)
    return module


def _module_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
