"""Chapter 13, migrations in production: real races of two replicas, offline SQL, drift, post-write hooks.

Every race here is two real processes on a real PostgreSQL, released from one barrier at once.
"""

import os
import re
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
# migrate.py's guard, as chapter 13's cell 10 shows it (the kit's guarded entrypoint, in the service's own file).
GUARD_LOCK = '        connection.execute(text("SELECT pg_advisory_lock(13)"))\n        connection.commit()\n'
GUARD_UNLOCK = '        connection.execute(text("SELECT pg_advisory_unlock(13)"))\n        connection.commit()\n'
ENV_RUN_MIGRATIONS = """def run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""
SERVED = "exactly one replica upgrades; the other waits and finds the database at head"
NEITHER_FAILS = f"two replicas of `{deploy.CLI}` started at once: neither fails"


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


def rewrite_env_py(lab: Lab, run_migrations: str) -> None:
    """env.py's run_migrations() as the learner writes it (with `text` imported)."""
    path = lab.project.service_dir / "migrations" / "env.py"
    source = path.read_text()
    assert ENV_RUN_MIGRATIONS in source
    source = source.replace(ENV_RUN_MIGRATIONS, run_migrations)
    path.write_text(source.replace("from sqlalchemy import Connection,", "from sqlalchemy import text, Connection,"))


def test_unguarded_replicas_collide_and_one_fails(released: Lab) -> None:
    raced = deploy.race(released, deploy.ENTRYPOINT)
    assert [r.error.split(":")[0] for r in raced.failures] == ["DuplicateColumn"], str(raced)  # type: ignore[union-attr]
    assert raced.end == raced.head and not raced.one_migrated_one_waited
    assert "FAILED: DuplicateColumn" in str(raced)


def test_guarded_migrate_py_takes_turns_but_the_exercise_races_the_command_line(released: Lab) -> None:
    """Cell 10's guard copied into migrate.py: its own race is safe, and the release of two revisions runs once;
    but the exercise races `alembic upgrade head` (an init container), which never runs migrate.py."""
    rewrite_entrypoint(released, GUARD_LOCK, GUARD_UNLOCK)
    raced = deploy.race(released, deploy.ENTRYPOINT)
    assert raced.one_migrated_one_waited and not raced.failures, str(raced)
    assert "found the database at head: nothing to do" in str(raced)
    assert "upgraded a1c4e7f20b13 → e5a9c2d7b3f1, e5a9c2d7b3f1 → f6b8d4a2c9e7" in str(raced)
    released.runner.run("upgrade head")
    passed = checks(released)
    assert not passed[NEITHER_FAILS] and passed["the release is deployed: your database is at head"]


GUARDED_AFTER_CONFIGURE = """def run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.execute("SELECT pg_advisory_lock(2026)")  # a session lock: released when the session ends
        context.run_migrations()
"""
GUARDED_ONLINE = (
    ENV_RUN_MIGRATIONS,
    """def run_migrations(connection: Connection) -> None:
    connection.exec_driver_sql("SELECT pg_advisory_lock(7)")
    connection.commit()
    try:
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.exec_driver_sql("SELECT pg_advisory_unlock_all()")
        connection.commit()
""",
)


@pytest.mark.parametrize(
    "run_migrations",
    [deploy.GUARDED_RUN_MIGRATIONS, GUARDED_AFTER_CONFIGURE, GUARDED_ONLINE[1]],
    ids=["the-hint's", "inside-begin_transaction", "exec_driver_sql-try-finally"],
)
def test_a_session_lock_in_env_py_makes_the_command_line_take_turns(released: Lab, run_migrations: str) -> None:
    rewrite_env_py(released, run_migrations)
    raced = deploy.race(released, deploy.CLI)
    assert raced.one_migrated_one_waited and not raced.failures, str(raced)
    assert released.runner.run("upgrade head").ok
    assert all(checks(released).values()), checks(released)


XACT_LOCK = """def run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.execute("SELECT pg_advisory_xact_lock(13)")
        context.run_migrations()
"""
TRY_LOCK = """def run_migrations(connection: Connection) -> None:
    if not connection.execute(text("SELECT pg_try_advisory_lock(13)")).scalar():
        return
    connection.commit()
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""
LOCK_WITHOUT_COMMIT = """def run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(13)"))
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


