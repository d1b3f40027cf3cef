"""A chapter worked through as its notebook has it: every code cell before "## Exercise", in one namespace.

The exercises must pass after the steps too, not only from a fresh `start_exercise()`: the steps leave
revisions, model edits and rows behind (chapter 05's 50,000 users and no Ada; chapter 06's merge point).
"""

import contextlib
import io
import json
import re

from helpers import REPO
from migration_lab.front.notebook import Chapter


def exercise_cell_sources(number: str) -> list[str]:
    """The code cells of chapter `number`'s notebook, up to its exercise."""
    notebook = next((REPO / "notebooks").glob(f"{number}-*.ipynb"))
    sources = []
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        # The heading may close a cell of prose (chapters 09, 10, 13): any line of the cell counts.
        if cell["cell_type"] == "markdown" and any(line.startswith("## Exercise") for line in source.splitlines()):
            return sources
        if cell["cell_type"] == "code":
            sources.append(source)
    raise AssertionError(f"{notebook.name} has no exercise")


def run_steps(chapter: Chapter) -> None:
    """Run the chapter's steps on `chapter` (already reset), as the learner did before the exercise."""
    import migration_lab as ml

    namespace = {"ch": chapter, "ml": ml}
    for source in exercise_cell_sources(chapter.spec.number):
        source = re.sub(r"(?m)^ch = ml\.chapter\(.*\)$", "", source)  # the chapter is the one given
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, f"<chapter {chapter.spec.number} step>", "exec"), namespace)
