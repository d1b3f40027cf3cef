"""Chapter 15's exercise graded by what the release does: the code stops mapping the column first (the replay's app
runs main.py as saved), the DROP asks for its lock with a short lock_timeout however it was set (the lock trace
reads the session), 0 failed requests behind a report on a copy, a downgrade that gives the column back. Other
correct answers pass, plausible wrong ones fail, and the hints lead out from where they leave the learner."""

import pytest

from helpers import start, write_revision
from migration_lab import Lab
from migration_lab.course import ch14_busy_jobs as busy
from migration_lab.course import ch15_drops_and_renames as retries
from migration_lab.front.notebook import Chapter

PHONE = "    phone_number = Column(String, nullable=True)\n"
DOWN = "op.add_column('user_profiles', sa.Column('phone_number', sa.String(), nullable=True))"
DROP = "op.drop_column('user_profiles', 'phone_number')"
# Right: chapter 15's helper around the drop.
WITH_RETRIES = f"with_lock_retries(lambda: {DROP})"
# Right, another way: plain SQL; the lock_timeout for every revision, set in env.py for the migration's session.
IN_SQL = 'op.execute("ALTER TABLE user_profiles DROP COLUMN phone_number")'
ENV_TIMEOUT = (
    "    configure(connection=connection)\n",
    "    connection.exec_driver_sql(\"SET lock_timeout = '200ms'\")  # every revision asks briefly\n"
    "    connection.commit()\n    configure(connection=connection)\n",
)
# Wrong, plausibly: a brief lock, but the code still maps the column.
STILL_MAPPED = f"op.execute(\"SET LOCAL lock_timeout = '200ms'\")\n{DROP}"

MODEL_CHECK = "UserProfile in main.py no longer maps the column phone_number"
TRACE = "the lock trace: the DROP asks for its lock with a lock_timeout shorter than a client waits"
TRAFFIC = "replayed on a copy under the app's traffic and a report: 0 failed requests"


def answer(chapter: Chapter, upgrade: str, helper: str = "", code_first: bool = True, apply: bool = True) -> None:
    if code_first:
        chapter.edit_model(PHONE, "")
    path = write_revision(chapter.lab.project, "c15a00000001", busy.START, upgrade, DOWN)
    if helper:
        path.write_text(path.read_text().replace("\n\ndef upgrade():", "\n" + helper + "\ndef upgrade():"))
    if apply:
        result = chapter.lab.runner.run("upgrade head")
        assert result.ok, result.error


def failing(chapter: Chapter) -> list[str]:
    return [c.name for c in chapter.report().checks if not c.passed]


def follow_the_hints(chapter: Chapter) -> None:
    """Run the last hint (the code) of the first failing check, as a stuck learner would, until all pass."""
    for _ in range(4):
        first = chapter.report().first_failing
        if first is None:
            return
        exec(first.hints[-1], {"ch": chapter})
    assert failing(chapter) == [], str(chapter.report())


@pytest.fixture
def chapter(lab: Lab, capsys) -> Chapter:
    chapter = start(lab, "15")
    capsys.readouterr()
    return chapter


def test_the_helper_around_the_drop_passes(chapter: Chapter) -> None:
    answer(chapter, WITH_RETRIES, helper=retries.LOCK_RETRIES)
    assert failing(chapter) == []


def test_plain_sql_with_the_lock_timeout_in_env_py_passes(chapter: Chapter) -> None:
    env = chapter.lab.project.service_dir / "migrations" / "env.py"
    env.write_text(env.read_text().replace(*ENV_TIMEOUT))
    answer(chapter, IN_SQL)
    assert failing(chapter) == []


def test_a_drop_while_the_code_still_maps_it_fails_with_errors_and_the_hints_lead_out(chapter: Chapter) -> None:
    answer(chapter, STILL_MAPPED, code_first=False)
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == MODEL_CHECK, str(report)
    [traffic] = [c for c in report.checks if c.name == TRAFFIC]
    assert not traffic.passed and "errors at once" in traffic.hint  # the running code named the column
    assert TRACE not in failing(chapter)  # its lock was asked for briefly: that part is right
    follow_the_hints(chapter)


