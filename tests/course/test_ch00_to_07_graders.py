"""Chapters 00 to 07: each exercise graded by what the answer does, with other correct answers (they pass) and
plausible wrong ones (they fail, saying what is wrong), beyond the chapters' own solutions."""

import pytest

from helpers import failing, start
from migration_lab import Lab
from migration_lab.front.notebook import Chapter

# --- 00: the revision the database is at, however it is written ---------------------------------------------

CURRENT = "your answer is the database's current revision"


@pytest.mark.parametrize(
    "answer",
    [
        "  8B7E5D2C6A41\n",  # capitals and whitespace
        "8b7e",  # a prefix alembic accepts
        "8b7e5d2c6a41 (head)",  # the line `alembic current` prints
        "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
        "INFO  [alembic.runtime.migration] Will assume transactional DDL.\n8b7e5d2c6a41 (head)\n",  # all it prints
        ["8b7e5d2c6a41"],  # in a list
        "8b7e5d2c6a41_add_job_entries.py",  # the file's name
        "3f1c2a9d4b10 -> 8b7e5d2c6a41 (head), add job entries",  # history's line: names 8b7e after its arrow
    ],
    ids=["case-space", "prefix", "current-line", "whole-output", "list", "file-name", "history-line"],
)
def test_00_the_current_revision_in_other_forms_passes(lab: Lab, answer: object, capsys) -> None:
    chapter = start(lab, "00")
    assert chapter.report(answer).passed, str(chapter.report(answer))
    capsys.readouterr()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("3f1c2a9d4b10", "is a revision, but not the one the database is at"),  # its parent
        ("3f1c2a9d4b10 8b7e5d2c6a41", "names 2 revisions"),  # both ids
        ("current", "names no revision"),
        ("8b7e5d2c6a42", "no revision of this project has it"),  # a typo
        (0x8B7E5D2C6A41, "as a string"),  # a number
    ],
    ids=["parent", "two-ids", "word", "typo", "number"],
)
def test_00_another_revision_or_none_fails_and_says_why(lab: Lab, answer: object, said: str, capsys) -> None:
    chapter = start(lab, "00")
    hints = failing(chapter, answer)
    assert said in hints[CURRENT][0], hints
    capsys.readouterr()


def test_00_the_answer_follows_the_database_not_a_fixed_id(lab: Lab, capsys) -> None:
    """The id that was right is wrong once the database moved: the answer is judged against alembic_version."""
    chapter = start(lab, "00")
    chapter.alembic("downgrade -1", confirm=True)
    assert CURRENT in failing(chapter, "8b7e5d2c6a41")
    assert chapter.report("3f1c2a9d4b10").passed
    capsys.readouterr()


# --- 01: last_login, a timezone-aware timestamp the database fills, for the rows there too ------------------

REVISION_01 = "a revision adds user_profiles.last_login, and its downgrade removes it (replayed on a copy)"
FILLED_01 = "every existing profile has a last_login"


