"""The lock trace, one kind of finding at a time, on hand-written revisions rehearsed on a copy of a real database."""

import sqlalchemy as sa

from helpers import write_revision
from migration_lab import Lab
from migration_lab.course.registry import reset, spec
from migration_lab.front.notebook import Chapter
from migration_lab.tools.lock_trace import Lock, LockTrace, Step, trace, trace_each
from migration_lab.tools.review import review

ROWS = 2_000  # profiles added to the chapter's three: enough for a rewrite to copy


def at_head(lab: Lab, engine: sa.Engine) -> str:
    """The database at chapter 01's start, with ROWS more profiles; its head revision."""
    reset("01", lab)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email) "
                f"SELECT 'user ' || i, 'user' || i || '@example.org' FROM generate_series(1, {ROWS}) i"
            )
        )
    [head] = lab.db.heads()
    return head


def profiles(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM user_profiles")) or 0


def only(found: LockTrace) -> Step:
    assert found.error is None, str(found)
    [step] = found.steps
    return step


def test_add_nullable_column_locks_but_does_not_rewrite(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(lab.project, "a1", head, "op.add_column('user_profiles', sa.Column('nickname', sa.String()))")
    step = only(trace("a1", lab))
    assert [(lock.table, lock.mode) for lock in step.locks] == [("user_profiles", "AccessExclusiveLock")]
    assert step.rewrites == () and not step.autocommit
    assert dict(step.rows) == {"user_profiles": profiles(engine)}
    text = "\n".join(step.lines())
    assert (
        "AccessExclusiveLock on user_profiles (blocks reads and writes), held until the migration's transaction ends"
        in text
    )
    assert f"no rewrite of user_profiles ({profiles(engine):,} rows)" in text


def test_volatile_default_and_type_change_rewrite(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        op.add_column('user_profiles', sa.Column('nickname', sa.String()))
        op.add_column('user_profiles', sa.Column('seen', sa.DateTime(), server_default=sa.text('clock_timestamp()')))
        op.add_column('user_profiles', sa.Column('score', sa.Integer(), server_default='0'))
        op.alter_column('user_settings', 'user_id', type_=sa.BigInteger())
        """,
    )
    found = trace("a1", lab)
    assert found.error is None, str(found)
    _, volatile, constant, retyped = found.steps
    assert volatile.rewrites == ("user_profiles",)
    assert constant.rewrites == () and constant.locks == ()  # a constant default: in the catalog, no rewrite
    assert "no new lock; the migration's transaction already holds AccessExclusiveLock on user_profiles" in str(
        found
    ), str(found)
    assert retyped.rewrites == ("user_settings",)
    assert volatile.strongest("user_profiles") == Lock("user_profiles", "AccessExclusiveLock")
    assert f"REWRITES user_profiles (a new relfilenode): all {profiles(engine):,} rows copied (" in str(found)
    assert ", under AccessExclusiveLock for all of it" in str(found)


def test_create_index_takes_a_share_lock(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(lab.project, "a1", head, "op.create_index('ix_profiles_name', 'user_profiles', ['name'])")
    step = only(trace("a1", lab))
    assert [(lock.table, lock.mode) for lock in step.locks] == [("user_profiles", "ShareLock")]
    assert "ShareLock on user_profiles (blocks writes; reads continue)" in "\n".join(step.lines())


def test_concurrent_index_in_autocommit_block(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        with op.get_context().autocommit_block():
            op.create_index('ix_profiles_name', 'user_profiles', ['name'], postgresql_concurrently=True)
        """,
    )
    step = only(trace("a1", lab))
    assert step.autocommit
    assert [(lock.table, lock.mode) for lock in step.locks] == [("user_profiles", "ShareUpdateExclusiveLock")]
    text = "\n".join(step.lines())
    assert (
        "ShareUpdateExclusiveLock on user_profiles (reads and writes continue), only while the statement runs" in text
    )


def test_chapter_10s_concurrent_index_reads_right(lab: Lab, engine: sa.Engine) -> None:
    """Settings first in the autocommit block (no lock: they never wait, so no negative time), and the index
    named with op.f(): the line is the op.create_index call, not the op.f inside it."""
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        with op.get_context().autocommit_block():
            op.execute("SET lock_timeout = '1s'")
            op.create_index(op.f('ix_profiles_name'), 'user_profiles', ['name'],
                            postgresql_concurrently=True, if_not_exists=True)
        """,
    )
    found = trace("a1", lab)
    setting, index = found.steps
    assert setting.duration >= 0 and index.duration >= 0
    assert "(-" not in str(found)
    text = str(found)
    assert "op.create_index(op.f('ix_profiles_name')" in text and ": op.f(" not in text, text


def test_not_valid_then_validate(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        op.execute("ALTER TABLE user_profiles ADD CONSTRAINT ck_named CHECK (length(name) > 0) NOT VALID")
        with op.get_context().autocommit_block():
            op.execute("ALTER TABLE user_profiles VALIDATE CONSTRAINT ck_named")
        """,
    )
    found = trace("a1", lab)
    assert found.error is None, str(found)
    added, validated = found.steps
    assert [lock.mode for lock in added.locks] == ["AccessExclusiveLock"] and added.rewrites == ()
    assert validated.autocommit
    assert [(lock.table, lock.mode) for lock in validated.locks] == [("user_profiles", "ShareUpdateExclusiveLock")]


def test_each_statement_names_the_op_line_that_sent_it(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    path = write_revision(
        lab.project,
        "a1",
        head,
        """
        op.execute("SET lock_timeout = '1s'")
        for name in ('first', 'second'):
            op.add_column(
                'user_profiles',
                sa.Column(name, sa.String(), nullable=True),
            )
        op.create_index('ix_profiles_first', 'user_profiles', ['first'])
        """,
    )
    lines = path.read_text().splitlines()
    number = {text.strip(): index + 1 for index, text in enumerate(lines)}
    found = trace("a1", lab)
    assert found.error is None, str(found)
    assert [(step.line, step.source.split("(")[0]) for step in found.steps] == [
        (number["op.execute(\"SET lock_timeout = '1s'\")"], "op.execute"),
        (number["op.add_column("], "op.add_column"),
        (number["op.add_column("], "op.add_column"),
        (number["op.create_index('ix_profiles_first', 'user_profiles', ['first'])"], "op.create_index"),
    ]
    assert "ADD COLUMN second" in found.steps[2].sql
    assert f"line {number['op.add_column(']}: op.add_column( 'user_profiles'," in str(found)


def relfilenodes(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'public'::regnamespace")
        )
        return {name: node for name, node in rows}


def test_the_live_database_is_untouched(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        op.alter_column('user_profiles', 'name', type_=sa.String(50))
        with op.get_context().autocommit_block():
            op.create_index('ix_profiles_email', 'user_profiles', ['email'], postgresql_concurrently=True)
        """,
    )
    files = relfilenodes(engine)
    found = trace("a1", lab)
    assert found.error is None and found.steps[0].rewrites == ("user_profiles",), str(found)
    assert relfilenodes(engine) == files
    assert lab.db.heads() == (head,)


def test_a_failing_revision_says_which_statement_failed(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        op.add_column('user_profiles', sa.Column('nickname', sa.String()))
        op.execute("UPDATE user_profiles SET nickname = name")
        op.alter_column('user_profiles', 'nickname', type_=sa.Integer(), postgresql_using='nickname::int')
        op.create_index('ix_profiles_nickname', 'user_profiles', ['nickname'])
        """,
    )
    found = trace("a1", lab)
    added, backfilled, retyped = found.steps  # nothing after the failure, nothing before it lost
    assert added.error is None and backfilled.error is None
    assert [lock.mode for lock in backfilled.locks] == ["RowExclusiveLock"]
    assert retyped.error is not None and "invalid input syntax for type integer" in retyped.error
    assert found.failed is retyped and found.error is not None
    assert "FAILED here: invalid input syntax for type integer" in str(found)
    assert lab.db.heads() == (head,)


def test_not_at_the_parent_nothing_is_traced(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(lab.project, "a1", head, "op.add_column('user_profiles', sa.Column('nickname', sa.String()))")
    write_revision(lab.project, "a2", "a1", "op.drop_column('user_profiles', 'nickname')")
    found = trace("a2", lab)
    assert found.steps == () and found.unavailable is not None
    assert f"the database is at {head}, not at this revision's parent (a1)" in str(found)


def test_review_and_chapter_show_the_trace_only_when_asked(lab: Lab, engine: sa.Engine, capsys) -> None:
    head = at_head(lab, engine)
    write_revision(lab.project, "a1", head, "op.create_index('ix_profiles_name', 'user_profiles', ['name'])")
    assert "Lock trace" not in str(review("a1", lab))
    assert "ShareLock on user_profiles" in str(review("a1", lab, locks=True))
    chapter = Chapter(spec("01"), lab)
    chapter.review("a1", locks=True)
    assert "line 12: op.create_index('ix_profiles_name', 'user_profiles', ['name'])" in capsys.readouterr().out


def test_tables_the_revision_creates_are_not_reported(lab: Lab, engine: sa.Engine) -> None:
    """Nobody else can use them yet. And CREATE INDEX CONCURRENTLY, which waits for older transactions, finishes."""
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "a1",
        head,
        """
        op.create_table('notes', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('body', sa.Text()))
        with op.get_context().autocommit_block():
            op.create_index('ix_notes_body', 'notes', ['body'], postgresql_concurrently=True)
        """,
    )
    found = trace("a1", lab)
    assert found.error is None, str(found)
    created, indexed = found.steps
    assert created.locks == () and indexed.locks == () and indexed.autocommit  # no table that existed before
    assert "no lock on an existing table" in "\n".join(indexed.lines())


# --- what a statement validated, under which locks; the session's lock_timeout; several revisions --------------

FK = "fk_job_entries_author"
FK_ARGS = f"'{FK}', 'job_entries', 'user_profiles', ['user_id'], ['id']"


def with_jobs(lab: Lab, engine: sa.Engine) -> str:
    head = at_head(lab, engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO job_entries (user_id, prompt) SELECT id, 'hi' FROM user_profiles"))
    return head


def validating(found: LockTrace) -> Step:
    assert found.error is None, str(found)
    [step] = [s for s in found.steps if s.validates]
    return step


def test_a_foreign_key_added_at_once_validates_under_locks_that_stop_writes(lab: Lab, engine: sa.Engine) -> None:
    write_revision(lab.project, "b1", with_jobs(lab, engine), f"op.create_foreign_key({FK_ARGS})")
    step = validating(trace("b1", lab))
    assert step.validates == (FK,)
    assert {(lock.table, lock.mode) for lock in step.blocks_writes_while_validating()} == {
        ("job_entries", "ShareRowExclusiveLock"),
        ("user_profiles", "ShareRowExclusiveLock"),
    }
    assert f"validates {FK}, while holding ShareRowExclusiveLock on job_entries" in "\n".join(step.lines())


def test_not_valid_then_validate_in_the_same_transaction_still_holds_the_add_lock(lab: Lab, engine: sa.Engine) -> None:
    write_revision(
        lab.project,
        "b1",
        with_jobs(lab, engine),
        f"""
        op.create_foreign_key({FK_ARGS}, postgresql_not_valid=True)
        op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
        """,
    )
    found = trace("b1", lab)
    add, validate = found.steps
    assert add.validates == () and validate.validates == (FK,)
    assert ("job_entries", "ShareRowExclusiveLock") in {(k.table, k.mode) for k in validate.already}
    assert validate.blocks_writes_while_validating()


def test_validate_in_an_autocommit_block_holds_nothing_that_stops_writes(lab: Lab, engine: sa.Engine) -> None:
    write_revision(
        lab.project,
        "b1",
        with_jobs(lab, engine),
        f"""
        op.create_foreign_key({FK_ARGS}, postgresql_not_valid=True)
        with op.get_context().autocommit_block():
            op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
        """,
    )
    step = validating(trace("b1", lab))
    assert step.autocommit and step.validates == (FK,)
    assert step.blocks_writes_while_validating() == ()
    assert {(k.table, k.mode) for k in step.locks} >= {("job_entries", "ShareUpdateExclusiveLock")}


def test_set_not_null_validates_and_a_new_not_null_column_does_not(lab: Lab, engine: sa.Engine) -> None:
    """PostgreSQL 18 keeps NOT NULL as a constraint: SET NOT NULL scans the rows (validates it); a column added
    NOT NULL with its default is checked as it is written, no scan of what was there."""
    write_revision(
        lab.project,
        "b1",
        with_jobs(lab, engine),
        """
        op.add_column('job_entries', sa.Column('score', sa.Integer(), nullable=False, server_default='0'))
        op.alter_column('user_profiles', 'created_at', nullable=True)
        op.alter_column('user_profiles', 'created_at', nullable=False)
        """,
    )
    found = trace("b1", lab)
    added, _dropped, set_not_null = found.steps
    assert added.validates == ()
    assert len(set_not_null.validates) == 1 and set_not_null.blocks_writes_while_validating()


def test_the_session_lock_timeout_is_read_however_it_was_set(lab: Lab, engine: sa.Engine) -> None:
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "b1",
        head,
        """
        op.add_column('user_profiles', sa.Column('a', sa.Text()))
        op.execute("SET LOCAL lock_timeout = '200ms'")
        op.add_column('user_profiles', sa.Column('b', sa.Text()))
        bind = op.get_bind()
        with bind.begin_nested():
            bind.exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
            op.add_column('user_profiles', sa.Column('c', sa.Text()))
        """,
    )
    found = trace("b1", lab)
    assert found.error is None, str(found)
    timeouts = {s.sql.split()[-2]: s.lock_timeout for s in found.steps if s.sql.startswith("ALTER TABLE")}
    assert timeouts == {"a": "0", "b": "200ms", "c": "50ms"}


def test_a_plain_set_of_the_lock_timeout_is_told_from_a_set_local(lab: Lab, engine: sa.Engine) -> None:
    """Only a plain SET (or set_config(..., false)) outlives the revision's COMMIT and reaches the revisions after it
    in one `alembic upgrade head`; graders name it when a later revision, traced in a session of its own, has none."""
    head = at_head(lab, engine)
    write_revision(
        lab.project,
        "b1",
        head,
        """
        op.execute("SET LOCAL lock_timeout = '200ms'")
        op.execute("SELECT set_config('lock_timeout', '300ms', true)")
        bind = op.get_bind()
        with bind.begin_nested():
            bind.exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
        op.execute("SET lock_timeout = '400ms'")
        op.execute("SELECT set_config('lock_timeout', '500ms', false)")
        op.execute("SET LOCAL lock_timeout = '600ms'")
        """,
    )
    found = trace("b1", lab)
    assert found.error is None, str(found)
    assert [(s.sql, s.lock_timeout_after) for s in found.steps if s.sets_session_lock_timeout()] == [
        ("SET lock_timeout = '400ms'", "400ms"),
        ("SELECT set_config('lock_timeout', '500ms', false)", "500ms"),
    ]
    setter = found.session_lock_timeout()
    assert setter is not None and setter.lock_timeout_after == "500ms"


def test_trace_each_runs_a_release_on_one_copy(lab: Lab, engine: sa.Engine) -> None:
    head = with_jobs(lab, engine)
    write_revision(lab.project, "b1", head, f"op.create_foreign_key({FK_ARGS}, postgresql_not_valid=True)")
    write_revision(
        lab.project,
        "b2",
        "b1",
        f"""
        with op.get_context().autocommit_block():
            op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
        """,
    )
    first, second = trace_each(["b1", "b2"], lab)
    assert first.error is None and second.error is None, f"{first}\n{second}"
    assert second.steps[0].validates == (FK,) and not second.steps[0].blocks_writes_while_validating()
    assert lab.db.heads() == (head,)  # the learner's database is untouched
