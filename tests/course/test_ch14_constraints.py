"""Chapter 14's exercise graded by what the answer does: the lock trace, 0 failed requests under the busy app (on a
copy), the index, the downgrade, the learner's own database. Other correct answers pass; plausible wrong ones fail
the check that catches them (two of them only the lock trace can), and following the hints from there passes."""

import pytest

from helpers import start, write_revision
from migration_lab import Lab
from migration_lab.course import ch14_busy_jobs as busy
from migration_lab.course import ch14_constraints as catalogue
from migration_lab.front.notebook import Chapter

FK = catalogue.FK
MODEL = 'reviewer_id = Column(ForeignKey("user_profiles.id"), nullable=True, index=True)'
PLAIN = "reviewer_id = Column(Integer, nullable=True)"
DOWN = f"""with op.get_context().autocommit_block():
    op.execute('DROP INDEX CONCURRENTLY IF EXISTS ix_job_entries_reviewer_id')
op.execute('ALTER TABLE job_entries DROP CONSTRAINT IF EXISTS {FK}')"""
RETRIES = """
def with_lock_retries(work, lock_timeout="200ms", attempts=10, pause=0.1):
    import time
    from sqlalchemy.exc import OperationalError
    if op.get_context().as_sql:
        op.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        return work()
    bind = op.get_bind()
    for attempt in range(1, attempts + 1):
        try:
            with bind.begin_nested():
                bind.exec_driver_sql(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                return work()
        except OperationalError as error:
            if getattr(error.orig, "pgcode", None) != "55P03" or attempt == attempts:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
"""

# Right: the retries inside the migration (chapter 15's helper), op calls.
WITH_RETRIES = f"""
with_lock_retries(lambda: op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'],
                                                postgresql_not_valid=True))
with op.get_context().autocommit_block():
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'], postgresql_concurrently=True)
"""
# Right, another way: two revisions, plain SQL in double quotes, the key named by hand, a composite index.
TWO_REVISIONS = (
    (
        """
op.execute("SET LOCAL lock_timeout = '300ms'")
op.execute("ALTER TABLE job_entries ADD CONSTRAINT fk_reviewer FOREIGN KEY (reviewer_id) "
           "REFERENCES user_profiles (id) NOT VALID")
""",
        'op.execute("ALTER TABLE job_entries DROP CONSTRAINT fk_reviewer")',
    ),
    (
        """
with op.get_context().autocommit_block():
    op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_job_entries_reviewer_id ON job_entries (reviewer_id)")
    op.execute("ALTER TABLE job_entries VALIDATE CONSTRAINT fk_reviewer")
""",
        """with op.get_context().autocommit_block():
    op.execute("DROP INDEX CONCURRENTLY ix_job_entries_reviewer_id")""",
    ),
)
# Wrong, plausibly: autogenerate's create_foreign_key, with chapter 11's lock_timeout (the traffic is fine).
AT_ONCE = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'])
with op.get_context().autocommit_block():
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'], postgresql_concurrently=True)
"""
# Wrong, plausibly: NOT VALID then VALIDATE, read too fast: both in one transaction (the traffic is fine too).
SAME_TRANSACTION = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'], postgresql_not_valid=True)
op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
with op.get_context().autocommit_block():
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'], postgresql_concurrently=True)
"""
# Wrong: the safe recipe without a lock_timeout: the NOT VALID waits for the worker, writes queue behind it.
NO_TIMEOUT = f"""
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'], postgresql_not_valid=True)
with op.get_context().autocommit_block():
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'], postgresql_concurrently=True)
"""
# Wrong: a safe key, no index on reviewer_id.
NO_INDEX = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'], postgresql_not_valid=True)
with op.get_context().autocommit_block():
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
"""

# Wrong: the key the safe way, but the index built in the migration's transaction, without CONCURRENTLY: a ShareLock
# stops every write to job_entries for the whole build (the traffic is fine at this size; the trace shows it).
INDEX_NOT_CONCURRENTLY = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'], postgresql_not_valid=True)
op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'])
with op.get_context().autocommit_block():
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
"""
# Right, another way: the index first, in plain SQL through sa.text; a plain SET of the timeout as bare milliseconds.
INDEX_FIRST = f"""
with op.get_context().autocommit_block():
    op.execute(sa.text("CREATE INDEX CONCURRENTLY ix_job_entries_reviewer_id ON job_entries (reviewer_id)"))
op.execute("SET lock_timeout = 150")
op.execute("ALTER TABLE job_entries ADD CONSTRAINT {FK} FOREIGN KEY (reviewer_id) "
           "REFERENCES user_profiles (id) NOT VALID")
with op.get_context().autocommit_block():
    op.execute(sa.text("ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}"))
"""


