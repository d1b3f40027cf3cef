"""What chapter 14 claims, demonstrated on the real PostgreSQL 18: what a failed concurrent build leaves and what
IF NOT EXISTS does with it, the repair; NOT NULL ... NOT VALID and what attnotnull says before VALIDATE; a foreign
key on a new table; the unsafe foreign key under the busy app stops writes, not reads."""

import pytest
import sqlalchemy as sa

from helpers import write_revision
from migration_lab import Lab
from migration_lab.course import ch14_busy_jobs as busy
from migration_lab.tools.lock_trace import trace
from migration_lab.workspace.checkpoints import reset

INDEX = "uq_job_entries_request_key"
BUILD = f"""with op.get_context().autocommit_block():
    op.create_index('{INDEX}', 'job_entries', ['request_key'], unique=True,
                    postgresql_concurrently=True, if_not_exists=True)"""
GUARDED = f"""with op.get_context().autocommit_block():
    if not op.get_context().as_sql:
        valid = op.get_bind().scalar(sa.text(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{INDEX}')"))
        if valid is False:
            op.execute('DROP INDEX CONCURRENTLY {INDEX}')
    op.create_index('{INDEX}', 'job_entries', ['request_key'], unique=True,
                    postgresql_concurrently=True, if_not_exists=True)"""
STATE = f"SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = to_regclass('{INDEX}')"


@pytest.fixture
def jobs(lab: Lab) -> Lab:
    reset(lab, busy.JOBS)
    return lab


def scalar(lab: Lab, sql: str) -> object:
    with lab.db.engine.connect() as conn:
        return conn.execute(sa.text(sql)).one_or_none()


def test_a_failed_concurrent_build_if_not_exists_and_the_repair(jobs: Lab) -> None:
    with jobs.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE job_entries SET request_key = 'same' WHERE id IN (10, 11)"))
    write_revision(jobs.project, "c14c00000001", busy.START, BUILD)
    failed = jobs.runner.run("upgrade head")
    assert not failed.ok and failed.sqlstate == "23505"  # unique_violation, and the index stays
    assert scalar(jobs, STATE) == (False, False)  # INVALID, not even ready
    with jobs.db.engine.begin() as conn:  # it enforces nothing: a third duplicate gets in
        conn.execute(sa.text("INSERT INTO job_entries (user_id, prompt, request_key) VALUES (1, 'dup', 'same')"))
        conn.execute(sa.text("UPDATE job_entries SET request_key = md5(id::text) WHERE request_key = 'same'"))
    rerun = jobs.runner.run("upgrade head")
    assert rerun.ok and jobs.db.heads() == ("c14c00000001",)  # "it worked", and alembic recorded it
    assert scalar(jobs, STATE) == (False, False)  # IF NOT EXISTS skipped the INVALID index
    write_revision(jobs.project, "c14c00000002", "c14c00000001", GUARDED)
    assert jobs.runner.run("upgrade head").ok
    assert scalar(jobs, STATE) == (True, True)
    offline = jobs.runner.run(["upgrade", "c14c00000001:c14c00000002", "--sql"])
    assert offline.ok and "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS" in offline.stdout


def test_not_null_not_valid_says_not_null_before_the_old_rows_are_proved(jobs: Lab) -> None:
    with jobs.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE job_entries SET reviewer_id = NULL WHERE id = 1"))
        conn.execute(
            sa.text(
                "ALTER TABLE job_entries ADD CONSTRAINT job_entries_reviewer_id_not_null NOT NULL reviewer_id NOT VALID"
            )
        )
    column = {c["name"]: c for c in sa.inspect(jobs.db.engine).get_columns("job_entries")}["reviewer_id"]
    assert column["nullable"] is False  # what the inspector (and alembic check) sees
    assert scalar(
        jobs,
        "SELECT a.attnotnull, c.convalidated FROM pg_attribute a JOIN pg_constraint c ON c.conrelid = a.attrelid "
        "AND c.conname = 'job_entries_reviewer_id_not_null' "
        "WHERE a.attrelid = 'job_entries'::regclass AND a.attname = 'reviewer_id'",
    ) == (True, False)
    assert scalar(jobs, "SELECT count(*) FROM job_entries WHERE reviewer_id IS NULL") == (1,)
    with pytest.raises(sa.exc.IntegrityError), jobs.db.engine.begin() as conn:  # new rows are checked at once
        conn.execute(sa.text("INSERT INTO job_entries (user_id, prompt) VALUES (1, 'no reviewer')"))
    with pytest.raises(sa.exc.IntegrityError), jobs.db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE job_entries VALIDATE CONSTRAINT job_entries_reviewer_id_not_null"))
    with jobs.db.engine.begin() as conn:  # backfill first
        conn.execute(sa.text("UPDATE job_entries SET reviewer_id = user_id WHERE reviewer_id IS NULL"))
        conn.execute(sa.text("ALTER TABLE job_entries VALIDATE CONSTRAINT job_entries_reviewer_id_not_null"))


def test_a_foreign_key_on_a_new_table_scans_nothing_but_locks_the_referenced_table(jobs: Lab) -> None:
    write_revision(
        jobs.project,
        "c14c00000003",
        busy.START,
        "op.create_table('reviews', sa.Column('id', sa.Integer(), primary_key=True), "
        "sa.Column('author_id', sa.Integer(), sa.ForeignKey('user_profiles.id')))",
    )
    found = trace("c14c00000003", jobs)
    [step] = found.steps
    assert [(lock.table, lock.mode) for lock in step.locks] == [("user_profiles", "ShareRowExclusiveLock")]
    assert step.validates == () and step.rewrites == ()


def test_the_foreign_key_autogenerate_writes_stops_the_writes_not_the_reads(jobs: Lab) -> None:
    fk = "op.create_foreign_key('fk_job_entries_reviewer_id_user_profiles', 'job_entries', 'user_profiles', "
    write_revision(jobs.project, "c14c00000004", busy.START, fk + "['reviewer_id'], ['id'])")
    run = busy.run_busy(jobs, lambda: busy.deploy(jobs), busy.WORKER)
    assert run.result.ok and run.failed > 0 and run.requests.errors == 0  # slow, not broken
    assert run.failed_kinds == ("POST /profiles/1/jobs",)  # reads of both tables, and signups, went on
    assert run.watch.has("migration", "waits for", "ShareRowExclusiveLock", "job_entries")
    assert run.watch.blockers >= {"worker"}
    busy.forget_traffic(jobs)
    assert scalar(jobs, "SELECT count(*) FROM job_entries") == (busy.ROWS + 3,)
