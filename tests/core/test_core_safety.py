"""The kit never loses the learner's data: hostile revision scripts, stale questions, resets.

Each test reproduces one way the kit used to lose data or mislead, against a
real PostgreSQL, and asserts on the database and the files afterwards.
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import migration_lab as ml
from helpers import add_phone_number, columns, tables, write_revision
from migration_lab import Lab, Project, UrlBackend
from migration_lab.course.registry import spec
from migration_lab.database.connection import ADVISORY_LOCK_KEY
from migration_lab.front.notebook import Chapter
from migration_lab.front.widgets import MigrationConsole
from migration_lab.running import policy
from migration_lab.running.rehearsal import rehearse
from migration_lab.tools.review import review
from migration_lab.workspace.backups import restore as restore_backup

BASELINE_HEAD = "8b7e5d2c6a41"
PHONE_HEAD = "a1c4e7f20b13"


def state(engine: sa.Engine) -> tuple:
    """Everything a command could change: revision, tables, columns, rows, enum values."""
    with engine.connect() as conn:
        heads = tuple(conn.scalars(sa.text("SELECT version_num FROM alembic_version ORDER BY 1")))
        names = sorted(sa.inspect(conn).get_table_names())
        rows = {t: conn.execute(sa.text(f'SELECT * FROM "{t}" ORDER BY 1')).all() for t in names}
        cols = {t: [c["name"] for c in sa.inspect(conn).get_columns(t)] for t in names}
        enums = conn.execute(
            sa.text(
                "SELECT t.typname, e.enumlabel FROM pg_enum e "
                "JOIN pg_type t ON t.oid = e.enumtypid ORDER BY 1, e.enumsortorder"
            )
        ).all()
        indexes = sorted(conn.scalars(sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")))
    return heads, cols, rows, enums, indexes


def hostile_downgrade(project: Project, body: str) -> None:
    """Replace phone_number's revision downgrade() with a hostile one (the head revision)."""
    path = next(project.versions_dir.glob(f"{PHONE_HEAD}_*.py"))
    text = path.read_text()
    start = text.index("def downgrade()")
    path.write_text(
        text[:start] + "def downgrade() -> None:\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())
    )


HOSTILE_DOWNGRADES = {
    "commit": 'op.execute("COMMIT")\nop.drop_column("user_profiles", "phone_number")',
    "end": 'op.execute("END")\nop.drop_column("user_profiles", "phone_number")',
    "multi-statement": 'op.execute("DELETE FROM job_entries; COMMIT; DELETE FROM user_settings")',
    "autocommit-block": (
        "with op.get_context().autocommit_block():\n"
        '    op.execute("DELETE FROM job_entries")\n'
        'op.drop_column("user_profiles", "phone_number")'
    ),
    "concurrent-index": (
        "with op.get_context().autocommit_block():\n"
        '    op.execute("CREATE INDEX CONCURRENTLY ix_evil ON user_profiles (name)")\n'
        'op.execute("DELETE FROM user_profiles WHERE phone_number IS NULL")'
    ),
    "raw-dbapi-commit": (
        'op.get_bind().connection.dbapi_connection.commit()\nop.drop_column("user_profiles", "phone_number")'
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_DOWNGRADES))
def test_a_hostile_downgrade_is_rehearsed_on_a_copy_and_stopped(
    chapter03: Chapter, engine: sa.Engine, kind: str, capsys
) -> None:
    hostile_downgrade(chapter03.lab.project, HOSTILE_DOWNGRADES[kind])
    before = state(engine)

    rehearsal = rehearse(chapter03.lab.runner, "downgrade -1")
    assert rehearsal.rehearsed, rehearsal.unavailable
    assert rehearsal.losses, f"{kind}: the rehearsal must see data go"
    assert state(engine) == before, f"{kind}: the rehearsal touched the real database"

    chapter03.alembic("downgrade -1")
    assert "STOP" in capsys.readouterr().out
    assert state(engine) == before

    console = MigrationConsole(chapter03.lab, with_views=False)
    console.buttons["downgrade -1"].click()
    assert console.confirm_row.layout.display == "flex"
    assert "would destroy data" in console.question.value
    console.cancel.click()
    assert state(engine) == before, f"{kind}: the console ran it before any confirmation"