def test_code_first_but_no_lock_timeout_fails_by_the_trace_and_the_traffic(chapter: Chapter) -> None:
    answer(chapter, DROP)
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == TRACE, str(report)
    assert "lock_timeout 0" in report.first_failing.hint
    assert set(failing(chapter)) == {TRACE, TRAFFIC}
    [traffic] = [c for c in report.checks if c.name == TRAFFIC]
    assert "after the DROP began to wait for it" in traffic.hint
    follow_the_hints(chapter)


def test_a_lock_timeout_as_long_as_a_client_waits_is_too_long(chapter: Chapter) -> None:
    answer(chapter, f"op.execute(\"SET LOCAL lock_timeout = '1s'\")\n{DROP}")
    assert TRACE in failing(chapter)


def test_a_downgrade_that_forgets_the_column(chapter: Chapter) -> None:
    chapter.edit_model(PHONE, "")
    write_revision(chapter.lab.project, "c15a00000001", busy.START, STILL_MAPPED, "pass")
    assert chapter.lab.runner.run("upgrade head").ok
    report = chapter.report()  # the copy goes back through downgrade(), which leaves the column dropped
    assert report.first_failing is not None and "taken back to the chapter's start by your downgrade()" in (
        report.first_failing.hint
    ), str(report)
    # The check the learner reads first is the downgrade's (the first check, that a revision drops the column,
    # fails too: the replay stopped before it).
    assert (
        report.first_failing.name == "its downgrade() runs and gives the column back, nullable (replayed on the copy)"
    )
    assert "Fix it in the revision file" in report.first_failing.hints[1], str(report)
    # The learner's fix, as the hint says, in the file they wrote (no revision generated in this kernel to default
    # to); their database stays at head.
    chapter.rewrite_revision(revision="c15a00000001", downgrade=DOWN)
    assert failing(chapter) == []


def test_an_answer_never_applied_is_told_to_apply_it(chapter: Chapter, capsys) -> None:
    answer(chapter, STILL_MAPPED, apply=False)
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == "the database is at head"
    chapter.alembic("upgrade head", confirm=True)
    assert failing(chapter) == []
    capsys.readouterr()


def test_the_solution_passes_after_the_chapters_steps(lab: Lab, capsys) -> None:
    """The steps leave a drop applied while the code mapped the column, then the code fixed; the solution starts
    over, and its release round-trips."""
    chapter = start(lab, "15")
    chapter.reset()
    write_revision(lab.project, "c15b00000001", busy.START, DROP, DOWN)
    assert lab.runner.run("upgrade head").ok
    chapter.edit_model(PHONE, "")
    namespace: dict = {}
    chapter.solution(namespace)
    assert failing(chapter) == []
    assert lab.runner.run(["downgrade", busy.START]).ok and lab.runner.run("upgrade head").ok
    capsys.readouterr()


def test_the_column_mapped_under_another_attribute_name_still_counts_as_mapped(chapter: Chapter) -> None:
    """`phone = Column("phone_number", ...)`: the attribute is renamed, the code still maps the column the release
    drops, and the running app would name it."""
    chapter.edit_model(PHONE, '    phone = Column("phone_number", String, nullable=True)\n')
    answer(chapter, STILL_MAPPED, code_first=False)
    assert MODEL_CHECK in failing(chapter)