def answer(
    chapter: Chapter, *upgrades: str | tuple[str, str], helper: str = "", model: str = MODEL, apply: bool = True
) -> None:
    """The learner's revisions after the chapter's start (an upgrade, or (upgrade, downgrade)), the model, and
    `alembic upgrade head`."""
    down = busy.START
    for number, revision in enumerate(upgrades):
        upgrade, downgrade = revision if isinstance(revision, tuple) else (revision, DOWN)
        rev = f"c14a{number:08x}"
        path = write_revision(chapter.lab.project, rev, down, upgrade, downgrade)
        if helper:
            path.write_text(path.read_text().replace("\n\ndef upgrade():", "\n" + helper + "\n\ndef upgrade():"))
        down = rev
    chapter.edit_model(PLAIN, model)
    if apply:
        result = chapter.lab.runner.run("upgrade head")
        assert result.ok, result.error


def failing(chapter: Chapter) -> list[str]:
    return [c.name for c in chapter.report().checks if not c.passed]


TRACE = "the lock trace: the foreign key is validated under no lock that stops writes"
TRAFFIC = "replayed on a copy under the app's traffic and an idle job worker: 0 failed requests"
INDEX = "job_entries.reviewer_id has an index (deleting a profile must not scan job_entries)"


@pytest.fixture
def chapter(lab: Lab, capsys) -> Chapter:
    chapter = start(lab, "14")
    capsys.readouterr()
    return chapter


@pytest.mark.parametrize(
    ("upgrades", "helper"),
    [((WITH_RETRIES,), RETRIES), (TWO_REVISIONS, ""), ((INDEX_FIRST,), "")],
    ids=["retries-inside", "two-revisions", "index-first"],
)
def test_other_correct_answers_pass(chapter: Chapter, upgrades: tuple[str, ...], helper: str) -> None:
    answer(chapter, *upgrades, helper=helper)
    assert failing(chapter) == []


@pytest.mark.parametrize(
    ("wrong", "caught_by"),
    [
        (AT_ONCE, TRACE),
        (SAME_TRANSACTION, TRACE),
        (NO_TIMEOUT, TRAFFIC),
        (NO_INDEX, INDEX),
        (INDEX_NOT_CONCURRENTLY, INDEX),
    ],
    ids=[
        "validated-at-once",
        "validate-in-the-same-transaction",
        "no-lock-timeout",
        "no-index",
        "index-not-concurrently",
    ],
)
def test_a_plausible_wrong_answer_fails_the_check_that_catches_it_and_its_hints_lead_out(
    chapter: Chapter, wrong: str, caught_by: str
) -> None:
    """Each wrong answer fails one check, a different one each time (the first two only by their lock trace: their
    requests were all served). Its hints, followed from there to the last (code), make every check pass."""
    answer(chapter, wrong, model=MODEL if wrong != NO_INDEX else MODEL.replace(", index=True", ""))
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == caught_by, str(report)
    assert [c.name for c in report.checks if not c.passed] == [caught_by], str(report)
    assert len(report.first_failing.hints) == 3 and "ch." not in report.first_failing.hints[0]
    follow_the_hints(chapter)