def test_a_hostile_upgrade_is_never_applied_by_review_or_rehearsal(lab: Lab, engine: sa.Engine) -> None:
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'a@x.org')"))
    write_revision(
        lab.project,
        "ffff00000001",
        BASELINE_HEAD,
        """
        op.execute("COMMIT")
        op.add_column('user_profiles', sa.Column('evil', sa.String()))
        op.execute("DELETE FROM user_profiles")
    """,
    )
    before = state(engine)
    found = review("ffff00000001", lab)
    assert "drops-data" in found.rules()
    rehearse(lab.runner, "upgrade head")
    assert state(engine) == before


def test_rows_deleted_by_a_downgrade_count_as_data_loss(chapter03: Chapter, engine: sa.Engine, capsys) -> None:
    hostile_downgrade(chapter03.lab.project, 'op.execute("DELETE FROM user_profiles")')
    before = state(engine)
    checked = policy.plan(chapter03.lab.runner, "downgrade -1")
    assert checked.needs_confirmation
    assert "row(s) deleted from table user_profiles" in checked.question()
    chapter03.alembic("downgrade -1")
    assert "STOP" in capsys.readouterr().out and state(engine) == before


@pytest.mark.parametrize(
    "line",
    [
        "-c alembic.ini downgrade base",
        "-x a=b downgrade base",
        "--raiseerr downgrade -1",
        "alembic -x a=b downgrade -1",
    ],
)
def test_global_flags_do_not_bypass_the_check(chapter03: Chapter, engine: sa.Engine, line: str, capsys) -> None:
    before = state(engine)
    chapter03.alembic(line)
    assert "STOP" in capsys.readouterr().out
    assert state(engine) == before


def test_a_stale_confirmation_runs_nothing_and_asks_again(chapter03: Chapter, engine: sa.Engine) -> None:
    lab = chapter03.lab
    console = MigrationConsole(lab, with_views=False)
    console.buttons["downgrade -1"].click()
    assert "phone_number" in console.question.value
    # Meanwhile a notebook cell moves the database.
    assert lab.runner.run("downgrade -1").after == (BASELINE_HEAD,)
    moved = state(engine)
    console._finished.clear()  # not a double click: the learner reads, then answers
    console.confirm.click()
    assert state(engine) == moved, "the stale Yes ran -1 from the new position"
    text = "".join(o["text"] for o in console.output.outputs)
    assert "database moved" in text and "Nothing was done" in text
    # Asked again, from where the database is now: job_entries and its rows.
    assert console.confirm_row.layout.display == "flex"
    assert "job_entries" in console.question.value


def test_two_planned_downgrades_go_down_one_step(chapter03: Chapter) -> None:
    runner = chapter03.lab.runner
    first, second = policy.plan(runner, "downgrade -1"), policy.plan(runner, "downgrade -1")
    assert policy.execute(runner, first).after == (BASELINE_HEAD,)
    late = policy.execute(runner, second)
    assert policy.moved(late) and not late.ok
    assert runner.db.heads() == (BASELINE_HEAD,)


def test_a_revision_that_commits_half_way_is_reported_truthfully(lab: Lab, engine: sa.Engine) -> None:
    """autocommit_block in a middle revision, a later one fails: alembic_version tells the truth,
    the report matches it, and after fixing the failure the upgrade goes through (no stuck lab)."""
    lab.runner.run("upgrade head")
    write_revision(
        lab.project,
        "aaaa00000001",
        BASELINE_HEAD,
        """
        with op.get_context().autocommit_block():
            op.execute("INSERT INTO user_profiles (name, email) VALUES ('Auto', 'auto@x.org')")
            op.execute("ALTER TYPE job_state ADD VALUE 'paused'")
    """,
    )
    bad = write_revision(lab.project, "aaaa00000002", "aaaa00000001", 'raise RuntimeError("boom")')
    result = lab.runner.run("upgrade head")
    assert not result.ok
    with engine.connect() as conn:
        recorded = tuple(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))
    assert result.after == recorded == ("aaaa00000001",)
    assert f"Database: {BASELINE_HEAD} → aaaa00000001" in str(result)
    assert "unchanged" not in str(result)
    bad.write_text(bad.read_text().replace('raise RuntimeError("boom")', "pass"))
    assert lab.runner.run("upgrade head").ok


