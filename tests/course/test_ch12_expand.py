"""Chapter 12, expand and contract: two app versions against one real database, step by step.

The steps are the chapter's own (the notebook writes the same revisions): a
one-step rename breaks the old version; expand + dual-write, a batched
backfill and a later contract keep every running version at 0 failed requests.
"""

import re

import pytest
import sqlalchemy as sa

from helpers import failing, rewritten_bodies
from migration_lab import Lab
from migration_lab.course.ch12_app_versions import burst
from migration_lab.course.ch12_expand import replay
from migration_lab.course.registry import spec
from migration_lab.front.notebook import Chapter

# The chapter's own revisions, as its notebook writes them: expand, backfill, contract.
BODIES = rewritten_bodies("12-expand-and-contract.ipynb")


def body(marker: str) -> dict[str, str]:
    return next(b for b in BODIES if marker in b.get("upgrade", ""))


EXPAND_UP, EXPAND_DOWN = body("CREATE TRIGGER")["upgrade"], body("CREATE TRIGGER")["downgrade"]
BACKFILL_UP = body("SET full_name = name")["upgrade"]
CONTRACT_UP, CONTRACT_DOWN = body("DROP TRIGGER")["upgrade"], body("DROP TRIGGER")["downgrade"]
SYNC_FUNCTION = EXPAND_UP.split("\n", 1)[1]  # the expand without its add_column: the trigger and its function
DROP_SYNC = "\n".join(EXPAND_DOWN.splitlines()[:2])
NAME_LINE = "    name = Column(String(100), nullable=False)\n"
FULL_NAME = "full_name = Column(String(100), nullable=True)"


def start(lab: Lab) -> Chapter:
    chapter = Chapter(spec("12"), lab)
    chapter.reset()
    return chapter


def expand(chapter: Chapter) -> None:
    chapter.add_column("UserProfile", FULL_NAME)
    chapter.alembic('revision --autogenerate -m "expand full_name"')
    chapter.rewrite_revision(upgrade=EXPAND_UP, downgrade=EXPAND_DOWN)
    chapter.alembic("upgrade head")


def backfill(chapter: Chapter) -> None:
    chapter.alembic('revision -m "backfill full_name"')
    chapter.rewrite_revision(upgrade=BACKFILL_UP, downgrade="pass")
    chapter.alembic("upgrade head")


def contract(chapter: Chapter) -> None:
    chapter.edit_model(NAME_LINE, "")
    chapter.edit_model(FULL_NAME, "full_name = Column(String(100), nullable=False)")
    chapter.alembic('revision --autogenerate -m "contract full_name"')
    chapter.rewrite_revision(upgrade=CONTRACT_UP, downgrade=CONTRACT_DOWN)
    chapter.alembic("upgrade head", confirm=True)


def test_a_one_step_rename_breaks_the_old_version(lab: Lab, capsys) -> None:
    chapter = start(lab)
    assert burst(lab.db.url, ["old"]).ok
    chapter.alembic('revision -m "rename in one step"')
    chapter.rewrite_revision(
        upgrade="op.alter_column('user_profiles', 'name', new_column_name='full_name')",
        downgrade="op.alter_column('user_profiles', 'full_name', new_column_name='name')",
    )
    chapter.alembic("upgrade head")
    seen = burst(lab.db.url, ["old", "new"])
    assert seen.of("old").failed > 0 and seen.of("new").failed == 0
    assert 'column "name"' in seen.of("old").failures[0]
    assert str(seen.of("old")).startswith("old version (name): ")
    capsys.readouterr()


def test_each_step_keeps_the_running_versions_at_zero_failed(lab: Lab, capsys) -> None:
    chapter = start(lab)
    expand(chapter)
    assert "FAILED" not in capsys.readouterr().out
    assert burst(lab.db.url, ["old"]).ok  # expand: the old version runs on
    early = burst(lab.db.url, ["old", "new"])  # the new version before the backfill: old rows have no full_name
    assert early.of("old").failed == 0 and "have no full_name" in early.of("new").failures[0]
    backfill(chapter)
    both = burst(lab.db.url, ["old", "new"])  # the rolling deploy: both versions at once, writes seen by both
    assert both.ok, str(both)
    assert burst(lab.db.url, ["new", "old"]).ok
    contract(chapter)
    assert "FAILED" not in capsys.readouterr().out
    assert burst(lab.db.url, ["new"]).ok  # after contract only the new version runs
    assert burst(lab.db.url, ["old"]).of("old").failed > 0  # which is why contract waits for the old one to go
    assert lab.runner.run("check").ok


