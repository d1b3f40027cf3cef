"""What chapter 15 claims, demonstrated on the real PostgreSQL 18 under the busy app: retries inside the migration
keep it serving (and still render offline SQL), idle_in_transaction_session_timeout ends the blocking report, a
dropped column the code maps fails requests at once, a view under a renamed table's old name takes the old code's
reads and inserts; and, where PgBouncer is installed, a session advisory lock through transaction pooling."""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import write_revision
from migration_lab import Lab
from migration_lab.course import ch14_busy_jobs as busy
from migration_lab.course import ch15_drops_and_renames as retries
from migration_lab.workspace.checkpoints import reset

NICKNAME = "op.add_column('user_profiles', sa.Column('nickname', sa.Text()))"


@pytest.fixture
def jobs(lab: Lab) -> Lab:
    reset(lab, busy.JOBS)
    return lab


def helper_revision(lab: Lab, rev: str, upgrade: str) -> None:
    path = write_revision(lab.project, rev, busy.START, upgrade)
    path.write_text(path.read_text().replace("\n\ndef upgrade():", "\n" + retries.LOCK_RETRIES + "\ndef upgrade():"))


def test_retries_inside_the_migration_keep_the_app_serving_and_render_offline(jobs: Lab) -> None:
    helper_revision(jobs, "c15c00000001", f"with_lock_retries(lambda: {NICKNAME})")
    offline = jobs.runner.run(["upgrade", f"{busy.START}:c15c00000001", "--sql"])
    assert offline.ok and "SET LOCAL lock_timeout = '200ms'" in offline.stdout
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), busy.REPORT_ON_PROFILES)
    assert run.result.ok and run.attempts == 1 and run.failed == 0, run.requests  # retried inside, not redeployed
    assert run.watch.has("migration", "waits for", "AccessExclusiveLock", "user_profiles")
    assert "report" in run.watch.blockers  # pg_blocking_pids named it


def test_without_retries_the_same_alter_behind_the_report_fails_requests(jobs: Lab) -> None:
    write_revision(jobs.project, "c15c00000002", busy.START, NICKNAME)
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), busy.REPORT_ON_PROFILES)
    assert run.result.ok and run.failed > 0 and run.requests.errors == 0


def test_idle_in_transaction_session_timeout_ends_the_report_and_the_alter_goes_through(jobs: Lab) -> None:
    write_revision(jobs.project, "c15c00000003", busy.START, NICKNAME)
    pressure = busy.Pressure("report", "user_profiles", (("idle_in_transaction_session_timeout", "300ms"),))
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), pressure)
    assert run.result.ok and run.failed == 0, run.requests
    assert run.result.duration < busy.HOLDS  # the report did not get to keep its lock for HOLDS seconds
    assert "report" in run.watch.blockers  # the ALTER did wait for it: the timeout counts from that wait


def test_the_idle_session_holds_its_lock_HOLDS_seconds_from_the_migrations_wait_not_from_its_start(jobs: Lab) -> None:
    """A migration that reaches its ALTER late (a slow machine, or work before it) still queues the requests for
    HOLDS s: more than a client waits. Timed from the session's start, the queue would be 0.7 s shorter."""
    write_revision(jobs.project, "c15c00000006", busy.START, f"op.execute('SELECT pg_sleep(0.7)')\n{NICKNAME}")
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), busy.REPORT_ON_PROFILES)
    assert run.result.ok and run.failed > 0 and run.requests.errors == 0, run.requests
    assert run.result.duration >= 0.7 + busy.HOLDS - 0.05


def test_a_dropped_column_the_code_maps_fails_requests_at_once(jobs: Lab) -> None:
    write_revision(jobs.project, "c15c00000004", busy.START, "op.drop_column('user_profiles', 'phone_number')")
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), None)
    assert run.result.ok and run.requests.errors > 0
    assert set(run.failed_kinds) >= {"GET /profiles", "POST /profiles"}
    assert "GET /profiles/1/jobs" not in run.failed_kinds  # jobs do not load the profile


def test_a_view_under_the_old_name_takes_the_old_codes_reads_and_inserts(jobs: Lab) -> None:
    write_revision(
        jobs.project,
        "c15c00000005",
        busy.START,
        "op.execute(\"SET LOCAL lock_timeout = '200ms'\")\nop.rename_table('job_entries', 'jobs')\n"
        "op.execute('CREATE VIEW job_entries AS SELECT * FROM jobs')",
    )
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), None)
    assert run.result.ok and run.failed == 0, run.requests
    with jobs.db.engine.begin() as conn:  # a simple view is updatable, and the table's defaults apply
        state, created = conn.execute(
            sa.text("INSERT INTO job_entries (user_id, prompt) VALUES (1, 'old code') RETURNING state, created_at")
        ).one()
    assert state == "queued" and created is not None


# --- PgBouncer in transaction pooling (the course does not ship it; Debian's package, where installed) ----------

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@contextlib.contextmanager
def pgbouncer(url: sa.URL) -> Iterator[sa.URL]:
    """PgBouncer, pool_mode = transaction, one server connection, in front of the lab's server; its URL."""
    folder = Path(tempfile.mkdtemp(prefix="ch15-pgbouncer-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = url.query.get("host") or url.host
    (folder / "userlist.txt").write_text(f'"{url.username}" "{url.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{url.database} = host={host} port={url.port or 5432} dbname={url.database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = plain\n"
        f"auth_file = {folder / 'userlist.txt'}\npool_mode = transaction\ndefault_pool_size = 1\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses root: run it as the user the lab's server runs as
        owner = pwd.getpwuid(os.stat(str(host) if str(host).startswith("/") else folder).st_uid)
        for path in (folder, *folder.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        folder.chmod(0o700)
        command[1:1] = ["-u", owner.pw_name]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield url.set(host="127.0.0.1", port=port, query={})
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not Path(PGBOUNCER).exists(), reason="PgBouncer is not installed (the course does not ship it)")
def test_a_session_advisory_lock_through_transaction_pooling_is_nobodys(jobs: Lab) -> None:
    with pgbouncer(sa.engine.make_url(jobs.db.url)) as pooled:
        engine = sa.create_engine(pooled, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as deploy_a, engine.connect() as deploy_b:
                deploy_a.execute(sa.text("SELECT pg_advisory_lock(42)"))
                assert deploy_b.scalar(sa.text("SELECT pg_try_advisory_lock(42)")) is True  # both "hold" it
                deploy_a.execute(sa.text("SELECT pg_advisory_unlock(42)"))
        finally:
            engine.dispose()
        with jobs.db.connect() as direct:  # the pooled server connection keeps it after both deploys left
            held = direct.scalar(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted")
            )
        assert held == 1
