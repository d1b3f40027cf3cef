"""No kit call edits or deletes a revision file the database has applied unless the learner confirms: not one
alembic cannot read, not one reached through a link, not the original of a copy with the same id.

Each test applies a revision on chapter 03's start against a real PostgreSQL, then tries the kit's calls on it.
"""

import shutil
from pathlib import Path

import pytest

from helpers import write_revision
from migration_lab import Lab, LabError
from migration_lab.front.notebook import Chapter
from migration_lab.running import history

PHONE = "a1c4e7f20b13"
ORIGINAL = f"{PHONE}_add_phone_number_to_profile.py"


def applied_revision(chapter03: Chapter, rev: str) -> Path:
    """A hand-written revision on top of chapter 03's head, applied."""
    path = write_revision(chapter03.lab.project, rev, PHONE, f'op.execute("CREATE TABLE t{rev} (id int)")')
    assert chapter03.lab.runner.run("upgrade head").ok
    assert chapter03.lab.db.heads() == (rev,)
    return path


def test_an_applied_revision_with_a_syntax_error_is_kept_and_the_hint_says_fix_it(chapter03: Chapter, capsys) -> None:
    path = applied_revision(chapter03, "bbbb00000007")
    path.write_text(path.read_text().replace("def downgrade():", "def downgrade()"))
    chapter03.alembic("current")
    said = capsys.readouterr().out
    assert "it is applied" in said and "delete it" not in said
    name = f"migrations/versions/{path.name}"
    for refused in (
        lambda: chapter03.delete_file(name),
        lambda: chapter03.edit_file(name, "def downgrade()", "def downgrade():"),
    ):
        with pytest.raises(LabError, match="is applied to the database") as error:
            refused()
        # no downgrade gets below a file alembic cannot read: the way out is mending it, with confirm=True
        assert "Downgrade below it" not in str(error.value) and "confirm=True" in str(error.value)
    assert path.exists() and "def downgrade()\n" in path.read_text()
    chapter03.edit_file(name, "def downgrade()", "def downgrade():", confirm=True)
    chapter03.alembic("downgrade -1")
    assert chapter03.lab.db.heads() == (PHONE,)


def test_an_applied_revision_while_another_file_is_unreadable_says_to_mend_that_one_first(
    chapter03: Chapter,
) -> None:
    """A readable applied revision, and a new file with a syntax error next to it: alembic loads no history, so
    "downgrade below it" alone cannot work; the refusal names the file to mend first."""
    path = applied_revision(chapter03, "bbbb00000010")
    broken = write_revision(chapter03.lab.project, "bbbb00000011", "bbbb00000010", "pass")
    broken.write_text(broken.read_text().replace("def downgrade():", "def downgrade()"))
    with pytest.raises(LabError, match="is applied to the database") as error:
        chapter03.delete_file(f"migrations/versions/{path.name}")
    assert f"Mend {broken.name} first" in str(error.value), str(error.value)
    assert path.exists()


def test_a_new_revision_with_a_syntax_error_can_still_be_deleted(chapter03: Chapter, capsys) -> None:
    path = write_revision(chapter03.lab.project, "bbbb00000009", PHONE, "pass")
    path.write_text(path.read_text().replace("def downgrade():", "def downgrade()"))
    chapter03.alembic("current")
    assert "delete it" in capsys.readouterr().out  # not applied: deleting it is a way out
    chapter03.delete_file(f"migrations/versions/{path.name}")
    assert not path.exists()


def test_an_applied_revision_reached_through_a_link_is_kept_and_a_delete_removes_only_a_link(
    chapter03: Chapter, capsys
) -> None:
    project = chapter03.lab.project
    shared = project.service_dir / "shared"
    shared.mkdir()
    real = write_revision(project, "bbbb00000008", PHONE, 'op.execute("CREATE TABLE t8 (id int)")')
    real = real.rename(shared / "bbbb00000008_linked.py")
    link = project.versions_dir / real.name
    link.symlink_to(Path("../../shared") / real.name)
    assert chapter03.lab.runner.run("upgrade head").ok
    text = real.read_text()
    for name in (f"migrations/versions/{link.name}", f"shared/{real.name}"):
        with pytest.raises(LabError, match="is applied to the database"):
            chapter03.edit_file(name, "CREATE TABLE", "CREATE UNLOGGED TABLE")
        with pytest.raises(LabError, match="is applied to the database"):
            chapter03.delete_file(name)
    assert real.read_text() == text and link.is_symlink()
    chapter03.delete_file(f"migrations/versions/{link.name}", confirm=True)
    assert not link.is_symlink() and real.read_text() == text  # the link went, never its target
    assert f"ai-service/migrations/versions/{link.name}" in (project.state_dir / "deleted-files.json").read_text()


