"""An answer typed but never run is not a wrong answer: tell the two apart.

Chapters 00, 04 and 08 grade a value the learner puts in `answer`. A learner
types `answer = "..."` in the exercise's cell and clicks "Check my work"
without running the cell (Shift-Enter): the kernel has no `answer` yet, or
still the one from before. The notebook's text is on disk (the course's
JupyterLab saves it as you type: jupyter-collaboration), and the kernel knows
what it ran (IPython's input history); a cell that assigns `answer` and never
ran as it reads now is what this module finds.
"""

import ast
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

NOT_RUN_CHECK = "the cell where you typed your answer has run"
_UNKNOWN = object()  # an assigned value that is not a plain literal (a call, a name)


def _normal(source: str) -> str:
    """A cell's text as run or saved: the same code compares equal whatever the trailing blanks."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _typed(source: str, name: str) -> object:
    """What the cell assigns to `name` at its top level (the last assignment): the literal, `_UNKNOWN` if it is
    not a plain literal, or None when the cell assigns nothing but the placeholder `None` (or does not assign
    `name`, or is not Python a learner has finished typing)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    found: object = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                found = ast.literal_eval(node.value)
            except ValueError:
                found = _UNKNOWN
    return found


def notebook_cells(notebook: Path | None) -> list[str]:
    """The code cells' text of the notebook file, [] when it cannot be read (not a notebook, mid-save)."""
    if notebook is None or notebook.suffix != ".ipynb":
        return []
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        "".join(c.get("source", "")) if isinstance(c.get("source"), list) else str(c.get("source", ""))
        for c in cells
        if isinstance(c, dict) and c.get("cell_type") == "code"
    ]


def typed_not_run(
    cells: Sequence[str], executed: Sequence[str], namespace: Mapping[str, object], name: str = "answer"
) -> str | None:
    """What to tell the learner when `name` was typed but not run; None when the kernel has what the notebook
    shows, or when nothing can be told.

    `cells`: the notebook's code cells as saved; `executed`: what the kernel ran (IPython's `In`).
    """
    ran = {_normal(source) for source in executed}
    for source in cells:
        value = _typed(source, name)
        if value is None or _normal(source) in ran:
            continue
        if name in namespace and value is not _UNKNOWN and namespace[name] == value:
            continue  # the same answer, typed again elsewhere and run there
        line = next((line.strip() for line in source.splitlines() if line.strip().startswith(name)), name)
        held = f"it still holds {namespace[name]!r}" if name in namespace else f"it has no `{name}` yet"
        return (
            f"Your cell `{line}` has not been run since you typed it, so the kernel has not got that answer: "
            f"{held}. Click in that cell and press Shift-Enter, then check again."
        )
    if name not in namespace:
        return (
            f"`{name}` is not defined yet: type your answer in the cell `{name} = ...` under the exercise, run "
            "it (Shift-Enter), then check again."
        )
    return None


def notebook_of(namespace: Mapping[str, object]) -> Path | None:
    """The notebook this kernel runs, as JupyterLab told it (ipykernel's `__session__`); None elsewhere."""
    session = namespace.get("__session__")
    if not isinstance(session, str) or not session:
        return None
    path = Path(session)
    if path.is_absolute():
        return path
    here = Path.cwd() / path.name  # a path from the server's root: the kernel starts in the notebook's folder
    return here if here.exists() else None