def test_statements_a_failing_revision_committed_itself_are_reported(lab: Lab, engine: sa.Engine) -> None:
    lab.runner.run("upgrade head")
    write_revision(
        lab.project,
        "abab00000001",
        BASELINE_HEAD,
        """
        with op.get_context().autocommit_block():
            op.execute("INSERT INTO user_profiles (name, email) VALUES ('Auto', 'auto@x.org')")
        raise RuntimeError("boom")
    """,
    )
    result = lab.runner.run("upgrade head")
    assert not result.ok and result.after == (BASELINE_HEAD,) and result.stray_commits >= 1
    text = str(result)
    assert "PARTLY APPLIED" in text and "nothing this command did was kept" not in text
    # alembic_version did not move, but the database did: never "Database unchanged" above it.
    assert "Database unchanged" not in text and f"alembic_version unchanged, at {BASELINE_HEAD}" in text
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE name = 'Auto'")) == 1


def test_a_failed_unique_concurrent_index_build_is_told_as_an_index_not_as_inserted_rows(
    lab: Lab, engine: sa.Engine
) -> None:
    """23505 from CREATE UNIQUE INDEX CONCURRENTLY: duplicates in the rows and an INVALID index left behind, to drop
    before building again (IF NOT EXISTS would keep it); not the INSERT advice (ON CONFLICT DO NOTHING)."""
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'a@x.org'), ('Ada', 'b@x.org')"))
    write_revision(
        lab.project,
        "abab00000002",
        BASELINE_HEAD,
        """
        with op.get_context().autocommit_block():
            op.create_index("ix_name", "user_profiles", ["name"], unique=True, postgresql_concurrently=True)
    """,
    )
    result = lab.runner.run("upgrade head")
    text = str(result)
    assert not result.ok and result.sqlstate == "23505" and result.hint is not None
    assert "ON CONFLICT" not in text and "DROP INDEX CONCURRENTLY IF EXISTS" in result.hint
    assert "Database unchanged" not in text and "PARTLY APPLIED" in text
    assert "IF NOT EXISTS would keep the INVALID index" in text


def test_the_database_dying_mid_command_is_a_result_not_a_traceback(lab: Lab) -> None:
    lab.runner.run("upgrade head")
    write_revision(
        lab.project, "dead00000001", BASELINE_HEAD, 'op.execute("SELECT pg_terminate_backend(pg_backend_pid())")'
    )
    result = lab.runner.run("upgrade head")
    assert not result.ok
    # The session died, not the server: the kit says who ended it (a stopped server is told apart by reaching it).
    assert "The server ended the migration's session" in result.error
    assert "pg_terminate_backend" in result.hint
    assert result.after == (BASELINE_HEAD,)  # read back on a new connection: the truth
    assert lab.runner.run("current").ok  # the next command works


def test_reset_with_the_database_down_touches_no_file(project: Project, tmp_path: Path) -> None:
    lab = Lab(project, UrlBackend(f"postgresql+psycopg2://nobody:x@/nowhere?host={tmp_path}"))
    add_phone_number(project)
    write_revision(project, "bbbb00000001", BASELINE_HEAD, "pass")
    files = {p: p.read_bytes() for p in project.service_dir.rglob("*.py")}
    from migration_lab import LabError
    from migration_lab.course.registry import reset

    with pytest.raises(LabError, match="Cannot reach the lab database"):
        reset("02", lab)
    assert {p: p.read_bytes() for p in project.service_dir.rglob("*.py")} == files


