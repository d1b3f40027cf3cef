"""Chapters 08, 09 and 10: each exercise graded by what the answer does, with other correct answers (they pass)
and plausible wrong ones (they fail), beyond the chapters' own solutions."""

import pytest

from helpers import failing, start
from migration_lab import Lab
from migration_lab.course.ch08_troubleshooting import BROKEN_ENV_IMPORT
from migration_lab.course.ch10_review import UNDONE as COUNTRY_UNDONE

# --- 08: which line fails, in every form the text invites -------------------------------------------------------

ANSWER_CHECK = "your answer names the line of your project that fails"
FIX = ("from main import Base, JobQueue", "from main import Base")


@pytest.fixture
def fixed_08(lab: Lab, capsys):
    """Chapter 08's exercise after the learner fixed env.py and stamped: only the answer is left to judge."""
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", *FIX)
    chapter.alembic("stamp head")
    capsys.readouterr()
    return chapter


@pytest.mark.parametrize(
    "answer",
    [
        "ai-service/migrations/env.py:18",
        "env.py, line 18",
        'File "ai-service/migrations/env.py", line 18, in <module>',  # the frame header, as the traceback shows it
        '  File "/home/ada/migration-lab/ai-service/migrations/env.py", line 18, in <module>',  # a terminal's path
        BROKEN_ENV_IMPORT,  # the line pasted as the traceback showed it, although env.py is fixed now
        "    from main import Base, JobQueue  # noqa: E402  (needs the sys.path line above)\n    ^^^^^^^^^^^^^^^^^^^",
        'File "ai-service/migrations/env.py", line 18, in <module>\n    from main import Base, JobQueue',
        "line 18 of ai-service/migrations/env.py",  # said in words
        "Line 18 in env.py",
        "./migrations/env.py:18\n",  # from ai-service/, as a terminal there prints it
        "Env.py:18",
        "env.py (line 18)",
        "env.py line 18",
        "ai-service/migrations/env.py:L18",
        "ai-service/migrations/env.py#L18",
        "env.py: line 18",
        "line 18, ai-service/migrations/env.py",
        "env.py line no. 18",
        "env.py, ln 18",
        "18 env.py",
    ],
    ids=[
        "file:line",
        "file, line",
        "frame-header",
        "absolute-frame",
        "line-as-it-failed",
        "with-carets",
        "frame+line",
        "line-of-file",
        "line-in-file",
        "relative",
        "case",
        "parenthesised",
        "file-line",
        "editor-L",
        "web-anchor",
        "file-colon-line",
        "line-comma-file",
        "line-no",
        "ln",
        "number-first",
    ],
)
def test_08_accepts_every_form_the_text_invites(fixed_08, answer: str) -> None:
    assert ANSWER_CHECK not in failing(fixed_08, answer)
    assert fixed_08.report(answer).passed, str(fixed_08.report(answer))


@pytest.mark.parametrize(
    "answer",
    [
        "ai-service/migrations/env.py:19",
        "main.py:18",
        "ImportError: cannot import name 'JobQueue' from 'main' (ai-service/main.py)",  # what failed, not where
        'File ".../site-packages/alembic/util/pyfiles.py", line 132, in load_module_py',  # alembic's frame
        "import sys",  # another line of env.py
        'File "ai-service/migrations/env.py", line 18, in <module>\n'
        'File ".../site-packages/alembic/config.py", line 636, in main',  # the whole traceback pasted
        "line 18 of main.py",
        "line 1 of env.py",
        "env.py",  # the file, no line
        "env.py (line 19)",
        "ai-service/migrations/env.py#L1",
        "main.py: line 18",
        "line 18, main.py",
        "main.py line no. 18",
        "env.py ln 19",
        "18 env.py or main.py",
        "env.py 18 or 19",
    ],
    ids=[
        "wrong-line",
        "main.py",
        "the-error",
        "alembic-frame",
        "another-line",
        "whole-traceback",
        "line-of-main",
        "line-1-of-env",
        "no-line",
        "parenthesised-wrong-line",
        "web-anchor-wrong-line",
        "colon-line-of-main",
        "line-comma-main",
        "line-no-of-main",
        "ln-wrong-line",
        "two-files",
        "two-lines",
    ],
)
def test_08_rejects_what_does_not_name_that_line(fixed_08, answer: str) -> None:
    assert ANSWER_CHECK in failing(fixed_08, answer)