def test_without_the_trigger_the_new_version_misses_the_old_versions_writes(lab: Lab, capsys) -> None:
    chapter = start(lab)
    chapter.add_column("UserProfile", FULL_NAME)
    chapter.alembic('revision --autogenerate -m "expand without dual-write"')
    chapter.alembic("upgrade head")
    backfill(chapter)
    seen = burst(lab.db.url, ["old", "new"])
    new = seen.of("new").failures
    assert "violates not-null constraint" in new[0]  # the new version signs up without name: NOT NULL
    assert "1 profile(s) have no full_name" in new[1]  # and the old version's sign-up has no full_name
    capsys.readouterr()


def test_the_backfill_is_idempotent_and_skips_filled_rows(lab: Lab, capsys) -> None:
    """Run again (a deploy retried after a crash), the backfill changes no row: not even to the same value."""
    chapter = start(lab)
    expand(chapter)
    backfill(chapter)
    with lab.db.engine.begin() as conn:  # the new version writes after the backfill: not to be overwritten
        conn.execute(sa.text("UPDATE user_profiles SET full_name = 'Augusta Ada King' WHERE email = 'ada@example.org'"))
    before = _row_versions(lab)
    expand_revision = lab.runner.script().get_revision("head").down_revision
    assert lab.runner.run(["stamp", str(expand_revision)]).ok  # as if the backfill had not run yet
    result = lab.runner.run("upgrade head")  # the backfill again, over filled rows
    assert result.ok and "backfill full_name" in result.output, str(result)
    assert _row_versions(lab) == before  # PostgreSQL gives every row an UPDATE touches a new xmin
    assert all(name == full for name, full in _names(lab).values())
    assert _names(lab)["ada@example.org"] == ("Augusta Ada King", "Augusta Ada King")
    capsys.readouterr()


def test_every_revision_goes_down_to_base_and_up_again(lab: Lab, capsys) -> None:
    chapter = start(lab)
    expand(chapter)
    backfill(chapter)
    contract(chapter)
    with lab.db.engine.connect() as conn:
        names = sorted(conn.scalars(sa.text("SELECT full_name FROM user_profiles")))
    assert lab.runner.run("downgrade base").ok
    assert lab.runner.run("upgrade head").ok
    assert lab.runner.run("check").ok
    with lab.db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM user_profiles")) == 0
    chapter.reset()  # with rows: down to before the expand (the names back in name), and up again
    expand(chapter)
    backfill(chapter)
    contract(chapter)
    assert lab.runner.run("downgrade a1c4e7f20b13").ok
    with lab.db.engine.connect() as conn:
        assert sorted(conn.scalars(sa.text("SELECT name FROM user_profiles"))) == names
    assert lab.runner.run("upgrade head").ok and lab.runner.run("check").ok
    assert burst(lab.db.url, ["new"]).ok
    capsys.readouterr()


def test_the_replay_names_the_revision_that_breaks_the_old_version(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("12"), lab)
    chapter.reset()
    chapter.start_exercise()
    chapter.alembic('revision -m "rename phone in one step"')
    chapter.rewrite_revision(
        upgrade="op.alter_column('user_profiles', 'phone_number', new_column_name='phone')",
        downgrade="op.alter_column('user_profiles', 'phone', new_column_name='phone_number')",
    )
    chapter.alembic("upgrade head")
    replayed = replay(lab, "a1c4e7f20b13")
    assert not replayed.problem and replayed.failed_at == chapter.generated and replayed.seen is not None
    assert re.search(
        r'column "phone_number" of relation "user_profiles" does not exist|phone_number does not exist',
        replayed.seen.of("old-phone").failures[0],
    )
    check = next(c for c in chapter.report().checks if not c.passed and "never fails" in c.name)
    assert "A rename in one step" in check.hint
    capsys.readouterr()


