"""Hints that teach and checks that tell the truth: every hint level, the specific wrong attempts, and
solutions that run from the exercise's start any number of times."""

import re

import pytest
import sqlalchemy as sa

from helpers import failing, start
from migration_lab import Lab
from migration_lab.course import registry
from migration_lab.course.checks import Report
from migration_lab.course.registry import CHAPTERS, spec
from migration_lab.front.notebook import Chapter


def first_failing(chapter: Chapter, answer: object = None):
    check = chapter.report(answer).first_failing
    assert check is not None
    return check


CODE = re.compile(r"ch\.\w+\(|op\.\w+\(|answer = \"[0-9a-f]{12}\"")


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_hints_are_graduated_and_hint_gives_the_next_level(number: str, lab: Lab, capsys) -> None:
    """The first failing check at the exercise's start: the idea first, code only at the last level;
    ch.check() shows the first level as "Hint 1 of N" and names the next one, each ch.hint() gives that next one,
    and ch.hints() shows again every level seen so far."""
    chapter = start(lab, number)
    check = first_failing(chapter)
    total = len(check.hints)
    assert total >= 2, f"{check.name}: one hint level only"
    assert all(len(h) > 20 for h in check.hints)
    assert not CODE.search(check.hints[0]), f"the first level shows code: {check.hints[0]}"
    capsys.readouterr()
    chapter.check()
    shown = capsys.readouterr().out
    assert f"Hint 1 of {total}: {check.hints[0]}" in shown and all(h not in shown for h in check.hints[1:])
    assert f"Stuck? ch.hint() gives hint 2 of {total}." in shown
    for level in range(2, total + 1):
        chapter.hint()
        out = capsys.readouterr().out
        assert f"Hint {level} of {total}: {check.hints[level - 1]}" in out
        assert f"Hint {level - 1} of {total}" not in out  # one new level at a time
    chapter.hints()  # every level seen, in order, to read again
    again = capsys.readouterr().out
    positions = [again.index(f"Hint {n} of {total}: {check.hints[n - 1]}") for n in range(1, total + 1)]
    assert positions == sorted(positions)
    chapter.hint()  # past the last level: the last one again, and where the solution is
    assert "That was the last hint. ch.solution()" in capsys.readouterr().out
    chapter.check()  # all seen: the report says so instead of promising a next one
    assert f"ch.hints() shows the {total} hints again" in capsys.readouterr().out


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_solution_runs_twice_from_the_exercise_start(number: str, lab: Lab, capsys) -> None:
    chapter = start(lab, number)
    for _ in range(2):
        namespace: dict = {}
        chapter.solution(namespace)
        report = Report(tuple(chapter.spec.exercise(lab, namespace.get("answer"))))
        assert report.passed, str(report)
    assert "Back to the start of the exercise" in capsys.readouterr().out


def test_01_solution_after_the_learners_own_attempt_adds_one_column_and_one_revision(lab: Lab, capsys) -> None:
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision --autogenerate -m "my own try"')
    chapter.alembic("upgrade head")
    chapter.solution({})
    main = (lab.project.service_dir / "main.py").read_text()
    assert main.count("last_login =") == 1
    revisions = [p.read_text() for p in lab.project.versions_dir.glob("*.py")]
    assert sum("last_login" in text for text in revisions) == 1 and len(revisions) == 3
    assert chapter.report().passed
    assert "Your earlier work" in capsys.readouterr().out  # the attempt is backed up, and said so


def test_02_solution_after_a_failed_drop_and_add(lab: Lab, capsys) -> None:
    chapter = start(lab, "02")
    chapter.rename_column("UserProfile", "name", "full_name")
    chapter.alembic('revision --autogenerate -m "rename"')
    chapter.alembic("upgrade head", confirm=True)
    chapter.solution({})  # no LabError: it starts from the chapter's start
    assert chapter.report().passed
    capsys.readouterr()


def test_05_solution_twice_leaves_one_lowercase_revision(lab: Lab, capsys) -> None:
    chapter = start(lab, "05")
    chapter.solution({})
    chapter.solution({})
    assert sum("lower(" in p.read_text() for p in lab.project.versions_dir.glob("*.py")) == 1
    capsys.readouterr()


# --- 00 and 04: the answer is a revision id ---------------------------------------


def test_00_wrong_answers_get_their_own_hint(lab: Lab, capsys) -> None:
    chapter = start(lab, "00")
    assert "is a revision, but not the one" in first_failing(chapter, "3f1c2a9d4b10").hint
    assert "names no revision" in first_failing(chapter, "head").hint
    assert "as a string" in first_failing(chapter, 8).hint
    assert first_failing(chapter, "3f1c2a9d4b10").hints[-1] == 'answer = "8b7e5d2c6a41"'
    capsys.readouterr()