def test_08_the_line_is_the_one_that_failed_even_after_lines_above_it_move(fixed_08) -> None:
    """The learner fixes env.py and adds a line above the import: the traceback's line 18 is still the answer."""
    fixed_08.edit_file("migrations/env.py", "import os\n", "import os  # the lab's ai-service\nimport json  # noqa\n")
    assert ANSWER_CHECK not in failing(fixed_08, "ai-service/migrations/env.py:18")


def test_08_upgrading_instead_of_stamping_the_tables_create_all_made_fails(lab: Lab, capsys) -> None:
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", *FIX)
    chapter.alembic("upgrade head")  # DuplicateTable: the tables are there, alembic_version is empty
    assert "the database is at head" in failing(chapter, "env.py:18")
    capsys.readouterr()


def test_08_dropping_the_tables_and_upgrading_is_another_way_out(lab: Lab, capsys) -> None:
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", *FIX)
    chapter.sql("DROP TABLE job_entries, user_settings, user_profiles; DROP TYPE job_state")
    chapter.alembic("upgrade head")
    assert chapter.report("env.py:18").passed, str(chapter.report("env.py:18"))
    capsys.readouterr()


# --- 09: one initial revision that builds the whole schema, however it is written ----------------------------


def fresh_09(lab: Lab):
    chapter = start(lab, "09")
    chapter.nuke(confirm=True)
    chapter.clean_versions()
    chapter.alembic('revision --autogenerate -m "initial schema"')
    return chapter


