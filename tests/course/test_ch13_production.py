"""Chapter 13, migrations in production: real races of two replicas, offline SQL, drift, post-write hooks.

Every race here is two real processes on a real PostgreSQL, released from one barrier at once.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_lab import Lab
from migration_lab.course import ch13_deploy as deploy
from migration_lab.course.checks import Report
from migration_lab.course.registry import reset
from migration_lab.workspace.edits import add_column, apply_edit, replace_function_body

UPGRADE = '        command.upgrade(config, "head")\n'


@pytest.fixture
def released(lab: Lab) -> Lab:
    """The chapter's exercise start: database at a1c4e7f20b13, the release and the naive migrate.py written."""
    reset("13", lab)
    deploy.exercise_start(lab)
    return lab


def rewrite_entrypoint(lab: Lab, before: str = "", after: str = "") -> None:
    """migrate.py with lines before and after its command.upgrade."""
    path = lab.project.service_dir / deploy.ENTRYPOINT
    path.write_text(path.read_text().replace(UPGRADE, before + UPGRADE + after))


def checks(lab: Lab) -> dict[str, bool]:
    return {c.name: c.passed for c in Report(tuple(deploy.exercise(lab))).checks}


def test_unguarded_replicas_collide_and_one_fails(released: Lab) -> None:
    raced = deploy.race(released, deploy.ENTRYPOINT)
    assert [r.error.split(":")[0] for r in raced.failures] == ["DuplicateColumn"], str(raced)
    assert raced.end == raced.head and not raced.one_migrated_one_waited
    assert "FAILED: DuplicateColumn" in str(raced)


def test_guarded_replicas_take_turns_and_the_exercise_passes(released: Lab) -> None:
    rewrite_entrypoint(released, deploy.GUARD_LOCK, deploy.GUARD_UNLOCK)
    raced = deploy.race(released, deploy.ENTRYPOINT)
    assert raced.one_migrated_one_waited and not raced.failures, str(raced)
    assert "found the database at head: nothing to do" in str(raced)
    released.runner.run("upgrade head")
    assert all(checks(released).values())


def test_a_replica_that_skips_instead_of_waiting_fails_the_exercise(released: Lab) -> None:
    """pg_try_advisory_lock: the second replica exits at once, and its app would start on the old schema."""
    skip = (
        '        if not connection.execute(text("SELECT pg_try_advisory_lock(13)")).scalar():\n'
        "            return\n"
        "        connection.commit()\n"
    )
    rewrite_entrypoint(released, skip)
    raced = deploy.race(released, deploy.ENTRYPOINT)
    assert not raced.failures and not raced.one_migrated_one_waited, str(raced)
    assert "exited without upgrading, the database still at a1c4e7f20b13" in str(raced)
    passed = checks(released)
    assert passed["two replicas of migrate.py started at once: neither fails"]
    assert not passed["exactly one replica upgrades; the other waits and finds the database at head"]


def test_a_lock_taken_without_commit_rolls_the_upgrade_back_and_is_told_so(released: Lab) -> None:
    """The lock's SELECT opens a transaction; alembic then runs inside it, and nothing commits it."""
    rewrite_entrypoint(released, '        connection.execute(text("SELECT pg_advisory_lock(13)"))\n')
    raced = deploy.race(released, deploy.ENTRYPOINT)
    assert raced.end == ("a1c4e7f20b13",) and raced.failures, str(raced)
    assert "rolled back" in str(raced) and "committed?" in str(raced)
    hint = next(c for c in deploy.exercise(released) if not c.passed).hints[0]
    assert "rolled back" in hint


def test_a_database_already_at_head_is_raced_one_release_behind(released: Lab) -> None:
    released.runner.run("upgrade head")
    raced = deploy.race(released, lock=False)  # the kit's entrypoint, unguarded
    assert raced.start == ("a1c4e7f20b13",) and len(raced.failures) == 1, str(raced)
    assert deploy.race(released, lock=True).one_migrated_one_waited
    assert released.db.heads() == raced.head  # the race ran on a copy