def test_01_a_typed_mapping_in_sqlalchemy_2_style_passes(lab: Lab, capsys) -> None:
    chapter = start(lab, "01")
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from datetime import datetime\n\nfrom sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    chapter.add_column(
        "UserProfile",
        "last_login: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())",
    )
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_01_plain_sql_in_a_hand_written_revision_passes(lab: Lab, capsys) -> None:
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision -m "add last login"')
    chapter.rewrite_revision(
        upgrade='op.execute(sa.text("ALTER TABLE user_profiles ADD COLUMN last_login TIMESTAMPTZ DEFAULT now()"))',
        downgrade='op.execute("ALTER TABLE user_profiles DROP COLUMN last_login")',
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_01_nullable_column_then_backfill_then_default_with_a_blank_revision_passes(lab: Lab, capsys) -> None:
    """Three steps in one revision (add, fill, default), double quotes, sa.func.now(); then a blank revision."""
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision -m "add last login"')
    chapter.rewrite_revision(
        upgrade='op.add_column("user_profiles", sa.Column("last_login", sa.DateTime(timezone=True)))\n'
        'op.execute("UPDATE user_profiles SET last_login = CURRENT_TIMESTAMP")\n'
        'op.alter_column("user_profiles", "last_login", server_default=sa.func.now())',
        downgrade='op.drop_column("user_profiles", "last_login")',
    )
    chapter.alembic('revision -m "nothing yet"')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


@pytest.mark.parametrize(
    ("downgrade", "said"),
    [
        ("pass", "no downgrade() removes it"),
        ("op.drop_column('user_profiles', 'created_at')", "no downgrade() removes it"),
    ],
    ids=["pass", "drops-another-column"],
)
def test_01_a_downgrade_that_does_not_remove_last_login_fails(lab: Lab, downgrade: str, said: str, capsys) -> None:
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.rewrite_revision(downgrade=downgrade)
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [REVISION_01], hints
    assert said in hints[REVISION_01][0], hints
    capsys.readouterr()


def test_01_a_backfill_of_some_rows_only_fails(lab: Lab, capsys) -> None:
    """A hard-coded fill for the profiles there are now (ids 1 to 3): a database with more rows keeps NULLs."""
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision -m "add last login"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('last_login', sa.DateTime(timezone=True)))\n"
        "op.execute('UPDATE user_profiles SET last_login = now() WHERE id <= 3')\n"
        "op.alter_column('user_profiles', 'last_login', server_default=sa.text('now()'))",
        downgrade="op.drop_column('user_profiles', 'last_login')",
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [REVISION_01], hints
    assert "does not fill every row, only (at most) the ones your database had" in hints[REVISION_01][0], hints
    capsys.readouterr()


# --- 02: email renamed to email_address, values, constraint name and API kept -------------------------------

OLD_EMAIL = "email = Column(String(255), nullable=False, unique=True)"
MAPPED_02 = 'email = Column("email_address", String(255), nullable=False, unique=True)'
RENAME_UP = (
    'op.alter_column("user_profiles", "email", new_column_name="email_address")\n'
    'op.execute("ALTER TABLE user_profiles RENAME CONSTRAINT uq_user_profiles_email TO uq_user_profiles_email_address")'
)
RENAME_DOWN = (
    'op.execute("ALTER TABLE user_profiles RENAME CONSTRAINT uq_user_profiles_email_address TO uq_user_profiles_email")'
    '\nop.alter_column("user_profiles", "email_address", new_column_name="email")'
)
REPLAYED_02 = (
    "a revision renames the column and its constraint, and its downgrade renames them back (replayed on a copy)"
)
UNIQUE_02 = "the unique constraint on email_address is named uq_user_profiles_email_address (no stale name)"


def _02_with(lab: Lab, upgrade: str, downgrade: str, model: str = MAPPED_02) -> Chapter:
    chapter = start(lab, "02")
    chapter.edit_model(OLD_EMAIL, model)
    chapter.alembic('revision -m "rename email to email_address"')
    chapter.rewrite_revision(upgrade=upgrade, downgrade=downgrade)
    chapter.alembic("upgrade head", confirm=True)
    return chapter


def test_02_renaming_the_constraints_index_renames_the_constraint_and_passes(lab: Lab, capsys) -> None:
    """ALTER INDEX ... RENAME on a unique constraint's index renames the constraint too, in PostgreSQL."""
    chapter = _02_with(
        lab,
        "op.execute('ALTER TABLE user_profiles RENAME COLUMN email TO email_address')\n"
        "op.execute('ALTER INDEX uq_user_profiles_email RENAME TO uq_user_profiles_email_address')",
        "op.execute('ALTER INDEX uq_user_profiles_email_address RENAME TO uq_user_profiles_email')\n"
        "op.execute('ALTER TABLE user_profiles RENAME COLUMN email_address TO email')",
    )
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_02_a_typed_mapping_and_the_constraint_dropped_and_made_again_pass(lab: Lab, capsys) -> None:
    """`Mapped[str]` with mapped_column("email_address", ...); the constraint dropped and created under the new
    name instead of renamed; then a blank revision."""
    chapter = start(lab, "02")
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    chapter.edit_model(
        OLD_EMAIL, 'email: Mapped[str] = mapped_column("email_address", String(255), nullable=False, unique=True)'
    )
    chapter.alembic('revision -m "rename email to email_address"')
    chapter.rewrite_revision(
        upgrade='op.drop_constraint("uq_user_profiles_email", "user_profiles", type_="unique")\n'
        'op.alter_column("user_profiles", "email", new_column_name="email_address")\n'
        'op.create_unique_constraint(op.f("uq_user_profiles_email_address"), "user_profiles", ["email_address"])',
        downgrade='op.drop_constraint(op.f("uq_user_profiles_email_address"), "user_profiles", type_="unique")\n'
        'op.alter_column("user_profiles", "email_address", new_column_name="email")\n'
        'op.create_unique_constraint("uq_user_profiles_email", "user_profiles", ["email"])',
    )
    chapter.alembic('revision -m "nothing"')
    chapter.alembic("upgrade head", confirm=True)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_02_a_pass_downgrade_fails_on_the_replay(lab: Lab, capsys) -> None:
    chapter = _02_with(lab, RENAME_UP, "pass")
    hints = failing(chapter)
    assert list(hints) == [REPLAYED_02], hints
    assert "no column email again" in hints[REPLAYED_02][0], hints
    capsys.readouterr()


