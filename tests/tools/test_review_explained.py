"""squawk's findings the lab expects, explained where they first appear; chapter 10's fix reviews clean."""

from helpers import add_phone_number
from migration_lab import Lab
from migration_lab.course.registry import reset, spec
from migration_lab.front.notebook import Chapter
from migration_lab.tools.review import review

CHAPTER_10_RENAME = """op.execute("SET lock_timeout = '1s'")
op.execute("SET statement_timeout = '10s'")
op.alter_column('user_profiles', 'name', new_column_name='full_name')"""
CHAPTER_10_INDEX = """with op.get_context().autocommit_block():
    op.execute("SET lock_timeout = '1s'")
    op.execute("SET statement_timeout = '10min'")
    op.create_index(op.f('ix_user_profiles_full_name'), 'user_profiles', ['full_name'],
                    unique=False, postgresql_concurrently=True, if_not_exists=True)"""
# The same build, guarded: a rerun after a failed build finds the INVALID index, drops it and builds it again.
GUARDED_INDEX = """with op.get_context().autocommit_block():
    op.execute("SET lock_timeout = '1s'")
    op.execute("SET statement_timeout = '10min'")
    if not op.get_context().as_sql:  # offline (--sql) there is no index to look at
        valid = op.get_bind().scalar(sa.text(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_user_profiles_full_name')"))
        if valid is False:
            op.execute("DROP INDEX CONCURRENTLY ix_user_profiles_full_name")
    op.create_index(op.f('ix_user_profiles_full_name'), 'user_profiles', ['full_name'],
                    unique=False, postgresql_concurrently=True, if_not_exists=True)"""
CHAPTER_10_INDEX_DOWN = """with op.get_context().autocommit_block():
    op.drop_index(op.f('ix_user_profiles_full_name'), table_name='user_profiles',
                  postgresql_concurrently=True, if_exists=True)"""


def test_the_timeout_warnings_of_chapter_01_say_why_and_what_fixes_them(lab: Lab) -> None:
    reset("01", lab)
    add_phone_number(lab.project)
    result = lab.runner.run(["revision", "--autogenerate", "-m", "Add phone number to profile"])
    found = {f.rule: f for f in review(result.new_revisions[0], lab).findings}
    for rule in ("squawk:require-lock-timeout", "squawk:require-statement-timeout"):
        assert found[rule].severity == "warning"
        assert found[rule].fix.startswith("Expected on every revision until chapter 10")
    assert "SET lock_timeout" in found["squawk:require-lock-timeout"].fix


def test_chapter_10s_fix_reaches_a_clean_review(lab: Lab, capsys) -> None:
    """The prescribed fix, two revisions (the rename; the concurrent index on its own): nothing worse than "good to
    know", every note one the chapter explains, once the index build guards against the INVALID index a failed
    build leaves (IF NOT EXISTS alone would skip it); then alembic check is clean and the history round-trips."""
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
    unguarded = review(chapter._script().revision, lab)
    assert unguarded.rules() == {"concurrent-index-rerun-invalid"}, str(unguarded)
    chapter.rewrite_revision(upgrade=GUARDED_INDEX)
    index = review(chapter._script().revision, lab)
    assert not index.findings, str(index)
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
    assert any("if_not_exists=True" in f.fix for f in robust)
    capsys.readouterr()