def test_offline_sql_fails_on_a_data_migration_that_reads_and_works_with_is_offline_mode(released: Lab) -> None:
    line = "upgrade a1c4e7f20b13:head --sql"
    failed = released.runner.run(line)
    assert not failed.ok and "'NoneType' object has no attribute 'scalar'" in str(failed.error)
    path = released.project.versions_dir / deploy.RELEASE_FILE
    body = (
        "from alembic import context\n"
        'op.add_column("user_profiles", sa.Column("plan", sa.String(20), server_default="free", nullable=False))\n'
        "if context.is_offline_mode():\n"
        "    op.execute(\"UPDATE user_profiles SET plan = 'team' WHERE id = (SELECT min(id) FROM user_profiles)\")\n"
        "else:\n"
        '    oldest = op.get_bind().execute(sa.text("SELECT min(id) FROM user_profiles")).scalar()\n'
        "    op.execute(sa.text(\"UPDATE user_profiles SET plan = 'team' WHERE id = :id\").bindparams(id=oldest))\n"
    )
    path.write_text(replace_function_body("upgrade", body)(path.read_text()))
    sql = released.runner.run(line)
    assert sql.ok, sql.error
    assert "UPDATE user_profiles SET plan = 'team' WHERE id = (SELECT min(id) FROM user_profiles);" in sql.stdout
    online = released.runner.run("upgrade head")  # the online branch still runs
    assert online.ok, online.error
    with released.db.connect() as conn:
        assert conn.scalar(sa.text("SELECT plan FROM user_profiles ORDER BY id LIMIT 1")) == "team"


def test_drift_alembic_check_cannot_see(released: Lab) -> None:
    released.runner.run("upgrade head")
    assert str(deploy.drift(released)).startswith("No drift")
    with released.db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE user_profiles ADD CONSTRAINT plan_known CHECK (plan IN ('free', 'team'))"))
        conn.execute(sa.text("CREATE VIEW team_profiles AS SELECT id FROM user_profiles WHERE plan = 'team'"))
    assert released.runner.run("check").ok  # alembic check is blind to both
    found = deploy.drift(released)
    assert [(kind, what.split(" ")[0]) for kind, what in found.only_here] == [
        ("CHECK constraint", "user_profiles.plan_known"),
        ("view", "team_profiles"),
    ]
    assert not found.only_migrations


def test_post_write_hook_formats_a_generated_revision_with_ruff(lab: Lab) -> None:
    """The section the chapter shows, in a copy's alembic.ini, with the development venv's ruff."""
    lab.runner.run("upgrade head")
    main = lab.project.service_dir / "main.py"

    def generate(column: str) -> str:
        apply_edit(main, add_column("UserProfile", f"{column} = Column(String(20), nullable=True)"), lab.project.root)
        result = lab.runner.run(["revision", "--autogenerate", "-m", f"add {column}"])
        assert result.ok, result.error
        lab.runner.run("upgrade head")
        return str(result.new_files[0])

    def formatted(path: str) -> bool:
        return (
            subprocess.run([sys.executable, "-m", "ruff", "format", "--check", path], capture_output=True).returncode
            == 0
        )

    assert not formatted(generate("team"))  # autogenerate's own output is not ruff-formatted
    ini = lab.project.service_dir / "alembic.ini"
    ini.write_text(ini.read_text() + "\n" + deploy.POST_WRITE_HOOKS)
    assert formatted(generate("region"))


def test_the_exercise_start_twice_adds_plan_once_and_keeps_the_learners_migrate_py(released: Lab) -> None:
    rewrite_entrypoint(released, deploy.GUARD_LOCK, deploy.GUARD_UNLOCK)
    said = deploy.exercise_start(released)
    service = released.project.service_dir
    assert (service / "main.py").read_text().count("plan = Column(") == 1
    assert (service / deploy.ENTRYPOINT).read_text() == deploy.UNGUARDED_ENTRYPOINT
    assert "pg_advisory_lock(13)" in (service / "migrate.py.bak").read_text() and "migrate.py.bak" in said


def test_the_warm_replica_process_ends_with_the_process_that_started_it(released: Lab) -> None:
    """ch13_replicas.py reads races from stdin: when its kernel exits, stdin closes and it goes too, no process left."""
    code = (
        "import sys\n"
        "from migration_lab import Lab, Project, UrlBackend\n"
        "from migration_lab.course import ch13_race\n"
        "lab = Lab(Project(sys.argv[1]), UrlBackend(sys.argv[2]))\n"
        "ch13_race.race(lab)\n"
        "print(ch13_race._harness.process.pid)\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", code, str(released.project.root), released.db.url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, f"ch13_replicas.py (pid {pid}) outlived the process that started it"
        time.sleep(0.05)


def test_migrate_py_deploys_from_a_terminal_with_the_url_in_dot_env(released: Lab) -> None:
    """What the exercise asks the learner to type: `python migrate.py`, DATABASE_URL only in ai-service/.env."""
    rewrite_entrypoint(released, deploy.GUARD_LOCK, deploy.GUARD_UNLOCK)
    service = released.project.service_dir
    (service / ".env").write_text(f"DATABASE_URL={released.db.url}\n")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "migrate.py"], cwd=service, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade a1c4e7f20b13 -> e5a9c2d7b3f1" in done.stderr  # alembic.ini's logging, as in a terminal
    assert all(check.passed for check in deploy.exercise(released))
