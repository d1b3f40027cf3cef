"""Workshop mode against a real shared PostgreSQL (TCP on 127.0.0.1, scram-sha-256), started by this module:
templates, learners who reach only their own database, resets, the room view fed by ch.check(), and
nothing left behind by remove and drop."""

import io
import logging
import stat
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import REPO, copy_project
from migration_lab import Lab, LabError, Project, UrlBackend
from migration_lab.course.registry import CHAPTERS, spec
from migration_lab.database.shared_server import local_server
from migration_lab.front.cli import main
from migration_lab.front.notebook import Chapter
from migration_lab.workshop.instructor import Workshop
from migration_lab.workshop.room import LEARNER_ROLE
from migration_lab.workshop.status import RoomView, table, watch
from migration_lab.workspace import templates
from migration_lab.workspace.templates import TEMPLATE_OWNER, TEMPLATE_PREFIX, template_name

LEARNERS = 12  # the bench provisions 30 and 100; here enough to see isolation across many, on a shared CPU


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with local_server(durable=False) as url:
        yield url


@pytest.fixture(scope="module")
def roster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workshop") / "roster.json"


@pytest.fixture(scope="module")
def shop(server_url: str, roster: Path) -> Workshop:
    """The workshop, initialised once for the module (templates take a few seconds)."""
    workshop = Workshop(server_url, roster=roster, project=Project(REPO))
    workshop.init()
    return workshop


@pytest.fixture(scope="module")
def added(shop: Workshop, server_url: str, roster: Path) -> tuple[str, str]:
    """`workshop add --learners N` through the CLI, once for the module: (its stdout, its stderr)."""
    out, err = io.StringIO(), io.StringIO()
    args = ["workshop", "--server", server_url, "--roster", str(roster)]
    with redirect_stdout(out), redirect_stderr(err):
        assert main([*args, "add", "--learners", str(LEARNERS), "--connection-limit", "9"]) == 0
    return out.getvalue(), err.getvalue()


def admin(url: str, database: str = "postgres") -> sa.Engine:
    return sa.create_engine(
        make_url(url).set(database=database), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )


def scalar(url: str, sql: str, database: str = "postgres", **values: object) -> object:
    """One statement as the superuser; its single value (None for a statement that returns no rows)."""
    engine = admin(url, database)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql), values)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def learner_engine(url: str, database: str | None = None) -> sa.Engine:
    target = make_url(url) if database is None else make_url(url).set(database=database)
    return sa.create_engine(target, poolclass=sa.pool.NullPool)


def learner_lab(tmp_path: Path, url: str) -> Lab:
    """A learner's kit on the url backend, as a hub sets LAB_DATABASE_URL for them."""
    return Lab(copy_project(tmp_path / "project"), UrlBackend(url))


def test_init_makes_one_sealed_template_per_checkpoint(shop: Workshop, server_url: str, capsys) -> None:
    engine = admin(server_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.datname, d.datistemplate, d.datallowconn, r.rolname, r.rolcanlogin, d.datacl::text "
                "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname LIKE :p ORDER BY 1"
            ),
            {"p": TEMPLATE_PREFIX + "%"},
        ).all()
    engine.dispose()
    wanted = sorted({template_name(c.checkpoint.fingerprint()) for c in CHAPTERS.values()})
    assert [r[0] for r in rows] == wanted and len(wanted) < len(CHAPTERS)  # chapters share checkpoints
    for _, is_template, allows_connections, owner, can_login, acl in rows:
        assert is_template and not allows_connections
        assert owner == TEMPLATE_OWNER and not can_login
        assert "=Tc/" not in acl and "=c/" not in acl  # no CONNECT for PUBLIC
    said: list[str] = []
    Workshop(server_url, roster=shop.roster, say=said.append, project=Project(REPO)).init()  # idempotent
    assert len(said) == len(wanted) and all("is there already" in line for line in said)


