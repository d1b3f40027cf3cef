"""A revision whose parent is gone, and the files the kit deletes (issue 17, item 2).

A reset deleted a revision while its child was open in an editor, which saved the child back: its
down_revision names no file. Alembic then fails every command with a bare `KeyError: '<parent>'`. The kit
says one thing wherever it runs alembic (console, `ch.alembic`, "Check my work"): which file, and the two ways
out. And it records what it deletes, for the JupyterLab it starts (`jupyter/jupyter_server_config.py`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_revision
from migration_lab import Lab
from migration_lab.course.registry import spec
from migration_lab.errors import BrokenHistory
from migration_lab.front.notebook import Chapter, chapter
from migration_lab.running import history
from migration_lab.workspace import deletions

GONE = "5c04918f04d2"
ORPHAN = "77aa00000001"


def in_a_terminal(lab: Lab, database_url: str, *command: str) -> subprocess.CompletedProcess[str]:
    """`alembic <command>` typed in a terminal in the lab's ai-service/, with DATABASE_URL set as given."""
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_DATABASE_URL", "LAB_BACKEND")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), *command],
        cwd=lab.project.service_dir,
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )


def orphan(lab: Lab) -> str:
    """A revision whose parent no file holds; its path as a learner sees it."""
    path = write_revision(lab.project, ORPHAN, GONE, "pass")
    return str(path.relative_to(lab.project.root))


def says_the_way_out(text: str, file: str) -> bool:
    return (
        f"{file} revises {GONE}, and no revision file is {GONE}" in text
        and f"delete {ORPHAN}_hand_written.py" in text
        and f"bring {GONE}'s file back" in text
        and "KeyError" not in text
    )


@pytest.mark.parametrize("line", ["heads", "history", "current", "upgrade head", "check", 'revision -m "x"'])
def test_every_command_names_the_orphan_and_the_two_ways_out(lab: Lab, line: str) -> None:
    lab.runner.run("upgrade head")
    file = orphan(lab)
    result = lab.runner.run(line)
    assert not result.ok and result.refused == "history"
    assert says_the_way_out(str(result), file), str(result)
    assert lab.db.heads() == ("8b7e5d2c6a41",)  # nothing ran


def test_alembics_key_error_is_recognised_by_its_type_and_where_it_was_raised(lab: Lab) -> None:
    file = orphan(lab)
    scripts = lab.runner.script(check_history=False)
    with pytest.raises(KeyError) as raised, pytest.warns(UserWarning, match=f"Revision {GONE} referenced from"):
        scripts.get_heads()  # what alembic raises: no message but the missing id
    found = history.broken_history(scripts, lab.project.root, raised.value, lab.db.heads)
    assert isinstance(found, BrokenHistory) and says_the_way_out(str(found), file)
    assert history.broken_history(scripts, lab.project.root, KeyError(GONE)) is None  # not from the revision map
    with pytest.raises(BrokenHistory):
        lab.runner.script()


def test_check_my_work_and_the_console_say_the_same_not_autogenerate(lab: Lab, capsys) -> None:
    ch = chapter("02", lab)
    console = ch.console()
    file = orphan(lab)
    report = ch.report()
    assert [c.name for c in report.checks] == ["the revision files form one history"]
    assert says_the_way_out(report.checks[0].hint, file) and "autogenerate" not in str(report)
    ch.alembic("heads")
    assert says_the_way_out(capsys.readouterr().out, file)
    console.buttons["heads"].click()
    text = "".join(o.get("text", "") for o in console.output.outputs)
    assert says_the_way_out(text, file)
    console.refresh()
    graph = "".join(o.get("text", "") for o in console.graph.outputs)
    assert says_the_way_out(graph, file)
    ch.delete_file(f"migrations/versions/{ORPHAN}_hand_written.py")  # a way out: the orphan can always go
    assert ch.report().checks[0].name != "the revision files form one history"
    capsys.readouterr()


BROKEN = {  # other ways a history cannot be read: (file name, text, what the message says)
    "a syntax error": ("f2f2f2f2f2f2_syntax.py", "{revision}\ndef broken(:\n", "SyntaxError"),
    "an import that fails": ("f7f7f7f7f7f7_import.py", "import no_such_module_xyz\n{revision}", "ModuleNotFoundError"),
    "a cycle": ("aaaa00000001_cycle.py", "{cycle}", "Cycle"),
    "depends_on no revision": ("f9f9f9f9f9f9_depends.py", "{depends}", "deadbeef0002"),
    "two files, one id": ("f3f3f3f3f3f3_copy.py", "{twice}", "are both revision 8b7e5d2c6a41"),
}


