"""Restore always restores (issue 17, items 3-5): only real backups are listed and picked, a backup is checked
before anything is deleted, a failed restore leaves files and database as they were and names the automatic
backup, and pruning never removes the newest backup of the learner's own work."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import REPO, write_revision
from migration_lab import Lab, LabError, Project
from migration_lab.course.registry import reset
from migration_lab.launch.jupyterlab import WORKBOOK, prepare_workbook
from migration_lab.workspace.backups import KEEP, Backups, restore

PHONE_HEAD = "a1c4e7f20b13"


def lab_cli(*args: str, project: Project, database_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_BACKEND", "DATABASE_URL")}
    env.update(LAB_PROJECT_DIR=str(project.root), LAB_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "migration_lab", *args], env=env, cwd=project.root, capture_output=True, text=True
    )


def state(lab: Lab) -> tuple:
    """The learner's files and the database: what a failed restore must leave as it was."""
    files = {p.name: p.read_bytes() for p in lab.project.versions_dir.glob("*.py")}
    files["main.py"] = (lab.project.service_dir / "main.py").read_bytes()
    with lab.db.engine.connect() as conn:
        heads = lab.db.heads(conn)
        tables = sorted(sa.inspect(conn).get_table_names())
        rows = conn.execute(sa.text("SELECT name, email FROM user_profiles ORDER BY 1")).all()
    return files, heads, tables, rows


def work(lab: Lab, note: str) -> Path:
    """The learner's own revision, applied, and a row of theirs."""
    path = write_revision(lab.project, "f00d00000001", PHONE_HEAD, 'op.execute("UPDATE user_profiles SET name = name")')
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + f"\n# {note}\n")
    lab.runner.run("upgrade head")
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Mine', 'mine@example.org')"))
    return path


