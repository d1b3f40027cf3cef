"""A kernel restart mid-chapter: every call is safe to run again, and no kit call rewrites or deletes a revision
the database has applied unless the learner names it and confirms.

A restart is a new `Chapter` on the same checkout and database (what `ml.chapter("NN")` makes when the set-up
cell runs again in a fresh kernel), or a new process: the kernel's memory (`ch.generated`) is gone, the files and
the database are not.
"""

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import REPO, write_revision
from migration_lab import Lab, LabError, Project
from migration_lab.front.notebook import chapter

APPLIED = "a1c4e7f20b13_add_phone_number_to_profile.py"
RENAME_UP = "op.alter_column('user_profiles', 'phone_number', new_column_name='phone')"
RENAME_DOWN = "op.alter_column('user_profiles', 'phone', new_column_name='phone_number')"


def applied_files(lab: Lab) -> dict[str, bytes]:
    """The revision files the database has run, with their bytes."""
    heads = lab.db.heads()
    scripts = lab.runner.script()
    ids = {s.revision for s in scripts.iterate_revisions(heads, "base")} if heads else set()
    return {Path(s.path).name: Path(s.path).read_bytes() for s in scripts.walk_revisions() if s.revision in ids}


def test_after_a_restart_rewrite_revision_refuses_instead_of_rewriting_the_applied_head(lab: Lab, capsys) -> None:
    """Issue 17, item 1: the restarted kernel's `generated` is None, and "the newest file" was a1c4e7f20b13."""
    first = chapter("02", lab)
    first.rename_column("UserProfile", "phone_number", "phone")
    first.alembic('revision --autogenerate -m "rename phone number"')
    assert first.generated is not None
    before = applied_files(lab)
    assert APPLIED in before

    again = chapter("02", lab)  # the restarted kernel runs the set-up cell: a reset, which forgets the revision
    with pytest.raises(LabError, match="No revision was generated in this kernel") as refused:
        again.rewrite_revision(upgrade=RENAME_UP, downgrade=RENAME_DOWN)
    assert APPLIED in refused.value.next_step  # says which file is the newest, to name it if meant
    with pytest.raises(LabError, match="already applied to the database") as named:
        again.rewrite_revision(upgrade=RENAME_UP, revision="a1c4e7f20b13")
    assert 'revision="a1c4e7f20b13", confirm=True' in named.value.next_step
    assert applied_files(lab) == before
    again.rows("user_profiles", "id, name, phone_number")  # the database still matches its files
    capsys.readouterr()

    # A new downgrade() of an applied revision leaves what the database ran as it is (chapter 03's exercise).
    again.rewrite_revision(downgrade="op.drop_column('user_profiles', 'phone_number')", revision="a1c4e7f20b13")
    # Named and confirmed: the learner's explicit call is obeyed.
    again.rewrite_revision(upgrade="pass", revision="a1c4e7f20b13", confirm=True)
    assert "    pass" in (lab.project.versions_dir / APPLIED).read_text()


def test_the_revision_this_kernel_generated_is_rewritten_until_it_is_applied(lab: Lab, capsys) -> None:
    ch = chapter("02", lab)
    ch.rename_column("UserProfile", "phone_number", "phone")
    ch.alembic('revision --autogenerate -m "rename phone number"')
    ch.rewrite_revision(upgrade=RENAME_UP, downgrade=RENAME_DOWN)  # not applied yet: the step as written
    mine = next(lab.project.versions_dir.glob(f"{ch.generated}_*.py"))
    assert RENAME_UP in mine.read_text()
    ch.alembic("upgrade head")
    assert lab.db.heads() == (ch.generated,)
    with pytest.raises(LabError, match=f"{mine.name} is already applied"):
        ch.rewrite_revision(upgrade="pass")
    assert RENAME_UP in mine.read_text()
    capsys.readouterr()


def test_delete_and_edit_leave_an_applied_revision_alone_unless_confirmed(lab: Lab, capsys) -> None:
    ch = chapter("09", lab)
    applied = lab.project.versions_dir / APPLIED
    text = applied.read_bytes()
    with pytest.raises(LabError, match="is applied to the database") as refused:
        ch.delete_file(f"migrations/versions/{APPLIED}")
    assert "confirm=True" in refused.value.next_step
    with pytest.raises(LabError, match="is applied to the database"):
        ch.edit_file(f"migrations/versions/{APPLIED}", "nullable=True", "nullable=False")
    with pytest.raises(LabError, match="ch.nuke"):
        ch.clean_versions()  # the database still records the revisions: nuke first
    outside = lab.project.root / "notes.txt"
    outside.write_text("mine")
    with pytest.raises(LabError, match="is not a file of ai-service/"):
        ch.delete_file("../notes.txt")
    assert outside.read_text() == "mine"
    assert applied.read_bytes() == text
    # After a restart, `ch.generated` is None: the f-string names no file, and nothing is deleted.
    with pytest.raises(LabError, match="ch.generated is None"):
        chapter("02", lab).delete_file("migrations/versions/None_add_failed_job_state.py")
    ch = chapter("09", lab)
    ch.delete_file(f"migrations/versions/{APPLIED}", confirm=True)  # chapter 09, on purpose
    assert not applied.exists()
    ch.nuke(confirm=True)
    ch.clean_versions()  # an empty database: nothing is applied
    assert not list(lab.project.versions_dir.glob("*.py"))
    capsys.readouterr()