def test_02_a_unique_index_instead_of_the_constraint_fails(lab: Lab, capsys) -> None:
    """Emails stay unique, but through an index the model does not describe: autogenerate would drop it."""
    chapter = _02_with(
        lab,
        'op.drop_constraint("uq_user_profiles_email", "user_profiles", type_="unique")\n'
        'op.alter_column("user_profiles", "email", new_column_name="email_address")\n'
        'op.create_index("uq_user_profiles_email_address", "user_profiles", ["email_address"], unique=True)',
        'op.drop_index("uq_user_profiles_email_address", table_name="user_profiles")\n'
        'op.alter_column("user_profiles", "email_address", new_column_name="email")\n'
        'op.create_unique_constraint("uq_user_profiles_email", "user_profiles", ["email"])',
    )
    hints = failing(chapter)
    assert UNIQUE_02 in hints and "unique index" in hints[UNIQUE_02][0], hints
    capsys.readouterr()


# --- 03: the colleague's downgrade() -----------------------------------------------------------------------------

ROUND_TRIP_03 = "downgrade -1 removes what the upgrade added, and upgrade head brings it back (rehearsed on a copy)"


def _03_with(lab: Lab, downgrade: str) -> Chapter:
    chapter = start(lab, "03")
    chapter.rewrite_revision(revision="add_language", downgrade=downgrade)
    chapter.alembic("downgrade -1", confirm=True)
    chapter.alembic("upgrade head")
    return chapter


@pytest.mark.parametrize(
    "downgrade",
    [
        'with op.batch_alter_table("user_settings") as batch:\n'
        '    batch.drop_index("ix_user_settings_language")\n'
        '    batch.drop_column("language")',
        'op.execute(sa.text("DROP INDEX IF EXISTS ix_user_settings_language"))\n'
        "op.execute('ALTER TABLE user_settings DROP COLUMN IF EXISTS language')",
    ],
    ids=["batch", "sql-if-exists"],
)
def test_03_other_downgrades_that_undo_the_upgrade_pass(lab: Lab, downgrade: str, capsys) -> None:
    chapter = _03_with(lab, downgrade)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_03_a_downgrade_that_drops_another_column_fails(lab: Lab, capsys) -> None:
    chapter = start(lab, "03")
    chapter.rewrite_revision(revision="add_language", downgrade="op.drop_column('user_settings', 'status')")
    hints = failing(chapter)
    assert ROUND_TRIP_03 in hints and "still has the column language" in hints[ROUND_TRIP_03][0], hints
    capsys.readouterr()


def test_03_a_downgrade_that_refuses_fails_and_says_so(lab: Lab, capsys) -> None:
    chapter = start(lab, "03")
    chapter.rewrite_revision(revision="add_language", downgrade='raise NotImplementedError("irreversible")')
    hints = failing(chapter)
    assert ROUND_TRIP_03 in hints and "irreversible" in hints[ROUND_TRIP_03][0], hints
    capsys.readouterr()


# --- 04: what the next upgrade applies ---------------------------------------------------------------------------

ORDER_04 = "your answer is exactly what the next `upgrade head` applies, in the order it applies them"