def _broken_file(lab: Lab, case: str) -> str:
    name, text, _ = BROKEN[case]
    revision = "revision = 'f0f0f0f0f0f0'\ndown_revision = '8b7e5d2c6a41'\n"
    path = lab.project.versions_dir / name
    path.write_text(
        text.format(
            revision=revision,
            cycle="revision = 'aaaa00000001'\ndown_revision = 'bbbb00000002'\n",
            depends=revision + "depends_on = 'deadbeef0002'\n",
            twice=(lab.project.versions_dir / "8b7e5d2c6a41_add_job_entries.py").read_text(),
        )
    )
    if case == "a cycle":
        (lab.project.versions_dir / "bbbb00000002_cycle.py").write_text(
            "revision = 'bbbb00000002'\ndown_revision = 'aaaa00000001'\n"
        )
    return name


@pytest.mark.parametrize("case", list(BROKEN))
def test_any_history_alembic_cannot_read_is_one_message_everywhere_not_a_traceback(lab: Lab, case: str, capsys) -> None:
    """Not only a missing parent: a cycle, a file Python cannot import, a depends_on on nothing, two files with one
    id raised CycleDetected, SyntaxError, KeyError from the check, the console and the graph (and "merge heads"
    was the hint for the duplicate, which then failed)."""
    ch = chapter("02", lab)
    console = ch.console()
    at = lab.db.heads()
    _broken_file(lab, case)
    says = BROKEN[case][2]
    result = lab.runner.run("heads")
    assert not result.ok and result.refused == "history" and says in str(result), str(result)
    report = ch.report()
    assert [c.name for c in report.checks] == ["the revision files form one history"], str(report)
    assert says in report.checks[0].hint and "merge heads" not in report.checks[0].hint
    console.buttons["heads"].click()
    assert says in "".join(o.get("text", "") for o in console.output.outputs)
    console.refresh()
    assert says in "".join(o.get("text", "") for o in console.graph.outputs)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert lab.db.heads() == at  # nothing ran


def test_what_a_reset_deletes_is_recorded_and_forgotten_when_it_comes_back(lab: Lab, capsys) -> None:
    ch = Chapter(spec("02"), lab)
    ch.reset()
    ch.rename_column("UserProfile", "phone_number", "phone")
    ch.alembic('revision --autogenerate -m "rename phone number"')
    generated = next(lab.project.versions_dir.glob(f"{ch.generated}_*.py"))
    key = str(generated.relative_to(lab.project.root))
    ch.reset()
    record = json.loads((lab.project.state_dir / "deleted-files.json").read_text())
    assert key in record and "a reset of the lab (your copy is in .lab/backups/" in record[key]
    assert oct((lab.project.state_dir / "deleted-files.json").stat().st_mode & 0o777) == "0o600"
    assert deletions.recorded(lab.project) == record
    generated.write_text("# back, by git checkout say\n")
    deletions.record(lab.project, [], "")
    assert key not in deletions.recorded(lab.project)
    generated.unlink()
    kept = write_revision(lab.project, "eeee00000001", "a1c4e7f20b13", "pass")
    ch.delete_file(f"migrations/versions/{kept.name}")
    assert deletions.recorded(lab.project)[str(kept.relative_to(lab.project.root))] == "ch.delete_file()"
    capsys.readouterr()


@pytest.mark.parametrize("action", ["delete", "edit"])
def test_an_orphan_does_not_switch_off_the_guard_of_applied_revisions(lab: Lab, action: str, capsys) -> None:
    """With an orphan, alembic maps nothing: the guard knew only the revision the database is at, and deleted (or
    edited) its applied ancestors without confirm=True."""
    from migration_lab.errors import LabError
    from migration_lab.workspace.checkpoints import WITH_PHONE_NUMBER, reset

    reset(lab, WITH_PHONE_NUMBER)  # at a1c4e7f20b13, above 8b7e5d2c6a41 and the root
    orphan(lab)
    ch = Chapter(spec("03"), lab)
    for applied in sorted(p.name for p in lab.project.versions_dir.glob("*.py") if not p.name.startswith(ORPHAN)):
        file = f"migrations/versions/{applied}"
        with pytest.raises(LabError, match="is applied to the database"):
            if action == "delete":
                ch.delete_file(file)
            else:
                ch.edit_file(file, "revision", "revision")
        assert (lab.project.versions_dir / applied).is_file()
    ch.delete_file(f"migrations/versions/{ORPHAN}_hand_written.py")  # the orphan itself can still go
    capsys.readouterr()


