"""Chapter 11 on a real PostgreSQL under real traffic: what a lock does to the app, and what the kit cleans up."""

import os
import re
import threading

import pytest
import sqlalchemy as sa

from migration_lab import Lab
from migration_lab.course import ch11_locks as locks
from migration_lab.course.ch11_traffic import READER_NAME, Tally, busy_app
from migration_lab.course.registry import spec
from migration_lab.front.notebook import Chapter

ALTER = "ALTER TABLE user_profiles ADD COLUMN nickname text"


@pytest.fixture
def chapter(lab: Lab, capsys) -> Chapter:
    chapter = Chapter(spec("11"), lab)
    chapter.reset()
    capsys.readouterr()
    return chapter


def lab_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lab-")]


def reader_sessions(lab: Lab) -> int:
    with lab.db.connect() as conn:
        return int(
            conn.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"), {"n": READER_NAME}
            )
            or 0
        )


def test_an_alter_behind_an_idle_reader_without_lock_timeout_stops_the_app(chapter: Chapter) -> None:
    outcome = locks.run_while_busy(chapter.lab, ALTER, show=False)
    assert outcome.requests.failed > 0, outcome.requests
    assert outcome.stopped_by == "the lab" and not outcome.done  # bounded: the kit cancelled it
    assert outcome.blocked_by_reader
    assert outcome.seen.has("migration", "waits for", "AccessExclusiveLock")
    assert outcome.seen.has("request", "waits for", "AccessShareLock")
    assert "the app stopped serving" in str(outcome)
    assert lab_threads() == [] and reader_sessions(chapter.lab) == 0


def test_with_lock_timeout_the_migration_fails_fast_and_no_request_fails(chapter: Chapter) -> None:
    outcome = locks.run_while_busy(chapter.lab, ALTER, lock_timeout="1s", show=False)
    assert outcome.stopped_by == "lock_timeout"
    assert outcome.requests.failed == 0 and outcome.requests.served > 0, outcome.requests
    assert "failed 0 - the app kept serving" in str(outcome)
    retry = locks.run_while_busy(chapter.lab, ALTER, lock_timeout="1s", reader=False, show=False)
    assert retry.done and retry.requests.failed == 0
    assert lab_threads() == [] and reader_sessions(chapter.lab) == 0


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_found_and_dropped(chapter: Chapter, capsys) -> None:
    chapter.sql("UPDATE user_profiles SET phone_number = '+44 20 7946 0001'")  # a duplicate: the build fails
    locks.run_sql(chapter, "CREATE UNIQUE INDEX CONCURRENTLY ix_phone ON user_profiles (phone_number)")
    assert "could not create unique index" in capsys.readouterr().out
    assert locks.invalid_indexes(chapter.lab) == ["ix_phone"]
    locks.show_indexes(chapter)
    assert "ix_phone: INVALID" in capsys.readouterr().out
    locks.drop_invalid_indexes(chapter)
    assert locks.invalid_indexes(chapter.lab) == []
    assert "ix_phone" not in sa.inspect(chapter.lab.db.engine).get_indexes("user_profiles").__repr__()


def test_a_constant_default_keeps_the_relfilenode_and_a_volatile_one_rewrites(chapter: Chapter, capsys) -> None:
    locks.run_sql(chapter, "ALTER TABLE user_profiles ADD COLUMN score int NOT NULL DEFAULT 0")
    constant = capsys.readouterr().out
    assert "not rewritten (same relfilenode)" in constant and "AccessExclusiveLock" in constant
    locks.run_sql(
        chapter, "ALTER TABLE user_profiles ADD COLUMN seen_at timestamptz NOT NULL DEFAULT clock_timestamp()"
    )
    assert "REWRITTEN (new relfilenode)" in capsys.readouterr().out


def test_validate_takes_a_lock_that_lets_the_app_go_on(chapter: Chapter, capsys) -> None:
    locks.run_sql(chapter, "ALTER TABLE user_profiles ADD CONSTRAINT name_set CHECK (name <> '') NOT VALID")
    locks.run_sql(chapter, "ALTER TABLE user_profiles VALIDATE CONSTRAINT name_set")
    out = capsys.readouterr().out.split("=> ")[-1]
    assert "ShareUpdateExclusiveLock - reads and writes go on" in out