def test_a_notebook_kept_aside_is_never_a_backup_and_restore_brings_back_the_work(lab: Lab, database_url: str) -> None:
    """Item 3: `reset 02` moved a changed notebook into .lab/backups/notebooks/, which sorted last, was picked by
    `restore`, restored 0 files and deleted every revision file."""
    project = lab.project
    reset("03", lab)
    prepare_workbook(project)
    notebook = project.root / WORKBOOK / "02-never-trust-autogenerate.ipynb"
    notebook.write_text(notebook.read_text().replace('"source": [', '"source": ["# my notes\\n", ', 1))
    mine = work(lab, "my own work")
    worked = state(lab)
    # An older kit's notebook folder is still there: it is no backup either.
    (project.state_dir / "backups" / "notebooks").mkdir(parents=True)
    (project.state_dir / "backups" / "notebooks" / "02-never-trust-autogenerate-20260101-000000.ipynb").write_text("{}")

    done = lab_cli("reset", "02", project=project, database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert "your copy is in .lab/notebook-copies/" in done.stdout
    assert list((project.state_dir / "notebook-copies").glob("02-never-trust-autogenerate-*.ipynb"))
    listed = lab_cli("backups", project=project, database_url=database_url).stdout.split()
    assert len(listed) == 1 and "notebooks" not in listed

    done = lab_cli("restore", project=project, database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert f"Restored backup {listed[0]}: 8 file(s) and the database." in done.stdout
    assert mine.exists() and state(lab) == worked
    assert lab.runner.run("current").ok


def _backup_of_work(lab: Lab) -> Path:
    """A backup a reset took of the learner's work, then the lab back at the chapter's start."""
    reset("03", lab)
    work(lab, "my own work")
    report = reset("03", lab)
    assert report.backup is not None
    return report.backup.path


def test_a_backup_pruned_while_the_restore_waited_for_the_lock_is_refused_and_nothing_changes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`restore` checked the backup, then waited for the migration lock while a reset in another notebook ran:
    that reset's pruning took the very backup, and the restore brought its database back without its files
    ("files could not be put back"), with nothing left to restore again from. Under the lock it looks again."""
    import shutil

    from migration_lab.workspace import backups as backups_module

    backup = _backup_of_work(lab)
    before = state(lab)
    rehearse = backups_module._rehearse

    def then_pruned(lab: Lab, backups: Backups, path: Path) -> None:
        rehearse(lab, backups, path)
        shutil.rmtree(path)  # a reset elsewhere pruned it, between the checks and the lock

    monkeypatch.setattr(backups_module, "_rehearse", then_pruned)
    with pytest.raises(LabError, match="was removed while this restore waited .* Nothing was changed"):
        restore(lab, backup.name)
    assert state(lab) == before


def test_a_backup_without_its_files_is_refused_before_anything_is_touched(lab: Lab) -> None:
    """Item 4: a backup folder without ai-service/ restored "0 file(s)" after deleting the revision files."""
    backup = _backup_of_work(lab)
    before = state(lab)

    shutil.rmtree(backup / "ai-service")
    with pytest.raises(LabError, match="cannot be restored: ai-service/main.py is missing. Nothing was changed"):
        restore(lab)
    assert state(lab) == before
    assert Backups(lab.project, lab.db.url).names() == [backup.name]  # no automatic backup: nothing was touched


def test_a_cut_dump_is_refused_before_anything_is_touched(lab: Lab) -> None:
    """Item 4: a database.sql cut in half left the database empty ("syntax error at or near DEFAUL")."""
    backup = _backup_of_work(lab)
    before = state(lab)
    sql = backup / "database.sql"
    sql.write_text(sql.read_text()[: len(sql.read_text()) // 2])
    with pytest.raises(LabError, match="database.sql was changed or cut short. Nothing was changed"):
        restore(lab, backup.name)
    assert state(lab) == before


@pytest.mark.parametrize(
    "inserted",
    ["SELECT 1/0;\n", "COMMIT;\nSELECT 1/0;\n"],
    ids=["a statement that raises", "a COMMIT, then one that raises"],
)
def test_a_dump_that_fails_half_way_leaves_the_database_as_it_was_and_names_the_automatic_backup(
    lab: Lab, inserted: str
) -> None:
    """A dump that passes the checks and still fails in PostgreSQL (here: a statement that raises, in the
    middle): the wipe and the dump are one transaction, so nothing of either stays; the files stay too. A COMMIT
    in the dump ends psql's one transaction early: the dump is put back on a copy first."""
    backup = _backup_of_work(lab)
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\n# work since the reset\n")  # the automatic backup will hold this
    before = state(lab)
    sql = backup / "database.sql"
    text = sql.read_text()
    middle = text.index("COPY public.user_profiles")
    sql.write_text(text[:middle] + inserted + text[middle:])
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["database"] = hashlib.sha256(sql.read_bytes()).hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LabError) as failed:
        restore(lab, backup.name)
    assert "division by zero" in failed.value.what and "Nothing was changed" in failed.value.what
    automatic = [n for n in Backups(lab.project, lab.db.url).names() if n != backup.name]
    assert len(automatic) == 1 and f".lab/backups/{automatic[0]}/" in failed.value.next_step
    assert state(lab) == before


def test_pruning_never_removes_the_newest_backup_of_the_learners_own_work(lab: Lab) -> None:
    """Item 5: ten chapter starts later, the backup holding the learner's revision was gone."""
    backups = Backups(lab.project, lab.db.url)
    real = _backup_of_work(lab)
    main = lab.project.service_dir / "main.py"
    for n in range(KEEP + 1):  # each start after a small edit: a backup each, none with a revision of the learner's
        main.write_text(main.read_text() + f"\n# note {n}\n")
        assert reset("03", lab).backup is not None
    names = backups.names()
    assert real.name in names and len(names) == KEEP + 1
    assert (real / "ai-service" / "migrations" / "versions" / "f00d00000001_hand_written.py").is_file()
    print(restore(lab, real.name))
    assert (lab.project.versions_dir / "f00d00000001_hand_written.py").is_file()


def test_a_backup_an_older_kit_took_is_still_listed_checked_and_restored(lab: Lab) -> None:
    """Before manifests, a backup was its folder: still one when it holds ai-service/main.py, checked for what can
    be (a dump cut short is refused), restored as before."""
    backup = _backup_of_work(lab)
    (backup / "manifest.json").unlink()
    assert Backups(lab.project, lab.db.url).names() == [backup.name]
    sql = backup / "database.sql"
    whole = sql.read_text()
    sql.write_text(whole[: len(whole) // 2])
    before = state(lab)
    with pytest.raises(LabError, match="database.sql is cut short. Nothing was changed"):
        restore(lab)
    assert state(lab) == before
    sql.write_text(whole)
    assert "Restored backup" in restore(lab, backup.name)
    assert (lab.project.versions_dir / "f00d00000001_hand_written.py").is_file()


def test_restoring_the_oldest_backup_keeps_it_through_the_pruning_its_own_automatic_backup_runs(lab: Lab) -> None:
    """With KEEP backups, a restore's automatic backup of the work as it is made one too many: the pruning deleted
    the oldest, the very backup being restored, and the restore then failed with the database untouched."""
    backups = Backups(lab.project, lab.db.url)
    main = lab.project.service_dir / "main.py"
    reset("03", lab)
    for n in range(KEEP):  # KEEP backups, none holding a revision of the learner's (none is kept for its work)
        main.write_text(main.read_text() + f"\n# note {n}\n")
        assert reset("03", lab).backup is not None
    oldest = backups.names()[0]
    noted = (backups.folder / oldest / "ai-service" / "main.py").read_bytes()
    main.write_text(main.read_text() + "\n# work since\n")
    assert "Restored backup" in restore(lab, oldest)
    assert main.read_bytes() == noted
    assert oldest in backups.names() and len(backups.names()) == KEEP + 1  # the KEEP newest, and the one in use


@pytest.mark.parametrize("made_by", ["this kit, its dump failed", "an older kit, main.py only"])
def test_a_backup_without_a_database_is_refused_before_anything_is_touched(lab: Lab, made_by: str) -> None:
    """Its files alone would delete the revision the database is at (alembic: "Can't locate revision"), while the
    restore said it had worked."""
    backup = _backup_of_work(lab)
    work(lab, "work since")
    before = state(lab)
    (backup / "database.sql").unlink()
    if made_by.startswith("this kit"):
        manifest = json.loads((backup / "manifest.json").read_text())
        (backup / "manifest.json").write_text(json.dumps({**manifest, "database": None}))
    else:
        (backup / "manifest.json").unlink()
    with pytest.raises(LabError, match="it holds no database .* Nothing was changed"):
        restore(lab, backup.name)
    assert state(lab) == before


@pytest.mark.parametrize("listed", ["../../escaped.py", "/tmp/escaped-{pid}.py", "migrations/../../escaped.py"])
def test_a_manifest_that_lists_a_path_outside_ai_service_is_refused_and_nothing_is_written(
    lab: Lab, listed: str
) -> None:
    backup = _backup_of_work(lab)
    listed = listed.format(pid=os.getpid())
    before = state(lab)
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"][listed] = hashlib.sha256(b"# planted\n").hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest))
    target = (lab.project.service_dir / listed).resolve()
    with pytest.raises(LabError, match="is not a file of ai-service/ .*Nothing was changed"):
        restore(lab, backup.name)
    assert state(lab) == before and not target.exists()


def test_a_backup_file_that_links_elsewhere_is_refused(lab: Lab, tmp_path: Path) -> None:
    """An older kit's backup (no hashes) whose revision file is a link: its target is not copied in."""
    backup = _backup_of_work(lab)
    (backup / "manifest.json").unlink()
    secret = tmp_path / "secret.py"
    secret.write_text("# someone else's file\n")
    (backup / "ai-service" / "migrations" / "versions" / "f00d00000002_link.py").symlink_to(secret)
    before = state(lab)
    with pytest.raises(LabError, match="is not a file of ai-service/"):
        restore(lab, backup.name)
    assert state(lab) == before


@pytest.mark.parametrize("command", ["a reset", "a restore"])
def test_work_pg_dump_cannot_save_stops_a_reset_or_restore_before_anything_changes(
    lab: Lab, project: Project, database_url: str, command: str
) -> None:
    """The wheel's pg_dump has no SSL, and refuses sslmode=require, which psycopg2 takes (on a Unix socket, libpq
    never uses SSL). The reset went on without a backup of the database and wiped the learner's table."""
    from migration_lab import UrlBackend

    reset("03", lab)
    work(lab, "before the reset")
    restore_from = Backups(project, lab.db.url).save({})  # a backup to restore, taken while pg_dump still works
    assert restore_from is not None
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE my_precious (note text)"))
        conn.execute(sa.text("INSERT INTO my_precious VALUES ('MY WORK')"))
    ssl = Lab(project, UrlBackend(database_url + "&sslmode=require"))
    try:
        before = state(ssl)
        with pytest.raises(LabError, match="could not be backed up, so nothing was changed") as raised:
            reset("01", ssl) if command == "a reset" else restore(ssl, restore_from.path.name)
        assert "sslmode" in raised.value.what and "nuke" in raised.value.next_step
        assert state(ssl) == before
        with ssl.db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT note FROM my_precious")) == "MY WORK"
    finally:
        ssl.db.dispose()


def test_a_reset_that_fails_after_its_backup_names_the_backup(lab: Lab, project: Project) -> None:
    """Another session's open transaction on user_profiles stops the wipe: the files are the checkpoint's already,
    and the message named no backup of the work they replaced."""
    reset("03", lab)
    work(lab, "my work")
    holder = lab.db.engine.connect()
    try:
        holder.execute(sa.text("SELECT count(*) FROM user_profiles"))  # an open transaction holds its lock
        with pytest.raises(LabError) as raised:
            reset("01", lab)
    finally:
        holder.close()
    backup = Backups(project, lab.db.url).names()[-1]
    said = f"{raised.value.what} {raised.value.next_step}"
    assert f".lab/backups/{backup}/" in said and f"restore {backup}" in said, said
    assert restore(lab, backup).startswith(f"Restored backup {backup}")
    assert any(p.name.startswith("f00d00000001") for p in project.versions_dir.glob("*.py"))


def test_backups_keep_their_order_and_the_work_under_another_time_zone(lab: Lab, project: Project) -> None:
    """Names were local time, sorted as text: ten backups taken in UTC, then one in Los Angeles, and the pruning
    deleted the newest backup of the learner's work while `restore` picked an older one as the newest."""
    backups = Backups(project, lab.db.url)
    main = project.service_dir / "main.py"
    for n in range(KEEP):
        main.write_text(main.read_text() + f"\n# note {n}\n")
        assert reset("03", lab).backup is not None
    work(lab, "the newest work")
    script = (
        "import sys\n"
        "from migration_lab import Lab, Project, UrlBackend\n"
        "from migration_lab.course.registry import reset\n"
        "print(reset('01', Lab(Project(sys.argv[1]), UrlBackend(sys.argv[2]))).backup.name)\n"
    )
    env = {**os.environ, "TZ": "America/Los_Angeles"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(project.root), lab.db.url], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    newest = done.stdout.strip()
    assert newest in backups.names() and backups.names()[-1] == newest
    assert any(p.name.startswith("f00d00000001") for p in (backups.folder / newest).rglob("*.py"))
    assert "Restored backup " + newest in restore(lab)


def test_an_env_py_of_the_learners_is_work_the_pruning_keeps(lab: Lab, project: Project) -> None:
    """Chapter 13's answer is an env.py: a backup holding only that was not work, and ten resets pruned it."""
    backups = Backups(project, lab.db.url)
    reset("13", lab)
    env_py = project.service_dir / "migrations" / "env.py"
    env_py.write_text(env_py.read_text() + "\n# my advisory lock, written by hand\n")
    mine = reset("13", lab).backup
    assert mine is not None
    main = project.service_dir / "main.py"
    for n in range(KEEP + 1):
        main.write_text(main.read_text() + f"\n# note {n}\n")
        assert reset("13", lab).backup is not None
    assert mine.name in backups.names()


@pytest.mark.parametrize("files", [[], None, {"main.py": 1}], ids=["a list", "null", "a number"])
def test_a_manifest_the_kit_did_not_write_is_refused_in_one_line(lab: Lab, files: object) -> None:
    backup = _backup_of_work(lab)
    manifest = backup / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "files": files}))
    before = state(lab)
    with pytest.raises(LabError, match=r"not one the kit wrote .*\. Nothing was changed"):
        restore(lab, backup.name)
    assert state(lab) == before