# Wrong, plausibly: the first half of the recipe only, the key added NOT VALID and never validated.
NEVER_VALIDATED = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles', ['reviewer_id'], ['id'], postgresql_not_valid=True)
with op.get_context().autocommit_block():
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'], postgresql_concurrently=True)
"""
MINE_VALIDATED = "in your database, the foreign key is validated"


def test_a_key_never_validated_fails_and_its_hints_say_so(chapter: Chapter) -> None:
    """The hints used to say the revision "validates the foreign key while its transaction holds a lock" (it
    validated nothing), and that the database held "an older version of the revision" (it held this one)."""
    answer(chapter, NEVER_VALIDATED)
    report = chapter.report()
    hints = {c.name: c.hints for c in report.checks if not c.passed}
    assert list(hints) == [TRACE, MINE_VALIDATED], str(report)
    assert "NOT VALID and never validates it" in hints[TRACE][0], hints[TRACE]
    assert "holds a lock" not in hints[TRACE][0]
    assert "adds it and never validates it" in hints[MINE_VALIDATED][0], hints[MINE_VALIDATED]
    follow_the_hints(chapter)


@pytest.mark.parametrize("wrong", [AT_ONCE, SAME_TRANSACTION], ids=["validated-at-once", "same-transaction"])
def test_a_key_validated_under_a_lock_is_told_which_lock(chapter: Chapter, wrong: str) -> None:
    answer(chapter, wrong)
    (trace,) = [c for c in chapter.report().checks if not c.passed]
    assert "validates the foreign key while its transaction holds a lock" in trace.hints[0], trace.hints
    assert "ShareRowExclusiveLock" in trace.hints[0] or "AccessExclusiveLock" in trace.hints[0], trace.hints


UNDONE = "its downgrade() runs and undoes it (replayed on the copy)"
# Wrong, plausibly: the downgrade takes the key and the index away with the column, then adds a bare column back.
DROPS_THE_COLUMN = """op.drop_column('job_entries', 'reviewer_id')
op.add_column('job_entries', sa.Column('reviewer_id', sa.Integer(), nullable=True))"""


def test_a_downgrade_that_drops_the_column_and_adds_it_again_loses_the_reviewers_and_fails(
    chapter: Chapter,
) -> None:
    """It runs, and leaves no key and no index: what it lost is every job's reviewer, which the schema cannot show."""
    answer(chapter, (WITH_RETRIES, DROPS_THE_COLUMN), helper=RETRIES)
    report = chapter.report()
    assert failing(chapter) == [UNDONE], str(report)
    assert report.first_failing is not None and "every job's reviewer_id" in report.first_failing.hints[0]
    follow_the_hints(chapter)


def follow_the_hints(chapter: Chapter) -> None:
    """Run the last hint (the code) of the first failing check, as a stuck learner would, until all pass."""
    for _ in range(3):
        first = chapter.report().first_failing
        if first is None:
            return
        exec(first.hints[-1], {"ch": chapter})
    assert failing(chapter) == [], str(chapter.report())


def test_the_trace_names_the_statement_and_its_locks(chapter: Chapter) -> None:
    answer(chapter, SAME_TRANSACTION)
    [check] = [c for c in chapter.report().checks if c.name == TRACE]
    assert "validates fk_job_entries_reviewer_id_user_profiles holding ShareRowExclusiveLock on job_entries" in (
        check.hint
    )


def test_an_answer_never_applied_is_told_to_apply_it(chapter: Chapter, capsys) -> None:
    answer(chapter, WITH_RETRIES, helper=RETRIES, apply=False)
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == "the database is at head"
    assert "your own database has not run it yet" in report.first_failing.hint
    chapter.alembic("upgrade head")
    assert failing(chapter) == []
    capsys.readouterr()


def test_the_solution_passes_after_the_chapters_steps(lab: Lab, capsys) -> None:
    """The steps leave autogenerate's foreign key applied and the model edited; the solution starts over."""
    chapter = Chapter(start(lab, "14").spec, lab)
    chapter.reset()
    chapter.edit_model(PLAIN, 'reviewer_id = Column(ForeignKey("user_profiles.id"), nullable=True)')
    chapter.alembic('revision --autogenerate -m "reviewer references a profile"')
    assert lab.runner.run("upgrade head").ok
    assert TRACE in failing(chapter)
    namespace: dict = {}
    chapter.solution(namespace)
    assert failing(chapter) == []
    assert lab.runner.run(["downgrade", busy.START]).ok and lab.runner.run("upgrade head").ok  # round trip
    capsys.readouterr()


# --- more answers: other spellings pass, plausible wrong ones fail the check that catches them ---------------------

