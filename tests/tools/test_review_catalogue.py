"""The reviewer's catalogue of unsafe operations (chapters 14-15): each rule provoked by the revision a learner would
write, its safe twin left alone, the false positives avoided, on chapter 14's start (20,000 jobs)."""

import pytest
import sqlalchemy as sa

from helpers import edit_model, write_revision
from migration_lab import Lab, UrlBackend
from migration_lab.course.ch14_busy_jobs import JOBS, START
from migration_lab.tools.review import Review, review
from migration_lab.tools.unsafe_operations import settings_findings
from migration_lab.workspace.checkpoints import reset

FK = "fk_job_entries_reviewer_id_user_profiles"
FK_ARGS = f"'{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id']"
SAFE_FK = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key({FK_ARGS}, postgresql_not_valid=True)
with op.get_context().autocommit_block():
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'], postgresql_concurrently=True)
"""


@pytest.fixture
def jobs(lab: Lab) -> Lab:
    reset(lab, JOBS)
    return lab


def reviewed(lab: Lab, upgrade: str, locks: bool = False, downgrade: str = "pass") -> Review:
    for old in lab.project.versions_dir.glob("c0ffee*"):
        old.unlink()
    write_revision(lab.project, "c0ffee000001", START, upgrade, downgrade)
    return review("c0ffee000001", lab, locks=locks)


def finding(found: Review, rule: str):
    [match] = [f for f in found.findings if f.rule == rule]
    return match


def test_a_foreign_key_added_at_once_is_told_its_recipe(jobs: Lab) -> None:
    found = reviewed(jobs, f"op.create_foreign_key({FK_ARGS})")
    said = finding(found, "foreign-key-validates-under-lock")
    assert said.severity == "warning" and "checks all 20,003 rows of job_entries" in said.message
    assert "postgresql_not_valid=True" in said.fix and "VALIDATE CONSTRAINT" in said.fix
    assert said.fix.startswith("Instead, ")
    assert "squawk:adding-foreign-key-constraint" not in found.rules()  # said once, by the finding that measured
    as_sql = reviewed(
        jobs,
        f'op.execute("ALTER TABLE job_entries ADD CONSTRAINT {FK} "\n'
        '           "FOREIGN KEY (reviewer_id) REFERENCES user_profiles (id)")',
    )
    assert "foreign-key-validates-under-lock" in as_sql.rules()


def test_the_safe_foreign_key_and_one_on_a_new_table_are_left_alone(jobs: Lab) -> None:
    safe = reviewed(jobs, SAFE_FK)
    assert not {"foreign-key-validates-under-lock", "validate-in-same-transaction", "foreign-key-without-index"} & (
        safe.rules()
    ), str(safe)
    new_table = reviewed(
        jobs,
        """
        op.create_table('reviews', sa.Column('id', sa.Integer(), primary_key=True),
                        sa.Column('job_id', sa.Integer(), sa.ForeignKey('job_entries.id')))
        op.create_foreign_key('fk_reviews_author', 'reviews', 'user_profiles', ['id'], ['id'])
        """,
    )
    assert "foreign-key-validates-under-lock" not in new_table.rules(), str(new_table)


def test_validate_in_the_transaction_that_added_it(jobs: Lab) -> None:
    found = reviewed(
        jobs,
        f"""
        op.create_foreign_key({FK_ARGS}, postgresql_not_valid=True)
        op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
        """,
    )
    said = finding(found, "validate-in-same-transaction")
    assert FK in said.message and "autocommit_block" in said.fix


def test_a_foreign_key_without_an_index_on_its_column(jobs: Lab) -> None:
    found = reviewed(
        jobs,
        f"""
        op.create_foreign_key({FK_ARGS}, postgresql_not_valid=True)
        with op.get_context().autocommit_block():
            op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
        """,
    )
    said = finding(found, "foreign-key-without-index")
    assert "job_entries(reviewer_id)" in said.message and "postgresql_concurrently=True" in said.fix
    indexed = reviewed(
        jobs,
        "op.create_foreign_key('fk_author', 'job_entries', 'user_profiles', ['user_id'], ['id'],\n"
        "                      postgresql_not_valid=True)",
    )
    assert "foreign-key-without-index" not in indexed.rules()  # ix_job_entries_user_id leads with user_id


def test_a_unique_constraint_and_its_concurrent_twin(jobs: Lab) -> None:
    found = reviewed(jobs, "op.create_unique_constraint('uq_job_entries_request_key', 'job_entries', ['request_key'])")
    said = finding(found, "unique-constraint-builds-under-lock")
    assert "UNIQUE USING INDEX uq_job_entries_request_key" in said.fix and "concurrently" in said.fix
    safe = reviewed(
        jobs,
        """
        with op.get_context().autocommit_block():
            op.create_index('uq_job_entries_request_key', 'job_entries', ['request_key'], unique=True,
                            postgresql_concurrently=True)
        op.execute("SET LOCAL lock_timeout = '200ms'")
        op.execute('ALTER TABLE job_entries ADD CONSTRAINT uq_job_entries_request_key '
                   'UNIQUE USING INDEX uq_job_entries_request_key')
        """,
    )
    assert "unique-constraint-builds-under-lock" not in safe.rules(), str(safe)


def test_a_type_change_is_judged_by_what_the_copy_rewrote(jobs: Lab) -> None:
    rewrite = reviewed(jobs, "op.alter_column('job_entries', 'id', type_=sa.BigInteger())")
    assert "trigger" in finding(rewrite, "column-type-rewrites").fix
    widen = reviewed(jobs, "op.alter_column('job_entries', 'request_key', type_=sa.Text())")
    assert "column-type-rewrites" not in widen.rules()
    assert finding(widen, "column-type-keeps-rows").severity == "info"
    assert all(f.severity == "info" for f in widen.findings if f.rule == "squawk:changing-column-type")


def test_set_not_null_is_told_the_postgresql_18_recipe(jobs: Lab) -> None:
    found = reviewed(jobs, "op.alter_column('job_entries', 'reviewer_id', nullable=False)")
    said = finding(found, "not-null-scans-under-lock")
    assert "NOT NULL reviewer_id NOT VALID" in said.fix and "VALIDATE CONSTRAINT" in said.fix
    safe = reviewed(
        jobs,
        """
        op.execute("SET LOCAL lock_timeout = '200ms'")
        op.execute('ALTER TABLE job_entries ADD CONSTRAINT job_entries_reviewer_id_not_null '
                   'NOT NULL reviewer_id NOT VALID')
        with op.get_context().autocommit_block():
            op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT job_entries_reviewer_id_not_null')
        """,
    )
    assert not {"not-null-scans-under-lock", "validate-in-same-transaction"} & safe.rules(), str(safe)


def test_the_lock_trace_judges_the_sessions_lock_timeout(jobs: Lab) -> None:
    bare = reviewed(jobs, "op.add_column('user_profiles', sa.Column('nickname', sa.Text()))", locks=True)
    said = finding(bare, "lock-without-timeout")
    assert "AccessExclusiveLock on user_profiles" in said.message and "with_lock_retries" in said.fix
    assert "squawk:require-lock-timeout" not in bare.rules()
    local = reviewed(
        jobs,
        "op.execute(\"SET LOCAL lock_timeout = '200ms'\")\n"
        "op.add_column('user_profiles', sa.Column('nickname', sa.Text()))",
        locks=True,
    )
    assert "lock-without-timeout" not in local.rules()
    env = jobs.project.service_dir / "migrations" / "env.py"
    env.write_text(
        env.read_text().replace(
            "    configure(connection=connection)\n",
            "    connection.exec_driver_sql(\"SET lock_timeout = '200ms'\")\n    connection.commit()\n"
            "    configure(connection=connection)\n",
        )
    )
    in_env = reviewed(jobs, "op.add_column('user_profiles', sa.Column('nickname', sa.Text()))", locks=True)
    assert "lock-without-timeout" not in in_env.rules(), str(in_env)
    assert finding(in_env, "squawk:require-lock-timeout").severity == "info"  # squawk cannot see env.py


def test_long_work_under_a_lock_held_since_an_earlier_statement(jobs: Lab) -> None:
    held = reviewed(
        jobs,
        """
        op.execute("SET LOCAL lock_timeout = '200ms'")
        op.add_column('job_entries', sa.Column('priority', sa.Integer()))
        op.execute('SELECT pg_sleep(0.2)')  # stands for a backfill
        """,
        locks=True,
    )
    said = finding(held, "long-statement-under-held-lock")
    assert "AccessExclusiveLock on job_entries" in said.message and "transaction_timeout" in said.fix
    apart = reviewed(
        jobs,
        """
        op.execute("SET LOCAL lock_timeout = '200ms'")
        op.add_column('job_entries', sa.Column('priority', sa.Integer()))
        with op.get_context().autocommit_block():
            op.execute('SELECT pg_sleep(0.2)')
        """,
        locks=True,
    )
    assert "long-statement-under-held-lock" not in apart.rules(), str(apart)


def test_dropping_a_column_the_code_still_maps(jobs: Lab) -> None:
    drop = "op.drop_column('user_profiles', 'phone_number')"
    mapped = reviewed(jobs, drop)
    said = finding(mapped, "drop-column-still-mapped")
    assert said.severity == "error" and "stop mapping it first" in said.fix
    edit_model(jobs.project, "    phone_number = Column(String, nullable=True)\n", "")
    code_first = reviewed(jobs, drop)
    assert "drop-column-still-mapped" not in code_first.rules()
    assert "drops-data" in code_first.rules()  # the numbers are still gone


def test_renaming_a_table_is_no_data_loss_but_the_code_must_follow(jobs: Lab) -> None:
    bare = reviewed(jobs, "op.rename_table('job_entries', 'jobs')", downgrade="op.rename_table('jobs', 'job_entries')")
    assert "drops-data" not in bare.rules(), str(bare)
    assert "CREATE VIEW job_entries" in finding(bare, "rename-table-still-mapped").fix
    assert "table job_entries renamed to jobs" in finding(bare, "rename-keeps-data").message
    viewed = reviewed(
        jobs,
        "op.rename_table('job_entries', 'jobs')\nop.execute('CREATE VIEW job_entries AS SELECT * FROM jobs')",
    )
    assert not {"drops-data", "rename-table-still-mapped"} & viewed.rules(), str(viewed)
    assert finding(viewed, "squawk:renaming-table").severity == "info"


def test_a_concurrent_build_a_rerun_would_skip(jobs: Lab) -> None:
    build = """with op.get_context().autocommit_block():
    op.create_index('uq_job_entries_request_key', 'job_entries', ['request_key'], unique=True,
                    postgresql_concurrently=True, if_not_exists=True)"""
    said = finding(reviewed(jobs, build), "concurrent-index-rerun-invalid")
    assert "indisvalid" in said.fix and "DROP INDEX CONCURRENTLY" in said.fix
    with jobs.db.engine.begin() as conn:  # a duplicate: the concurrent build fails and leaves its index INVALID
        conn.execute(sa.text("UPDATE job_entries SET request_key = 'same' WHERE id IN (10, 11)"))
    assert not jobs.runner.run("upgrade head").ok
    present = finding(reviewed(jobs, build), "invalid-index-present")
    assert present.severity == "error" and "uq_job_entries_request_key" in present.message


def test_what_a_connection_pooler_breaks(jobs: Lab) -> None:
    env = jobs.project.service_dir / "migrations" / "env.py"
    block = (
        "    configure(connection=connection)\n"
        "    with context.begin_transaction():\n        context.run_migrations()\n"
    )
    assert env.read_text().count(block) == 1  # the lock goes into the online run's transaction block
    env.write_text(
        env.read_text().replace(
            block,
            "    configure(connection=connection)\n    with context.begin_transaction():\n"
            "        connection.exec_driver_sql('SELECT pg_advisory_xact_lock(13)')\n"
            "        context.run_migrations()\n",
        )
    )
    assert "first revision" in finding(reviewed(jobs, "pass"), "xact-lock-per-revision").message
    pooled = Lab(jobs.project, UrlBackend("postgresql+psycopg2://lab:pw@127.0.0.1:6432/lab"))
    assert [f.rule for f in settings_findings(pooled)] == ["xact-lock-per-revision", "migrations-through-pooler"]