def test_a_revision_not_applied_is_deleted_by_name(lab: Lab, capsys) -> None:
    ch = chapter("03", lab)
    path = write_revision(lab.project, "dddd00000001", "a1c4e7f20b13", "pass")
    ch.delete_file(f"migrations/versions/{path.name}")
    assert not path.exists()
    capsys.readouterr()


def _kit_cells(notebook: Path) -> list[tuple[int, str]]:
    """(index, source) of the code cells that rewrite, edit or delete a revision, or use `ch.generated`."""
    cells = json.loads(notebook.read_text())["cells"]
    calls = ("ch.rewrite_revision(", "ch.delete_file(", "ch.clean_versions(", "ch.generated", "migrations/versions/")
    return [
        (i, "".join(c["source"]))
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and any(call in "".join(c["source"]) for call in calls)
    ]


NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
RESTART_CHAPTERS = [p.stem for p in NOTEBOOKS if _kit_cells(p)]


@pytest.mark.parametrize("name", RESTART_CHAPTERS)
def test_after_a_restart_every_cell_that_touches_a_revision_is_safe_to_run_again(
    name: str, lab: Lab, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A learner restarts the kernel mid-chapter, runs the set-up cell, then a later cell again: each cell that
    rewrites, edits or deletes a revision either works on a revision the database has not applied, or refuses
    with a LabError (a NameError when it needs an earlier cell); the applied revision files stay byte for byte,
    unless the cell names the file and says confirm=True."""
    notebook = REPO / "notebooks" / f"{name}.ipynb"
    cells = json.loads(notebook.read_text())["cells"]
    setup = "".join(cells[next(i for i, c in enumerate(cells) if c["cell_type"] == "code")]["source"])
    assert "ml.chapter(" in setup
    monkeypatch.setenv("LAB_DATABASE_URL", lab.db.url)
    monkeypatch.setenv("LAB_PROJECT_DIR", str(lab.project.root))
    targets = _kit_cells(notebook)
    for index, source in targets:
        namespace: dict = {}
        exec(setup, namespace)  # the restarted kernel's set-up cell
        before = applied_files(namespace["ch"].lab)
        with contextlib.suppress(LabError, NameError):  # refused, or it needs an earlier cell: both harmless
            exec(source, namespace)
        if "confirm=True" not in source:
            after = applied_files(Lab(Project(lab.project.root), lab.backend))
            assert {k: v for k, v in after.items() if k in before} == before, f"cell {index} changed: {source}"
            assert set(before) <= set(after), f"cell {index} deleted an applied revision: {source}"
        namespace["ch"].lab.db.dispose()
    capsys.readouterr()


def test_a_restarted_kernel_process_cannot_rewrite_what_the_first_one_applied(lab: Lab) -> None:
    """The same, with real processes: kernel 1 generates and applies; kernel 2 re-runs the set-up cell and the
    step's rewrite: refused, with the file named, and the database's rows still readable."""
    env = {**os.environ, "LAB_DATABASE_URL": lab.db.url, "LAB_PROJECT_DIR": str(lab.project.root)}
    kernel_1 = textwrap.dedent(
        """
        import migration_lab as ml
        ch = ml.chapter("02")
        ch.rename_column("UserProfile", "phone_number", "phone")
        ch.alembic('revision --autogenerate -m "rename phone number"')
        """
    )
    kernel_2 = textwrap.dedent(
        f"""
        import migration_lab as ml
        from migration_lab import LabError
        ch = ml.chapter("02")
        try:
            ch.rewrite_revision(upgrade="{RENAME_UP}", downgrade="{RENAME_DOWN}")
        except LabError as error:
            print("REFUSED:", error.what, error.next_step)
        ch.rows("user_profiles", "id, name, phone_number")
        """
    )
    applied = b""
    for code in (kernel_1, kernel_2):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        applied = applied or (lab.project.versions_dir / APPLIED).read_bytes()
    assert "REFUSED: No revision was generated in this kernel" in done.stdout and APPLIED in done.stdout
    assert "(3 rows)" in done.stdout
    assert (lab.project.versions_dir / APPLIED).read_bytes() == applied
    with lab.db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(phone_number) FROM user_profiles")) == 2