def test_a_linked_backup_folder_is_never_listed(lab: Lab, project: Project, tmp_path: Path) -> None:
    backup = _backup_of_work(lab)
    elsewhere = tmp_path / "elsewhere"

    shutil.copytree(backup, elsewhere)
    (backup.parent / "20991231-000000").symlink_to(elsewhere)
    assert Backups(project, lab.db.url).names() == [backup.name]


def test_a_reset_interrupted_half_way_names_the_backup_of_the_work(lab: Lab, project: Project) -> None:
    """Ctrl-C (or the kernel's stop button) during the wipe: a KeyboardInterrupt traceback that named no backup."""
    reset("03", lab)
    work(lab, "my work")

    def interrupt_the_wipe(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.startswith("DROP SCHEMA"):
            raise KeyboardInterrupt

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", interrupt_the_wipe)
    try:
        with pytest.raises(LabError, match="interrupted") as raised:
            reset("01", lab)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", interrupt_the_wipe)
    backup = Backups(project, lab.db.url).names()[-1]
    assert f"restore {backup}" in raised.value.next_step, raised.value
    assert restore(lab, backup).startswith(f"Restored backup {backup}")
    assert any(p.name.startswith("f00d00000001") for p in project.versions_dir.glob("*.py"))


def test_the_cli_says_an_interrupted_command_in_two_lines(
    lab: Lab, project: Project, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from migration_lab.front.cli import main

    reset("03", lab)  # nothing to back up: the interrupt reaches the command line as it is
    monkeypatch.setenv("LAB_PROJECT_DIR", str(project.root))
    monkeypatch.setenv("LAB_DATABASE_URL", database_url)

    def interrupt_the_wipe(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.startswith("DROP SCHEMA"):
            raise KeyboardInterrupt

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", interrupt_the_wipe)
    try:
        assert main(["reset", "01"]) == 130
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", interrupt_the_wipe)
    said = capsys.readouterr().err
    assert said.startswith("Interrupted: `reset` stopped half-way.") and "Traceback" not in said, said


def test_a_restore_refused_again_and_again_saves_the_work_once_and_prunes_nothing(lab: Lab) -> None:
    """Each refused restore backed the unchanged work up again, and eleven of them pruned every older backup (the
    learner's real ones with them): the same files and rows are saved once, and the older backups stay."""
    backups = Backups(lab.project, lab.db.url)
    broken = _backup_of_work(lab)
    sql = broken / "database.sql"
    text = sql.read_text()
    middle = text.index("COPY public.user_profiles")
    sql.write_text(text[:middle] + "SELECT 1/0;\n" + text[middle:])  # whole, and fails in PostgreSQL
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["database"] = hashlib.sha256(sql.read_bytes()).hexdigest()
    (broken / "manifest.json").write_text(json.dumps(manifest))
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\n# work since\n")
    before = backups.names()
    for _ in range(KEEP + 1):
        with pytest.raises(LabError, match="Nothing was changed"):
            restore(lab, broken.name)
    after = backups.names()
    assert set(before) <= set(after) and len(after) == len(before) + 1, (before, after)


def test_a_folder_whose_manifest_does_not_read_is_not_a_backup_and_restore_picks_the_real_newest(
    lab: Lab, project: Project
) -> None:
    backup = _backup_of_work(lab)
    planted = backup.parent / "20991231-000000"
    planted.mkdir()
    (planted / "manifest.json").write_text("not json")
    backups = Backups(project, lab.db.url)
    assert backups.names() == [backup.name]
    assert backups.find(None) == backup


def test_a_table_of_an_extensions_type_is_backed_up_with_the_extension_and_restores(lab: Lab) -> None:
    """pg_dump --schema=public leaves CREATE EXTENSION out: a citext column's backup failed to restore ("type
    public.citext does not exist"), after the reset had wiped the original. The error's first ERROR line leads."""
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION citext"))
        conn.execute(sa.text("CREATE TABLE tags (name citext)"))
        conn.execute(sa.text("INSERT INTO tags VALUES ('Precious')"))
    saved = reset("02", lab).backup
    assert saved is not None
    print(restore(lab, saved.path.name))
    with lab.db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT name FROM tags WHERE name = 'precious'")) == "Precious"  # citext's =


def test_a_note_in_database_url_py_is_work_a_reset_backs_up_and_restore_brings_back(lab: Lab) -> None:
    """A reset writes database_url.py from the kit: the learner's change to it was in no backup (and, the only
    change, no backup was taken at all)."""
    reset("03", lab)
    mine = lab.project.service_dir / "database_url.py"
    mine.write_text(mine.read_text() + "# my note\n")
    saved = reset("03", lab).backup
    assert saved is not None and "# my note" not in mine.read_text()
    restore(lab, saved.path.name)
    assert mine.read_text().endswith("# my note\n")


def test_a_reset_another_sessions_lock_refuses_leaves_the_files_as_they_were_too(lab: Lab) -> None:
    """The files were reset to the checkpoint before the wipe, which a table lock then refused: the database kept
    the learner's revision, and no file held it any more. Now the wipe goes first, and both stay as they were."""
    reset("03", lab)
    work(lab, "my own work")
    before = state(lab)
    holder = sa.create_engine(lab.db.url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as held:
            held.execute(sa.text("LOCK TABLE user_profiles IN ACCESS SHARE MODE"))
            with pytest.raises(LabError, match="Another session"):
                reset("02", lab)
            held.rollback()
    finally:
        holder.dispose()
    assert state(lab) == before


def test_a_revision_file_whose_name_is_not_utf8_is_backed_up_and_restored(lab: Lab) -> None:
    """A file name in latin-1 (from an old archive): the backup's digest could not encode it, and no reset or
    restore ran at all."""
    reset("03", lab)
    work(lab, "my own work")
    odd = lab.project.versions_dir / os.fsdecode(b"f00d00000002_caf\xe9.py")
    odd.write_text('revision = "f00d00000002"\ndown_revision = "f00d00000001"\n')
    saved = reset("03", lab).backup
    assert saved is not None and not odd.exists()
    (lab.project.versions_dir / odd.name).unlink(missing_ok=True)
    restore(lab, saved.path.name)
    assert odd.is_file()
    odd.unlink()


def test_a_file_where_the_backups_folder_should_be_is_one_message_and_nothing_changes(lab: Lab) -> None:
    reset("03", lab)
    work(lab, "my own work")
    folder = lab.project.state_dir / "backups"

    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("not a folder")
    before = state(lab)
    try:
        with pytest.raises(LabError, match="is not a folder, so your work could not be backed up"):
            reset("02", lab)
        assert state(lab) == before
    finally:
        folder.unlink()


KILLED_RESET = """
import os, sys
from migration_lab import Lab, Project
from migration_lab.course.registry import reset
from migration_lab.workspace import checkpoints

def killed(*args, **kwargs):  # the process dies right after its wipe, as `kill -9` would
    os._exit(9)

lab = Lab(Project(sys.argv[1]))
checkpoints.restore_files = killed
reset("02", lab)
"""


def _killed_reset(project: Project, database_url: str) -> str:
    """A reset of chapter 02 killed right after its wipe, in a process of its own; the backup it took."""
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_BACKEND",)}
    died = subprocess.run(
        [sys.executable, "-c", KILLED_RESET, str(project.root)],
        env={**env, "LAB_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert died.returncode == 9, died.stderr
    return Backups(project, database_url).names()[-1]


def test_a_reset_killed_half_way_is_named_by_status_and_restore_brings_its_backup_back(
    lab: Lab, project: Project, database_url: str
) -> None:
    """kill -9 in the middle of a reset (after its wipe): `restore` brought back the newest backup, and the
    next reset's backup (the half-done state, an empty database) would have been that one. `status` names the
    backup the killed reset took, and `restore` with no name brings that one back."""
    reset("03", lab)
    work(lab, "my own work")
    taken = _killed_reset(project, database_url)
    status = lab_cli("status", project=project, database_url=database_url)
    assert "A reset was stopped half-way" in status.stdout and f"restore {taken}" in status.stdout, status.stdout
    print(restore(lab))  # no name: the work the killed reset had backed up
    assert (lab.project.versions_dir / "f00d00000001_hand_written.py").is_file()
    with lab.db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE email = 'mine@example.org'")) == 1
    assert "stopped half-way" not in lab_cli("status", project=project, database_url=database_url).stdout


def test_work_done_after_an_interrupted_reset_is_still_backed_up_by_the_next_one(
    lab: Lab, project: Project, database_url: str
) -> None:
    """The mark of a killed reset must not stand in for a backup: the learner worked on for an hour, and the
    next reset took no backup of that. It backs up what is there and names the killed reset's backup too."""
    reset("03", lab)
    work(lab, "my own work")
    taken = _killed_reset(project, database_url)
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\n# an hour more\n")  # the learner works on, without a look at status
    again = reset("02", lab)
    assert again.backup is not None and again.backup.name != taken
    assert "an hour more" in (again.backup.path / "ai-service" / "main.py").read_text()
    said = str(again)
    assert f"restore {taken}" in said  # and the killed reset's backup is named too
    assert "An earlier reset was stopped half-way" in said and "may not match" not in said, said  # in step now
    assert f"restore {taken}" not in str(reset("02", lab))  # once: the mark went with the reset that finished


def test_a_backup_whose_database_is_at_a_revision_none_of_its_files_is_is_refused(lab: Lab) -> None:
    """An older kit's backup (no manifest) with the revision file its database is at taken out: it restored, and
    left alembic unable to find where the database is."""
    backup = _backup_of_work(lab)
    (backup / "manifest.json").unlink()
    (backup / "ai-service" / "migrations" / "versions" / "f00d00000001_hand_written.py").unlink()
    before = state(lab)
    with pytest.raises(LabError, match="its database is at f00d00000001, and none of its revision files"):
        restore(lab, backup.name)
    assert state(lab) == before


def test_a_restore_another_sessions_lock_stops_says_so_and_changes_nothing(lab: Lab) -> None:
    """A transaction left open on a table (a notebook, psql): the restore's wipe waits 5 s, then fails; it said
    to check that the database runs. It says what holds it up, by the error's SQLSTATE (55P03)."""
    backup = _backup_of_work(lab)
    before = state(lab)
    holder = sa.create_engine(lab.db.url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as held:
            held.execute(sa.text("LOCK TABLE user_profiles IN ACCESS SHARE MODE"))
            with pytest.raises(LabError) as refused:
                restore(lab, backup.name)
            held.rollback()
    finally:
        holder.dispose()
    assert "lock timeout" in refused.value.what and "Nothing was changed" in refused.value.what, refused.value
    assert refused.value.next_step.startswith("Another session holds a lock"), refused.value.next_step
    assert state(lab) == before


def _break_alembic_ini(project: Project) -> bytes:
    """alembic.ini pointing to a folder that does not exist (a typo in script_location); its broken text."""
    ini = project.service_dir / "alembic.ini"
    ini.write_text(ini.read_text().replace("%(here)s/migrations", "%(here)s/migrationz"))
    return ini.read_bytes()


def test_a_broken_alembic_ini_is_backed_up_and_put_back_by_a_reset(lab: Lab, project: Project, database_url: str):
    """A typo in script_location, then `reset 03`: the database was wiped, the learner's revision deleted, and
    alembic's CommandError came out as a traceback naming no backup; alembic.ini was never put back."""
    reset("03", lab)
    mine = work(lab, "my work")
    broken = _break_alembic_ini(project)

    done = lab_cli("reset", "03", project=project, database_url=database_url)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    backup = Backups(project, lab.db.url).names()[-1]
    assert (project.state_dir / "backups" / backup / "ai-service" / "alembic.ini").read_bytes() == broken
    assert (project.service_dir / "alembic.ini").read_bytes() == (REPO / "ai-service" / "alembic.ini").read_bytes()
    assert lab.runner.run("current").ok

    restore(lab, backup)
    assert mine.exists() and (project.service_dir / "alembic.ini").read_bytes() == broken


def test_reset_01_gives_back_the_committed_alembic_ini(lab: Lab, project: Project) -> None:
    """`reset 01` left `M ai-service/alembic.ini`: the README says it gives back exactly the committed ai-service/."""
    ini = project.service_dir / "alembic.ini"
    ini.write_text(ini.read_text() + "\n# my note\n")
    reset("01", lab)
    assert ini.read_bytes() == (REPO / "ai-service" / "alembic.ini").read_bytes()


def _disk_full_under(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Writing a file under `folder` fails as a full disk does."""
    for method in ("write_bytes", "write_text"):
        real = getattr(Path, method)

        def full(self: Path, *args: object, _real=real, **kwargs: object) -> int:
            if self.is_relative_to(folder):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Path, method, full)


def test_a_full_disk_during_the_backup_is_one_message_and_nothing_changes(
    lab: Lab, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.lab/backups/ on a full disk: `reset 03` (and a restore's own backup of the work) raised OSError [Errno 28]
    as a traceback. Nothing may change, and no half-written backup may stay behind."""
    backup = _backup_of_work(lab)
    work(lab, "more work")
    before = state(lab)
    _disk_full_under(monkeypatch, project.state_dir / "backups")
    for attempt in (lambda: reset("03", lab), lambda: restore(lab, backup.name)):
        with pytest.raises(LabError) as raised:
            attempt()
        assert raised.value.what.startswith("Could not back up your work: No space left on device")
        assert raised.value.what.endswith("Nothing was changed.")
        assert "python -m migration_lab backups" in raised.value.next_step
        assert state(lab) == before
        assert [p.name for p in (project.state_dir / "backups").iterdir()] == [backup.name]


@pytest.fixture
def unwritable() -> Iterator[Callable[[Path], None]]:
    """Makes a file one nobody may write: immutable for root (`chattr +i`, as the attack did), read-only for
    anyone else; writable again afterwards, so the temporary folder can go."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o444)
        made.append(path)

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


@pytest.mark.parametrize("changed", [False, True], ids=["an unchanged lab", "work of the learner's"])
def test_a_revision_file_the_reset_cannot_write_is_named_before_anything_changes(
    lab: Lab, project: Project, database_url: str, unwritable: Callable[[Path], None], changed: bool
) -> None:
    """An immutable revision file: `reset 03` wiped the database, then failed on it with a PermissionError
    traceback (and named no backup, none being taken when nothing changed)."""
    reset("03", lab)
    if changed:
        work(lab, "my work")
    before = state(lab)
    shipped = next(project.versions_dir.glob("8b7e5d2c6a41_*.py"))
    unwritable(shipped)
    done = lab_cli("reset", "03", project=project, database_url=database_url)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    said = done.stdout + done.stderr
    assert f"cannot write ai-service/migrations/versions/{shipped.name}" in said, said
    assert "chattr -i" in said and "chmod u+w" in said and "run the reset again" in said
    assert state(lab) == before


def test_a_disk_error_after_the_wipe_of_an_unchanged_lab_is_a_message_and_the_next_reset_mends_it(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No backup is taken of an unchanged lab, so a write that failed after the wipe came out as a bare OSError."""
    reset("03", lab)
    real = shutil.copy

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copy", full)
    with pytest.raises(LabError, match="The reset stopped half-way: .*No space left on device") as raised:
        reset("03", lab)
    assert "reset again" in raised.value.next_step
    monkeypatch.setattr(shutil, "copy", real)
    assert reset("03", lab).revision == (PHONE_HEAD,)


def test_a_file_the_restore_cannot_write_is_named_before_the_database_is_replaced(
    lab: Lab, project: Project, unwritable: Callable[[Path], None]
) -> None:
    """The restore put the backup's database back, then met the immutable file: a database and files that did not
    match, and a message that only said the files could not be put back."""
    backup = _backup_of_work(lab)
    before = state(lab)
    shipped = next(project.versions_dir.glob("8b7e5d2c6a41_*.py"))
    unwritable(shipped)
    with pytest.raises(LabError, match=f"The restore cannot write ai-service/migrations/versions/{shipped.name}"):
        restore(lab, backup.name)
    assert state(lab) == before
    assert Backups(project, lab.db.url).names() == [backup.name]


def test_a_backups_folder_the_disk_will_not_make_is_one_message_and_nothing_changes(
    lab: Lab, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first backup, on a disk that refuses the folder itself (full: ENOSPC from mkdir; read-only: EROFS from
    chmod): a traceback came before the backup's own guard."""
    import errno

    reset("03", lab)
    work(lab, "my own work")
    before = state(lab)
    shutil.rmtree(project.state_dir / "backups", ignore_errors=True)
    real_mkdir = Path.mkdir

    def refused(self: Path, *args: object, **kwargs: object) -> None:
        if self == project.state_dir / "backups":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(LabError, match="Could not back up your work: No space left on device .* Nothing was changed"):
        reset("02", lab)
    assert state(lab) == before


def test_a_reset_refused_by_a_folder_it_cannot_write_changes_nothing(lab: Lab, project: Project) -> None:
    """versions/ made read-only (r-x) over a writable revision file: the check asked only the file, the reset
    wiped the database and then could not delete the file (EACCES) half-way. Deleting and replacing go through the
    folder."""
    from migration_lab.workspace import writable

    reset("03", lab)
    revision = project.versions_dir / "f00d00000001_hand_written.py"
    revision.write_text("x = 1\n")
    if os.geteuid() == 0:  # root may write any folder that is not immutable
        subprocess.run(["chattr", "+i", str(project.versions_dir)], check=True)
    else:
        project.versions_dir.chmod(0o555)
    try:
        with pytest.raises(LabError, match="cannot write ai-service/migrations/versions, so it changed nothing"):
            writable.check(project, [], "reset")  # the revision is in versions/, to be deleted
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(project.versions_dir)], check=True)
        project.versions_dir.chmod(0o755)