def test_learners_reach_only_their_own_database(
    shop: Workshop, added: tuple[str, str], server_url: str, roster: Path
) -> None:
    out, err = added
    lines = out.splitlines()
    assert len(lines) == LEARNERS and lines[0].startswith(
        "learner01\tLAB_DATABASE_URL=postgresql+psycopg2://learner01:"
    )
    assert stat.S_IMODE(roster.stat().st_mode) == 0o600
    urls = shop.learners()
    assert sorted(urls) == [f"learner{n:02d}" for n in range(1, LEARNERS + 1)]
    for name, url in urls.items():
        engine = learner_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user, current_database()")).one() == (name, f"lab_{name}")
            # cloned from chapter 00's template, and the learner may ALTER what it cloned (ownership)
            assert conn.scalar(sa.text("SELECT count(*) FROM user_profiles")) == 3
            conn.execute(sa.text("ALTER TABLE user_profiles ADD COLUMN nickname text"))
            conn.execute(sa.text("ALTER TABLE user_profiles DROP COLUMN nickname"))
            conn.commit()
        engine.dispose()
    first, second = urls["learner01"], urls["learner02"]
    with pytest.raises(sa.exc.OperationalError, match='permission denied for database "lab_learner02"'):
        learner_engine(first, "lab_learner02").connect()
    with pytest.raises(sa.exc.OperationalError, match="not currently accepting connections"):
        learner_engine(second, template_name(spec("00").checkpoint.fingerprint())).connect()
    engine = learner_engine(first, "postgres")
    with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied to copy"):
        conn.execute(sa.text("COMMIT"))
        conn.execute(sa.text('CREATE DATABASE stolen TEMPLATE "lab_learner02"'))
    engine.dispose()
    # 12 learners × 9 connections = 108 > 100 - 3 reserved: the instructor is warned
    assert f"{LEARNERS} learners × 9 connections each = {LEARNERS * 9}" in err
    assert scalar(server_url, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'learner03'") == 9


def test_add_refuses_an_existing_learner_and_ensure_returns_it(
    shop: Workshop, added: tuple[str, str], server_url: str
) -> None:
    existing = shop.learners()["learner01"]
    with pytest.raises(Exception, match="exists already"):
        shop.add("learner01")
    assert shop.ensure("learner01").database_url == existing
    scalar(server_url, "CREATE DATABASE lab_someone")  # not the workshop's: never dropped to make room
    try:
        with pytest.raises(Exception, match="the workshop did not make it"):
            shop.add("someone")
        assert scalar(server_url, "SELECT count(*) FROM pg_database WHERE datname = 'lab_someone'") == 1
    finally:
        scalar(server_url, "DROP DATABASE lab_someone")
    assert scalar(server_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'someone'") == 0
    fresh = shop.ensure("latecomer")  # first login through a hub: provisioned
    assert shop.ensure("latecomer") == fresh
    engine = learner_engine(fresh.database_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_database()")) == "lab_latecomer"
    engine.dispose()


def test_reset_restores_a_chapter(shop: Workshop, added: tuple[str, str], server_url: str) -> None:
    url = shop.learners()["learner04"]
    engine = learner_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("DROP TABLE job_entries"))
        conn.commit()
    idle = engine.connect()  # a notebook's open session: reset closes it
    said: list[str] = []
    backup = Workshop(server_url, roster=shop.roster, say=said.append).reset("learner04", "02")
    assert backup is not None and backup.parent == shop.backup_dir and backup.name.startswith("lab_learner04-")
    assert said == [
        f"learner04: backed up lab_learner04 to {backup}, closed 1 open session(s), "
        "cloned lab_learner04 from chapter 02's template."
    ]
    with pytest.raises(sa.exc.OperationalError):
        idle.execute(sa.text("SELECT 1"))
    idle.invalidate()
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "a1c4e7f20b13"
        assert conn.scalar(sa.text("SELECT count(*) FROM job_entries")) == 3
        assert conn.scalar(sa.text("SELECT count(phone_number) FROM user_profiles")) == 2
        conn.execute(sa.text("ALTER TABLE user_profiles DROP COLUMN phone_number"))  # still the learner's
        conn.rollback()
    engine.dispose()
    with pytest.raises(Exception, match="not a learner"):
        shop.reset("nobody", "02")


def test_reset_with_files_needs_the_learners_own_account(
    shop: Workshop, added: tuple[str, str], server_url: str, roster: Path, tmp_path: Path, capsys
) -> None:
    """`workshop reset NAME CHAPTER --files CHECKOUT` resets only the checkout of the OS account called NAME (run as
    that account: tests/workshop/test_hostile_input.py): with no such account, nothing is written."""
    project = copy_project(tmp_path / "checkout")
    (project.service_dir / "main.py").write_text("# the learner's half-done work\n")
    args = ["workshop", "--server", server_url, "--roster", str(roster)]
    assert main([*args, "reset", "learner11", "02", "--yes", "--files", str(project.root)]) == 1
    err = capsys.readouterr().err
    assert "There is no OS account learner11" in err and "Nothing was written" in err
    assert (project.service_dir / "main.py").read_text() == "# the learner's half-done work\n"
    assert not (project.root / ".lab").exists()


def test_status_shows_progress_written_by_check(shop: Workshop, added: tuple[str, str], tmp_path: Path, capsys) -> None:
    lab = learner_lab(tmp_path, shop.learners()["learner05"])
    chapter = Chapter(spec("01"), lab)
    chapter.reset()
    chapter.check()  # nothing done yet: the exercise's checks fail
    shown = capsys.readouterr().out
    row = next(r for r in shop.status() if r.name == "learner05")
    report = chapter.report()
    total, passed = len(report.checks), sum(c.passed for c in report.checks)
    assert passed < total
    assert (row.chapter, row.passed, row.total, row.minutes_since_progress) == ("01", passed, total, 0)
    first = chapter.report().first_failing
    assert first is not None and row.last_error == f"✘ {first.name}" and first.name in shown
    chapter.alembic("upgrade nonexistent")  # a command that fails: the room sees its error
    row = next(r for r in shop.status() if r.name == "learner05")
    assert row.last_error is not None and "nonexistent" in row.last_error
    # the progress schema is invisible to the learner's migrations: autogenerate finds nothing to do
    check = lab.runner.run("check")
    assert check.ok, check
    assert "lab_progress" not in check.output
    lab.db.dispose()
    # the room view: the same in a terminal and in the instructor's notebook, refreshed on demand
    text = table(shop.status())
    assert "learner05  01" in text and f"{passed}/{total}" in text
    args = ["workshop", "--server", shop.url.render_as_string(hide_password=False), "--roster", str(shop.roster)]
    assert main([*args, "status"]) == 0
    assert "learner05  01" in capsys.readouterr().out
    frames: list[str] = []

    def show(frame: str) -> None:  # the terminal; Ctrl-C after the second frame
        frames.append(frame)
        if len(frames) == 2:
            raise KeyboardInterrupt

    watch(shop, 0.01, show)
    assert len(frames) == 3 and all("learner05  01" in f for f in frames[:2]) and frames[2] == ""
    view = RoomView(shop, every=3600)
    try:
        view.button.click()
        assert "learner05" in view.table.value and "nonexistent" in view.table.value
    finally:
        view.stop()


def test_a_stuck_learner_comes_first(shop: Workshop, added: tuple[str, str], server_url: str, tmp_path: Path) -> None:
    lab = learner_lab(tmp_path, shop.learners()["learner06"])
    Chapter(spec("02"), lab).check()
    lab.db.dispose()
    engine = admin(server_url, "mlab_workshop")
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "UPDATE room.progress SET progressed_at = now() - interval '25 minutes' WHERE learner = 'learner06'"
            )
        )
    engine.dispose()
    row = next(r for r in shop.status() if r.name == "learner06")
    assert row.stuck and row.minutes_since_progress == 25
    lines = table(shop.status()).splitlines()
    assert lines[1].startswith("STUCK learner06")