@pytest.mark.parametrize(
    "run_migrations, failing, said",
    [
        (XACT_LOCK, NEITHER_FAILS, "DuplicateColumn"),  # released when the release's first revision commits
        (TRY_LOCK, SERVED, "exited without upgrading, the database still at a1c4e7f20b13"),
        (LOCK_WITHOUT_COMMIT, NEITHER_FAILS, "rolled back"),  # alembic runs in it and never commits
    ],
    ids=["xact-lock", "try-lock-skips", "lock-without-commit"],
)
def test_an_env_py_guard_that_lets_go_too_early_skips_or_commits_nothing_fails(
    released: Lab, run_migrations: str, failing: str, said: str
) -> None:
    rewrite_env_py(released, run_migrations)
    report = {c.name: c for c in deploy.exercise(released)}
    assert not report[failing].passed
    assert said in " ".join(report[failing].hints), report[failing].hints
    # What went wrong comes first, and only the guard that committed nothing is told to commit.
    committed_nothing = "Commit right after taking the lock" in report[failing].hints[0]
    assert committed_nothing == (run_migrations == LOCK_WITHOUT_COMMIT), report[failing].hints[0]


STAGGERED = """def run_migrations(connection: Connection) -> None:
    import random
    import time

    time.sleep(random.uniform(0.5, 4))  # "stagger the replicas so they do not start at once": no lock at all
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


def test_a_stagger_instead_of_a_lock_fails_every_time(released: Lab) -> None:
    """A sleep before configure() is no guard: on a deploy slower than the stagger both replicas migrate. The race
    holds the first at the start of its migration until the second reads too, so the stagger never wins by chance
    (it passed in 8 of 11 checks when the release took 0.5 s)."""
    rewrite_env_py(released, STAGGERED)
    for _ in range(3):
        raced = deploy.race(released, deploy.CLI)
        assert raced.failures and not raced.one_migrated_one_waited, str(raced)


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
    rewrite_entrypoint(released, GUARD_LOCK, GUARD_UNLOCK)
    said = deploy.exercise_start(released)
    service = released.project.service_dir
    assert (service / "main.py").read_text().count("plan = Column(") == 1
    assert (service / "main.py").read_text().count("plan_changed_at = Column(") == 1
    assert (service / deploy.ENTRYPOINT).read_text() == deploy.UNGUARDED_ENTRYPOINT
    kept = re.search(r"\.lab/backups/([\w-]+)/ai-service/migrate\.py", said)
    assert kept, said
    first = released.project.state_dir / "backups" / kept.group(1) / "ai-service" / "migrate.py"
    assert "pg_advisory_lock(13)" in first.read_text()
    # Changed again, and the start run again: the second version is backed up too, and the first stays.
    rewrite_entrypoint(released, GUARD_LOCK.replace("13", "14"), GUARD_UNLOCK.replace("13", "14"))
    again = re.search(r"\.lab/backups/([\w-]+)/ai-service/migrate\.py", deploy.exercise_start(released))
    assert again and again.group(1) != kept.group(1)
    assert "pg_advisory_lock(13)" in first.read_text()
    assert "pg_advisory_lock(14)" in (first.parents[2] / again.group(1) / "ai-service" / "migrate.py").read_text()
    assert not (service / "migrate.py.bak").exists()


def test_the_warm_replica_process_ends_with_the_process_that_started_it(released: Lab) -> None:
    """ch13_replicas.py reads races from stdin: when its kernel exits, stdin closes and it goes too, no process left."""
    code = (
        "import sys\n"
        "from migration_lab import Lab, Project, UrlBackend\n"
        "from migration_lab.course import ch13_race\n"
        "lab = Lab(Project(sys.argv[1]), UrlBackend(sys.argv[2]))\n"
        "ch13_race.race(lab)\n"
        "print(*(p.pid for p in ch13_race._harness.processes))\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", code, str(released.project.root), released.db.url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr
    pids = [int(pid) for pid in started.stdout.split()[-2:]]
    deadline = time.monotonic() + 10
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            assert time.monotonic() < deadline, f"ch13_replicas.py (pid {pid}) outlived the process that started it"
            time.sleep(0.05)


def test_migrate_py_deploys_from_a_terminal_with_the_url_in_dot_env(released: Lab) -> None:
    """What the exercise asks the learner to type: `python migrate.py`, DATABASE_URL only in ai-service/.env."""
    rewrite_entrypoint(released, GUARD_LOCK, GUARD_UNLOCK)
    service = released.project.service_dir
    (service / ".env").write_text(f"DATABASE_URL={released.db.url}\n")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "migrate.py"], cwd=service, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade a1c4e7f20b13 -> e5a9c2d7b3f1" in done.stderr  # alembic.ini's logging, as in a terminal
    assert "Running upgrade e5a9c2d7b3f1 -> f6b8d4a2c9e7" in done.stderr
    assert released.db.heads() == ("f6b8d4a2c9e7",) and released.runner.run("check").ok


def test_an_env_py_that_fails_for_any_single_run_is_not_called_a_race(released: Lab) -> None:
    """env.py raising before any revision runs fails both replicas the same way: the hint says so, and sends the
    learner to run the command once alone, not to make the replicas take turns."""
    env = released.project.service_dir / "migrations" / "env.py"
    env.write_text(env.read_text().replace("import os\n", 'import os\nraise RuntimeError("boom")\n', 1))
    [neither] = [c for c in deploy.exercise(released) if c.name == NEITHER_FAILS]
    assert not neither.passed
    assert "Neither replica got as far as a revision" in neither.hints[0] and "boom" in neither.hints[0]
    assert "Make them take turns" not in neither.hints[0]


# --- more guards in env.py: other spellings that hold the lock pass, guards that let go before migrating fail ----

IN_A_BEGIN_BLOCK = """def run_migrations(connection: Connection) -> None:
    with connection.begin():  # committed as the block ends: alembic then owns the transactions it runs
        connection.execute(text("SELECT pg_advisory_lock(hashtext('ai-service migrations'))"))
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""
ON_A_GUARD_CONNECTION = """def run_migrations(connection: Connection) -> None:
    with connection.engine.connect() as guard:  # a session of its own holds the lock while the other migrates
        guard.execute(text("SELECT pg_advisory_lock(13)"))
        guard.commit()
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
"""
LOCKED_AND_UNLOCKED = """def run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(13)"))
    connection.execute(text("SELECT pg_advisory_unlock(13)"))  # let go before the revisions run
    connection.commit()
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""
ON_A_CLOSED_CONNECTION = """def run_migrations(connection: Connection) -> None:
    with connection.engine.connect() as guard:
        guard.execute(text("SELECT pg_advisory_lock(13)"))
        guard.commit()  # ... and the session, with its lock, ends with the block, before the revisions run
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