def test_09_the_initial_revision_reformatted_with_double_quotes_passes(lab: Lab, capsys) -> None:
    """ruff format's quotes (chapter 13's post-write hook), the ENUM type dropped with op.execute."""
    chapter = fresh_09(lab)
    path = chapter.lab.runner.script().get_revision("head").path  # type: ignore[union-attr]
    with open(path) as file:
        text = file.read().replace("'", '"')
    with open(path, "w") as file:
        file.write(text)
    chapter.rewrite_revision(
        downgrade='op.drop_table("user_settings")\n'
        'op.drop_index(op.f("ix_job_entries_user_id"), table_name="job_entries")\n'
        'op.drop_table("job_entries")\nop.drop_table("user_profiles")\nop.execute("DROP TYPE job_state")'
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_09_an_initial_revision_that_forgets_a_table_fails(lab: Lab, capsys) -> None:
    chapter = fresh_09(lab)
    path = chapter.lab.runner.script().get_revision("head").path  # type: ignore[union-attr]
    with open(path) as file:
        text = file.read()
    start_at = text.index("    op.create_table('user_settings'")
    end_at = text.index("    )\n", start_at) + len("    )\n")
    with open(path, "w") as file:
        file.write(text[:start_at] + text[end_at:])
    chapter.alembic("upgrade head")
    assert "that revision creates the whole schema (every table)" in failing(chapter)
    capsys.readouterr()


# --- 10: a required country, the downgrade replayed one step ------------------------------------------------------


def test_10_a_check_constraint_route_passes(lab: Lab, capsys) -> None:
    """Nullable, backfill, then NOT NULL proved by a CHECK added NOT VALID and validated in its own transaction
    (chapter 11's way), the helper constraint dropped after."""
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=False)")
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.rewrite_revision(
        upgrade="""op.add_column("user_profiles", sa.Column("country", sa.String(length=2), nullable=True))
op.execute("UPDATE user_profiles SET country = 'GB' WHERE country IS NULL")
op.create_check_constraint("country_set", "user_profiles", "country IS NOT NULL", postgresql_not_valid=True)
with op.get_context().autocommit_block():
    op.execute("ALTER TABLE user_profiles VALIDATE CONSTRAINT ck_user_profiles_country_set")
op.alter_column("user_profiles", "country", existing_type=sa.String(length=2), nullable=False)
op.drop_constraint(op.f("ck_user_profiles_country_set"), "user_profiles", type_="check")"""
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_10_plain_sql_with_double_quotes_passes(lab: Lab, capsys) -> None:
    """Every statement in plain SQL, double quotes, timeouts first."""
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=False)")
    chapter.alembic('revision -m "add country"')
    chapter.rewrite_revision(
        upgrade="op.execute(\"SET LOCAL lock_timeout = '1s'\")\n"
        'op.execute("ALTER TABLE user_profiles ADD COLUMN country varchar(2)")\n'
        "op.execute(\"UPDATE user_profiles SET country = 'GB' WHERE country IS NULL\")\n"
        'op.execute("ALTER TABLE user_profiles ALTER COLUMN country SET NOT NULL")',
        downgrade='op.execute("ALTER TABLE user_profiles DROP COLUMN country")',
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_10_a_pass_downgrade_fails_the_one_step_replay(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", 'country = Column(String(2), nullable=False, server_default="GB")')
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.rewrite_revision(downgrade="pass")
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert COUNTRY_UNDONE in hints and "no downgrade() takes country out" in hints[COUNTRY_UNDONE][0]
    capsys.readouterr()


def test_10_a_downgrade_that_drops_the_wrong_column_fails(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", 'country = Column(String(2), nullable=False, server_default="GB")')
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.rewrite_revision(downgrade="op.drop_column('user_profiles', 'phone_number')")
    chapter.alembic("upgrade head")
    assert COUNTRY_UNDONE in failing(chapter)
    capsys.readouterr()


def test_10_a_char_2_column_passes(lab: Lab, capsys) -> None:
    """CHAR(2) holds a two-letter code as well as String(2)."""
    chapter = start(lab, "10")
    chapter.edit_model("from sqlalchemy import (", "from sqlalchemy import CHAR\nfrom sqlalchemy import (")
    chapter.add_column("UserProfile", 'country = Column(CHAR(2), nullable=False, server_default="GB")')
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


@pytest.mark.parametrize("type_", ["String", "String(50)"])
def test_10_a_country_longer_than_two_letters_fails(type_: str, lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", f'country = Column({type_}, nullable=False, server_default="GB")')
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == ["user_profiles.country holds two letters (String(2) or CHAR(2))"], hints
    capsys.readouterr()


def test_10_emptying_the_table_to_get_past_the_not_null_violation_fails(lab: Lab, capsys) -> None:
    """Autogenerate's one-step NOT NULL fails on the rows; nuking the database and upgrading again gets past it in
    the learner's own database, never in one with rows. The replay on a copy holds a profile."""
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=False)")
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    chapter.nuke(confirm=True)
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [COUNTRY_UNDONE], hints
    assert "with a profile in it" in hints[COUNTRY_UNDONE][0] and "NotNullViolation" in hints[COUNTRY_UNDONE][0]
    capsys.readouterr()


def test_10_a_typed_mapping_in_sqlalchemy_2_style_passes(lab: Lab, capsys) -> None:
    """`Mapped[str]` with mapped_column(): the model maps the same column, however the attribute is written."""
    chapter = start(lab, "10")
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    chapter.add_column(
        "UserProfile", 'country: Mapped[str] = mapped_column(String(2), nullable=False, server_default="GB")'
    )
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


COUNTRY_VALUES = "every profile's country is two letters, and so is the default new ones get (never empty)"


@pytest.mark.parametrize(
    ("default", "said"),
    [('""', "have '' as their country"), ('"??"', "have '??' as their country")],
    ids=["empty-string", "question-marks"],
)
def test_10_a_default_that_is_no_country_fails(default: str, said: str, lab: Lab, capsys) -> None:
    """An empty string gets past NotNullViolation and fits String(2): every other check passed."""
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", f"country = Column(String(2), nullable=False, server_default={default})")
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [COUNTRY_VALUES], hints
    assert said in hints[COUNTRY_VALUES][0], hints[COUNTRY_VALUES]
    capsys.readouterr()


def test_10_rows_filled_but_a_default_that_is_no_country_fails(lab: Lab, capsys) -> None:
    """The rows there are backfilled with GB, and every new profile gets '' from the default."""
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", 'country = Column(String(2), nullable=False, server_default="")')
    chapter.alembic('revision -m "add country"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('country', sa.String(2), nullable=True))\n"
        "op.execute(\"UPDATE user_profiles SET country = 'GB'\")\n"
        "op.alter_column('user_profiles', 'country', nullable=False, server_default='')",
        downgrade="op.drop_column('user_profiles', 'country')",
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [COUNTRY_VALUES], hints
    assert "its server default gives new profiles '' as their country" in hints[COUNTRY_VALUES][0]
    capsys.readouterr()


LOADS = "alembic can load env.py and the models"


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ("import sys\nsys.exit(3)\n", "sys.exit(3) stopped the command (env.py, line"),
        ("import sys\nsys.exit()\n", "sys.exit() stopped the command (env.py, line"),
        ('raise KeyError("DATABASE_URL")\n', "KeyError: 'DATABASE_URL' (env.py, line"),
    ],
    ids=["exit-3", "exit", "key-error"],
)
def test_08_once_the_import_is_fixed_another_failure_of_env_py_is_said_as_it_is(
    lab: Lab, capsys, broken: str, said: str
) -> None:
    """The colleague's import fixed, env.py then fails on something else: the hint says what (never "fails: 3.",
    never "env.py imports something main.py does not have"), and its code runs."""
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", *FIX)
    env = lab.project.service_dir / "migrations" / "env.py"
    env.write_text(env.read_text().replace("import os\n", f"import os\n{broken}", 1))
    hints = failing(chapter, "env.py:18")[LOADS]
    assert said in hints[0] and "imports something main.py does not have" not in hints[0], hints
    exec(hints[-1], {"ch": chapter})
    capsys.readouterr()


def test_08_a_sys_exit_with_a_message_is_said_as_written_not_called_a_bare_exit(lab: Lab, capsys) -> None:
    """sys.exit("...") is a guard that says why (env.py's own are): shown as written, never "take it out"."""
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", *FIX)
    env = lab.project.service_dir / "migrations" / "env.py"
    env.write_text(env.read_text().replace("import os\n", 'import os\nimport sys\nsys.exit("not on production")\n', 1))
    hints = failing(chapter, "env.py:18")[LOADS]
    assert "not on production" in hints[0] and "Take it out" not in hints[0], hints
    capsys.readouterr()


# --- more answers, another route each, and plausible wrong ones ---------------------------------------------------


def test_08_importing_the_module_instead_of_the_name_is_a_fix_too(lab: Lab, capsys) -> None:
    """`import main` and `main.Base.metadata`: env.py has no `from main import` line any more; the answer is still
    the line the traceback showed."""
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", BROKEN_ENV_IMPORT, "import main  # noqa: E402")
    chapter.edit_file("migrations/env.py", "target_metadata = Base.metadata", "target_metadata = main.Base.metadata")
    chapter.alembic("stamp head")
    assert chapter.report("migrations/env.py:18").passed, str(chapter.report("migrations/env.py:18"))
    capsys.readouterr()


def test_08_giving_main_py_the_name_env_py_imports_is_a_fix_too(lab: Lab, capsys) -> None:
    """The colleague's import kept, main.py given a JobQueue (an alias of JobEntry): alembic loads, nothing differs."""
    chapter = start(lab, "08")
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\nJobQueue = JobEntry\n")
    chapter.alembic("stamp heads")
    assert chapter.report("env.py:18").passed, str(chapter.report("env.py:18"))
    capsys.readouterr()


def test_08_dropping_the_models_from_env_py_gets_current_to_run_but_fails_and_says_why(lab: Lab, capsys) -> None:
    """No import, `target_metadata = None`: `alembic current` and `stamp` run, and alembic can no longer compare the
    models with the database; the hint says that, not that the tables differ."""
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", BROKEN_ENV_IMPORT, "")
    chapter.edit_file("migrations/env.py", "target_metadata = Base.metadata", "target_metadata = None")
    chapter.alembic("stamp head")
    hints = failing(chapter, "env.py:18")
    assert list(hints) == ["main.py's models match the database (alembic check)"], hints
    said = hints["main.py's models match the database (alembic check)"][0]
    assert "target_metadata" in said and "they differ" not in said, said
    capsys.readouterr()


@pytest.mark.parametrize("answer", [18, "18", "env.py"], ids=["a-number", "a-number-as-text", "the-file"])
def test_08_half_an_answer_fails(fixed_08, answer: object) -> None:
    assert ANSWER_CHECK in failing(fixed_08, answer)


def test_09_emptying_the_schema_by_sql_instead_of_nuke_passes(lab: Lab, capsys) -> None:
    """DROP SCHEMA public CASCADE by hand, the type dropped in downgrade() with checkfirst and double quotes."""
    chapter = start(lab, "09")
    chapter.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    chapter.clean_versions()
    chapter.alembic('revision --autogenerate -m "initial"')
    chapter.rewrite_revision(
        downgrade='op.drop_table("user_settings")\n'
        'op.drop_index(op.f("ix_job_entries_user_id"), table_name="job_entries")\n'
        'op.drop_table("job_entries")\nop.drop_table("user_profiles")\n'
        'sa.Enum(name="job_state").drop(op.get_bind(), checkfirst=True)'
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_09_autogenerating_against_the_old_tables_writes_an_empty_revision_and_fails(lab: Lab, capsys) -> None:
    """alembic_version emptied instead of the database: autogenerate finds nothing to do, stamp puts it at head."""
    chapter = start(lab, "09")
    chapter.sql("DELETE FROM alembic_version")
    chapter.clean_versions()
    chapter.alembic('revision --autogenerate -m "initial"')
    chapter.alembic("stamp head")
    hints = failing(chapter)
    assert "that revision creates the whole schema (every table)" in hints, hints
    assert "a database that still had them" in hints["that revision creates the whole schema (every table)"][0]
    capsys.readouterr()


def test_09_autogenerates_downgrade_without_the_enum_type_fails_the_round_trip(lab: Lab, capsys) -> None:
    chapter = fresh_09(lab)
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert len(hints) == 1 and "job_state" in next(iter(hints.values()))[0], hints
    capsys.readouterr()


def test_10_a_server_default_only_for_the_rows_there_then_dropped_passes(lab: Lab, capsys) -> None:
    """The default fills the old rows and goes again: the model has none, new rows must name their country."""
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=False)")
    chapter.alembic('revision -m "add country"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('country', sa.String(2), nullable=False, "
        "server_default='GB'))\n"
        "op.alter_column('user_profiles', 'country', server_default=None)",
        downgrade="op.drop_column('user_profiles', 'country')",
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_10_nullable_and_backfill_then_not_null_in_a_second_revision_passes(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=False)")
    chapter.alembic('revision -m "add country nullable"')
    chapter.rewrite_revision(
        upgrade='op.add_column("user_profiles", sa.Column("country", sa.String(2), nullable=True))\n'
        "op.execute(\"UPDATE user_profiles SET country = 'gb' WHERE country IS NULL\")",
        downgrade='op.drop_column("user_profiles", "country")',
    )
    chapter.alembic('revision -m "country not null"')
    chapter.rewrite_revision(
        upgrade='op.alter_column("user_profiles", "country", existing_type=sa.String(2), nullable=False)',
        downgrade='op.alter_column("user_profiles", "country", existing_type=sa.String(2), nullable=True)',
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_10_backfilled_but_left_nullable_fails_the_not_null_check(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", "country = Column(String(2), nullable=True)")
    chapter.alembic('revision -m "add country"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('country', sa.String(2), nullable=True))\n"
        "op.execute(\"UPDATE user_profiles SET country = 'GB'\")",
        downgrade="op.drop_column('user_profiles', 'country')",
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == ["user_profiles.country is NOT NULL, so every profile has one"], hints
    capsys.readouterr()


def test_10_a_downgrade_that_only_relaxes_not_null_fails_the_one_step_replay(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", 'country = Column(String(2), nullable=False, server_default="GB")')
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.rewrite_revision(downgrade="op.alter_column('user_profiles', 'country', nullable=True)")
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert COUNTRY_UNDONE in hints, hints
    capsys.readouterr()


WHOLE_09 = "that revision creates the whole schema (every table)"


@pytest.mark.parametrize(
    "values",
    ["'queued', 'done', 'running'", "'queued', 'running'"],
    ids=["another-order", "a-value-missing"],
)
def test_09_an_initial_revision_whose_enum_differs_from_the_model_fails(lab: Lab, values: str, capsys) -> None:
    """job_state's values edited in the initial revision: `alembic check` never compares an enum's values, and the
    round trip gives the same wrong type back; built from nothing, the type is compared with main.py's."""
    chapter = fresh_09(lab)
    path = chapter.lab.runner.script().get_revision("head").path  # type: ignore[union-attr]
    with open(path) as file:
        text = file.read()
    generated = "sa.Enum('queued', 'running', 'done', name='job_state')"
    assert generated in text
    with open(path, "w") as file:
        file.write(text.replace(generated, f"sa.Enum({values}, name='job_state')"))
    chapter.rewrite_revision(
        downgrade="op.drop_table('user_settings')\nop.drop_table('job_entries')\nop.drop_table('user_profiles')\n"
        "op.execute('DROP TYPE job_state')"
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [WHOLE_09], hints
    assert f"type job_state is ({values.replace(chr(39), '')}) where main.py has" in hints[WHOLE_09][0], hints
    capsys.readouterr()


def test_09_dropping_the_type_with_cascade_before_the_tables_passes(lab: Lab, capsys) -> None:
    """DROP TYPE ... CASCADE first (it takes job_entries.state with it), then the tables, without drop_index."""
    chapter = fresh_09(lab)
    chapter.rewrite_revision(
        downgrade='op.execute("DROP TYPE job_state CASCADE")\nop.drop_table("user_settings")\n'
        'op.drop_table("job_entries")\nop.drop_table("user_profiles")'
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()