@pytest.mark.parametrize(
    "answer",
    [
        ["A1C4", "b7d1"],
        "a1c4e7f20b13\nb7d1e5f3c9a2\n",
        ("a1c4e7f20b13 ", " B7D1E5F3C9A2"),
        # alembic's own lines as `upgrade head` printed them: each names its revision after the arrow, not the parent
        "INFO  [alembic.runtime.migration] Running upgrade 8b7e5d2c6a41 -> a1c4e7f20b13, add phone number\n"
        "INFO  [alembic.runtime.migration] Running upgrade a1c4e7f20b13 -> b7d1e5f3c9a2, add language\n",
    ],
    ids=["prefixes", "lines", "tuple-case", "running-upgrade-lines"],
)
def test_04_the_right_revisions_written_otherwise_pass(lab: Lab, answer: object, capsys) -> None:
    chapter = start(lab, "04")
    chapter.alembic("upgrade head")
    assert chapter.report(answer).passed, str(chapter.report(answer))
    capsys.readouterr()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (["b7d1e5f3c9a2"], "1 revision(s) the upgrade applies are missing"),  # Bob's only
        (["8b7e5d2c6a41", "a1c4e7f20b13"], "the revision the database is at"),  # from current, Bob's missing
        ("b7d1e5f3c9a2, a1c4e7f20b13", "newest first"),  # as history lists them
    ],
    ids=["bobs-only", "from-current", "history-order"],
)
def test_04_wrong_lists_fail_and_say_why(lab: Lab, answer: object, said: str, capsys) -> None:
    chapter = start(lab, "04")
    chapter.alembic("upgrade head")
    hints = failing(chapter, answer)
    assert list(hints) == [ORDER_04] and said in hints[ORDER_04][0], hints
    capsys.readouterr()


def test_04_a_blank_revision_of_ones_own_is_applied_too(lab: Lab, capsys) -> None:
    """An extra revision on top: the next upgrade applies it too, and the answer must say so."""
    chapter = start(lab, "04")
    chapter.alembic('revision -m "nothing"')
    mine = chapter.generated
    assert ORDER_04 in failing(chapter, ["a1c4e7f20b13", "b7d1e5f3c9a2"])
    chapter.alembic("upgrade head")
    assert chapter.report(["a1c4e7f20b13", "b7d1e5f3c9a2", mine]).passed
    capsys.readouterr()


# --- 05: lowercase emails, the older profile kept, safe to run twice --------------------------------------------

MIGRATION_05 = (
    "your migration, run on the exercise's rows, lowercases every email and keeps Ada's original profile "
    "(tried on a copy)"
)


def _05_with(lab: Lab, upgrade: str) -> Chapter:
    chapter = start(lab, "05")
    chapter.alembic('revision -m "lowercase emails"')
    chapter.rewrite_revision(upgrade=upgrade, downgrade="pass")
    chapter.alembic("upgrade head", confirm=True)
    return chapter


@pytest.mark.parametrize(
    "upgrade",
    [
        "op.execute('''\n"
        "    WITH ranked AS (SELECT id, row_number() OVER (PARTITION BY lower(email) ORDER BY id) AS n\n"
        "                    FROM user_profiles)\n"
        "    DELETE FROM user_profiles WHERE id IN (SELECT id FROM ranked WHERE n > 1)\n"
        "''')\n"
        "op.execute(\"UPDATE user_profiles SET email = lower(email) WHERE email ~ '[A-Z]'\")",
        "bind = op.get_bind()\n"
        "profiles = sa.table('user_profiles', sa.column('id', sa.Integer), sa.column('email', sa.String))\n"
        "seen = {}\n"
        "for id_, email in bind.execute(sa.select(profiles.c.id, profiles.c.email).order_by(profiles.c.id)):\n"
        "    if email.lower() in seen:\n"
        "        bind.execute(profiles.delete().where(profiles.c.id == id_))\n"
        "    else:\n"
        "        seen[email.lower()] = id_\n"
        "bind.execute(profiles.update().where(profiles.c.email != sa.func.lower(profiles.c.email))"
        ".values(email=sa.func.lower(profiles.c.email)))",
    ],
    ids=["row-number", "python-loop"],
)
def test_05_other_migrations_that_keep_the_older_profile_pass(lab: Lab, upgrade: str, capsys) -> None:
    chapter = _05_with(lab, upgrade)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