@pytest.mark.parametrize(
    ("down", "passes"),
    [
        ("sa.Integer()", False),
        ("sa.Text()", True),
        ("sa.CHAR()", False),
        ("sa.String(10)", False),
        ("sa.CHAR(40)", True),
        ("sa.String(20)", True),
    ],
    ids=["integer-fails", "text-passes", "char-of-one-fails", "too-short-fails", "long-char-passes", "varchar-20"],
)
def test_the_downgrade_gives_back_a_column_the_old_code_can_write(chapter: Chapter, down: str, passes: bool) -> None:
    """The old code writes phone numbers as text: an integer column given back breaks it, a text one does not, nor a
    char(40) (its padding is not part of the value) or a varchar(20) (the lab's numbers fit); sa.CHAR() is char(1)
    and String(10) cuts a number short: a string type that cannot hold a phone number fails too."""
    chapter.edit_model(PHONE, "")
    write_revision(chapter.lab.project, "c15a00000001", busy.START, STILL_MAPPED, DOWN.replace("sa.String()", down))
    assert chapter.lab.runner.run("upgrade head").ok
    back = "its downgrade() runs and gives the column back, nullable (replayed on the copy)"
    assert (back not in failing(chapter)) is passes, str(chapter.report())


STATEMENT_TIMEOUT = f"op.execute(\"SET LOCAL statement_timeout = '1s'\")\n{DROP}"


def test_a_statement_timeout_that_cancels_the_drop_is_not_blamed_on_the_downgrade(chapter: Chapter) -> None:
    """The DROP waits behind the report and is cancelled: the hint said "Does downgrade() undo everything upgrade()
    does?", and the downgrade was right."""
    answer(chapter, STATEMENT_TIMEOUT)
    first = chapter.report().first_failing
    assert first is not None and "statement timeout" in first.hints[0], str(chapter.report())
    assert "downgrade" not in " ".join(first.hints), first.hints


def test_an_upgrade_that_meets_what_the_downgrade_left_is_blamed_on_the_downgrade(chapter: Chapter) -> None:
    """The other way round: a downgrade that gives the column back, and an upgrade that then adds it again."""
    chapter.edit_model(PHONE, "")
    path = write_revision(
        chapter.lab.project,
        "c15a00000001",
        busy.START,
        f"op.execute(\"SET LOCAL lock_timeout = '200ms'\")\n{DROP}\n"
        "op.add_column('user_profiles', sa.Column('extra', sa.String(), nullable=True))",
        f"{DOWN}",
    )
    assert path.exists()
    assert chapter.lab.runner.run("upgrade head").ok
    first = chapter.report().first_failing
    assert first is not None and "DuplicateColumn" in first.hints[0], str(chapter.report())
    assert "Does downgrade() undo everything upgrade() does?" in first.hints[0], first.hints


def test_a_downgrade_that_gives_the_column_back_not_null_with_a_default_is_told_why_it_is_wrong(
    chapter: Chapter,
) -> None:
    """The default fills the rows, so the downgrade runs: the hint said the rows there "refuse" NOT NULL."""
    chapter.edit_model(PHONE, "")
    write_revision(
        chapter.lab.project,
        "c15a00000001",
        busy.START,
        STILL_MAPPED,
        "op.add_column('user_profiles', sa.Column('phone_number', sa.String(), nullable=False, server_default=''))",
    )
    assert chapter.lab.runner.run("upgrade head").ok
    undone = "its downgrade() runs and gives the column back, nullable (replayed on the copy)"
    (check,) = [c for c in chapter.report().checks if c.name == undone]
    assert not check.passed and "back NOT NULL" in check.hints[0] and "refuse" not in check.hints[0], check.hints


# --- more answers: other spellings pass, plausible wrong ones fail the check that catches them -------------------


def test_a_plain_set_to_bare_milliseconds_through_the_bind_and_sql_with_if_exists_pass(chapter: Chapter) -> None:
    """The model line commented out; `SET lock_timeout TO 200` (no LOCAL, bare milliseconds) through op.get_bind();
    DROP COLUMN IF EXISTS; a downgrade in SQL that gives back a varchar."""
    chapter.edit_model(PHONE, "    # " + PHONE.lstrip())
    write_revision(
        chapter.lab.project,
        "c15a00000001",
        busy.START,
        'op.get_bind().exec_driver_sql("SET lock_timeout TO 200")\n'
        'op.execute(sa.text("ALTER TABLE user_profiles DROP COLUMN IF EXISTS phone_number"))',
        'op.execute("ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS phone_number varchar(32)")',
    )
    assert chapter.lab.runner.run("upgrade head").ok
    assert failing(chapter) == [], str(chapter.report())