def test_a_file_alembic_cannot_read_can_be_fixed_or_deleted_and_still_guards_the_others(lab: Lab, capsys) -> None:
    """A revision with a syntax error made ch.edit_file and ch.delete_file raise SyntaxError for every file, that one
    included: the kit could neither fix it nor remove it."""
    from migration_lab.errors import LabError
    from migration_lab.workspace.checkpoints import WITH_PHONE_NUMBER, reset

    reset(lab, WITH_PHONE_NUMBER)
    path = write_revision(lab.project, ORPHAN, "a1c4e7f20b13", "pass")
    path.write_text(path.read_text().replace("def upgrade():", "def upgrade(:"))
    ch = Chapter(spec("03"), lab)
    file = f"migrations/versions/{path.name}"
    ch.edit_file(file, "def upgrade(:", "def upgrade():")  # fixed, in place
    path.write_text(path.read_text().replace("def upgrade():", "def upgrade(:"))
    applied = next(p.name for p in lab.project.versions_dir.glob("8b7e5d2c6a41_*.py"))
    with pytest.raises(LabError, match="is applied to the database"):
        ch.delete_file(f"migrations/versions/{applied}")
    ch.delete_file(file)
    assert not path.exists()
    capsys.readouterr()


UNREADABLE_IN_A_TERMINAL = {
    "a syntax error": (lambda text: text.replace("def upgrade():", "def upgrade(:"), "cannot be read (line"),
    "a failing import": (lambda text: "import no_such_module_here\n" + text, "ModuleNotFoundError"),
    "its own parent": (
        lambda text: text.replace("down_revision = 'a1c4e7f20b13'", f"down_revision = '{ORPHAN}'"),
        "Fix the down_revision there",
    ),
}


@pytest.mark.parametrize("case", list(UNREADABLE_IN_A_TERMINAL))
@pytest.mark.parametrize("command", [["current"], ["upgrade", "head"]])
def test_a_history_alembic_cannot_read_is_one_line_naming_the_file_in_a_terminal(
    lab: Lab, database_url: str, case: str, command: list[str]
) -> None:
    """`alembic current` / `upgrade head` in a terminal printed a 57-line SyntaxError or a 48-line LoopDetected."""

    from migration_lab.workspace.checkpoints import WITH_PHONE_NUMBER, reset

    reset(lab, WITH_PHONE_NUMBER)
    path = write_revision(lab.project, ORPHAN, "a1c4e7f20b13", "pass")
    change, says = UNREADABLE_IN_A_TERMINAL[case]
    changed = change(path.read_text())
    assert changed != path.read_text()
    path.write_text(changed)
    done = in_a_terminal(lab, database_url, *command)
    assert done.returncode == 1
    said = done.stderr.strip()
    assert "Traceback" not in said and len(said.splitlines()) <= 3, said
    assert f"migrations/versions/{path.name}" in said and says in said, said


def test_an_applied_orphan_is_told_where_its_parents_file_is_not_sent_round_in_a_circle(lab: Lab, capsys) -> None:
    """A -> B applied, A's file deleted: the orphan message said "delete B", ch.delete_file(B) said "downgrade
    below it first", and the downgrade failed on the orphan. A backup holds A's file: both messages name it."""
    from migration_lab.errors import LabError
    from migration_lab.workspace.backups import Backups
    from migration_lab.workspace.baseline import pristine_files
    from migration_lab.workspace.checkpoints import WITH_PHONE_NUMBER, reset

    reset(lab, WITH_PHONE_NUMBER)
    parent = write_revision(lab.project, GONE, "a1c4e7f20b13", "pass")
    child = write_revision(lab.project, ORPHAN, GONE, "pass")
    assert lab.runner.run("upgrade head").ok
    backup = Backups(lab.project, lab.db.url).save(pristine_files())
    assert backup is not None
    parent.unlink()
    ch = Chapter(spec("03"), lab)
    copy = f".lab/backups/{backup.name}/ai-service/migrations/versions/{parent.name}"
    assert f"a copy is in {copy}" in ch.report().checks[0].hint, ch.report().checks[0].hint
    with pytest.raises(LabError) as refused:
        ch.delete_file(f"migrations/versions/{child.name}")
    assert "Downgrade below it" not in refused.value.next_step and copy in refused.value.next_step, refused.value
    (lab.project.versions_dir / parent.name).write_bytes((lab.project.root / copy).read_bytes())  # as it says
    assert lab.runner.run("downgrade a1c4e7f20b13").ok
    capsys.readouterr()