def test_traffic_reader_and_panel_stop_when_the_cell_fails(lab: Lab, chapter: Chapter) -> None:
    saved = os.environ.get("DATABASE_URL")
    with pytest.raises(RuntimeError), busy_app(lab, show=False) as (traffic, reader, _):
        assert traffic.running == 3 and reader is not None and reader.holding
        raise RuntimeError("the learner's cell failed")
    assert traffic.running == 0 and not reader.holding
    assert lab_threads() == [] and reader_sessions(lab) == 0
    assert os.environ.get("DATABASE_URL") == saved


# --- the exercise: graded by what the migration does, however it is written ---------------------------------

SERVED = "the upgrade ran while the app was busy, and no request failed because of it"
ADD_PLAN = (
    "op.add_column('user_profiles', sa.Column('plan', sa.String(length=20), server_default='free', nullable=False))"
)
ENV_PY_RUN_MIGRATIONS = """def run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


def answer(chapter: Chapter, upgrade: str, env_py: str | None = None, downgrade: str = locks.PLAN_DOWNGRADE) -> None:
    """The learner's revision (and, if given, env.py's run_migrations()), then the run under traffic."""
    chapter.start_exercise()
    if env_py is not None:
        path = chapter.lab.project.service_dir / "migrations" / "env.py"
        text = path.read_text()
        assert ENV_PY_RUN_MIGRATIONS in text
        path.write_text(
            text.replace(ENV_PY_RUN_MIGRATIONS, env_py).replace("import Connection,", "import text, Connection,")
        )
    chapter.alembic('revision -m "add plan"')
    chapter.rewrite_revision(upgrade=upgrade, downgrade=downgrade)


def graded(chapter: Chapter, tries: int = 3) -> dict[str, list[str]]:
    """Run it under traffic as the learner does, then add the model: {check: hints} of what fails. A correct
    answer gets `tries` runs (down again between them) so that one stall of a loaded machine cannot fail it; a
    wrong one fails every run."""
    for _ in range(tries):
        locks.upgrade_while_busy(chapter)
        if not failing_checks(chapter).get(SERVED) or tries == 1:
            break
        chapter.alembic("downgrade -1", confirm=True)
    chapter.add_column("UserProfile", locks.PLAN_LINE)
    return failing_checks(chapter)


def failing_checks(chapter: Chapter) -> dict[str, list[str]]:
    return {c.name: list(c.hints) for c in chapter.report().checks if not c.passed}


@pytest.mark.parametrize(
    "upgrade, env_py",
    [
        (locks.PLAN_UPGRADE, None),  # the solution
        # ruff's double quotes, the ALTER in plain SQL, a shorter timeout
        (
            "op.execute(\"SET LOCAL lock_timeout = '300ms'\")\n"
            "op.execute(\"ALTER TABLE user_profiles ADD COLUMN plan varchar(20) NOT NULL DEFAULT 'free'\")",
            None,
        ),
        # a plain SET, through sa.text: it outlives the revision, harmless in a release of one
        (f"op.execute(sa.text(\"SET lock_timeout = '500ms'\"))\n{ADD_PLAN}", None),
        # milliseconds as a bare number, the default as a SQL expression
        (
            'op.execute("SET LOCAL lock_timeout = 400")\n'
            "op.add_column('user_profiles', sa.Column('plan', sa.String(20), nullable=False, "
            "server_default=sa.text(\"'free'\")))",
            None,
        ),
        # the timeout in env.py, where chapter 11 puts it; the revision has none
        (
            ADD_PLAN,
            ENV_PY_RUN_MIGRATIONS.replace(
                "        context.run_migrations()",
                "        context.execute(\"SET lock_timeout = '500ms'\")\n        context.run_migrations()",
            ),
        ),
    ],
    ids=["solution", "plain-sql-double-quotes", "plain-set", "bare-milliseconds", "env-py"],
)
def test_the_exercise_passes_every_answer_that_keeps_the_app_serving(
    chapter: Chapter, upgrade: str, env_py: str | None, capsys
) -> None:
    answer(chapter, upgrade, env_py)
    assert graded(chapter) == {}
    out = capsys.readouterr().out
    assert "Requests during the migration: failed 0" in out
    # The run under traffic counts for where it took the database, not for a later position.
    chapter.alembic("downgrade -1", confirm=True)
    assert SERVED in failing_checks(chapter)
    capsys.readouterr()


UNDONE = "its downgrade() takes plan away again (replayed on a copy)"


@pytest.mark.parametrize(
    "downgrade",
    ["pass", "op.alter_column('user_profiles', 'plan', server_default=None)"],
    ids=["pass-as-generated", "only-the-default"],
)
def test_a_downgrade_that_leaves_plan_fails_and_its_hint_fixes_it(chapter: Chapter, downgrade: str, capsys) -> None:
    """`alembic revision -m` writes `pass` in downgrade(): with only upgrade= rewritten, every check passed."""
    answer(chapter, locks.PLAN_UPGRADE, downgrade=downgrade)
    failed = graded(chapter)
    assert list(failed) == [UNDONE], failed
    assert "user_profiles still has plan" in failed[UNDONE][0]
    exec(failed[UNDONE][-1], {"ch": chapter})  # the last hint's code, as given: downgrade() only, the revision named
    assert failing_checks(chapter) == {}
    capsys.readouterr()


def test_without_a_lock_timeout_requests_fail_and_the_hint_says_how_long_the_alter_waited(
    chapter: Chapter, capsys
) -> None:
    answer(chapter, ADD_PLAN)
    failed = graded(chapter, tries=1)
    assert set(failed) == {SERVED}
    assert re.search(r"waited \d\.\d s for its lock behind the report", failed[SERVED][0])
    out = capsys.readouterr().out
    assert "some FAILED, slower than the 2 s a client waits" in out and "Too slow, not an error" in out


def test_a_lock_timeout_longer_than_a_client_waits_fails(chapter: Chapter, capsys) -> None:
    answer(chapter, f"op.execute(\"SET LOCAL lock_timeout = '5s'\")\n{ADD_PLAN}")
    assert set(graded(chapter, tries=1)) == {SERVED}
    capsys.readouterr()


def test_a_lock_timeout_set_after_the_alter_comes_too_late_and_fails(chapter: Chapter, capsys) -> None:
    """SET LOCAL lock_timeout after the add_column: the ALTER has already waited behind the report by then."""
    answer(chapter, f"{ADD_PLAN}\nop.execute(\"SET LOCAL lock_timeout = '500ms'\")")
    assert set(graded(chapter, tries=1)) == {SERVED}
    capsys.readouterr()


def test_a_statement_timeout_instead_of_a_lock_timeout_is_not_retried_and_applies_nothing(
    chapter: Chapter, capsys
) -> None:
    """It cancels the waiting ALTER too, but as 57014, which a deploy must not retry blindly: nothing is applied."""
    answer(chapter, f"op.execute(\"SET LOCAL statement_timeout = '500ms'\")\n{ADD_PLAN}")
    failed = graded(chapter, tries=1)
    assert "your database has it: the revision is applied" in failed
    assert "QueryCanceled" in failed[SERVED][0]
    capsys.readouterr()


def test_a_lock_timeout_set_in_env_py_before_configure_applies_nothing_as_in_a_terminal(
    chapter: Chapter, capsys
) -> None:
    answer(
        chapter,
        ADD_PLAN,
        ENV_PY_RUN_MIGRATIONS.replace(
            "    configure(connection=connection)",
            "    connection.execute(text(\"SET lock_timeout = '500ms'\"))\n    configure(connection=connection)",
        ),
    )
    failed = graded(chapter, tries=1)
    assert "your database has it: the revision is applied" in failed
    assert "committed none of them" in capsys.readouterr().out


def test_filling_every_row_with_an_update_fails_the_no_rewrite_check(chapter: Chapter, capsys) -> None:
    """Nullable, UPDATE every row, then NOT NULL: the same end state, but every row written under ACCESS EXCLUSIVE."""
    answer(
        chapter,
        "op.execute(\"SET LOCAL lock_timeout = '500ms'\")\n"
        "op.add_column('user_profiles', sa.Column('plan', sa.String(length=20), nullable=True))\n"
        "op.execute(\"UPDATE user_profiles SET plan = 'free'\")\n"
        "op.alter_column('user_profiles', 'plan', nullable=False, server_default='free')",
    )
    failed = graded(chapter)
    assert "the column was added without rewriting the table (a non-volatile default)" in failed
    capsys.readouterr()


def test_the_exercise_names_the_model_shipped_before_its_migration(chapter: Chapter, capsys) -> None:
    chapter.start_exercise()
    chapter.add_column("UserProfile", locks.PLAN_LINE)  # the code first: the app selects a column not there yet
    chapter.alembic('revision -m "add plan"')
    chapter.rewrite_revision(upgrade=locks.PLAN_UPGRADE, downgrade=locks.PLAN_DOWNGRADE)
    locks.upgrade_while_busy(chapter)
    out = capsys.readouterr().out
    assert "some FAILED with an error (HTTP 503: " in out
    assert "UndefinedColumn: column user_profiles.plan does not exist" in out
    assert "An error, not a wait" in out
    check = chapter.report().first_failing
    assert check is not None and "ships before the code" in check.hint and "UndefinedColumn" in check.hint


def test_the_exercise_asks_for_the_run_under_traffic_after_a_plain_upgrade(chapter: Chapter, capsys) -> None:
    chapter.start_exercise()
    chapter.alembic('revision -m "add plan"')
    chapter.rewrite_revision(upgrade=locks.PLAN_UPGRADE, downgrade=locks.PLAN_DOWNGRADE)
    chapter.alembic("upgrade head")
    check = chapter.report().first_failing
    assert check is not None and check.name == SERVED
    assert "upgrade_while_busy" in check.hints[1]
    capsys.readouterr()


def test_a_run_under_traffic_with_nothing_left_to_apply_does_not_count(chapter: Chapter, capsys) -> None:
    """A plain `upgrade head` (no lock_timeout), then the run under traffic: it applies nothing, so no request can
    fail, and it proves nothing about the migration."""
    chapter.start_exercise()
    chapter.alembic('revision -m "add plan"')
    chapter.rewrite_revision(upgrade=ADD_PLAN, downgrade=locks.PLAN_DOWNGRADE)
    chapter.alembic("upgrade head")
    locks.upgrade_while_busy(chapter)
    chapter.add_column("UserProfile", locks.PLAN_LINE)
    failed = failing_checks(chapter)
    assert list(failed) == [SERVED], failed
    assert "had nothing to apply" in failed[SERVED][0]
    capsys.readouterr()


def test_running_it_under_traffic_again_after_it_passed_still_passes(chapter: Chapter, capsys) -> None:
    """Run All twice, or the cell run again: the second run has nothing to apply, and the first run's record
    stands."""
    answer(chapter, locks.PLAN_UPGRADE)
    assert graded(chapter) == {}
    locks.upgrade_while_busy(chapter)
    assert failing_checks(chapter) == {}
    capsys.readouterr()


@pytest.mark.parametrize("type_", ["sa.Text()", "sa.String()", "sa.String(length=50)"])
def test_a_plan_that_is_not_twenty_characters_at_most_fails(type_: str, chapter: Chapter, capsys) -> None:
    """The exercise asks for text of up to 20 characters: a model and a column that agree on another type still
    do not say what the exercise does."""
    chapter.start_exercise()
    chapter.alembic('revision -m "add plan"')
    chapter.rewrite_revision(
        upgrade=locks.PLAN_UPGRADE.replace("sa.String(length=20)", type_), downgrade=locks.PLAN_DOWNGRADE
    )
    first = chapter.report().first_failing
    assert first is not None and first.name.startswith("a revision adds user_profiles.plan"), first
    assert "character varying(20)" in first.hint, first.hint
    capsys.readouterr()


def test_an_unapplied_revision_is_judged_on_a_copy_and_a_nullable_one_is_told(chapter: Chapter, capsys) -> None:
    chapter.start_exercise()
    chapter.alembic('revision -m "add plan"')
    chapter.rewrite_revision(upgrade="op.add_column('user_profiles', sa.Column('plan', sa.String(20)))")
    first = chapter.report().first_failing
    assert first is not None and "allows NULL" in first.hint
    assert "plan" not in [c["name"] for c in sa.inspect(chapter.lab.db.engine).get_columns("user_profiles")]
    capsys.readouterr()


@pytest.mark.parametrize(
    "failed, errors, requests_waited, blamed",
    [
        (0, 0, 0.4, False),  # nothing failed
        (3, 0, 0.3, False),  # every client slow at once, no lock wait: the lab's process stalled, not the migration
        (3, 0, 2.3, True),  # they queued behind the waiting ALTER longer than a client waits
        (2, 2, 0.0, True),  # errors: the model shipped before its column
    ],
)
def test_a_failure_counts_against_the_migration_only_when_its_lock_or_its_column_explains_it(
    failed: int, errors: int, requests_waited: float, blamed: bool
) -> None:
    upgrade = locks.BusyUpgrade(
        result=None,  # type: ignore[arg-type]
        attempts=1,
        requests=Tally(served=10, failed=failed, errors=errors, seconds=3.0),
        migration_waited=0.5,
        requests_waited=requests_waited,
    )
    assert upgrade.blamed is blamed


def test_the_panel_rows_line_up_with_its_header_and_other_rows_are_explained(lab: Lab) -> None:
    import re as regex

    from migration_lab.course.ch11_traffic import LEGEND, LockPanel, Session

    panel = LockPanel(lab, None, show=False)
    found = [
        Session(
            "migration",
            "active",
            "Lock/relation",
            "ALTER TABLE user_profiles ADD COLUMN x text",
            "",
            "AccessExclusiveLock",
        ),
        Session(
            "report",
            "idle in transaction",
            "Client/ClientRead",
            "SELECT count(*) FROM user_profiles",
            "AccessShareLock",
            "",
        ),
        Session("other", "idle in transaction", "", "UPDATE alembic_version SET ...", "AccessExclusiveLock", ""),
        Session("other", "idle", "", "SELECT 1", "", ""),  # no lock on the table: not shown
    ]
    html = panel.render(found)
    rows = regex.findall(r"<tr>(.*?)</tr>", html)
    assert len(rows) == 4  # the header and the three sessions with a lock on the table
    assert {len(regex.findall(r"<t[hd] ", row)) for row in rows} == {6}
    assert all("text-align: left" in cell for row in rows for cell in regex.findall(r"<t[hd] [^>]*>", row))
    assert LEGEND in html and "<b>other</b>" in LEGEND
    panel.seen.add(found, at=0.0)
    panel.seen.add(found, at=1.2)
    summary = panel.render_summary()
    assert "The run is over." in summary and "1.2 s" in summary  # the migration's longest wait
    assert {len(regex.findall(r"<t[hd] ", row)) for row in regex.findall(r"<tr>(.*?)</tr>", summary)} == {4}


def test_requests_queued_behind_it_only_when_the_alter_waited(chapter: Chapter) -> None:
    quick = locks.run_while_busy(chapter.lab, ALTER, lock_timeout="1s", reader=False, show=False)
    assert quick.done and quick.took == ("AccessExclusiveLock",)
    assert "queued" not in str(quick) and "it took AccessExclusiveLock on user_profiles at once" in str(quick)


# --- more answers: another spelling passes, plausible wrong ones fail with what is wrong -----------------------


def test_a_typed_model_and_a_timeout_set_through_the_bind_in_seconds_pass(chapter: Chapter, capsys) -> None:
    """`SET LOCAL lock_timeout TO '0.4s'` through op.get_bind(), the downgrade in plain SQL, the model in
    SQLAlchemy 2's typed style."""
    answer(
        chapter,
        "op.get_bind().exec_driver_sql(\"SET LOCAL lock_timeout TO '0.4s'\")\n"
        'op.add_column("user_profiles", sa.Column("plan", sa.String(20), nullable=False, server_default="free"))',
        downgrade='op.execute("ALTER TABLE user_profiles DROP COLUMN plan")',
    )
    for _ in range(3):
        locks.upgrade_while_busy(chapter)
        if not failing_checks(chapter).get(SERVED):
            break
        chapter.alembic("downgrade -1", confirm=True)
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    chapter.add_column("UserProfile", 'plan: Mapped[str] = mapped_column(String(20), server_default="free")')
    assert failing_checks(chapter) == {}
    capsys.readouterr()


@pytest.mark.parametrize(
    ("upgrade", "failed_check", "said"),
    [
        (
            locks.PLAN_UPGRADE.replace("server_default='free'", "server_default='Free'"),
            "a revision adds user_profiles.plan: varchar(20), NOT NULL, 'free' for the profiles already there",
            "not with 'free'",
        ),
        (
            locks.PLAN_UPGRADE.replace(
                "server_default='free'", "server_default=sa.text(\"left('free' || random(), 4)\")"
            ),
            "the column was added without rewriting the table (a non-volatile default)",
            "volatile",
        ),
    ],
    ids=["capitalised-default", "volatile-default"],
)
def test_a_default_that_is_not_free_or_rewrites_every_row_fails(
    chapter: Chapter, upgrade: str, failed_check: str, said: str, capsys
) -> None:
    """Judged on a copy before it is applied: 'Free' is another plan; a volatile expression that yields 'free'
    makes PostgreSQL write it into every row, under ACCESS EXCLUSIVE."""
    answer(chapter, upgrade)
    failed = failing_checks(chapter)
    assert failed_check in failed, failed
    assert said in failed[failed_check][0], failed[failed_check]
    capsys.readouterr()
