"""Every destructive command takes the migration lock, nuke included; copies a killed process left are swept
(issue 17, items 6 and 7)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import copy_project
from migration_lab import EmbeddedBackend, Lab, Project
from migration_lab.course.registry import reset
from migration_lab.database.connection import COPY_PREFIX
from migration_lab.errors import Busy


@pytest.fixture
def embedded_lab(tmp_path: Path) -> Iterator[Lab]:
    """A project copy with its own embedded PostgreSQL, as `make lab` gives a learner; deleted afterwards."""
    lab = Lab(copy_project(tmp_path / "project"), "embedded")
    lab.up(progress=lambda message: None)
    try:
        yield lab
    finally:
        lab.db.dispose()
        lab.backend.destroy()


RESETS = """
import sys
from migration_lab import Lab, LabError, Project
from migration_lab.course.registry import reset

lab = Lab(Project(sys.argv[1]), "embedded")
for _ in range(int(sys.argv[2])):
    try:
        print("OK", reset("02", lab).revision, flush=True)
    except LabError as error:
        print("FAILED", error.what, flush=True)
"""


def test_resets_during_a_nuke_wait_for_the_fresh_database(embedded_lab: Lab) -> None:
    """Item 6: resets running while `nuke --yes` ran got "Cannot reach the lab database ... start it with up"."""
    resets = subprocess.Popen(
        [sys.executable, "-c", RESETS, str(embedded_lab.project.root), "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert resets.stdout is not None
    first = resets.stdout.readline()  # one reset done: the others run while the nuke does
    assert first.startswith("OK"), first + resets.stderr.read()
    said = embedded_lab.nuke(progress=lambda message: None)
    assert "Fresh, empty lab database" in said
    out, err = resets.communicate(timeout=300)
    lines = [first.strip(), *out.splitlines()]
    assert len(lines) == 6 and all(line == "OK ('a1c4e7f20b13',)" for line in lines), lines + [err[-2000:]]


def test_a_nuke_waits_for_a_running_command_of_the_checkout(embedded_lab: Lab) -> None:
    reset("03", embedded_lab)
    with embedded_lab.db.lock():  # a migration under way in this checkout
        started = time.monotonic()
        with pytest.raises(Busy, match="the nuke did not start"), embedded_lab.db.destroying(wait=1.0):
            pass
        assert time.monotonic() - started >= 1.0
    assert embedded_lab.db.heads() == ("a1c4e7f20b13",)  # nothing was destroyed
    guard = embedded_lab.project.state_dir / "database.lock"
    assert guard.stat().st_mode & 0o777 == 0o600  # no other OS user can open it, and flock it to hold the lab up


HOLDS_A_COPY = """
import sys, time
from migration_lab import Lab, Project, UrlBackend

lab = Lab(Project(sys.argv[1]), UrlBackend(sys.argv[2]))
with lab.db.copy() as copy:
    print(copy.name, flush=True)
    time.sleep(120)
"""


def _copies(lab: Lab) -> set[str]:
    with lab.db.engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'mlab\\_copy\\_%'")))


def _kernel(lab: Lab, script: str) -> tuple[subprocess.Popen[str], str]:
    """`script` run on `lab` in a process of its own, as a kernel would (killed with its group); its first line."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(lab.project.root), lab.db.url],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _holder(lab: Lab) -> tuple[subprocess.Popen[str], str]:
    process, name = _kernel(lab, HOLDS_A_COPY)
    assert name.startswith(COPY_PREFIX)
    return process, name


NEXT_COMMANDS: dict[str, Callable[[Lab], object]] = {
    "a reset": lambda lab: reset("03", lab),
    "alembic current": lambda lab: lab.runner.run("current"),
    "alembic upgrade head": lambda lab: lab.runner.run("upgrade head"),
    "status": lambda lab: lab.status(),
}


@pytest.mark.parametrize("command", NEXT_COMMANDS)
def test_a_copy_left_by_a_killed_kernel_is_swept_by_the_next_command_and_a_live_one_is_not(
    lab: Lab, command: str
) -> None:
    """Item 7: a kernel killed in the middle of a rehearsal left its mlab_copy_* database behind for good."""
    reset("03", lab)
    live, alive = _holder(lab)  # first: a copy() sweeps too, and would take the killed one's before we look
    killed, left = _holder(lab)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    try:
        assert {left, alive} <= _copies(lab)
        NEXT_COMMANDS[command](lab)
        assert left not in _copies(lab)
        assert alive in _copies(lab)  # its owner still uses it
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait()
    assert lab.db.sweep_copies() == [alive]
    assert not _copies(lab)