@pytest.mark.parametrize("missing", ["trigger", "backfill"])
def test_the_exercise_says_what_is_missing(lab: Lab, missing: str, capsys) -> None:
    chapter = Chapter(spec("12"), lab)
    chapter.reset()
    chapter.start_exercise()
    chapter.add_column("UserProfile", "phone = Column(String, nullable=True)")
    chapter.alembic('revision --autogenerate -m "expand phone"')
    if missing == "backfill":
        chapter.rewrite_revision(
            upgrade="op.add_column('user_profiles', sa.Column('phone', sa.String(), nullable=True))\n"
            + SYNC_FUNCTION.replace("full_name", "phone")
            .replace("NEW.name", "NEW.phone_number")
            .replace("OLD.name", "OLD.phone_number"),
            downgrade=DROP_SYNC.replace("full_name", "phone") + "\nop.drop_column('user_profiles', 'phone')",
        )
    else:
        chapter.alembic('revision -m "backfill phone"')
        chapter.rewrite_revision(upgrade='op.execute("UPDATE user_profiles SET phone = phone_number")')
    chapter.alembic("upgrade head")
    check = chapter.report().first_failing
    assert check is not None, "the exercise passed without its " + missing
    assert check.name.startswith("the ")
    assert ("backfill" if missing == "backfill" else "only the database can keep") in check.hint
    capsys.readouterr()


def _row_versions(lab: Lab) -> dict[str, str]:
    """{email: xmin}: the transaction that wrote each row's current version."""
    with lab.db.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT email, xmin::text FROM user_profiles")).all())


def _names(lab: Lab) -> dict[str, tuple[str, str]]:
    with lab.db.engine.connect() as conn:
        return {e: (n, f) for e, n, f in conn.execute(sa.text("SELECT email, name, full_name FROM user_profiles"))}


def test_the_exercise_passes_on_top_of_the_chapters_own_steps(lab: Lab, capsys) -> None:
    """A learner who did the steps and then the exercise (no reset between): the replay starts at their contract."""
    chapter = start(lab)
    expand(chapter)
    backfill(chapter)
    contract(chapter)
    chapter.start_exercise()
    before = chapter.report().first_failing
    assert before is not None and before.name == "UserProfile in main.py maps the column phone"
    exec(chapter.solution_file.read_text(), {"ch": chapter})  # the solution's steps, without its reset
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


# --- the exercise, answered other ways: graded by the traffic, not by how the revisions are written ------------

SYNC_PHONE = (
    SYNC_FUNCTION.replace("full_name", "phone")
    .replace("NEW.name", "NEW.phone_number")
    .replace("OLD.name", "OLD.phone_number")
)
DROP_SYNC_PHONE = DROP_SYNC.replace("full_name", "phone")
PHONE_MODEL = "phone = Column(String, nullable=True)"
ONE_WAY_SYNC = '''op.execute("""
CREATE OR REPLACE FUNCTION user_profiles_sync_phone() RETURNS trigger AS $$
BEGIN
    NEW.phone := NEW.phone_number;
    RETURN NEW;
END $$ LANGUAGE plpgsql""")
op.execute("CREATE TRIGGER sync_phone BEFORE INSERT OR UPDATE ON user_profiles "
           "FOR EACH ROW EXECUTE FUNCTION user_profiles_sync_phone()")'''


def exercise_start(lab: Lab) -> Chapter:
    chapter = Chapter(spec("12"), lab)
    chapter.reset()
    chapter.start_exercise()
    chapter.add_column("UserProfile", PHONE_MODEL)
    return chapter