# Right: the key named by the naming convention (None), op.f for the index, the timeout through sa.text with TO.
CONVENTION_NAMES = f"""
op.execute(sa.text("SET LOCAL lock_timeout TO '200ms'"))
op.create_foreign_key(None, "job_entries", "user_profiles", ["reviewer_id"], ["id"], postgresql_not_valid=True)
with op.get_context().autocommit_block():
    op.create_index(op.f("ix_job_entries_reviewer_id"), "job_entries", ["reviewer_id"], postgresql_concurrently=True)
    op.execute("ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}")
"""
# Right: NOT VALID in one revision, VALIDATE in the next one's own transaction (no autocommit_block: env.py commits
# each revision), the index built concurrently there too.
VALIDATE_NEXT = (
    (
        f"""op.execute("SET LOCAL lock_timeout = '200ms'")
op.create_foreign_key("{FK}", "job_entries", "user_profiles", ["reviewer_id"], ["id"], postgresql_not_valid=True)""",
        f'op.drop_constraint("{FK}", "job_entries", type_="foreignkey")',
    ),
    (
        f"""op.execute("ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}")
with op.get_context().autocommit_block():
    op.execute("CREATE INDEX CONCURRENTLY ix_job_entries_reviewer_id ON job_entries (reviewer_id)")""",
        """with op.get_context().autocommit_block():
    op.execute("DROP INDEX CONCURRENTLY ix_job_entries_reviewer_id")""",
    ),
)
TYPED_MODEL = 'reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("user_profiles.id"), index=True)'


def test_a_key_named_by_the_convention_passes(chapter: Chapter) -> None:
    answer(chapter, CONVENTION_NAMES)
    assert failing(chapter) == [], str(chapter.report())


def test_validated_in_the_next_revision_with_a_typed_model_passes(chapter: Chapter) -> None:
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    answer(chapter, *VALIDATE_NEXT, model=TYPED_MODEL)
    assert failing(chapter) == [], str(chapter.report())


def test_a_downgrade_that_is_pass_leaves_the_key_and_fails(chapter: Chapter) -> None:
    """Applied, then replayed on a copy from the chapter's start: the `pass` left the key there, so the upgrade meets
    it again; the first hint says so, and names the downgrade. The first failing check is the downgrade's (it was
    "a revision ... makes job_entries.reviewer_id reference user_profiles.id", which the revision does), and the
    learner's fix, as its second hint says, is the downgrade in the file, the database left at head."""
    answer(chapter, (catalogue.SAFE_UPGRADE, "pass"))
    report = chapter.report()
    assert UNDONE in failing(chapter), str(report)
    assert report.first_failing is not None and report.first_failing.name == UNDONE, str(report)
    assert "already exists" in report.first_failing.hint, str(report)
    assert "downgrade() undo everything" in report.first_failing.hint, str(report)
    assert "drop_constraint" in report.first_failing.hints[1], report.first_failing.hints
    chapter.rewrite_revision(revision="c14a00000000", downgrade=DOWN)
    assert failing(chapter) == [], str(chapter.report())


def test_a_lock_timeout_longer_than_a_client_waits_fails_the_traffic(chapter: Chapter) -> None:
    answer(chapter, catalogue.SAFE_UPGRADE.replace("'200ms'", "'3s'"))
    report = chapter.report()
    assert failing(chapter) == [TRAFFIC], str(report)


# Wrong: safe in every lock, but ON DELETE CASCADE: deleting a profile now deletes every job it reviewed.
CASCADE = f"""
op.execute("SET LOCAL lock_timeout = '200ms'")
op.execute("ALTER TABLE job_entries ADD CONSTRAINT {FK} FOREIGN KEY (reviewer_id) REFERENCES user_profiles (id) "
           "ON DELETE CASCADE NOT VALID")
with op.get_context().autocommit_block():
    op.execute("ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}")
    op.create_index("ix_job_entries_reviewer_id", "job_entries", ["reviewer_id"], postgresql_concurrently=True)
"""


def test_a_key_that_cascades_deletes_to_the_jobs_a_profile_reviewed_fails_alembic_check(chapter: Chapter) -> None:
    """The model's ForeignKey has no ondelete: alembic check compares it, and sees a key to drop and add."""
    answer(chapter, CASCADE)
    report = chapter.report()
    assert failing(chapter) == ["main.py's models match the database (alembic check)"], str(report)
    assert report.first_failing is not None
    assert "ch.edit_model" not in report.first_failing.hints[-1], report.first_failing.hints  # main.py is right