def test_the_timeout_with_a_statement_timeout_beside_it_passes(chapter: Chapter) -> None:
    answer(
        chapter,
        "op.execute(\"SET LOCAL statement_timeout = '5s'\")\n"
        "op.execute(sa.text(\"SET LOCAL lock_timeout = '0.2s'\"))\n" + DROP,
    )
    assert failing(chapter) == [], str(chapter.report())


def test_a_lock_timeout_set_after_the_drop_fails_by_the_trace(chapter: Chapter) -> None:
    answer(chapter, f"{DROP}\nop.execute(\"SET LOCAL lock_timeout = '200ms'\")")
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == TRACE, str(report)
    assert "lock_timeout 0" in report.first_failing.hint


def test_a_set_local_lock_timeout_in_a_revision_of_its_own_ends_with_it_and_fails(chapter: Chapter) -> None:
    """SET LOCAL lasts until its transaction's end, and env.py commits each revision: the DROP, in the next one,
    waits as long as it takes."""
    chapter.edit_model(PHONE, "")
    write_revision(chapter.lab.project, "c15a00000001", busy.START, "op.execute(\"SET LOCAL lock_timeout = '200ms'\")")
    write_revision(chapter.lab.project, "c15a00000002", "c15a00000001", DROP, DOWN)
    assert chapter.lab.runner.run("upgrade head").ok
    report = chapter.report()
    assert report.first_failing is not None and report.first_failing.name == TRACE, str(report)
    assert TRAFFIC in failing(chapter)


def test_a_plain_set_in_an_earlier_revision_is_named_when_the_drop_has_no_lock_timeout(chapter: Chapter) -> None:
    """`SET lock_timeout` without LOCAL in the release's first revision, the DROP in the second: in one `upgrade
    head` the session keeps it and the traffic passes; the trace runs each revision in a session of its own, as a
    deploy's retry (or `alembic upgrade +1`) does, and the DROP waits. The verdict stands; the hint said only
    "lock_timeout 0", now it names the line that set it and why that does not count."""
    chapter.edit_model(PHONE, "")
    write_revision(chapter.lab.project, "c15a00000001", busy.START, "op.execute(\"SET lock_timeout = '200ms'\")")
    write_revision(chapter.lab.project, "c15a00000002", "c15a00000001", DROP, DOWN)
    assert chapter.lab.runner.run("upgrade head").ok
    report = chapter.report()
    assert failing(chapter) == [TRACE], str(report)
    [trace] = [c for c in report.checks if c.name == TRACE]
    first, second = trace.hints[0], trace.hints[1]
    assert "line 12 of c15a00000002_hand_written.py: lock_timeout 0" in first, first
    assert "line 12 of c15a00000001_hand_written.py sets lock_timeout to 200ms with a plain SET" in first, first
    assert "alembic upgrade +1" in first and "retries" in first, first
    assert "SET LOCAL" in second and "env.py" in second and "c15a00000002_hand_written.py" in second, second
    follow_the_hints(chapter)


def test_a_batch_alter_table_drop_with_the_timeout_through_sa_text_passes(chapter: Chapter) -> None:
    """alembic's batch_alter_table (on PostgreSQL, plain ALTERs), `SET LOCAL lock_timeout TO` through sa.text, and a
    downgrade that gives the column back as autogenerate spells it (sa.VARCHAR())."""
    chapter.edit_model(PHONE, "")
    write_revision(
        chapter.lab.project,
        "c15a00000001",
        busy.START,
        "op.execute(sa.text(\"SET LOCAL lock_timeout TO '250ms'\"))\n"
        "with op.batch_alter_table('user_profiles') as batch:\n    batch.drop_column('phone_number')",
        "with op.batch_alter_table('user_profiles') as batch:\n"
        "    batch.add_column(sa.Column('phone_number', sa.VARCHAR(), nullable=True))",
    )
    assert chapter.lab.runner.run("upgrade head").ok
    assert failing(chapter) == [], str(chapter.report())