@pytest.mark.parametrize("applied", [ORPHAN, "77aa00000002"], ids=["at-the-orphan", "after-it"])
def test_an_applied_orphan_is_never_told_to_delete_itself_in_the_kit_or_a_terminal(
    lab: Lab, database_url: str, applied: str
) -> None:
    """The database at the orphan (or at a revision after it): deleting its file would leave the database at a
    revision no file has. Both the kit and the terminal's alembic say to keep it and bring the parent back."""

    from migration_lab.workspace.checkpoints import WITH_PHONE_NUMBER, reset

    reset(lab, WITH_PHONE_NUMBER)
    parent = write_revision(lab.project, GONE, "a1c4e7f20b13", "pass")
    write_revision(lab.project, ORPHAN, GONE, "pass")
    write_revision(lab.project, "77aa00000002", ORPHAN, "pass")
    assert lab.runner.run(["upgrade", applied]).ok
    parent.unlink()
    result = lab.runner.run("current")
    keep = f"The database is at {applied}, which is {ORPHAN}_hand_written.py or comes after it: keep"
    assert keep in str(result) and "Either delete" not in str(result), str(result)
    done = in_a_terminal(lab, database_url, "current")
    assert done.returncode == 1 and keep in done.stderr and "Either delete" not in done.stderr, done.stderr
    import sqlalchemy as sa

    with lab.db.engine.begin() as conn:  # not applied (alembic cannot stamp a history it cannot read): then
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'a1c4e7f20b13'"))  # deleting it is a way out
    assert "Either delete" in str(lab.runner.run("current"))


def test_a_depends_on_that_names_no_revision_is_named_with_its_file_in_the_kit_and_a_terminal(
    lab: Lab, database_url: str
) -> None:
    """depends_on naming a revision no file is: alembic's bare KeyError in a terminal, and "cannot read the
    revision files: KeyError" without the file in the notebook and the check."""

    lab.runner.run("upgrade head")
    path = write_revision(lab.project, ORPHAN, "8b7e5d2c6a41", "pass")
    path.write_text(path.read_text().replace("depends_on = None", "depends_on = 'cafe00000000'"))
    said = str(lab.runner.run("current"))
    shown = f"migrations/versions/{path.name} depends on cafe00000000, and no revision file is cafe00000000"
    assert shown in said and "KeyError" not in said, said
    done = in_a_terminal(lab, database_url, "current")
    assert done.returncode == 1 and shown in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_orphan_whose_database_cannot_be_asked_is_told_to_keep_it_unless_never_applied(
    lab: Lab, database_url: str
) -> None:
    """env.py checks the history before it connects: with no database to ask (an empty DATABASE_URL, a server
    down), it said "Either delete" for a revision the database was at. Unknown, it says to bring the parent back,
    and to delete the file only if the database never applied it."""

    from migration_lab.workspace.checkpoints import WITH_PHONE_NUMBER, reset

    reset(lab, WITH_PHONE_NUMBER)
    parent = write_revision(lab.project, GONE, "a1c4e7f20b13", "pass")
    child = write_revision(lab.project, ORPHAN, GONE, "pass")
    assert lab.runner.run("upgrade head").ok
    parent.unlink()
    done = in_a_terminal(lab, "", "current")
    said = done.stderr
    assert done.returncode == 1 and f"Bring {GONE}'s file back" in said and "Either delete" not in said, said
    assert f"if the database never applied {child.name}" in said
    found = history.broken_history(lab.runner.script(check_history=False), lab.project.root)  # heads not known
    assert found is not None and "Either delete" not in str(found) and f"Bring {GONE}'s file back" in str(found)


@pytest.mark.parametrize("case", ["an orphan", "a cycle"])
def test_an_editors_lock_file_in_versions_leaves_the_terminals_message_whole(
    lab: Lab, database_url: str, case: str
) -> None:
    """Emacs keeps `.#<name>.py` (a link to nowhere) beside a file being edited. Alembic skips it, but env.py's
    check loaded every *.py to name the orphan or the cycle's files: `alembic current` printed an ImportError
    traceback instead of the message."""
    if case == "an orphan":
        file = orphan(lab)
        shown = f"{Path(file).relative_to('ai-service')} revises {GONE}"
    else:
        _broken_file(lab, "a cycle")
        shown = "migrations/versions/aaaa00000001_cycle.py"
    (lab.project.versions_dir / ".#8b7e5d2c6a41_add_job_entries.py").symlink_to("learner@host.4242:1765000000")
    done = in_a_terminal(lab, database_url, "current")
    said = done.stderr
    assert done.returncode == 1 and shown in said and "Traceback" not in said, said


def test_an_editors_lock_file_in_versions_is_not_a_revision_to_the_chapters_checks(lab: Lab) -> None:
    """Chapter 05's check (no revision imports main.py) and chapter 09's count of revision files read every *.py:
    Emacs' `.#<name>.py`, a link to nowhere, ended "Check my work" in a FileNotFoundError traceback."""
    from migration_lab.course import checks

    before = checks.revision_texts(lab)
    (lab.project.versions_dir / ".#8b7e5d2c6a41_add_job_entries.py").symlink_to("learner@host.4242:1765000000")
    (lab.project.versions_dir / "__init__.py").write_text("import main\n")  # alembic skips it too
    assert checks.revision_texts(lab) == before
    verdict = checks.no_revision_imports(lab, "main", "imports today's models from main.py", ("hint",))
    assert verdict.passed, verdict
