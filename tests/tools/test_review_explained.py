"""squawk's findings the lab expects, explained where they first appear; chapter 10's fix reviews clean."""

import json
import re

from helpers import REPO, add_phone_number
from migration_lab import Lab
from migration_lab.course.registry import reset, spec
from migration_lab.front.notebook import Chapter
from migration_lab.tools.review import review


def chapter_10(marker: str) -> str:
    """The body chapter 10's `ch.rewrite_revision(...)` cell gives upgrade() or downgrade(): the one with `marker`."""
    cells = json.loads((REPO / "notebooks" / "10-review-before-you-apply.ipynb").read_text())["cells"]
    bodies = [
        body
        for c in cells
        if c["cell_type"] == "code" and "ch.rewrite_revision" in "".join(c["source"])
        for body in re.findall(r'(?:upgrade|downgrade)="""(.*?)"""', "".join(c["source"]), re.S)
    ]
    return next(b for b in bodies if marker in b)


CHAPTER_10_RENAME = chapter_10("new_column_name='full_name'")
CHAPTER_10_INDEX = chapter_10("op.create_index")
CHAPTER_10_INDEX_DOWN = chapter_10("op.drop_index")


def test_the_timeout_warnings_of_chapter_01_say_why_and_what_fixes_them(lab: Lab) -> None:
    reset("01", lab)
    add_phone_number(lab.project)
    result = lab.runner.run(["revision", "--autogenerate", "-m", "Add phone number to profile"])
    found = {f.rule: f for f in review(result.new_revisions[0], lab).findings}
    for rule in ("squawk:require-lock-timeout", "squawk:require-statement-timeout"):
        assert found[rule].severity == "warning"
        assert found[rule].fix.startswith("Expected on every revision until chapter 10")
    assert "SET LOCAL lock_timeout" in found["squawk:require-lock-timeout"].fix


def test_chapter_10s_fix_reaches_a_clean_review(lab: Lab, capsys) -> None:
    """The prescribed fix, two revisions (the rename; the concurrent index on its own): nothing worse than "good to
    know", every note one the chapter explains; then alembic check is clean and the history round-trips."""
    chapter = Chapter(spec("10"), lab)
    chapter.reset()
    chapter.edit_model(
        "    name = Column(String(100), nullable=False)",
        "    full_name = Column(String(100), nullable=False, index=True)",
    )
    chapter.alembic('revision --autogenerate -m "full name"')
    chapter.rewrite_revision(
        upgrade=CHAPTER_10_RENAME, downgrade="op.alter_column('user_profiles', 'full_name', new_column_name='name')"
    )
    rename = review(chapter._script().revision, lab)
    assert rename.clean and "no errors, no warnings" in str(rename), str(rename)
    assert {f.rule for f in rename.findings} <= {"squawk:renaming-column", "rename-keeps-data"}, str(rename)
    chapter.alembic("upgrade head")
    chapter.alembic('revision --autogenerate -m "index full name"')
    chapter.rewrite_revision(upgrade=CHAPTER_10_INDEX, downgrade=CHAPTER_10_INDEX_DOWN)
    index = review(chapter._script().revision, lab)
    assert index.clean and "no errors, no warnings" in str(index), str(index)
    notes = {f.rule: f.fix for f in index.findings}
    # squawk asks for a lock_timeout on the DROP INDEX CONCURRENTLY and for IF NOT EXISTS on the build: both said
    # for what they are here (no short lock_timeout for a concurrent build; the drop above is what makes it rerun).
    assert set(notes) == {"squawk:require-lock-timeout", "squawk:prefer-robust-stmts"}, str(index)
    assert notes["squawk:require-lock-timeout"].startswith("Not for a build or drop CONCURRENTLY")
    assert notes["squawk:prefer-robust-stmts"].startswith("Done here")
    chapter.alembic("upgrade head")
    assert lab.runner.run("check").ok
    assert lab.runner.run("downgrade base").ok and lab.runner.run("upgrade head").ok
    capsys.readouterr()


def test_a_named_concurrent_index_is_not_told_to_use_a_name(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("10"), lab)
    chapter.reset()
    chapter.edit_model(
        "    email = Column(String(255), nullable=False, unique=True)",
        "    email = Column(String(255), nullable=False, unique=True, index=True)",
    )
    chapter.alembic('revision --autogenerate -m "email index"')
    chapter.rewrite_revision(
        upgrade="""with op.get_context().autocommit_block():
    op.create_index(op.f('ix_user_profiles_email'), 'user_profiles', ['email'], postgresql_concurrently=True)"""
    )
    robust = [f for f in review(chapter._script().revision, lab).findings if f.rule == "squawk:prefer-robust-stmts"]
    assert robust and all("explicit name" not in f.fix for f in robust)
    # Not squawk's IF NOT EXISTS alone: it would skip the INVALID index a failed build leaves.
    assert any("DROP INDEX CONCURRENTLY IF EXISTS" in f.fix and f.severity == "warning" for f in robust)
    capsys.readouterr()