def test_a_rehearsal_sweeps_too(lab: Lab, project: Project) -> None:
    reset("03", lab)
    killed, left = _holder(lab)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    with lab.db.copy():
        assert left not in _copies(lab)


def test_a_copy_whose_revoke_fails_is_dropped_again(lab: Lab) -> None:
    """A database is created closed, then PUBLIC's rights go, then it opens: when a step after the CREATE fails
    (here the REVOKE, made to fail), the half-made database does not stay behind."""

    def fail_the_revoke(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.startswith("REVOKE ALL ON DATABASE"):
            raise RuntimeError("the REVOKE failed")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", fail_the_revoke)
    try:
        with pytest.raises(RuntimeError), lab.db.copy():
            pass
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", fail_the_revoke)
    with lab.db.connect() as conn:
        found = "SELECT datname FROM pg_database WHERE starts_with(datname, :p)"
        left = conn.scalars(sa.text(found), {"p": COPY_PREFIX})
        assert left.all() == []


def test_a_nuke_waits_for_a_rehearsal_on_a_copy(embedded_lab: Lab) -> None:
    """A rehearsal's copy took no part in the guard: a nuke ran under it, and the kernel got a 150-line traceback
    from the copy's DROP DATABASE on a server that was gone."""
    reset("03", embedded_lab)
    holder, name = _holder(embedded_lab)  # another kernel, in the middle of a rehearsal
    try:
        with pytest.raises(Busy, match="the nuke did not start"), embedded_lab.db.destroying(wait=1.0):
            pass
        assert name in _copies(embedded_lab)  # nothing was destroyed under it
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with embedded_lab.db.destroying(wait=5.0):  # the rehearsal gone, the nuke goes ahead
        pass


def test_a_copy_never_ends_the_session_that_holds_the_migration_lock(lab: Lab) -> None:
    """Another command's lock, held idle between two statements (a reset between its wipe and its upgrade): a copy
    made meanwhile (a rehearsal, a check) used to terminate that session, and the reset failed half-way with the
    database empty. The copy waits for it and then says what holds it; the lock's session goes on."""
    from migration_lab.errors import CopyUnavailable

    with lab.db.lock() as held:
        with (
            pytest.raises(CopyUnavailable, match="holds the lab.s migration lock: another lab command"),
            lab.db.copy(wait=0.5),
        ):
            pass
        assert held.scalar(sa.text("SELECT 1")) == 1  # still there: its command goes on
    with lab.db.copy() as copy:  # free again: the copy is made
        assert copy.heads() == lab.db.heads()


def test_a_server_that_dies_under_a_copy_shows_the_copys_own_error_not_the_cleanups(embedded_lab: Lab) -> None:
    """The server killed during a rehearsal on a copy: the copy's cleanup (DROP DATABASE) failed too, and its
    traceback hid what the rehearsal met. The cleanup's failure is left to the next command's sweep."""
    with pytest.raises(sa.exc.OperationalError) as raised, embedded_lab.db.copy() as copy, copy.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        embedded_lab.backend.stop()
        conn.execute(sa.text("SELECT 1"))  # what the rehearsal meets
    assert "DROP DATABASE" not in str(raised.value)


def test_a_reset_whose_database_stops_under_it_says_to_start_it_not_to_nuke(
    embedded_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL stopped between the reset's wipe and its upgrade: the next step said `nuke`, which a stopped
    server does not need. It says to start it, then reset again."""
    from migration_lab.errors import LabError

    upgrade = embedded_lab.runner.run

    def stopped_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        embedded_lab.backend.stop()
        return upgrade(*args, **kwargs)

    monkeypatch.setattr(embedded_lab.runner, "run", stopped_first)
    with pytest.raises(LabError) as failed:
        reset("02", embedded_lab)
    assert "python -m migration_lab up" in failed.value.next_step and "nuke" not in failed.value.next_step, failed.value


def test_a_copy_names_a_sessions_own_advisory_lock_as_such_and_says_how_to_end_it(lab: Lab) -> None:
    """A psql session left holding pg_advisory_lock(13) (chapter 13's guard, by hand) is not "another lab
    command": the copy says what holds it and how to let go."""
    from migration_lab.errors import CopyUnavailable

    holder = sa.create_engine(lab.db.url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as held:
            held.execute(sa.text("SELECT pg_advisory_lock(13)"))
            held.commit()
            refused = pytest.raises(CopyUnavailable, match=r"holds an advisory lock .*pg_advisory_unlock_all")
            with refused, lab.db.copy(wait=0.5):
                pass
    finally:
        holder.dispose()


RUNS_THE_MIGRATION_TESTS = """
import sys, time
from migration_lab import Lab, Project, UrlBackend
from migration_lab.tools import migration_tests

def pytest_alembic_running(*args, **kwargs):
    print("running", flush=True)
    time.sleep(120)

migration_tests.subprocess.run = pytest_alembic_running
migration_tests.run(Lab(Project(sys.argv[1]), UrlBackend(sys.argv[2])))
"""


def test_the_migration_tests_scratch_database_left_by_a_killed_kernel_is_swept_by_the_next_command(
    lab: Lab,
) -> None:
    """`ch.migration_tests()` made its scratch database (mlab_scratch_*) without a copy's lock: a kernel killed while
    pytest-alembic ran left it on the server for good, and no command swept it. While the tests run, a sweep (another
    command's, a terminal's) leaves it alone: the lock is held where the sweep looks, on the maintenance database."""
    before = _copies(lab)
    killed, said = _kernel(lab, RUNS_THE_MIGRATION_TESTS)
    assert said == "running"
    left = _copies(lab) - before
    assert len(left) == 1, left
    assert lab.db.sweep_copies() == [], "a sweep while the tests run must leave their database alone"
    assert left <= _copies(lab)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    lab.status()
    assert not _copies(lab) & left


def test_the_migration_tests_run_for_a_role_the_maintenance_database_refuses(
    server: EmbeddedBackend, project: Project
) -> None:
    """The scratch database is made and held from the maintenance database, where sweeps look; a server that
    refuses it (`REVOKE CONNECT ON DATABASE postgres FROM PUBLIC`, a hardening step) got "Cannot create a scratch
    database ... permission denied for database postgres" for a role that may CREATE DATABASE. The tests run from
    the lab's own database then, and leave nothing behind."""
    from sqlalchemy.engine import make_url

    from migration_lab import UrlBackend
    from migration_lab.tools import migration_tests

    role = "mlab_no_maintenance"
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD 'pw'"))
            conn.execute(sa.text(f"CREATE DATABASE {role} OWNER {role}"))
            conn.execute(sa.text("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC"))
        url = make_url(server.url()).set(username=role, password="pw", database=role)
        lab = Lab(project, UrlBackend(url.render_as_string(hide_password=False)))
        passed, report = migration_tests.run(lab, ("test_single_head_revision",))
        assert passed and "PASSED test_single_head_revision" in report, report
        with admin.connect() as conn:
            assert not conn.scalar(sa.text("SELECT count(*) FROM pg_database WHERE datname LIKE 'mlab\\_copy\\_%'"))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("GRANT CONNECT ON DATABASE postgres TO PUBLIC"))
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_the_migration_tests_ignore_the_shells_pytest_settings_and_say_when_none_ran(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell with PYTEST_ADDOPTS (a team's `tests/ -x`) made pytest-alembic's run collect a folder that is not
    there: an empty report and "Some migration tests FAIL". Those settings are not the checks'; a check pytest-alembic
    does not have is named; and a run that checked nothing says so, with pytest's words."""
    from migration_lab.errors import LabError
    from migration_lab.tools import migration_tests

    monkeypatch.setenv("PYTEST_ADDOPTS", "tests/core --maxfail=1")
    monkeypatch.setenv("PYTEST_PLUGINS", "no_such_plugin_of_the_team")
    passed, report = migration_tests.run(lab, ("test_single_head_revision",))
    assert passed and report == "PASSED test_single_head_revision", report
    with pytest.raises(LabError, match="no check named test_no_such_check"):
        migration_tests.run(lab, ("test_no_such_check",))
    monkeypatch.setattr(migration_tests, "_report", lambda stdout: "")  # a pytest that ran nothing, for any reason
    with pytest.raises(LabError, match=r"ran none of the checks \(pytest's exit code 0\)"):
        migration_tests.run(lab, ("test_single_head_revision",))
