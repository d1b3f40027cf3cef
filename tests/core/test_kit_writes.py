"""Nothing the kit writes leaves a Python file that no longer parses, and a learner's wrong argument is a LabError
naming the argument, never a traceback from deep inside the kit."""

from pathlib import Path

import pytest

from helpers import write_revision
from migration_lab import LabError
from migration_lab.front.notebook import Chapter
from migration_lab.workspace.edits import replace_function_body

PHONE = "a1c4e7f20b13"
ONE_LINE = (
    "revision = 'bbbb00000004'\ndown_revision = None\n\n\n"
    "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None: pass\n"
)


def test_a_body_on_the_def_line_is_replaced_below_it() -> None:
    after = replace_function_body("downgrade", 'op.execute("DROP TABLE t4")')(ONE_LINE)
    compile(after, "revision", "exec")
    assert 'def downgrade() -> None:\n    op.execute("DROP TABLE t4")\n' in after


def test_a_docstring_on_its_own_line_stays() -> None:
    source = 'def upgrade():\n    """Why."""\n    pass\n'
    assert replace_function_body("upgrade", "x = 1")(source) == 'def upgrade():\n    """Why."""\n    x = 1\n'


def test_rewrite_revision_of_a_one_line_downgrade_leaves_a_file_that_parses(chapter03: Chapter, capsys) -> None:
    path = write_revision(chapter03.lab.project, "bbbb00000004", PHONE, 'op.execute("CREATE TABLE t4 (id int)")')
    path.write_text(path.read_text().replace("def downgrade():\n    pass", "def downgrade() -> None: pass"))
    chapter03.rewrite_revision(downgrade='op.execute("DROP TABLE t4")', revision="bbbb00000004")
    compile(path.read_text(), str(path), "exec")
    assert chapter03.lab.runner.run("upgrade head").ok and chapter03.lab.runner.run("downgrade -1").ok


def test_a_body_that_is_not_python_is_refused_with_its_line(chapter03: Chapter) -> None:
    path = write_revision(chapter03.lab.project, "bbbb00000005", PHONE, "pass")
    text = path.read_text()
    with pytest.raises(LabError, match=r"downgrade\(\) body you gave is not Python: line 2 of it") as refused:
        chapter03.rewrite_revision(downgrade='op.execute("x")\nif True\n    pass', revision="bbbb00000005")
    assert "Nothing was written" in refused.value.what
    assert path.read_text() == text


def test_an_edit_that_would_break_a_revision_file_writes_nothing(chapter03: Chapter) -> None:
    path = write_revision(chapter03.lab.project, "bbbb00000006", PHONE, "pass")
    text = path.read_text()
    with pytest.raises(LabError, match="syntax error on line") as refused:
        chapter03.edit_file(f"migrations/versions/{path.name}", "def downgrade():", "def downgrade()")
    assert "Nothing was written" in refused.value.what
    assert path.read_text() == text


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda chapter03: chapter03.alembic(None), "line"),
        (lambda chapter03: chapter03.alembic(["upgrade", "head"]), "line"),
        (lambda chapter03: chapter03.rewrite_revision(downgrade="pass", revision=5), "revision"),
        (lambda chapter03: chapter03.rewrite_revision(downgrade="pass", revision=""), "revision"),
        (lambda chapter03: chapter03.rewrite_revision(downgrade=["pass"], revision="a1c4e7f20b13"), "downgrade"),
        (lambda chapter03: chapter03.edit_file(None, "a", "b"), "path"),
        (lambda chapter03: chapter03.edit_file("main.py", None, "b"), "old"),
        (lambda chapter03: chapter03.delete_file(Path("main.py")), "path"),
        (lambda chapter03: chapter03.sql(None), "statement"),
    ],
)
def test_a_wrong_argument_is_a_lab_error_naming_it(chapter03: Chapter, call, argument: str, capsys) -> None:
    before = {p: p.read_bytes() for p in chapter03.lab.project.service_dir.rglob("*.py")}
    with pytest.raises(LabError) as refused:
        call(chapter03)
    assert f"{argument} must be" in refused.value.what and "e.g." in refused.value.next_step
    assert {p: p.read_bytes() for p in chapter03.lab.project.service_dir.rglob("*.py")} == before


def test_a_file_already_broken_may_be_mended_a_step_at_a_time(chapter03: Chapter) -> None:
    """A revision with two merge-conflict markers: taking out the first left it still broken, and the kit refused
    that step, blaming "the text you gave". Only an edit that breaks a file that compiled is refused."""
    path = write_revision(chapter03.lab.project, "bbbb00000015", PHONE, "pass")
    path.write_text(path.read_text().replace("def upgrade():", "<<<<<<< HEAD\ndef upgrade():\n>>>>>>> theirs"))
    name = f"migrations/versions/{path.name}"
    chapter03.edit_file(name, "<<<<<<< HEAD\n", "")
    chapter03.edit_file(name, ">>>>>>> theirs\n", "")
    compile(path.read_text(), str(path), "exec")