def test_an_expand_in_plain_sql_and_a_backfill_in_one_statement_pass(lab: Lab, capsys) -> None:
    chapter = exercise_start(lab)
    chapter.alembic('revision -m "expand phone"')
    chapter.rewrite_revision(
        upgrade='op.execute("ALTER TABLE user_profiles ADD COLUMN phone varchar")\n' + SYNC_PHONE,
        downgrade=DROP_SYNC_PHONE + '\nop.execute("ALTER TABLE user_profiles DROP COLUMN phone")',
    )
    chapter.alembic('revision -m "backfill phone"')
    chapter.rewrite_revision(upgrade='op.execute("UPDATE user_profiles SET phone = phone_number WHERE phone IS NULL")')
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_expand_and_keyset_backfill_in_one_revision_with_double_quotes_pass(lab: Lab, capsys) -> None:
    chapter = exercise_start(lab)
    chapter.alembic('revision -m "expand phone"')
    chapter.rewrite_revision(
        upgrade='op.add_column("user_profiles", sa.Column("phone", sa.String(), nullable=True))\n'
        + SYNC_PHONE
        + """
bind = op.get_bind()
last = bind.execute(sa.text("SELECT max(id) FROM user_profiles")).scalar() or 0
with op.get_context().autocommit_block():
    for start in range(0, last, 500):
        bind.execute(sa.text("UPDATE user_profiles SET phone = phone_number "
                             "WHERE id > :s AND id <= :s + 500 AND phone IS NULL"), {"s": start})""",
        downgrade=DROP_SYNC_PHONE + '\nop.drop_column("user_profiles", "phone")',
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


def test_a_trigger_that_copies_one_way_only_fails_side_by_side(lab: Lab, capsys) -> None:
    """The new version's writes never reach phone_number: the old version reads stale numbers."""
    chapter = exercise_start(lab)
    chapter.alembic('revision --autogenerate -m "expand phone"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('phone', sa.String(), nullable=True))\n" + ONE_WAY_SYNC,
        downgrade=DROP_SYNC_PHONE + "\nop.drop_column('user_profiles', 'phone')",
    )
    chapter.alembic('revision -m "backfill phone"')
    chapter.rewrite_revision(upgrade='op.execute("UPDATE user_profiles SET phone = phone_number")')
    chapter.alembic("upgrade head")
    failed = failing(chapter)
    assert "the old version (phone_number) works next to the new one: 0 failed requests" in failed, failed
    capsys.readouterr()


def test_dropping_phone_number_in_the_same_release_fails_the_replay(lab: Lab, capsys) -> None:
    """The contract shipped with the expand: after that revision the old version fails, and the replay says which."""
    chapter = exercise_start(lab)
    exec(chapter.solution_file.read_text().split("ch.alembic('revision -m \"backfill phone\"')")[0], {"ch": chapter})
    chapter.alembic('revision -m "drop phone_number"')
    chapter.rewrite_revision(
        upgrade="op.drop_column('user_profiles', 'phone_number')",
        downgrade="op.add_column('user_profiles', sa.Column('phone_number', sa.String(), nullable=True))",
    )
    chapter.alembic("upgrade head", confirm=True)
    failed = failing(chapter)
    replay_check = "the old version (phone_number) never fails while your revisions are applied"
    assert replay_check in failed and chapter.generated in failed[replay_check][0], failed
    capsys.readouterr()


def _expand_and_backfill(lab: Lab, sync: str, downgrade: str) -> Chapter:
    """The exercise answered with an expand revision (phone added, then `sync`; `downgrade`) and a backfill, applied."""
    chapter = exercise_start(lab)
    chapter.alembic('revision -m "expand phone"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('phone', sa.String(), nullable=True))\n" + sync,
        downgrade=downgrade,
    )
    chapter.alembic('revision -m "backfill phone"')
    chapter.rewrite_revision(upgrade='op.execute("UPDATE user_profiles SET phone = phone_number WHERE phone IS NULL")')
    chapter.alembic("upgrade head")
    return chapter


def test_a_trigger_on_update_only_misses_what_each_version_signs_up_fails(lab: Lab, capsys) -> None:
    """BEFORE UPDATE only: a user signed up by the old version has no phone, and by the new one no phone_number."""
    update_only = SYNC_PHONE.replace("BEFORE INSERT OR UPDATE", "BEFORE UPDATE")
    assert update_only != SYNC_PHONE
    chapter = _expand_and_backfill(lab, update_only, DROP_SYNC_PHONE + "\nop.drop_column('user_profiles', 'phone')")
    failed = failing(chapter)
    side_by_side = {
        "the old version (phone_number) works next to the new one: 0 failed requests",
        "the new version (phone) works next to the old one: 0 failed requests",
    }
    assert side_by_side & set(failed), failed
    capsys.readouterr()


def test_a_downgrade_that_leaves_the_trigger_behind_breaks_the_old_version_after_a_rollback(lab: Lab, capsys) -> None:
    """The expand's downgrade drops the column but not the trigger: after a rollback every write of the old code
    fails on the trigger's NEW.phone."""
    chapter = _expand_and_backfill(lab, SYNC_PHONE, "op.drop_column('user_profiles', 'phone')")
    failed = failing(chapter)
    replay_check = "the old version (phone_number) never fails while your revisions are applied"
    assert replay_check in failed, failed
    assert "after the downgrades below the expand, the old version fails" in failed[replay_check][0], failed
    capsys.readouterr()


def test_making_phone_required_in_the_expand_release_breaks_the_old_versions_sign_ups(lab: Lab, capsys) -> None:
    """The old code signs up users who give no phone: phone NOT NULL (after the backfill) refuses them, although
    every phone the old version writes reaches phone. The bursts used to send a phone with every sign-up."""
    chapter = _expand_and_backfill(lab, SYNC_PHONE, DROP_SYNC_PHONE + "\nop.drop_column('user_profiles', 'phone')")
    chapter.alembic('revision -m "phone required"')
    chapter.rewrite_revision(
        upgrade="op.alter_column('user_profiles', 'phone', existing_type=sa.String(), nullable=False)",
        downgrade="op.alter_column('user_profiles', 'phone', existing_type=sa.String(), nullable=True)",
    )
    chapter.alembic("upgrade head")
    failed = failing(chapter)
    replay_check = "the old version (phone_number) never fails while your revisions are applied"
    assert replay_check in failed, failed
    assert chapter.generated in failed[replay_check][0] and 'column "phone"' in failed[replay_check][0], failed
    capsys.readouterr()


def test_a_trigger_made_by_hand_is_named_and_said_to_belong_in_a_revision(lab: Lab, capsys) -> None:
    """The expand revision adds the column and backfills; the trigger was made with ch.sql, in no revision. The hint
    asked whether the downgrade left it behind."""
    chapter = exercise_start(lab)
    chapter.alembic('revision -m "expand phone"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('phone', sa.String(), nullable=True))\n"
        "op.execute('UPDATE user_profiles SET phone = phone_number WHERE phone IS NULL')",
        downgrade="op.drop_column('user_profiles', 'phone')",
    )
    chapter.alembic("upgrade head")
    chapter.sql(
        "CREATE FUNCTION copy_phone() RETURNS trigger AS $$ BEGIN NEW.phone := NEW.phone_number; RETURN NEW; END $$ "
        "LANGUAGE plpgsql"
    )
    chapter.sql(
        "CREATE TRIGGER copy_phone BEFORE INSERT OR UPDATE ON user_profiles FOR EACH ROW EXECUTE FUNCTION copy_phone()"
    )
    failed = failing(chapter)
    replay_check = "the old version (phone_number) never fails while your revisions are applied"
    assert replay_check in failed, failed
    assert "made by hand (in no revision)" in failed[replay_check][0], failed[replay_check]
    capsys.readouterr()


# --- more answers: other spellings and routes pass, plausible wrong triggers fail ------------------------------

TG_OP_SYNC = '''op.execute("""
CREATE FUNCTION keep_phones_in_step() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.phone IS NULL THEN NEW.phone := NEW.phone_number; END IF;
        IF NEW.phone_number IS NULL THEN NEW.phone_number := NEW.phone; END IF;
    ELSIF NEW.phone_number IS DISTINCT FROM OLD.phone_number THEN
        NEW.phone := NEW.phone_number;
    ELSIF NEW.phone IS DISTINCT FROM OLD.phone THEN
        NEW.phone_number := NEW.phone;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql""")
op.execute("""CREATE TRIGGER keep_phones_in_step BEFORE INSERT OR UPDATE ON user_profiles
              FOR EACH ROW EXECUTE PROCEDURE keep_phones_in_step()""")'''
DROP_TG_OP_SYNC = (
    'op.execute("DROP TRIGGER keep_phones_in_step ON user_profiles")\nop.execute("DROP FUNCTION keep_phones_in_step()")'
)
BATCHED_BACKFILL = """bind = op.get_bind()
with op.get_context().autocommit_block():
    while bind.execute(sa.text("UPDATE user_profiles SET phone = phone_number WHERE id IN (SELECT id FROM "
                               "user_profiles WHERE phone IS NULL AND phone_number IS NOT NULL LIMIT 2)")).rowcount:
        pass"""


def test_a_typed_model_a_tg_op_trigger_in_a_revision_of_its_own_and_a_loop_backfill_pass(lab: Lab, capsys) -> None:
    """Mapped[...] in the model; the column, the trigger and the backfill each in a revision of their own; the
    trigger branches on TG_OP; the backfill loops until no row is left."""
    chapter = Chapter(spec("12"), lab)
    chapter.reset()
    chapter.start_exercise()
    chapter.edit_model(
        "from sqlalchemy.orm import Session, declarative_base",
        "from sqlalchemy.orm import Mapped, Session, declarative_base, mapped_column",
    )
    chapter.add_column("UserProfile", "phone: Mapped[str | None] = mapped_column(String)")
    chapter.alembic('revision --autogenerate -m "add phone"')
    chapter.alembic('revision -m "keep phones in step"')
    chapter.rewrite_revision(upgrade=TG_OP_SYNC, downgrade=DROP_TG_OP_SYNC)
    chapter.alembic('revision -m "backfill phone"')
    chapter.rewrite_revision(upgrade=BATCHED_BACKFILL)
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


COALESCE_SYNC = '''op.execute("""
CREATE OR REPLACE FUNCTION fill_phones() RETURNS trigger AS $$
BEGIN
    NEW.phone := COALESCE(NEW.phone, NEW.phone_number);
    NEW.phone_number := COALESCE(NEW.phone_number, NEW.phone);
    RETURN NEW;
END $$ LANGUAGE plpgsql""")
op.execute("CREATE TRIGGER fill_phones BEFORE INSERT OR UPDATE ON user_profiles "
           "FOR EACH ROW EXECUTE FUNCTION fill_phones()")'''
DROP_COALESCE_SYNC = (
    'op.execute("DROP TRIGGER fill_phones ON user_profiles")\nop.execute("DROP FUNCTION fill_phones()")'
)


@pytest.mark.parametrize(
    "sync",
    [COALESCE_SYNC, COALESCE_SYNC.replace("BEFORE INSERT", "AFTER INSERT")],
    ids=["coalesce-fills-only-empty-ones", "after-trigger-changes-nothing"],
)
def test_a_trigger_that_fills_only_empty_columns_or_runs_after_the_write_fails_side_by_side(
    lab: Lab, sync: str, capsys
) -> None:
    """COALESCE copies a number into an empty column, never a changed one: an update by one version leaves the other
    column stale. An AFTER trigger's NEW is thrown away: nothing is copied at all."""
    chapter = exercise_start(lab)
    chapter.alembic('revision -m "expand phone"')
    chapter.rewrite_revision(
        upgrade="op.add_column('user_profiles', sa.Column('phone', sa.String(), nullable=True))\n" + sync,
        downgrade=DROP_COALESCE_SYNC + "\nop.drop_column('user_profiles', 'phone')",
    )
    chapter.alembic('revision -m "backfill phone"')
    chapter.rewrite_revision(upgrade='op.execute("UPDATE user_profiles SET phone = phone_number")')
    chapter.alembic("upgrade head")
    failed = failing(chapter)
    side_by_side = [name for name in failed if "works next to" in name]
    assert side_by_side, failed
    assert "only the database can keep" in failed[side_by_side[0]][0] or "differ" in failed[side_by_side[0]][0]
    capsys.readouterr()


COUNT_BACKFILL = """bind = op.get_bind()
rows = bind.execute(sa.text("SELECT count(*) FROM user_profiles")).scalar() or 0
with op.get_context().autocommit_block():
    for start in range(0, rows, 500):
        bind.execute(sa.text("UPDATE user_profiles SET phone = phone_number "
                             "WHERE id > :s AND id <= :s + 500 AND phone IS NULL"), {"s": start})"""


def test_a_backfill_batched_up_to_the_row_count_misses_the_profiles_further_along_and_fails(lab: Lab, capsys) -> None:
    """Batches by id up to count(*): in the learner's database (ids 1 to count) every row is filled; production's
    ids have gaps, and the check's copy has a profile far along, which keeps no phone."""
    chapter = exercise_start(lab)
    chapter.alembic('revision -m "expand phone"')
    chapter.rewrite_revision(
        upgrade='op.add_column("user_profiles", sa.Column("phone", sa.String(), nullable=True))\n' + SYNC_PHONE,
        downgrade=DROP_SYNC_PHONE + '\nop.drop_column("user_profiles", "phone")',
    )
    chapter.alembic('revision -m "backfill phone"')
    chapter.rewrite_revision(upgrade=COUNT_BACKFILL)
    chapter.alembic("upgrade head")
    failed = failing(chapter)
    assert list(failed) == ["the new version (phone) works next to the old one: 0 failed requests"], failed
    assert "not to count(*)" in next(iter(failed.values()))[0]
    capsys.readouterr()
