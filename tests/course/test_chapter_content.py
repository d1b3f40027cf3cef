"""The chapters tell the truth: each claim the course makes, and each exercise's twist, proved on a real
PostgreSQL (the wrong answers a learner would write fail the check, the solution passes it); each solution
leaves `alembic check` clean and survives `downgrade base` + `upgrade head`."""

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from helpers import REPO, edit_model, failing, start, write_revision
from migration_lab import Lab
from migration_lab.course.ch02_autogenerate import EMAIL_DOWN, EMAIL_UP
from migration_lab.course.ch03_rollback import LANGUAGE_DOWN, LANGUAGE_FILE
from migration_lab.course.ch04_where_am_i import pending
from migration_lab.course.registry import CHAPTERS, spec
from migration_lab.front.notebook import Chapter
from migration_lab.tools.graph import mermaid
from migration_lab.workspace.edits import load_models


def markdown(notebook: str) -> str:
    cells = json.loads((REPO / "notebooks" / notebook).read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


# --- 01: what `alembic check` can and cannot see ------------------------------------------------------------


def test_01_alembic_check_is_blind_to_a_new_enum_value(lab: Lab) -> None:
    """The chapter says `alembic check` only shows autogenerate finds no difference: here the model and the
    database disagree on job_state's values, and check still passes. And it needs the database at head."""
    assert "not up to date" in str(lab.runner.run("check").error)
    lab.runner.run("upgrade head")
    edit_model(lab.project, '"done", name="job_state"', '"done", "failed", name="job_state"')
    assert lab.runner.run("check").ok
    assert "blind to new enum values" in markdown("01-standard-workflow.ipynb")


# --- 02: compare_type by default, compare_server_default opt-in; the email rename -----------------------------


def test_02_alembic_compares_types_by_default_but_not_server_defaults(lab: Lab) -> None:
    """Chapter 02's table: compare_type is on unless turned off (Alembic >= 1.12), compare_server_default is not."""
    lab.runner.run("upgrade head")
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE user_profiles ALTER COLUMN name TYPE varchar(50)"))
        conn.execute(sa.text("ALTER TABLE user_settings ALTER COLUMN theme SET DEFAULT 'dark'"))
    models = load_models(lab.project)
    with lab.db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    kinds = {d[0][0] if isinstance(d, list) else d[0] for d in diffs}
    assert "modify_type" in kinds and "modify_default" not in kinds, diffs
    text = markdown("02-never-trust-autogenerate.ipynb")
    assert "on by default since Alembic 1.12" in text and "only if you opt in" in text


def _rename_email_in_model(chapter: Chapter) -> None:
    """The column renamed in the model, the attribute (the app's and its clients' name) kept."""
    chapter.edit_model(
        "email = Column(String(255), nullable=False, unique=True)",
        'email = Column("email_address", String(255), nullable=False, unique=True)',
    )
    chapter.alembic('revision --autogenerate -m "rename email"')


def test_02_autogenerates_drop_and_add_and_the_check_fails_on_it(lab: Lab, capsys) -> None:
    chapter = start(lab, "02")
    _rename_email_in_model(chapter)
    out = capsys.readouterr().out
    assert "Detected removed unique constraint 'uq_user_profiles_email'" in out
    chapter.alembic("upgrade head", confirm=True)  # NOT NULL without a default: fails, rolled back
    assert "FAILED" in capsys.readouterr().out
    hints = failing(chapter)
    replayed = (
        "a revision renames the column and its constraint, and its downgrade renames them back (replayed on a copy)"
    )
    assert "drop_column + add_column" in hints[replayed][0]
    assert "still in user_profiles.email" in hints["the emails are in user_profiles.email_address"][0]


def test_02_an_applied_drop_and_add_says_the_emails_are_gone_first(lab: Lab, capsys) -> None:
    chapter = start(lab, "02")
    chapter.edit_model(
        "email = Column(String(255), nullable=False, unique=True)",
        'email = Column("email_address", String(255), unique=True)',
    )
    chapter.alembic('revision --autogenerate -m "rename the careless way"')
    chapter.alembic("upgrade head")
    assert "STOP" in capsys.readouterr().out  # the lab asks first: it would destroy the emails
    chapter.alembic("upgrade head", confirm=True)
    check = chapter.report().first_failing
    assert check is not None and check.name == "the emails are in user_profiles.email_address"
    assert check.hint.startswith("The emails are gone") and "ch.reset()" in check.hints[1]
    capsys.readouterr()


def test_02_a_column_rename_alone_leaves_a_stale_constraint_name(lab: Lab, capsys) -> None:
    chapter = start(lab, "02")
    _rename_email_in_model(chapter)
    chapter.rewrite_revision(
        upgrade="op.alter_column('user_profiles', 'email', new_column_name='email_address')",
        downgrade="op.alter_column('user_profiles', 'email_address', new_column_name='email')",
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    stale = next(h for name, h in hints.items() if "no stale name" in name)
    assert "uq_user_profiles_email is still named after the old column" in stale[0]
    assert "RENAME CONSTRAINT" in stale[1]
    assert "main.py's models match the database (alembic check)" in hints
    assert "the emails are in user_profiles.email_address" not in hints  # the data is safe: only the name is wrong
    capsys.readouterr()


def test_02_the_fix_keeps_the_data_and_survives_a_round_trip(lab: Lab, capsys) -> None:
    chapter = start(lab, "02")
    _rename_email_in_model(chapter)
    chapter.rewrite_revision(upgrade=EMAIL_UP, downgrade=EMAIL_DOWN)
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    assert lab.runner.run("downgrade base").ok and lab.runner.run("upgrade head").ok
    assert lab.runner.run("check").ok
    capsys.readouterr()


def test_02_the_empty_enum_revision_is_deleted_not_applied() -> None:
    sources = [
        "".join(c["source"])
        for c in json.loads((REPO / "notebooks" / "02-never-trust-autogenerate.ipynb").read_text())["cells"]
    ]
    at = next(i for i, s in enumerate(sources) if "add failed job state" in s)
    after = "\n".join(sources[at:])
    assert "ch.delete_file(" in after and "so the database is at head again" not in after


# --- 03: downgrade base, and the missing downgrade() -----------------------------------------------------------


def test_03_downgrade_base_keeps_alembic_version_and_what_a_downgrade_forgets(lab: Lab, engine: sa.Engine) -> None:
    lab.runner.run("upgrade head")
    write_revision(lab.project, "f0f0f0f0f0f0", "8b7e5d2c6a41", "op.create_table('notes', sa.Column('id', sa.Integer))")
    assert lab.runner.run("upgrade head").ok and lab.runner.run("downgrade base").ok
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version", "notes"}
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM alembic_version")) == 0
    text = markdown("03-rollback.ipynb")
    assert "drop all tables" not in text and "`alembic_version` table itself" in text


def test_03_a_pass_downgrade_fails_the_check_and_a_forgotten_column_fails_the_round_trip(lab: Lab, capsys) -> None:
    chapter = start(lab, "03")
    hints = failing(chapter)
    assert "`pass` still succeeds" in next(iter(hints.values()))[0]
    chapter.rewrite_revision(
        revision="add_language",
        downgrade="op.drop_index(op.f('ix_user_settings_language'), table_name='user_settings')",
    )
    hints = failing(chapter)
    [round_trip] = [h for name, h in hints.items() if "round trip" in name or "rehearsed on a copy" in name]
    assert "still has the column language" in round_trip[0]
    assert list(lab.db.heads()) == ["d4f0c3b2a1e9"]  # the check rehearsed on a copy only
    capsys.readouterr()


def test_03_an_empty_downgrade_applied_points_to_stamp(lab: Lab, capsys) -> None:
    chapter = start(lab, "03")
    assert lab.runner.run("downgrade -1").ok  # `pass`: alembic_version moves, the column stays
    chapter.rewrite_revision(revision="add_language", downgrade=LANGUAGE_DOWN)
    assert not lab.runner.run("upgrade head").ok  # the column is still there
    at_head = failing(chapter)["the database is at head"]
    assert "still has language" in at_head[0] and "stamp head" in at_head[1]
    capsys.readouterr()


def test_03_the_written_downgrade_passes_and_round_trips(lab: Lab, capsys) -> None:
    chapter = start(lab, "03")
    chapter.rewrite_revision(revision="add_language", downgrade=LANGUAGE_DOWN)
    assert chapter.report().passed, str(chapter.report())
    assert (lab.project.versions_dir / LANGUAGE_FILE).exists()
    assert lab.runner.run("downgrade base").ok and lab.runner.run("upgrade head").ok and lab.runner.run("check").ok
    capsys.readouterr()


def test_03_says_up_down_consistency_only_runs_the_downgrades() -> None:
    text = markdown("03-rollback.ipynb")
    assert "`test_up_down_consistency`" in text and "test_downgrade_leaves_no_trace" in text
    assert "experimental" in text


# --- 04: (current) and the next upgrade -------------------------------------------------------------------------


def test_04_plain_history_never_marks_current_and_history_i_does(lab: Lab) -> None:
    lab.runner.run("upgrade head")
    assert "(current)" not in lab.runner.run("history").output
    assert "(current)" in lab.runner.run("history -i").output


def test_04_prose_and_graph_mark_the_database_the_same_way(lab: Lab) -> None:
    lab.runner.run("upgrade head")
    marker = "● database"
    assert marker in mermaid(lab.runner.script(), lab.db.heads())
    text = markdown("04-where-am-i.ipynb")
    assert marker in text and "📍" not in text


def test_04_the_answer_is_what_upgrade_head_then_applies(lab: Lab, capsys) -> None:
    chapter = start(lab, "04")
    expected = pending(lab)
    assert expected == ["a1c4e7f20b13", "b7d1e5f3c9a2"]
    [first, *_] = failing(chapter).values()  # no answer yet: only the last level, the code, names the ids
    assert not any(rev in h for h in first[:-1] for rev in expected) and all(rev in first[-1] for rev in expected)
    listed = lab.runner.run("history -r current:head -i").output
    assert all(rev in listed for rev in expected) and "8b7e5d2c6a41 (current)" in listed
    with_current = failing(chapter, ["8b7e5d2c6a41", *expected])
    assert "already" in next(iter(with_current.values()))[0]
    assert "is not applied by the next upgrade" in next(iter(failing(chapter, ["3f1c2a9d4b10"]).values()))[0]
    result = lab.runner.run("upgrade head")
    applied = [line.split(" -> ")[1].split(",")[0] for line in result.output.splitlines() if "Running upgrade" in line]
    assert applied == expected
    assert chapter.report(expected).passed
    capsys.readouterr()


# --- 05: idempotent backfills, collisions under lower(), autocommit_block -----------------------------------------


def _lowercase_revision(chapter: Chapter, upgrade: str) -> None:
    chapter.alembic('revision -m "lowercase emails"')
    chapter.rewrite_revision(upgrade=upgrade)
    chapter.alembic("upgrade head", confirm=True)


def test_05_the_naive_lowercase_fails_on_the_collision_and_the_check_says_why(lab: Lab, capsys) -> None:
    chapter = start(lab, "05")
    _lowercase_revision(chapter, 'op.execute("UPDATE user_profiles SET email = lower(email)")')
    assert "FAILED" in capsys.readouterr().out
    at_head = failing(chapter)["the database is at head"]
    assert "UNIQUE constraint" in at_head[0] and "DELETE" in at_head[1]


def test_05_a_backfill_that_rewrites_every_row_fails_the_rerun_check(lab: Lab, capsys) -> None:
    chapter = start(lab, "05")
    deduplicate = (
        "DELETE FROM user_profiles p WHERE EXISTS "
        "(SELECT 1 FROM user_profiles q WHERE lower(q.email) = lower(p.email) AND q.id < p.id)"
    )
    _lowercase_revision(
        chapter, f'op.execute("{deduplicate}")\nop.execute("UPDATE user_profiles SET email = lower(email)")'
    )
    hints = failing(chapter)
    assert list(hints) == ["running the migration again changes no row (tried on a copy)"], hints
    assert "rewrote 4 row(s)" in hints["running the migration again changes no row (tried on a copy)"][0]
    capsys.readouterr()


def test_05_deleting_the_original_instead_of_the_duplicate_is_told(lab: Lab, capsys) -> None:
    chapter = start(lab, "05")
    _lowercase_revision(
        chapter,
        "op.execute(\"DELETE FROM user_profiles WHERE email = 'ada@example.org'\")\n"
        'op.execute("UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)")',
    )
    check = chapter.report().first_failing
    assert check is not None and check.name.startswith("your migration, run on the exercise's rows")
    assert "the original profile of ada@example.org (with the settings and jobs) went" in check.hint
    capsys.readouterr()


def test_05_the_solution_run_twice_changes_nothing(lab: Lab, capsys) -> None:
    chapter = start(lab, "05")
    chapter.solution({})
    assert chapter.report().passed
    script = next(s for s in lab.runner.script().walk_revisions() if "lower(" in Path(s.path).read_text())
    rows = sa.text("SELECT id, email, xmin::text FROM user_profiles ORDER BY id")
    with lab.db.engine.connect() as conn:
        before = list(conn.execute(rows))
    assert (
        lab.runner.run(["stamp", str(script.down_revision)]).ok and lab.runner.run("upgrade head").ok
    )  # the same migration again
    with lab.db.engine.connect() as conn:
        assert list(conn.execute(rows)) == before
    assert lab.runner.run("downgrade base").ok and lab.runner.run("upgrade head").ok and lab.runner.run("check").ok
    capsys.readouterr()


def test_05_what_an_autocommit_block_ran_stays_when_the_revision_fails(lab: Lab, engine: sa.Engine) -> None:
    """Chapter 05 (and the README): a failed upgrade is rolled back, except what an autocommit_block committed."""
    lab.runner.run("upgrade head")
    write_revision(
        lab.project,
        "e1e1e1e1e1e1",
        "8b7e5d2c6a41",
        """
        with op.get_context().autocommit_block():
            op.execute("UPDATE user_settings SET theme = 'system' WHERE theme = 'light'")
        op.execute("UPDATE user_settings SET theme = 'dark' WHERE theme = 'system'")
        op.execute("SELECT 1/0")
        """,
    )
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Barbara Liskov', 'b@example.org')"))
        conn.execute(sa.text("INSERT INTO user_settings (user_id) SELECT max(id) FROM user_profiles"))
    result = lab.runner.run("upgrade head")
    assert not result.ok and lab.db.heads() == ("8b7e5d2c6a41",)
    with engine.connect() as conn:
        barbara = conn.scalar(sa.text("SELECT theme FROM user_settings ORDER BY id DESC LIMIT 1"))
    assert barbara == "system"  # the block's write stayed; the 'dark' after it was rolled back
    text = markdown("05-data-migrations.ipynb")
    assert "What `autocommit_block()` commits" in text and "transaction_per_migration=True" in text


def test_05_the_backfill_and_the_server_default_agree() -> None:
    sources = "\n".join(
        "".join(c["source"])
        for c in json.loads((REPO / "notebooks" / "05-data-migrations.ipynb").read_text())["cells"]
        if c["cell_type"] == "code"
    )
    assert "status = 'active' WHERE status IS NULL" in sources
    assert 'server_default="system"' in sources and 'values(theme="system")' in sources


def test_05_shows_a_batch_failing_half_way_and_the_rerun_finishing() -> None:
    """The committed notebook shows what a failed autocommit_block leaves (its outputs are nbval-checked)."""
    cells = json.loads((REPO / "notebooks" / "05-data-migrations.ipynb").read_text())["cells"]
    outputs = "\n".join(
        "".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
    )
    partly = outputs.index("PARTLY APPLIED")
    assert "light  | 20000\nsystem | 30000" in outputs[partly:]
    assert "system | 50000" in outputs[outputs.index("light  | 20000") :]


# --- chapters 06-10, and every solution of 00-10 ---------------------------------------------------------------

ENUM_ORDER = sa.text(
    "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
    "WHERE t.typname = 'job_state' ORDER BY e.enumsortorder"
)


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_solution_leaves_alembic_check_clean_and_survives_a_round_trip(number: str, lab: Lab, capsys) -> None:
    chapter = start(lab, number)
    namespace: dict = {}
    chapter.solution(namespace)
    assert chapter.report(namespace.get("answer")).passed
    assert lab.runner.run("check").ok, lab.runner.run("check").error
    for step in ("base", "head"):
        result = lab.runner.run(["downgrade", step]) if step == "base" else lab.runner.run(["upgrade", step])
        assert result.ok, f"{step}: {result.error}"
    assert lab.runner.run("check").ok
    capsys.readouterr()


def test_07_solution_puts_paused_where_the_model_has_it(lab: Lab, capsys) -> None:
    start(lab, "07").solution({})
    with lab.db.engine.connect() as conn:
        assert list(conn.scalars(ENUM_ORDER)) == ["queued", "running", "done", "paused"]
    capsys.readouterr()


REBUILD_WITHOUT_PAUSED = """op.execute("UPDATE job_entries SET state = 'done' WHERE state = 'paused'")
op.execute("ALTER TYPE job_state RENAME TO job_state_old")
op.execute("CREATE TYPE job_state AS ENUM ('queued', 'running', 'done', 'failed', 'cancelled')")
op.execute("ALTER TABLE job_entries ALTER COLUMN state DROP DEFAULT")
op.execute("ALTER TABLE job_entries ALTER COLUMN state TYPE job_state USING state::text::job_state")
op.execute("ALTER TABLE job_entries ALTER COLUMN state SET DEFAULT 'queued'")
op.execute("DROP TYPE job_state_old")"""


def test_07_a_value_appended_out_of_the_models_order_fails_the_check(lab: Lab, capsys) -> None:
    """After the chapter's steps (failed, cancelled), 'paused' after 'done' in the model and a bare ADD VALUE: the
    database's order differs, and the check says so. (Not with alembic-postgresql-enum imported: once imported it
    changes autogenerate for the whole process, and other tests of this session would see it.)"""
    chapter = start(lab, "07")
    chapter.edit_model('"done"', '"done", "failed", "cancelled"')
    chapter.alembic('revision -m "failed and cancelled"')
    chapter.rewrite_revision(
        upgrade="""with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE 'failed' AFTER 'done'")
    op.execute("ALTER TYPE job_state ADD VALUE 'cancelled' AFTER 'failed'")"""
    )
    chapter.alembic("upgrade head")
    chapter.edit_model('"done"', '"done", "paused"')
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(
        upgrade="""with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE 'paused'")"""
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    order = "job_state's values are in the same order in main.py and the database"
    assert order in hints and "appends" in hints[order][0] and "AFTER 'done'" in hints[order][1]
    chapter.rewrite_revision(downgrade=REBUILD_WITHOUT_PAUSED)  # PostgreSQL cannot move a value: rebuild
    chapter.alembic("downgrade -1", confirm=True)
    chapter.rewrite_revision(
        upgrade="""with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE 'paused' AFTER 'done'")"""
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def _07_paused_with(downgrade: str, lab: Lab) -> Chapter:
    """Chapter 07's exercise answered with the solution's model, upgrade and revision, and `downgrade`."""
    chapter = start(lab, "07")
    chapter.edit_model('"done"', '"done", "paused"')
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(
        upgrade="""with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused' AFTER 'done'")""",
        downgrade=downgrade,
    )
    chapter.alembic("upgrade head")
    return chapter


REBUILT_WITHOUT_PAUSED = REBUILD_WITHOUT_PAUSED.split("\n", 1)[1].replace(", 'failed', 'cancelled'", "")
UNDONE = "your downgrade() takes 'paused' out again, and the upgrade puts it back in place (replayed on a copy)"


def test_07_another_downgrade_that_keeps_the_paused_jobs_passes(lab: Lab, capsys) -> None:
    """Paused jobs finished rather than queued again, and the type rebuilt in SQL: another answer that undoes."""
    keep = "op.execute(\"UPDATE job_entries SET state = 'done' WHERE state = 'paused'\")\n"
    chapter = _07_paused_with(keep + REBUILT_WITHOUT_PAUSED, lab)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


KEEP_PAUSED = "op.execute(\"UPDATE job_entries SET state = 'queued' WHERE state = 'paused'\")\n"
SET_DEFAULT = "op.execute(\"ALTER TABLE job_entries ALTER COLUMN state SET DEFAULT 'queued'\")\n"
DROP_OLD = 'op.execute("DROP TYPE job_state_old")'


@pytest.mark.parametrize(
    ("downgrade", "said"),
    [
        ("op.execute(\"DELETE FROM job_entries WHERE state = 'paused'\")\n" + REBUILT_WITHOUT_PAUSED, "deletes 1 job"),
        (REBUILT_WITHOUT_PAUSED, "invalid input value for enum job_state"),  # rows left in a value that is gone
        ("op.execute(\"UPDATE job_entries SET state = 'queued'\")\n" + REBUILT_WITHOUT_PAUSED, "running → queued"),
        (KEEP_PAUSED + REBUILT_WITHOUT_PAUSED.replace(SET_DEFAULT, ""), "DEFAULT 'queued'::job_state became"),
        (KEEP_PAUSED + REBUILT_WITHOUT_PAUSED.replace(DROP_OLD, ""), "type job_state_old: none became"),
    ],
    ids=[
        "deletes-the-paused-jobs",
        "leaves-them-in-a-value-that-is-gone",
        "queues-every-job-again",
        "loses-the-columns-default",
        "leaves-the-old-type-behind",
    ],
)
def test_07_a_downgrade_that_loses_jobs_or_schema_fails(downgrade: str, said: str, lab: Lab, capsys) -> None:
    """On the learner's own database no job is paused and nothing is downgraded, so each of these runs there; on
    a copy with a paused, a running and a done job, each loses a job, fails, moves a job it should leave alone, or
    leaves the schema other than it was."""
    assert SET_DEFAULT in REBUILT_WITHOUT_PAUSED and DROP_OLD in REBUILT_WITHOUT_PAUSED
    chapter = _07_paused_with(downgrade, lab)
    hints = failing(chapter)
    assert UNDONE in hints, hints
    assert said in hints[UNDONE][0], hints[UNDONE][0]
    with lab.db.engine.connect() as conn:  # judged on a copy: the learner's database has no job added
        assert conn.scalar(sa.text("SELECT count(*) FROM job_entries WHERE state = 'paused'")) == 0
    capsys.readouterr()


ROUND_TRIP = "the history survives `alembic downgrade base` then `upgrade head` (tried on a copy)"


def test_the_round_trip_fails_a_downgrade_that_leaves_a_type_behind(lab: Lab, capsys) -> None:
    """`downgrade base` + `upgrade head` both run, but a type the downgrade renamed is still there at base."""
    chapter = _07_paused_with(KEEP_PAUSED + REBUILT_WITHOUT_PAUSED.replace(DROP_OLD, ""), lab)
    hints = failing(chapter)
    assert "`alembic downgrade base` leaves type job_state_old behind" in hints[ROUND_TRIP][0], hints
    capsys.readouterr()


AUTOGENERATED_DOWNGRADE = """op.drop_table('user_settings')
op.drop_index(op.f('ix_job_entries_user_id'), table_name='job_entries')
op.drop_table('job_entries')
op.drop_table('user_profiles')"""
INITIAL = 'revision --autogenerate -m "initial schema"'


def test_09_an_initial_revision_that_leaves_its_enum_type_behind_fails_the_round_trip(lab: Lab, capsys) -> None:
    chapter = start(lab, "09")
    chapter.nuke(confirm=True)
    chapter.clean_versions()
    chapter.alembic(INITIAL)
    # What autogenerate writes with the baseline env.py (with alembic-postgresql-enum imported by an earlier test
    # in this process, it would drop the type itself).
    chapter.rewrite_revision(downgrade=AUTOGENERATED_DOWNGRADE)
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == ["the history survives `alembic downgrade base` then `upgrade head` (tried on a copy)"]
    (first, *_) = next(iter(hints.values()))
    assert "DuplicateObject" in first and "job_state" in first
    assert lab.db.heads()  # tried on a copy: the learner's database is still at head
    capsys.readouterr()


def test_09_an_upgrade_that_clears_the_leftover_type_does_not_hide_the_downgrades_fault(lab: Lab, capsys) -> None:
    """The round trip fails on DuplicateObject; making the upgrade drop the type first gets past it, but the
    downgrade still leaves job_state behind: that is what the check says."""
    chapter = start(lab, "09")
    chapter.nuke(confirm=True)
    chapter.clean_versions()
    chapter.alembic(INITIAL)
    chapter.rewrite_revision(downgrade=AUTOGENERATED_DOWNGRADE)
    (revision,) = lab.project.versions_dir.glob("*.py")
    head, body = revision.read_text().split("def upgrade() -> None:\n", 1)
    tolerant = '    op.execute("DROP TYPE IF EXISTS job_state")\n'
    revision.write_text(f"{head}def upgrade() -> None:\n{tolerant}{body}")
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [ROUND_TRIP], hints
    assert "`alembic downgrade base` leaves type job_state behind" in hints[ROUND_TRIP][0], hints
    capsys.readouterr()


def test_09_a_type_dropped_before_its_tables_is_told_to_go_after_them(lab: Lab, capsys) -> None:
    """The downgrade drops job_state first, while job_entries still uses it: the hint said the downgrade does not
    drop the type at all."""
    chapter = start(lab, "09")
    chapter.nuke(confirm=True)
    chapter.clean_versions()
    chapter.alembic(INITIAL)
    chapter.rewrite_revision(downgrade='op.execute("DROP TYPE job_state")\n' + AUTOGENERATED_DOWNGRADE)
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    assert list(hints) == [ROUND_TRIP], hints
    assert "DependentObjectsStillExist" in hints[ROUND_TRIP][0], hints
    assert "after the tables that use it" in hints[ROUND_TRIP][0] and "but not the ENUM" not in hints[ROUND_TRIP][0]
    capsys.readouterr()


COUNTRY_NOT_NULL = "country = Column(String(2), nullable=False)"


def test_10_accepts_add_nullable_backfill_then_not_null(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", COUNTRY_NOT_NULL)
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.rewrite_revision(
        upgrade="""op.add_column('user_profiles', sa.Column('country', sa.String(length=2), nullable=True))
op.execute("UPDATE user_profiles SET country = 'GB'")
op.alter_column('user_profiles', 'country', existing_type=sa.String(length=2), nullable=False)"""
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_10_accepts_a_server_default(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", 'country = Column(String(2), nullable=False, server_default="GB")')
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_10_a_failed_one_step_not_null_is_told_both_ways_and_no_false_claim(lab: Lab, capsys) -> None:
    chapter = start(lab, "10")
    chapter.add_column("UserProfile", COUNTRY_NOT_NULL)
    chapter.alembic('revision --autogenerate -m "add country"')
    chapter.alembic("upgrade head")
    hints = " ".join(h for levels in failing(chapter).values() for h in levels)
    assert "backfill" in hints and "server_default" in hints
    assert "only a server_default" not in hints and "needs a server_default" not in hints
    capsys.readouterr()


ANSWER_CHECK = "your answer names the line of your project that fails"


def test_08_the_exercise_shows_the_raw_traceback_and_checks_the_frame_named(lab: Lab, capsys) -> None:
    chapter = start(lab, "08")
    shown = capsys.readouterr().out
    assert "Traceback (most recent call last):" in shown
    assert 'File "ai-service/migrations/env.py", line 18, in <module>' in shown
    assert "ImportError: cannot import name 'JobQueue' from 'main' (ai-service/main.py)" in shown
    for right in ("ai-service/migrations/env.py:18", "env.py, line 18", "from main import Base, JobQueue"):
        assert ANSWER_CHECK not in failing(chapter, right), right
    for wrong in ("ai-service/migrations/env.py:19", "main.py:18", None):
        assert ANSWER_CHECK in failing(chapter, wrong), wrong
    alembic_frame = failing(chapter, ".../site-packages/alembic/util/pyfiles.py:132")[ANSWER_CHECK]
    assert "code you did not write" in alembic_frame[0]
    capsys.readouterr()


def test_06_a_plain_merge_of_two_branches_adding_the_same_column_is_not_enough(lab: Lab, capsys) -> None:
    chapter = start(lab, "06")
    chapter.alembic('merge heads -m "merge carol"')
    chapter.alembic("upgrade head")
    assert "DuplicateColumn" in capsys.readouterr().out
    check = chapter.report().first_failing
    assert check is not None and check.name == "the database is at head"
    assert "DuplicateColumn" in check.hints[0] and "down_revision" in check.hints[1]


def test_06_after_the_steps_a_merge_revision_with_content_resolves_it(lab: Lab, capsys) -> None:
    """From the chapter's steps (your branch ends in a merge point), the last hint's code works as given."""
    chapter = Chapter(spec("06"), lab)
    chapter.reset()
    chapter.teammate_revision("bob")
    chapter.alembic("merge heads -m 'bob' --rev-id 0e0000000001")
    chapter.alembic("upgrade head")
    chapter.start_exercise()
    hints = chapter.report().first_failing.hints  # type: ignore[union-attr]
    assert "('0e0000000001', 'c3e8a6d2f4b5')" in hints[-1]
    exec(hints[-1], {"ch": chapter})
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


READS_ROWS = """bind = op.get_bind()
for (user_id,) in bind.execute(sa.text("SELECT id FROM user_profiles")).all():
    bind.execute(sa.text("UPDATE user_profiles SET email = lower(email) WHERE id = :id"), {"id": user_id})"""
OFFLINE_AWARE = """from alembic import context
if context.is_offline_mode():
    op.execute("UPDATE user_profiles SET email = lower(email)")
else:
""" + "\n".join("    " + line for line in READS_ROWS.splitlines())


@pytest.mark.parametrize(("upgrade", "renders"), [(READS_ROWS, False), (OFFLINE_AWARE, True)])
def test_10_offline_sql_of_a_data_migration_that_reads_rows(lab: Lab, upgrade: str, renders: bool) -> None:
    """Chapter 10's claim: `upgrade A:B --sql` has no database, so a revision reading rows through op.get_bind()
    fails there; one that asks context.is_offline_mode() renders plain SQL instead."""
    Chapter(spec("10"), lab).reset()
    write_revision(lab.project, "0f0000000010", "a1c4e7f20b13", upgrade)
    result = lab.runner.run(["upgrade", "a1c4e7f20b13:0f0000000010", "--sql"])
    assert result.ok is renders, result.error
    if renders:
        assert "UPDATE user_profiles SET email = lower(email)" in result.stdout