def test_a_reset_backs_up_the_work_it_replaces_and_one_call_restores_it(
    chapter03: Chapter, engine: sa.Engine, capsys
) -> None:
    lab = chapter03.lab
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\n# my own note\n")
    write_revision(lab.project, "cccc0000000a", PHONE_HEAD, "pass")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Mine', 'mine@x.org')"))
    work = state(engine)
    chapter03.reset()  # the chapter's first cell, run again
    out = capsys.readouterr().out
    assert "is saved in .lab/backups/" in out and "ml.restore_backup(" in out
    assert "# my own note" not in main.read_text()
    print(restore_backup(lab))
    assert "# my own note" in main.read_text()
    assert (lab.project.versions_dir / "cccc0000000a_hand_written.py").exists()
    assert state(engine)[2]["user_profiles"] == work[2]["user_profiles"]
    # Nothing changed since a reset: no backup.
    chapter03.reset()
    capsys.readouterr()
    chapter03.reset()
    assert "backups" not in capsys.readouterr().out


def test_reset_waits_for_a_running_migration(chapter03: Chapter, database_url: str) -> None:
    """reset takes the migration lock: held by another session, the reset waits and touches nothing."""
    lab = chapter03.lab
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\n# in progress\n")
    holder = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with holder.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        conn.commit()
        done: list = []
        thread = threading.Thread(target=lambda: done.append(ml.reset("02", lab)))
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive(), "reset did not wait for the lock"
        assert "# in progress" in main.read_text(), "reset touched files before it had the lock"
        conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
        conn.commit()
    thread.join(30)
    holder.dispose()
    assert done and "# in progress" not in main.read_text()


def test_the_advisory_lock_makes_another_process_wait(lab: Lab, database_url: str) -> None:
    lab.runner.run("upgrade head")
    holder = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    script = (
        "import sys; from migration_lab import Lab, Project, UrlBackend; "
        "print(Lab(Project(sys.argv[1]), UrlBackend(sys.argv[2])).runner.run('downgrade -1').after)"
    )
    with holder.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        conn.commit()
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(lab.project.root), database_url], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.5)
        assert proc.poll() is None, "the other process did not wait for the lock"
        assert lab.db.heads() == (BASELINE_HEAD,)
        conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
        conn.commit()
    assert proc.communicate(timeout=60)[0].strip() == "('3f1c2a9d4b10',)"
    holder.dispose()


def test_a_type_left_behind_is_not_told_to_stamp(lab: Lab, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TYPE job_state AS ENUM ('queued')"))
    result = lab.runner.run("upgrade head")
    assert not result.ok and "DuplicateObject" in result.error
    assert "stamp head" not in result.hint.replace("Stamping would", "")
    assert "DROP TYPE" in result.hint


@pytest.mark.parametrize("line", ["revision -m Add user's phone", 'revision -m "a\x00b"', "upgrad head", ""])
def test_bad_command_lines_are_refused_clearly(lab: Lab, line: str) -> None:
    files = set(lab.project.versions_dir.iterdir())
    result = lab.runner.run(line)
    assert not result.ok and result.refused == "input" and result.hint
    assert set(lab.project.versions_dir.iterdir()) == files
    assert lab.runner.run("heads").ok  # nothing left broken behind


def test_a_missing_revision_file_says_how_out(lab: Lab) -> None:
    lab.runner.run("upgrade head")
    next(lab.project.versions_dir.glob(f"{BASELINE_HEAD}_*.py")).unlink()
    result = lab.runner.run("current")
    assert not result.ok and "Can't locate revision" in result.error
    assert "git checkout" in result.hint and "stamp --purge" in result.hint


def cli(project: Project, *args: str, stdin=None, url: str = "") -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "LAB_DATABASE_URL"}
    if url:
        env["LAB_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "migration_lab", *args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        stdin=stdin,
        timeout=120,
    )