@pytest.mark.parametrize(
    "run_migrations", [IN_A_BEGIN_BLOCK, ON_A_GUARD_CONNECTION], ids=["begin-block-hashtext", "guard-connection"]
)
def test_other_session_locks_held_while_migrating_pass(released: Lab, run_migrations: str) -> None:
    rewrite_env_py(released, run_migrations)
    assert released.runner.run("upgrade head").ok
    assert all(checks(released).values()), checks(released)


@pytest.mark.parametrize(
    "run_migrations", [LOCKED_AND_UNLOCKED, ON_A_CLOSED_CONNECTION], ids=["unlocked-at-once", "closed-connection"]
)
def test_a_lock_let_go_before_the_revisions_run_fails_and_says_they_collided(
    released: Lab, run_migrations: str
) -> None:
    rewrite_env_py(released, run_migrations)
    report = {c.name: c for c in deploy.exercise(released)}
    assert not report[NEITHER_FAILS].passed
    assert "take turns" in report[NEITHER_FAILS].hints[0], report[NEITHER_FAILS].hints


HASHED_KEY = """def run_migrations(connection: Connection) -> None:
    key = hash("ai-service migrations")  # str hashes are salted per interpreter: one key per replica
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    connection.commit()
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    connection.commit()
"""


def test_a_lock_keyed_on_pythons_hash_of_a_name_is_two_locks_in_two_replicas_and_fails(released: Lab) -> None:
    """hash() of a str differs from one interpreter to the next (PYTHONHASHSEED): two containers take two different
    locks. Replicas forked from one warm process would share the seed, and take turns by accident."""
    rewrite_env_py(released, HASHED_KEY)
    passed = checks(released)
    assert not passed[NEITHER_FAILS] or not passed[SERVED], passed