def test_a_dangling_link_in_versions_is_removed_by_a_reset_and_by_delete_file(chapter03: Chapter, capsys) -> None:
    link = chapter03.lab.project.versions_dir / "bbbb0000000a_gone.py"
    link.symlink_to("../../shared/bbbb0000000a_gone.py")
    chapter03.delete_file(f"migrations/versions/{link.name}")
    assert not link.is_symlink()
    link.symlink_to("../../shared/bbbb0000000a_gone.py")
    chapter03.reset()
    assert not link.is_symlink() and chapter03.lab.db.heads() == (PHONE,)


def test_an_applied_revision_in_a_linked_versions_folder_is_kept(chapter03: Chapter, capsys) -> None:
    project = chapter03.lab.project
    real_versions = project.versions_dir.with_name("real_versions")
    project.versions_dir.rename(real_versions)
    project.versions_dir.symlink_to("real_versions")
    path = applied_revision(chapter03, "bbbb0000000b")
    with pytest.raises(LabError, match="is applied to the database"):
        chapter03.edit_file(f"migrations/versions/{path.name}", "CREATE TABLE", "CREATE UNLOGGED TABLE")
    with pytest.raises(LabError, match="is applied to the database"):
        chapter03.delete_file(f"migrations/versions/{path.name}")
    assert (real_versions / path.name).is_file()


def test_both_files_of_an_applied_id_are_kept(chapter03: Chapter, capsys) -> None:
    versions = chapter03.lab.project.versions_dir
    copy = versions / f"{PHONE}_copy_for_my_change.py"
    shutil.copy(versions / ORIGINAL, copy)
    copy.write_text(copy.read_text().replace("nullable=True", "nullable=False"))
    for file in (ORIGINAL, copy.name):
        with pytest.raises(LabError, match="is applied to the database"):
            chapter03.delete_file(f"migrations/versions/{file}")
    assert (versions / ORIGINAL).is_file() and copy.is_file()


def test_a_file_that_is_no_revision_is_never_told_to_be_deleted_as_unapplied(lab: Lab) -> None:
    """A syntax error in a module a revision imports (here: env.py) names that file: it has no revision id, so
    whether the database applied it is unknown, and deleting it is said only as 'if never applied'."""
    env = lab.project.service_dir / "migrations" / "env.py"
    error = SyntaxError("invalid syntax", (str(env), 3, 1, "x"))
    said = history.unreadable(error, lab.project.root, lab.runner.script(check_history=False), lambda: (PHONE,))
    assert "delete it only if the database never applied it" in said.next_step


def test_the_way_down_names_the_down_revision_not_what_depends_on_names(chapter03: Chapter) -> None:
    path = write_revision(chapter03.lab.project, "bbbb0000000c", PHONE, "pass")
    path.write_text(path.read_text().replace("depends_on = None", "depends_on = '8b7e5d2c6a41'"))
    assert chapter03.lab.runner.run("upgrade head").ok
    with pytest.raises(LabError, match="is applied to the database") as refused:
        chapter03.delete_file(f"migrations/versions/{path.name}")
    assert f'ch.alembic("downgrade {PHONE}")' in refused.value.next_step


def test_an_applied_merge_whose_parents_run_over_several_lines_keeps_what_is_below_it(
    chapter03: Chapter, capsys
) -> None:
    """A merge revision written as a formatter writes it (one parent per line) with a syntax error: the kit read
    its parents line by line, found none, and so saw nothing below it as applied: `delete_file` of an applied
    revision under it needed no confirm."""
    below = applied_revision(chapter03, "bbbb00000011")
    side = write_revision(chapter03.lab.project, "bbbb00000012", PHONE, "pass")
    merge = write_revision(chapter03.lab.project, "bbbb00000013", "bbbb00000011", "pass")
    text = merge.read_text()
    merge.write_text(
        text.replace(
            "down_revision = 'bbbb00000011'",
            "down_revision = (\n    'bbbb00000011',\n    'bbbb00000012',\n)",
        ).replace("def downgrade():", "def downgrade()")  # unreadable by alembic: read from its text
    )
    assert "'bbbb00000012',\n)" in merge.read_text()
    with chapter03.lab.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'bbbb00000013'")
    for path in (below, side):
        with pytest.raises(LabError, match="is applied to the database"):
            chapter03.delete_file(f"migrations/versions/{path.name}")
        assert path.exists()


def test_a_revision_file_this_account_cannot_read_is_a_message_not_a_traceback(chapter03: Chapter, capsys) -> None:
    """`chmod 000` on a revision file: reading what it says raised PermissionError through every cell."""
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = write_revision(chapter03.lab.project, "bbbb00000014", PHONE, "pass")
    path.chmod(0)
    try:
        chapter03.alembic("current")
        said = capsys.readouterr().out
        assert "FAILED" in said and "Traceback" not in said and path.name in said, said
    finally:
        path.chmod(0o644)