@pytest.mark.parametrize("chapter", ["", "-", "-05", "5x", "99"])
def test_reset_refuses_a_chapter_that_is_not_one(project: Project, database_url: str, chapter: str) -> None:
    args = ("reset", "--", chapter) if chapter.startswith("-") else ("reset", chapter)
    before = {p: p.read_bytes() for p in project.service_dir.rglob("*.py")}
    done = cli(project, "--backend", "url", *args, url=database_url)
    assert {p: p.read_bytes() for p in project.service_dir.rglob("*.py")} == before
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "chapter" in done.stderr.lower()


def test_nuke_with_closed_stdin_says_no(project: Project) -> None:
    done = cli(project, "--backend", "url", "nuke", stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr
    closed = subprocess.run(
        f"{sys.executable} -m migration_lab --backend embedded nuke <&-",
        shell=True,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert closed.returncode == 1 and "Traceback" not in closed.stderr and "Nothing changed" in closed.stderr


def test_a_role_that_does_not_own_schema_public(lab: Lab, database_url: str, capsys) -> None:
    """A shared server's learner role: preflight says what is missing; once granted, reset works."""
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(database_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    role = f"learner_{make_url(database_url).database}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        conn.execute(sa.text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    url = make_url(database_url).set(username=role, password="pw").render_as_string(hide_password=False)
    learner = Lab(lab.project, UrlBackend(url))
    ready, lines = learner.preflight()
    assert not ready and any("may not create tables" in line for line in lines)
    with admin.connect() as conn:
        conn.execute(sa.text(f"GRANT CREATE ON SCHEMA public TO {role}"))
    assert learner.preflight()[0]
    Chapter(spec("02"), learner).reset()
    assert "phone_number" in columns(sa.create_engine(url, poolclass=sa.pool.NullPool), "user_profiles")
    Chapter(spec("01"), learner).reset()
    assert "alembic_version" in tables(admin)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP OWNED BY {role} CASCADE"))
        conn.execute(sa.text(f"DROP ROLE {role}"))
    admin.dispose()


def test_a_reset_without_schema_public_drops_the_roles_functions_too(lab: Lab, database_url: str) -> None:
    """A learner role that does not own schema public: a chapter's trigger function, a procedure and a type
    go with the reset (a later chapter's CREATE FUNCTION must not meet an old one), quoted names included."""
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(database_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    role = f"learner_{make_url(database_url).database}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        conn.execute(sa.text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(sa.text(f"GRANT CREATE ON SCHEMA public TO {role}"))
    url = make_url(database_url).set(username=role, password="pw").render_as_string(hide_password=False)
    learner = Lab(lab.project, UrlBackend(url))
    Chapter(spec("02"), learner).reset()
    mine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with mine.begin() as conn:
        conn.execute(sa.text("CREATE FUNCTION copy_name() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'"))
        conn.execute(sa.text("CREATE FUNCTION \"Odd Name\"(a int, b text) RETURNS int LANGUAGE sql AS 'SELECT a'"))
        conn.execute(sa.text("CREATE PROCEDURE tidy() LANGUAGE sql AS 'SELECT 1'"))
    Chapter(spec("02"), learner).reset()
    with mine.connect() as conn:
        left = conn.scalars(
            sa.text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1")
        ).all()
    assert left == []
    assert "phone_number" in columns(mine, "user_profiles")
    mine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP OWNED BY {role} CASCADE"))
        conn.execute(sa.text(f"DROP ROLE {role}"))
    admin.dispose()


def test_the_console_says_so_when_the_database_is_down(project: Project, tmp_path: Path) -> None:
    lab = Lab(project, UrlBackend(f"postgresql+psycopg2://nobody:x@/nowhere?host={tmp_path}"))
    console = MigrationConsole(lab)
    assert "does not answer" in console.schema_view.value
    for label in ("current", "upgrade head", "downgrade -1"):
        console._finished.clear()
        console.buttons[label].click()
        text = "".join(o["text"] for o in console.output.outputs)
        assert "Cannot reach the lab database" in text and ("Hint: " in text or "What to do: " in text), label
        assert "Running:" not in text and "Checking:" not in text
        assert not any(b.disabled for b in console.buttons.values())


def test_a_chapter_cell_with_the_database_down_shows_two_lines_not_a_traceback(
    project: Project, tmp_path: Path
) -> None:
    import nbformat
    from nbclient import NotebookClient

    add_phone_number(project)
    before = (project.service_dir / "main.py").read_text()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('import migration_lab as ml\nch = ml.chapter("03")')]
    import os

    url = f"postgresql+psycopg2://nobody:x@/nowhere?host={tmp_path}"
    saved = {k: os.environ.get(k) for k in ("LAB_DATABASE_URL", "LAB_PROJECT_DIR")}
    os.environ.update(LAB_DATABASE_URL=url, LAB_PROJECT_DIR=str(project.root))
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute(
            cwd=str(project.root / "notebooks")
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    [error] = [o for o in nb.cells[0].outputs if o["output_type"] == "error"]
    assert error["traceback"] == [f"{error['evalue']}"] and "What to do:" in error["evalue"]
    assert "Traceback" not in str(nb.cells[0].outputs)
    assert (project.service_dir / "main.py").read_text() == before  # nothing touched


def test_a_confirmation_runs_what_was_asked_about_or_asks_again(chapter03: Chapter, engine: sa.Engine, capsys) -> None:
    """ch.alembic(..., confirm=True) answers the STOP it follows: from that position, or not at all."""
    chapter03.alembic("downgrade -1")
    assert "from a1c4e7f20b13 to 8b7e5d2c6a41" in capsys.readouterr().out
    chapter03.lab.runner.run("downgrade -1")  # another cell (or notebook) moves the database meanwhile
    moved = state(engine)
    chapter03.alembic("downgrade -1", confirm=True)
    out = capsys.readouterr().out
    assert "database moved" in out and "Nothing was done" in out
    assert "STOP:" in out and "job_entries" in out  # asked again, from where it is now
    assert state(engine) == moved
    chapter03.alembic("downgrade -1", confirm=True)  # answers the new question
    assert chapter03.lab.db.heads() == ("3f1c2a9d4b10",)


def test_a_cell_that_reads_the_database_after_it_stopped_shows_two_lines_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ch.sql, ch.rows and ch.schema read the database directly: with it stopped they raised a raw OperationalError
    (40 lines). A query's own error (a statement timeout the server raised) keeps its traceback."""

    import nbformat
    from nbclient import NotebookClient

    from helpers import copy_project

    project = copy_project(tmp_path / "project")
    lab = Lab(project, "embedded")
    lab.up(progress=lambda message: None)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('import migration_lab as ml\nch = ml.chapter("03")'),
        nbformat.v4.new_code_cell("ch.sql(\"SET statement_timeout = '1ms'; SELECT pg_sleep(1)\")"),
        nbformat.v4.new_code_cell("print(ch.lab.down(progress=lambda m: None))"),
        nbformat.v4.new_code_cell('ch.sql("SELECT 1")'),
        nbformat.v4.new_code_cell('ch.rows("user_profiles")'),
        nbformat.v4.new_code_cell("ch.schema()"),
    ]
    monkeypatch.delenv("LAB_DATABASE_URL", raising=False)
    monkeypatch.setenv("LAB_PROJECT_DIR", str(project.root))
    monkeypatch.setenv("LAB_BACKEND", "embedded")
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True).execute(
            cwd=str(project.root / "notebooks")
        )
    finally:
        lab.db.dispose()
        lab.backend.destroy()
    errors = [[o for o in cell.outputs if o["output_type"] == "error"] for cell in nb.cells]
    assert errors[0] == [] and errors[2] == [], nb.cells[0].outputs + nb.cells[2].outputs
    assert len(errors[1]) == 1 and len(errors[1][0]["traceback"]) > 1  # the server's own error: a traceback
    for cell in errors[3:]:
        [error] = cell
        [said] = error["traceback"]  # no traceback wall: two lines
        assert said.startswith("The lab database does not answer") and "What to do: Start it" in said, said