@pytest.mark.parametrize(
    ("upgrade", "name", "said"),
    [
        (
            'op.execute("DELETE FROM user_profiles p WHERE EXISTS (SELECT 1 FROM user_profiles q '
            'WHERE lower(q.email) = lower(p.email) AND q.id < p.id)")\n'
            'op.execute("UPDATE user_profiles SET email = lower(email)")',
            "running the migration again changes no row (tried on a copy)",
            "rewrote",
        ),
        (
            'op.execute("DELETE FROM user_profiles p WHERE EXISTS (SELECT 1 FROM user_profiles q '
            'WHERE lower(q.email) = lower(p.email) AND q.id > p.id)")\n'
            'op.execute("UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)")',
            MIGRATION_05,
            "original profile of ada@example.org",
        ),
    ],
    ids=["update-every-row", "keeps-the-newest"],
)
def test_05_a_migration_not_safe_twice_or_keeping_the_newest_fails(
    lab: Lab, upgrade: str, name: str, said: str, capsys
) -> None:
    chapter = _05_with(lab, upgrade)
    hints = failing(chapter)
    assert name in hints and said in hints[name][0], hints
    capsys.readouterr()


# --- 06: after Carol's revision, her column changed ---------------------------------------------------------------

YOURS_06 = "0d0000000006_timezone_for_reminders.py"
CAROL_ID = "c3e8a6d2f4b5"
REPLAY_06 = "the history goes down to a1c4e7f20b13 and back up with the rows kept (tried on a copy)"


def _06_rebased(lab: Lab, upgrade: str, downgrade: str) -> Chapter:
    """Your revision after Carol's (down_revision in double quotes, as ruff format writes it), new bodies."""
    chapter = start(lab, "06")
    path = lab.project.versions_dir / YOURS_06
    text = path.read_text()
    start_line = next(line for line in text.splitlines() if line.startswith("down_revision"))
    chapter.edit_file(
        f"migrations/versions/{YOURS_06}", start_line, f'down_revision: Union[str, Sequence[str], None] = "{CAROL_ID}"'
    )
    chapter.rewrite_revision(revision="0d0000000006", upgrade=upgrade, downgrade=downgrade, confirm=True)
    chapter.alembic("upgrade head")
    return chapter


BACK_TO_CAROL = (
    'op.alter_column("user_settings", "timezone", existing_type=sa.String(length=64), '
    "type_=sa.String(length=40), server_default=None, nullable=True)"
)


@pytest.mark.parametrize(
    "upgrade",
    [
        'settings = sa.table("user_settings", sa.column("timezone", sa.String))\n'
        'op.execute(settings.update().where(settings.c.timezone.is_(None)).values(timezone="UTC"))\n'
        'op.alter_column("user_settings", "timezone", existing_type=sa.String(length=40), '
        "type_=sa.String(length=64), server_default=sa.text(\"'UTC'\"), nullable=False)",
        'op.execute("ALTER TABLE user_settings ALTER COLUMN timezone TYPE varchar(64) '
        "USING coalesce(timezone, 'UTC')\")\n"
        "op.execute(\"ALTER TABLE user_settings ALTER COLUMN timezone SET DEFAULT 'UTC'\")\n"
        'op.execute("ALTER TABLE user_settings ALTER COLUMN timezone SET NOT NULL")',
    ],
    ids=["core-update", "coalesce-in-using"],
)
def test_06_other_ways_to_fill_and_change_carols_column_pass(lab: Lab, upgrade: str, capsys) -> None:
    chapter = _06_rebased(lab, upgrade, BACK_TO_CAROL)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


ON_TOP = (
    "op.execute(\"UPDATE user_settings SET timezone = 'UTC' WHERE timezone IS NULL\")\n"
    'op.alter_column("user_settings", "timezone", existing_type=sa.String(length=40), '
    'type_=sa.String(length=64), server_default="UTC", nullable=False)'
)