def test_recording_never_breaks_a_check(
    shop: Workshop, added: tuple[str, str], server_url: str, tmp_path: Path, capsys, caplog
) -> None:
    """A progress store the learner cannot reach (here: no longer in mlab_learners): the check still answers."""
    scalar(server_url, "REVOKE mlab_learners FROM learner07")
    try:
        lab = learner_lab(tmp_path, shop.learners()["learner07"])
        chapter = Chapter(spec("00"), lab)
        with caplog.at_level(logging.WARNING, logger="migration_lab.workspace.progress"):
            chapter.check()
        out = capsys.readouterr().out
        assert "All checks pass" in out or "Not yet" in out
        assert "was not recorded" in caplog.text and "your work is unaffected" in caplog.text
        lab.db.dispose()
    finally:
        scalar(server_url, "GRANT mlab_learners TO learner07")


def test_a_learners_own_reset_reclones_from_the_template(
    shop: Workshop, added: tuple[str, str], server_url: str, tmp_path: Path
) -> None:
    """ml.chapter("02") on the url backend: the database is cloned again (a new oid), progress kept (it is not in
    the learner's database)."""
    lab = learner_lab(tmp_path, shop.learners()["learner08"])
    Chapter(spec("01"), lab).check()
    oid = "SELECT oid FROM pg_database WHERE datname = 'lab_learner08'"
    before = scalar(server_url, oid)
    chapter = Chapter(spec("02"), lab)
    chapter.reset()
    assert scalar(server_url, oid) != before
    assert lab.db.heads() == ("a1c4e7f20b13",)
    assert scalar(server_url, "SELECT count(*) FROM room.progress WHERE learner = 'learner08'", "mlab_workshop") == 1
    assert (lab.project.versions_dir / "a1c4e7f20b13_add_phone_number_to_profile.py").exists()
    # the kit keeps working on the clone: a rehearsed downgrade, as the learner
    chapter.alembic("downgrade -1", confirm=True)
    assert lab.db.heads() == ("8b7e5d2c6a41",)
    lab.db.dispose()


