"""An answer typed but never run: "Check my work" says so, instead of grading what the kernel happens to hold."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from helpers import copy_project
from migration_lab.front.answers import NOT_RUN_CHECK, typed_not_run

PLACEHOLDER = "answer = None  # your answer here"


def test_a_cell_typed_and_never_run_is_named() -> None:
    said = typed_not_run(["import x", 'answer = "8b7e5d2c6a41"'], ["import x"], {})
    assert said is not None and 'answer = "8b7e5d2c6a41"' in said and "no `answer` yet" in said
    assert "Shift-Enter" in said


def test_a_cell_changed_after_it_ran_says_what_the_kernel_still_holds() -> None:
    said = typed_not_run(['answer = "bbbbbbbbbbbb"'], ['answer = "aaaaaaaaaaaa"'], {"answer": "aaaaaaaaaaaa"})
    assert said is not None and "still holds 'aaaaaaaaaaaa'" in said


def test_what_ran_as_it_reads_now_or_holds_the_same_value_is_fine() -> None:
    assert (
        typed_not_run(['answer = ["a", "b"]\n'], ['answer = ["a", "b"]  '.rstrip() + "\n"], {"answer": ["a", "b"]})
        is None
    )
    # typed in two cells, run in the second: the kernel has the value the first one shows
    assert typed_not_run(['answer = "x"', 'answer = "x"  # again'], ['answer = "x"  # again'], {"answer": "x"}) is None
    # the untouched placeholder is not an answer typed; a scratch cell that was run gave the answer
    assert typed_not_run([PLACEHOLDER, 'answer = "x"'], ['answer = "x"'], {"answer": "x"}) is None


def test_no_answer_anywhere_says_how_to_give_one() -> None:
    said = typed_not_run([PLACEHOLDER], [], {})
    assert said is not None and "`answer` is not defined yet" in said
    assert typed_not_run([PLACEHOLDER], [PLACEHOLDER], {"answer": None}) is None  # run: graded (as no answer)


def test_half_typed_or_computed_answers_are_not_guessed() -> None:
    assert typed_not_run(['answer = "8b7e'], [], {"answer": None}) is None  # not Python yet: nothing to tell
    said = typed_not_run(["answer = heads[0]"], [], {"answer": "x"})  # not a literal: it was not run, that is all
    assert said is not None and "still holds 'x'" in said


def test_check_in_a_real_kernel_tells_an_answer_not_run_from_a_wrong_one(database_url: str, tmp_path: Path) -> None:
    """As JupyterLab runs it: the kernel knows its notebook (JPY_SESSION_NAME), the file has what was typed."""
    project = copy_project(tmp_path / "project")
    path = project.root / "notebooks" / "answer-check.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('import migration_lab as ml\nch = ml.chapter("00")'),
        nbformat.v4.new_code_cell('answer = "8b7e5d2c6a41"'),
        nbformat.v4.new_code_cell("ch.check()"),
        nbformat.v4.new_code_cell("button = ch.check_button()\nbutton.run()\nprint(button.text())"),
    ]
    nbformat.write(nb, path)
    os.environ.update(LAB_DATABASE_URL=database_url, JPY_SESSION_NAME=str(path))
    try:
        client = NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        with client.setup_kernel():

            def run(index: int) -> str:
                cell = client.execute_cell(nb.cells[index], index)
                return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)

            run(0)
            out = run(2)  # typed, never run
            assert f"✘ {NOT_RUN_CHECK}" in out and "has not been run since you typed it" in out, out
            assert "your answer is the database's current revision" not in out  # not graded as wrong
            assert "has not been run since you typed it" in run(3)  # the button says the same
            run(1)
            assert "All checks pass" in run(2)
            nb.cells[1].source = 'answer = "3f1c2a9d4b10"'  # changed in the editor, saved, not run again
            nbformat.write(nb, path)
            out = run(2)
            assert "still holds '8b7e5d2c6a41'" in out, out
            run(1)
            out = run(2)
            assert "is a revision, but not the one the database is at" in out and NOT_RUN_CHECK not in out
    finally:
        del os.environ["LAB_DATABASE_URL"], os.environ["JPY_SESSION_NAME"]