def test_06_a_downgrade_that_drops_carols_column_fails(lab: Lab, capsys) -> None:
    chapter = _06_rebased(lab, ON_TOP, 'op.drop_column("user_settings", "timezone")')
    hints = failing(chapter)
    assert list(hints) == [REPLAY_06] and "which her revision adds" in hints[REPLAY_06][0], hints
    capsys.readouterr()


def test_06_a_merge_revision_over_both_adds_fails_with_duplicatecolumn(lab: Lab, capsys) -> None:
    chapter = start(lab, "06")
    chapter.alembic('merge heads -m "merge carol"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert "the database is at head" in hints and "DuplicateColumn" in hints["the database is at head"][0], hints
    capsys.readouterr()


# --- 07: 'paused' after 'done' ------------------------------------------------------------------------------------

DOWNGRADE_07 = """op.execute("UPDATE job_entries SET state = 'queued' WHERE state = 'paused'")
op.execute("ALTER TYPE job_state RENAME TO job_state_old")
op.execute("CREATE TYPE job_state AS ENUM ('queued', 'running', 'done')")
op.execute("ALTER TABLE job_entries ALTER COLUMN state DROP DEFAULT")
op.execute("ALTER TABLE job_entries ALTER COLUMN state TYPE job_state USING state::text::job_state")
op.execute("ALTER TABLE job_entries ALTER COLUMN state SET DEFAULT 'queued'")
op.execute("DROP TYPE job_state_old")"""


def _07_with(lab: Lab, upgrade: str, downgrade: str = DOWNGRADE_07, model: str = '"done", "paused"') -> Chapter:
    chapter = start(lab, "07")
    chapter.edit_model('"done"', model)
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(upgrade=upgrade, downgrade=downgrade)
    chapter.alembic("upgrade head")
    return chapter


@pytest.mark.parametrize(
    "upgrade",
    [
        "op.execute(\"ALTER TYPE job_state ADD VALUE 'paused'\")",  # appended: after done, the last one
        "with op.get_context().autocommit_block():\n"
        "    op.execute(sa.text(\"ALTER TYPE job_state ADD VALUE 'paused'\"))",
    ],
    ids=["in-the-transaction", "sa-text-appended"],
)
def test_07_paused_appended_after_done_passes(lab: Lab, upgrade: str, capsys) -> None:
    chapter = _07_with(lab, upgrade)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_07_paused_before_done_while_the_model_says_after_fails(lab: Lab, capsys) -> None:
    chapter = _07_with(
        lab,
        "with op.get_context().autocommit_block():\n"
        "    op.execute(\"ALTER TYPE job_state ADD VALUE 'paused' BEFORE 'done'\")",
    )
    order = "job_state's values are in the same order in main.py and the database"
    hints = failing(chapter)
    assert order in hints and "AFTER 'done'" in hints[order][1], hints
    capsys.readouterr()


def test_07_a_downgrade_that_deletes_the_paused_jobs_fails(lab: Lab, capsys) -> None:
    chapter = _07_with(
        lab,
        "with op.get_context().autocommit_block():\n"
        "    op.execute(\"ALTER TYPE job_state ADD VALUE 'paused' AFTER 'done'\")",
        DOWNGRADE_07.replace("UPDATE job_entries SET state = 'queued' WHERE", "DELETE FROM job_entries WHERE"),
    )
    undone = "your downgrade() takes 'paused' out again, and the upgrade puts it back in place (replayed on a copy)"
    hints = failing(chapter)
    assert list(hints) == [undone] and "deletes 1 job(s)" in hints[undone][0], hints
    capsys.readouterr()


def test_07_paused_with_a_capital_fails(lab: Lab, capsys) -> None:
    chapter = _07_with(
        lab,
        "with op.get_context().autocommit_block():\n"
        "    op.execute(\"ALTER TYPE job_state ADD VALUE 'Paused' AFTER 'done'\")",
        DOWNGRADE_07.replace("'paused'", "'Paused'"),
        model='"done", "Paused"',
    )
    hints = failing(chapter)
    assert "main.py's job_state has 'paused'" in hints, hints
    capsys.readouterr()


def test_05_deleting_the_duplicate_by_its_id_fails(lab: Lab, capsys) -> None:
    """The learner looked at the rows and deleted Ada's second sign-up by its id: another database's id 5 is
    someone else."""
    chapter = _05_with(
        lab,
        'op.execute("DELETE FROM user_profiles WHERE id = 5")\n'
        'op.execute("UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)")',
    )
    hints = failing(chapter)
    assert MIGRATION_05 in hints, hints
    assert "OLDER duplicate has the capitals" in hints[MIGRATION_05][0], hints
    assert "the migration fails: UniqueViolation" in hints[MIGRATION_05][0], hints  # Grace is not deduplicated
    capsys.readouterr()


DEFAULT_01 = "user_profiles.last_login defaults to the current time in the database"


def test_01_a_python_default_in_a_typed_mapping_is_named_and_its_fix_runs(lab: Lab, capsys) -> None:
    """`default=` in mapped_column(...) is Python's too: the hint says so, and its code edits that line."""
    chapter = start(lab, "01")
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from datetime import datetime\n\nfrom sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    chapter.add_column(
        "UserProfile",
        "last_login: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=func.now())",
    )
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert "`default=`: that value is applied by Python" in hints[DEFAULT_01][0], hints[DEFAULT_01]
    exec(hints[DEFAULT_01][-1].split(", then")[0], {"ch": chapter})
    main = (lab.project.service_dir / "main.py").read_text()
    assert main.count("last_login") == 1 and "server_default=func.now()" in main, main
    capsys.readouterr()


def test_01_a_model_line_over_several_lines_is_read_as_alembic_reads_it(lab: Lab, capsys) -> None:
    """server_default= on the second line of the Column(...): the hint says the revision forgot it, not that
    main.py has no default."""
    chapter = start(lab, "01")
    chapter.add_column(
        "UserProfile",
        "last_login = Column(\n        DateTime(timezone=True),\n        server_default=func.now(),\n    )",
    )
    chapter.alembic('revision -m "add last login"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('last_login', sa.DateTime(timezone=True)))",
        downgrade="op.drop_column('user_profiles', 'last_login')",
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert "although main.py has server_default=" in hints[DEFAULT_01][0], hints[DEFAULT_01]
    capsys.readouterr()


def test_02_a_rename_that_also_lowercases_the_emails_fails(lab: Lab, capsys) -> None:
    """Right schema, wrong data: an email typed with capitals is not the one its owner signs in with any more."""
    chapter = _02_with(
        lab, RENAME_UP + '\nop.execute("UPDATE user_profiles SET email_address = lower(email_address)")', RENAME_DOWN
    )
    hints = failing(chapter)
    assert REPLAYED_02 in hints and "Grace.Hopper@Navy.MIL" in hints[REPLAYED_02][0], hints
    capsys.readouterr()


def test_06_a_blank_revision_after_yours_passes(lab: Lab, capsys) -> None:
    chapter = _06_rebased(lab, ON_TOP, BACK_TO_CAROL)
    chapter.alembic('revision -m "nothing"')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


# --- the last hint's code, copied as it is, runs: whatever the learner's model line holds -----------------------


def _last_hint_runs(chapter: Chapter, check: str) -> str:
    """Run the last hint level of `check` (the code a stuck learner copies): main.py afterwards."""
    code = failing(chapter)[check][-1].split(", then ")[0]
    exec(code, {"ch": chapter})  # noqa: S102 - the hint's code, as the learner runs it in a cell
    return (chapter.lab.project.service_dir / "main.py").read_text()


def test_01_the_hint_that_replaces_a_model_line_with_quotes_over_two_lines_runs(lab: Lab, capsys) -> None:
    """A naive timestamp whose default is written with double quotes, over two lines: the hint's
    ch.edit_model(old, new) names the whole definition, quoted as Python, and replaces it."""
    chapter = start(lab, "01")
    chapter.edit_model("from sqlalchemy import (", "from sqlalchemy import text\nfrom sqlalchemy import (")
    chapter.add_column("UserProfile", 'last_login = Column(DateTime,\n        server_default=text("now()"))')
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    main = _last_hint_runs(chapter, "user_profiles.last_login is timezone-aware (timestamp with time zone)")
    assert "last_login = Column(DateTime(timezone=True), server_default=func.now())" in main
    assert 'text("now()"))' not in main
    capsys.readouterr()


def test_02_the_hint_that_maps_the_renamed_attribute_back_runs_with_single_quotes(lab: Lab, capsys) -> None:
    """The attribute renamed with the column (the app breaks), its line written with single quotes over two lines:
    the hint's code keeps the attribute `email` and runs as printed."""
    chapter = start(lab, "02")
    chapter.edit_model(
        OLD_EMAIL, "email_address = Column(String(255), nullable=False,\n        unique=True, info={'k': 1})"
    )
    chapter.alembic('revision -m "rename email to email_address"')
    chapter.rewrite_revision(upgrade=RENAME_UP, downgrade=RENAME_DOWN)
    chapter.alembic("upgrade head", confirm=True)
    app = next(name for name in failing(chapter) if name.startswith("the ai-api's clients"))
    main = _last_hint_runs(chapter, app)
    assert 'email = Column("email_address", String(255), nullable=False, unique=True)' in main
    assert "info={'k': 1}" not in main
    capsys.readouterr()


def test_01_the_hint_edits_the_definition_python_keeps_when_last_login_is_defined_twice(lab: Lab, capsys) -> None:
    """Two `last_login = ...` lines in UserProfile: Python keeps the second (naive), so the hint's edit is of that
    one; the first, dead line left as it was."""
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), nullable=True)")
    chapter.add_column("UserProfile", "last_login = Column(DateTime)")
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    main = _last_hint_runs(chapter, "user_profiles.last_login is timezone-aware (timestamp with time zone)")
    assert "last_login = Column(DateTime)" not in main
    assert "last_login = Column(DateTime(timezone=True), nullable=True)" in main
    capsys.readouterr()