def test_without_a_matching_template_the_reset_takes_the_ordinary_path(
    shop: Workshop, added: tuple[str, str], server_url: str, tmp_path: Path
) -> None:
    """Templates of another course version (another fingerprint) are never used."""
    lab = learner_lab(tmp_path, shop.learners()["learner09"])
    oid = "SELECT oid FROM pg_database WHERE datname = 'lab_learner09'"
    before = scalar(server_url, oid)
    with admin(server_url).connect() as conn:
        template = template_name(spec("02").checkpoint.fingerprint())
        conn.execute(sa.text(f'ALTER DATABASE "{template}" RENAME TO mlab_tpl_000000000000'))
        try:
            Chapter(spec("02"), lab).reset()
        finally:
            conn.execute(sa.text(f'ALTER DATABASE mlab_tpl_000000000000 RENAME TO "{template}"'))
    assert scalar(server_url, oid) == before
    assert lab.db.heads() == ("a1c4e7f20b13",)
    lab.db.dispose()


def test_the_instructor_notebook_shows_the_room(
    shop: Workshop, added: tuple[str, str], server_url: str, tmp_path: Path, monkeypatch
) -> None:
    """notebooks/instructor-room.ipynb, run as the instructor runs it (LAB_WORKSHOP_URL set): no cell fails,
    and the room's table lists the learners."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "notebooks" / "instructor-room.ipynb", as_version=4)
    notebook.cells.insert(-1, nbformat.v4.new_code_cell("print(room.table.value)"))  # what the widget shows
    monkeypatch.setenv("LAB_WORKSHOP_URL", server_url)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "learner01" in shown and f"{len(shop.learners())} learners" in shown


def test_a_clone_that_fails_leaves_the_database_as_it_was(
    shop: Workshop, added: tuple[str, str], server_url: str
) -> None:
    """The clone is made first, under another name: no template (a full disk...) and nothing is lost."""
    oid = "SELECT oid FROM pg_database WHERE datname = 'lab_learner12'"
    before = scalar(server_url, oid)
    engine = admin(server_url)
    with engine.connect() as conn, pytest.raises(LabError, match=r"lab_learner12 \(which is unchanged\)"):
        templates.clone(conn, "lab_learner12", "mlab_tpl_gone")
    engine.dispose()
    assert scalar(server_url, oid) == before
    assert scalar(server_url, "SELECT count(*) FROM user_profiles", database="lab_learner12") == 3


def test_without_a_server_the_cli_says_how_to_give_one(monkeypatch, capsys) -> None:
    monkeypatch.delenv("LAB_WORKSHOP_URL", raising=False)
    assert main(["workshop", "status"]) == 1
    err = capsys.readouterr().err
    assert "No workshop server given." in err and "LAB_WORKSHOP_URL" in err and "Traceback" not in err


# Last: it drops the workshop the tests above share.
def test_a_learners_rehearsal_copy_is_theirs_alone(shop: Workshop, added: tuple[str, str], tmp_path: Path) -> None:
    """Every command is rehearsed on a clone of the learner's database: another learner may not connect to it."""
    urls = shop.learners()
    lab = learner_lab(tmp_path, urls["learner05"])
    with lab.db.copy() as copy:
        with pytest.raises(sa.exc.OperationalError, match=f'permission denied for database "{copy.name}"'):
            learner_engine(urls["learner06"], copy.name).connect()
        with learner_engine(urls["learner05"], copy.name).connect() as conn:  # its owner may
            assert conn.scalar(sa.text("SELECT count(*) FROM user_profiles")) == 3
    lab.db.dispose()


def test_remove_and_drop_leave_nothing(
    shop: Workshop, added: tuple[str, str], server_url: str, roster: Path, capsys
) -> None:
    url = shop.learners()["learner10"]
    engine = learner_engine(url, "postgres")
    with engine.connect() as conn:
        conn.execute(sa.text("COMMIT"))
        conn.execute(sa.text("CREATE DATABASE lab_migration_tests_leftover"))  # a scratch database left behind
    engine.dispose()
    args = ["workshop", "--server", server_url, "--roster", str(roster)]
    assert main([*args, "remove", "learner10"]) == 0
    assert "lab_migration_tests_leftover" in capsys.readouterr().err
    assert scalar(server_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'learner10'") == 0
    assert scalar(server_url, "SELECT count(*) FROM pg_database WHERE datname LIKE '%learner10%'") == 0
    assert "learner10" not in shop.learners()
    assert main([*args, "drop"]) == 1  # asks first; no terminal answers no
    assert scalar(server_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'learner01'") == 1
    assert main([*args, "drop", "--yes"]) == 0
    assert (
        scalar(
            server_url, "SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = :m", m=LEARNER_ROLE
        )
        == 0
    )
    assert scalar(server_url, "SELECT count(*) FROM pg_roles WHERE rolname = :r", r=TEMPLATE_OWNER) == 0
    assert (
        scalar(server_url, "SELECT array_agg(datname ORDER BY datname)::text FROM pg_database")
        == "{postgres,template0,template1}"
    )
    assert not roster.exists()