def test_01_a_python_default_is_named_and_a_late_server_default_leaves_rows_empty(lab: Lab, capsys) -> None:
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), default=func.now())")
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    default = hints["user_profiles.last_login defaults to the current time in the database"][0]
    assert "`default=`: that value is applied by Python" in default
    assert "3 profile(s) have no last_login" in hints["every existing profile has a last_login"][0]
    # The learner fixes the model: a server default, added to a column that already exists.
    chapter.edit_model(
        "last_login = Column(DateTime(timezone=True), default=func.now())",
        "last_login = Column(DateTime(timezone=True), server_default=func.now())",
    )
    chapter.alembic('revision --autogenerate -m "server default"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == ["every existing profile has a last_login"], hints  # the default alone does not pass
    assert "applies to new rows only" in hints["every existing profile has a last_login"][0]
    # Filled by hand (psql): this database looks right, every other one that runs the revisions keeps the NULLs.
    chapter.sql("UPDATE user_profiles SET last_login = now() WHERE last_login IS NULL")
    hints = failing(chapter)
    assert list(hints) == ["every existing profile has a last_login"], hints
    assert "filled by hand, not by a revision" in hints["every existing profile has a last_login"][0]
    exec(hints["every existing profile has a last_login"][-1], {"ch": chapter})  # the data migration
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


# --- 02: what really happened to the names ------------------------------------------


def _01_with(column: str, lab: Lab) -> Chapter:
    """Chapter 01 answered with the model line `column` (text and TIMESTAMP imported), autogenerated and applied."""
    chapter = start(lab, "01")
    chapter.edit_model(
        "from sqlalchemy import (",
        "from sqlalchemy import text\nfrom sqlalchemy.dialects.postgresql import TIMESTAMP\nfrom sqlalchemy import (",
    )
    chapter.add_column("UserProfile", column)
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    return chapter


@pytest.mark.parametrize(
    "column",
    [
        'last_login = Column(DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP"))',
        "last_login = Column(DateTime(timezone=True), server_default=func.clock_timestamp(), nullable=True)",
        "last_login = Column(TIMESTAMP(timezone=True, precision=3), server_default=func.now())",
    ],
    ids=["current-timestamp", "clock-timestamp", "millisecond-precision"],
)
def test_01_another_default_that_is_the_current_time_passes(column: str, lab: Lab, capsys) -> None:
    chapter = _01_with(column, lab)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


@pytest.mark.parametrize(
    ("column", "name", "said"),
    [
        (
            "last_login = Column(DateTime, server_default=func.now())",
            "user_profiles.last_login is timezone-aware (timestamp with time zone)",
            "timestamp without time zone",
        ),
        (
            "last_login = Column(DateTime(timezone=True), server_default=text(\"'2000-01-01 00:00+00'\"))",
            "user_profiles.last_login defaults to the current time in the database",
            "that is not the current time",
        ),
        (
            "last_login = Column(DateTime(timezone=True), server_default=text(\"'now'\"))",
            "user_profiles.last_login defaults to the current time in the database",
            "fixed for good",
        ),
    ],
    ids=["naive-timestamp", "a-fixed-date", "a-quoted-now"],
)
def test_01_a_naive_timestamp_or_a_fixed_default_fails_and_says_what_it_is(
    column: str, name: str, said: str, lab: Lab, capsys
) -> None:
    chapter = _01_with(column, lab)
    hints = failing(chapter)
    assert name in hints, hints  # a quoted now fails the replay too: each upgrade freezes another time
    assert said in hints[name][0], hints[name][0]
    capsys.readouterr()


def test_05_a_revision_that_misses_rows_is_told_so(lab: Lab, capsys) -> None:
    chapter = start(lab, "05")
    chapter.alembic('revision -m "lowercase emails"')
    chapter.rewrite_revision(upgrade='op.execute("UPDATE user_profiles SET email = lower(email) WHERE id < 0")')
    chapter.alembic("upgrade head")
    check = first_failing(chapter)
    assert (
        check.name.startswith("your migration, run on the exercise's rows")
        and "2 email(s) still have capitals" in check.hint
    )
    # The check on the learner's database said the migration does it on the exercise's rows: it does not.
    (mine,) = [c for c in chapter.report().checks if c.name == "every email is lowercase in your database"]
    assert "although the migration does it" not in mine.hint and "does not lowercase them all" in mine.hint
    capsys.readouterr()


def test_09_a_new_revision_next_to_the_old_files_is_not_the_whole_schema(lab: Lab, capsys) -> None:
    chapter = start(lab, "09")
    chapter.nuke(confirm=True)
    chapter.alembic('revision --autogenerate -m "initial schema"')  # the old files are still there
    hints = failing(chapter)
    assert "versions/ holds exactly one revision" in hints
    assert "that revision creates the whole schema (every table)" in hints
    capsys.readouterr()


def test_09_an_empty_initial_revision_is_explained(lab: Lab, capsys) -> None:
    chapter = start(lab, "09")
    for path in lab.project.versions_dir.glob("*.py"):  # `rm` in a terminal (ch.clean_versions() asks to nuke first)
        path.unlink()
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))  # forgot to nuke: the tables are still there
    chapter.alembic('revision --autogenerate -m "initial schema"')
    check = first_failing(chapter)
    assert check.name == "that revision creates the whole schema (every table)"
    assert "still had them" in check.hint
    capsys.readouterr()


def test_10_after_a_failed_upgrade_the_first_hint_is_the_server_default(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=False)")
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    assert "FAILED" in capsys.readouterr().out
    check = first_failing(chapter)
    assert check.name == "the database has column user_profiles.country"
    assert "fails on the rows" in check.hint and "server_default" in check.hint
    assert "Generate, review and apply" not in check.hint


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_check_my_work_in_a_chapter_never_started_says_so_and_raises_nothing(number: str, lab: Lab) -> None:
    """A kernel that opened the chapter's exercise without its reset (the files and database of chapter 00):
    Check my work answers with a failing check whose last hint leads out, never a traceback (chapter 05's replay
    raised alembic's ResolutionError for its start revision, missing from versions/)."""
    registry.reset("00", lab)
    chapter = Chapter(spec(number), lab)
    report = chapter.report()
    assert report.first_failing is not None, str(report)
    assert len(report.first_failing.hints) >= 2
