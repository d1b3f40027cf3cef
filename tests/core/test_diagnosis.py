"""Every hint the kit gives for a database error, provoked for real (or raised with its SQLSTATE)."""

import pytest

from helpers import write_revision
from migration_lab import Lab
from migration_lab.running.diagnosis import SQLSTATE_HINTS

BASELINE_HEAD = "8b7e5d2c6a41"
ROW = "op.execute(\"INSERT INTO user_profiles (name, email) VALUES ('a', 'a@x.org')\")\n"


def raised(code: str) -> str:
    return f"op.execute(\"DO $$ BEGIN RAISE EXCEPTION 'provoked' USING ERRCODE = '{code}'; END $$\")"


PROVOKED = {
    "42P07": "op.create_table('user_profiles', sa.Column('id', sa.Integer()))",
    "42710": "op.execute(\"CREATE TYPE job_state AS ENUM ('x')\")",
    "42P01": "op.drop_table('no_such_table')",
    "42703": "op.drop_column('user_profiles', 'no_such_column')",
    "42704": "op.drop_index('ix_no_such_index')",
    "23505": "op.execute(\"INSERT INTO user_profiles (name, email) VALUES ('a', 's@x.org'), ('b', 's@x.org')\")",
    "23502": ROW + "op.add_column('user_profiles', sa.Column('n', sa.Integer(), nullable=False))",
    "42804": ROW + "op.alter_column('user_profiles', 'name', type_=sa.Integer())",
    "55P04": "op.execute(\"ALTER TYPE job_state ADD VALUE 'paused'\")\nop.execute(\"SELECT 'paused'::job_state\")",
    "25001": "op.execute('CREATE INDEX CONCURRENTLY ix_c ON user_profiles (name)')",
    "57014": "op.execute(\"SET LOCAL statement_timeout = '20ms'\")\nop.execute('SELECT pg_sleep(2)')",
    "55P03": raised("lock_not_available"),
    "53100": raised("disk_full"),
    "42501": raised("insufficient_privilege"),
}


def test_every_hint_has_a_test() -> None:
    assert set(PROVOKED) == set(SQLSTATE_HINTS)


@pytest.mark.parametrize("code", sorted(PROVOKED))
def test_a_database_error_gets_the_hint_for_its_sqlstate(lab: Lab, code: str) -> None:
    lab.runner.run("upgrade head")
    write_revision(lab.project, "e0e000000001", BASELINE_HEAD, PROVOKED[code])
    result = lab.runner.run("upgrade head")
    assert not result.ok
    assert result.hint == SQLSTATE_HINTS[code], result.error
    assert "Traceback" not in str(result)
    assert result.after == (BASELINE_HEAD,)  # the failing revision was rolled back