def test_01_the_hint_edits_an_attribute_of_another_name_that_maps_last_login(lab: Lab, capsys) -> None:
    """`seen_at = Column("last_login", ...)` with a Python default: the hint replaces that line, never adds a second
    column named last_login (a model that would not load)."""
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", 'seen_at = Column("last_login", DateTime(timezone=True), default=func.now())')
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    main = _last_hint_runs(chapter, "user_profiles.last_login defaults to the current time in the database")
    assert "seen_at" not in main and main.count("last_login") == 1
    capsys.readouterr()


def test_01_check_before_upgrading_says_upgrade_not_that_the_tables_differ(lab: Lab, capsys) -> None:
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision --autogenerate -m "add last login"')
    hints = failing(chapter)["main.py's models match the database (alembic check)"]
    assert "a revision is not applied yet" in hints[0] and hints[-1] == 'ch.alembic("upgrade head")', hints
    assert ".." not in " ".join(hints)
    capsys.readouterr()


def test_01_a_default_of_utc_wall_clock_time_fails(lab: Lab, capsys) -> None:
    """server_default=func.timezone('UTC', func.now()): a timestamp without zone, which the timestamptz column reads
    in the inserting session's zone. Right in a UTC session only (the lab's own); hours off in any other."""
    chapter = start(lab, "01")
    chapter.add_column(
        "UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.timezone('UTC', func.now()))"
    )
    chapter.alembic('revision --autogenerate -m "add last login"')
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [DEFAULT_01], hints
    assert "timezone('UTC', now()) is UTC's wall-clock time" in hints[DEFAULT_01][0], hints
    capsys.readouterr()


def test_01_a_batch_add_column_with_current_timestamp_passes(lab: Lab, capsys) -> None:
    """alembic's batch_alter_table, sa.TIMESTAMP(timezone=True) and CURRENT_TIMESTAMP in sa.text(...)."""
    chapter = start(lab, "01")
    chapter.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
    chapter.alembic('revision -m "add last login"')
    chapter.rewrite_revision(
        upgrade="with op.batch_alter_table('user_profiles') as batch:\n"
        "    batch.add_column(sa.Column('last_login', sa.TIMESTAMP(timezone=True), "
        "server_default=sa.text('CURRENT_TIMESTAMP')))",
        downgrade="with op.batch_alter_table('user_profiles') as batch:\n    batch.drop_column('last_login')",
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()
