"""The runner against a real PostgreSQL: the workflow guide, step by step, in-process."""

import ast
import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import EMAIL_LINE, add_phone_number, columns, edit_model, tables, write_revision
from migration_lab import Lab, LabError, Project
from migration_lab.running.rehearsal import rehearse

BASELINE_HEAD = "8b7e5d2c6a41"


def test_standard_workflow_round_trip(lab: Lab, engine: sa.Engine) -> None:
    runner = lab.runner
    assert runner.run("upgrade head").after == (BASELINE_HEAD,)
    # An in-process command has imported main.py once already; the edit below
    # must still be seen (no stale module cache).
    assert runner.run("current").ok

    add_phone_number(lab.project)
    generated = runner.run(["revision", "--autogenerate", "-m", "Add phone number to profile"])
    assert generated.ok, generated.error
    assert generated.local_command == "alembic revision --autogenerate -m 'Add phone number to profile'"
    assert generated.workflow_command == (
        "docker-compose exec ai-api alembic revision --autogenerate -m 'Add phone number to profile'"
    )
    [script] = generated.new_files
    assert script.name.endswith("_add_phone_number_to_profile.py")
    assert "op.add_column('user_profiles', sa.Column('phone_number'" in script.read_text()
    assert "Detected added column 'user_profiles.phone_number'" in generated.output

    applied = runner.run("upgrade head")
    assert applied.ok and applied.before == (BASELINE_HEAD,)
    new_head = applied.after[0]
    assert script.name.startswith(new_head)
    assert "phone_number" in columns(engine, "user_profiles")
    assert runner.run("check").ok

    back = runner.run("downgrade -1")
    assert back.ok and back.before == (new_head,) and back.after == (BASELINE_HEAD,)
    assert "phone_number" not in columns(engine, "user_profiles")

    base = runner.run("downgrade base")
    assert base.ok and base.after == ()
    assert tables(engine) == {"alembic_version"}
    # The hand-reviewed baseline drops the ENUM too, so the way back up is clear.
    assert runner.run("upgrade head").ok


def test_current_history_heads_show(lab: Lab) -> None:
    runner = lab.runner
    runner.run("upgrade head")
    assert f"{BASELINE_HEAD} (head)" in runner.run("current").output
    history = runner.run("history -i")
    assert "3f1c2a9d4b10 -> 8b7e5d2c6a41 (head) (current), add job entries" in history.output
    assert history.local_command == "alembic history -i"
    assert runner.run("heads").output.strip() == f"{BASELINE_HEAD} (head)"
    assert "add job entries" in runner.run(["show", BASELINE_HEAD]).output


def test_autogenerate_refuses_when_database_is_behind(lab: Lab) -> None:
    lab.runner.run("upgrade 3f1c2a9d4b10")
    result = lab.runner.run(["revision", "--autogenerate", "-m", "too early"])
    assert not result.ok
    assert result.error == "Target database is not up to date."
    assert "alembic upgrade head" in result.hint
    assert result.new_files == ()


def test_data_migration_updates_rows(lab: Lab, engine: sa.Engine) -> None:
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'ada@example.org')"))
        conn.execute(sa.text("INSERT INTO user_settings (user_id) SELECT id FROM user_profiles"))
    empty = lab.runner.run(["revision", "-m", "set default user status"])
    assert empty.ok
    [script] = empty.new_files
    script.write_text(
        script.read_text()
        .replace(
            '    """Upgrade schema."""\n    pass',
            '''    """Upgrade schema."""\n    op.execute("UPDATE user_settings SET status = 'active'")''',
        )
        .replace(
            '    """Downgrade schema."""\n    pass',
            '    """Downgrade schema."""\n    op.execute("UPDATE user_settings SET status = NULL")',
        )
    )
    assert lab.runner.run("upgrade head").ok
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT status FROM user_settings")) == "active"
    assert lab.runner.run("downgrade -1").ok
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT status FROM user_settings")) is None


def test_two_heads_then_merge(lab: Lab) -> None:
    runner = lab.runner
    runner.run("upgrade head")
    write_revision(
        lab.project, "aaaa00000001", BASELINE_HEAD, "op.add_column('user_settings', sa.Column('a', sa.Integer()))"
    )
    write_revision(
        lab.project, "bbbb00000002", BASELINE_HEAD, "op.add_column('user_settings', sa.Column('b', sa.Integer()))"
    )
    refused = runner.run("upgrade head")
    assert not refused.ok and "Multiple head revisions" in refused.error
    assert "alembic merge heads" in refused.hint
    assert refused.after == (BASELINE_HEAD,)

    merged = runner.run(["merge", "heads", "-m", "merge conflict"])
    assert merged.ok
    [merge_file] = merged.new_files
    assert merge_file.name.endswith("_merge_conflict.py")
    assert "('aaaa00000001', 'bbbb00000002')" in merge_file.read_text()
    applied = runner.run("upgrade head")
    assert applied.ok and len(applied.after) == 1
    assert "Ambiguous walk" in runner.run("downgrade -1").error
    assert runner.run("downgrade base").ok


def test_table_already_exists_then_stamp_head(lab: Lab, engine: sa.Engine) -> None:
    with engine.begin() as conn:  # tables made "by hand", as an old create_all() did
        conn.execute(sa.text("CREATE TABLE user_profiles (id serial PRIMARY KEY)"))
    failed = lab.runner.run("upgrade head")
    assert not failed.ok
    assert 'relation "user_profiles" already exists' in failed.error
    assert "alembic stamp head" in failed.hint
    assert failed.after == ()
    stamped = lab.runner.run("stamp head")
    assert stamped.ok and stamped.after == (BASELINE_HEAD,)


def test_syntax_error_in_main_is_short_and_touches_nothing(lab: Lab, engine: sa.Engine) -> None:
    lab.runner.run("upgrade 3f1c2a9d4b10")
    edit_model(lab.project, EMAIL_LINE, EMAIL_LINE + "    phone_number = Column(String, nullable=True\n")
    before_tables = tables(engine)
    result = lab.runner.run("upgrade head")
    assert not result.ok
    assert result.error.startswith("SyntaxError in ai-service/main.py, line ")
    assert "\n" not in result.error and "Traceback" not in result.output
    assert "database was not touched" in result.hint
    assert result.after == ("3f1c2a9d4b10",)
    assert tables(engine) == before_tables


def test_failing_revision_rolls_back_and_the_report_is_true(lab: Lab, engine: sa.Engine) -> None:
    """Each revision runs in its own transaction: the failing one leaves nothing behind,
    the one before it stays applied and recorded, and the report says exactly that."""
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'ada@example.org')"))
    write_revision(
        lab.project,
        "cccc00000001",
        BASELINE_HEAD,
        """
        op.create_table('audit', sa.Column('id', sa.Integer(), primary_key=True))
        op.execute("UPDATE user_profiles SET name = 'changed'")
    """,
    )
    write_revision(
        lab.project,
        "cccc00000002",
        "cccc00000001",
        """
        op.add_column('user_profiles', sa.Column('nickname', sa.String()))
        raise RuntimeError("boom half-way")
    """,
    )
    result = lab.runner.run("upgrade head")
    assert not result.ok
    assert "RuntimeError: boom half-way (cccc00000002_hand_written.py, line" in result.error
    assert result.before == (BASELINE_HEAD,) and result.after == ("cccc00000001",)
    assert "audit" in tables(engine)
    assert "nickname" not in columns(engine, "user_profiles")
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT name FROM user_profiles")) == "changed"
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "cccc00000001"
    text = str(result)
    assert f"Database: {BASELINE_HEAD} → cccc00000001" in text
    assert "failing revision was rolled back" in text and "unchanged" not in text


def test_import_error_in_env_names_the_fix(lab: Lab) -> None:
    env = lab.project.service_dir / "migrations" / "env.py"
    env.write_text(env.read_text().replace("from main import Base", "from main import Base, JobEntries"))
    result = lab.runner.run("current")
    assert not result.ok
    assert "cannot import name 'JobEntries' from 'main'" in result.error
    assert "migrations/env.py" in result.hint


def test_stopped_database_says_how_to_start_it(project: Project, tmp_path: Path) -> None:
    from migration_lab import EmbeddedBackend

    stopped = EmbeddedBackend(tmp_path / "never-started")
    result = Lab(project, stopped).runner.run("current")
    assert not result.ok
    assert "Cannot reach the lab database (embedded PostgreSQL" in result.error
    assert "python -m migration_lab up" in result.hint
    assert "nothing" not in str(result).lower() or "Database" not in str(result)  # no claim about the database


def test_revision_message_is_only_a_message(lab: Lab, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    message = f'He said "hi"; touch {sentinel}; $(touch {sentinel}) `touch {sentinel}` C:\\new """'
    result = lab.runner.run(["revision", "-m", message])
    assert result.ok
    assert not sentinel.exists()
    [script] = result.new_files
    assert ast.get_docstring(ast.parse(script.read_text())).splitlines()[0] == message
    assert result.local_command.startswith("alembic revision -m '")  # shell-quoted for copying


def test_runs_are_serialized_within_a_process(lab: Lab, monkeypatch) -> None:
    """A second command while one runs (a double click) is refused, not queued."""
    lab.runner.run("upgrade head")
    started, release = threading.Event(), threading.Event()
    original = lab.runner.config

    def slow_config(stdout, options=None):
        started.set()
        release.wait(10)
        return original(stdout, options)

    monkeypatch.setattr(lab.runner, "config", slow_config)
    first: list = []
    thread = threading.Thread(target=lambda: first.append(lab.runner.run("downgrade -1")))
    thread.start()
    assert started.wait(10)
    second = lab.runner.run("downgrade -1")
    release.set()
    thread.join(10)
    assert not second.ok and "still running" in second.error
    assert first[0].ok and first[0].after == ("3f1c2a9d4b10",)


def test_command_lines_are_parsed_by_alembic(lab: Lab) -> None:
    assert lab.runner.run("alembic upgrade head").after == (BASELINE_HEAD,)
    result = lab.runner.run('revision -m "set default user status"')
    assert result.ok and result.new_files[0].name.endswith("_set_default_user_status.py")
    assert "Generating ai-service/migrations/versions/" in result.output  # relative, as a learner sees it
    bad = lab.runner.run("upgrad head")
    assert not bad.ok and "invalid choice: 'upgrad'" in bad.error
    assert not lab.runner.run("").ok


def test_rehearsal_reports_data_loss_and_changes_nothing(lab: Lab, engine: sa.Engine) -> None:
    add_phone_number(lab.project)
    lab.runner.run("upgrade head")
    lab.runner.run(["revision", "--autogenerate", "-m", "phone"])
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email, phone_number) "
                "VALUES ('Ada', 'a@x.org', '+44 1'), ('Bob', 'b@x.org', NULL)"
            )
        )
    head = lab.db.heads()
    rehearsal = rehearse(lab.runner, "downgrade -1", show_table="user_profiles")
    assert rehearsal.result.ok and rehearsal.result.after == (BASELINE_HEAD,)
    assert rehearsal.changes.dropped_columns == (("user_profiles", "phone_number"),)
    assert [str(loss) for loss in rehearsal.losses] == ["column user_profiles.phone_number and its 1 value(s)"]
    assert [row[1] for row in rehearsal.preview] == ["Ada", "Bob"]
    assert rehearsal.preview_columns == ("id", "name", "email", "created_at")
    assert "DATA LOSS: column user_profiles.phone_number" in str(rehearsal)
    # Nothing happened for real.
    assert lab.db.heads() == head
    assert "phone_number" in columns(engine, "user_profiles")
    down_all = rehearse(lab.runner, ["downgrade", "base"])
    assert [str(loss) for loss in down_all.losses] == ["table user_profiles and its 2 row(s)"]
    assert set(down_all.changes.dropped_tables) == {"user_profiles", "user_settings", "job_entries"}
    assert lab.db.heads() == head


def test_rehearsal_tells_a_table_rename_from_a_loss_and_still_sees_a_drop(lab: Lab, engine: sa.Engine) -> None:
    """A renamed table keeps its OID and its rows: no data loss, said as a rename (both ways). A table dropped and
    another made under the new name is a loss."""
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'a@x.org')"))
        conn.execute(sa.text("INSERT INTO job_entries (user_id, prompt) SELECT id, 'hi' FROM user_profiles"))
    write_revision(
        lab.project,
        "dddd00000003",
        BASELINE_HEAD,
        "op.rename_table('job_entries', 'jobs')",
        "op.rename_table('jobs', 'job_entries')",
    )
    renamed = rehearse(lab.runner, "upgrade head")
    assert renamed.losses == ()
    assert [str(r) for r in renamed.renames] == ["table job_entries renamed to jobs: its rows are kept"]
    assert lab.runner.run("upgrade head").ok
    back = rehearse(lab.runner, "downgrade -1")
    assert back.losses == () and [str(r) for r in back.renames] == [
        "table jobs renamed to job_entries: its rows are kept"
    ]
    (lab.project.versions_dir / "dddd00000003_hand_written.py").unlink()
    assert lab.runner.run(["stamp", "--purge", BASELINE_HEAD]).ok
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE jobs RENAME TO job_entries"))
    write_revision(
        lab.project,
        "dddd00000004",
        BASELINE_HEAD,
        """
        op.drop_table('job_entries')
        op.create_table('jobs', sa.Column('id', sa.Integer(), primary_key=True))
        """,
    )
    replaced = rehearse(lab.runner, "upgrade head")
    assert [str(loss) for loss in replaced.losses] == ["table job_entries and its 1 row(s)"] and not replaced.renames


def test_rehearsal_tells_a_rename_from_a_loss(lab: Lab, engine: sa.Engine) -> None:
    lab.runner.run("upgrade head")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'a@x.org'), ('Bob', 'b@x.org')"))
    write_revision(
        lab.project,
        "dddd00000001",
        BASELINE_HEAD,
        "op.alter_column('user_profiles', 'name', new_column_name='full_name')",
    )
    renamed = rehearse(lab.runner, "upgrade head")
    assert renamed.changes.dropped_columns == (("user_profiles", "name"),)
    assert renamed.changes.added_columns == (("user_profiles", "full_name"),)
    assert renamed.losses == ()
    assert [str(r) for r in renamed.renames] == ["column user_profiles.name renamed to full_name: its values are kept"]
    (lab.project.versions_dir / "dddd00000001_hand_written.py").unlink()
    write_revision(
        lab.project,
        "dddd00000002",
        BASELINE_HEAD,
        """
        op.add_column('user_profiles', sa.Column('full_name', sa.String(100)))
        op.drop_column('user_profiles', 'name')
    """,
    )
    dropped = rehearse(lab.runner, "upgrade head")
    assert [str(loss) for loss in dropped.losses] == ["column user_profiles.name and its 2 value(s)"]


def test_a_failure_carries_postgresqls_error_code(lab: Lab) -> None:
    """Callers decide on the SQLSTATE (a lock_timeout is retried), never on the hint's wording."""
    assert lab.runner.run(["upgrade", "head"]).ok
    head = lab.db.heads()[0]
    write_revision(lab.project, "0000000000d1", head, 'op.execute("SET LOCAL lock_timeout = 1; SELECT 1/0")')
    failed = lab.runner.run(["upgrade", "head"])
    assert not failed.ok and failed.sqlstate == "22012"  # division_by_zero
    assert lab.runner.run(["current"]).sqlstate is None


def test_history_from_current_reads_the_database(lab: Lab) -> None:
    """`history -r current:head`: what the next upgrade applies (chapter 04), which needs the database."""
    runner = lab.runner
    assert runner.run(["upgrade", "3f1c2a9d4b10"]).ok
    pending = runner.run(["history", "-r", "current:head"])
    assert pending.ok, pending.error
    assert "3f1c2a9d4b10 -> 8b7e5d2c6a41 (head)" in pending.output  # the range includes current itself


def test_a_session_the_server_ended_is_told_from_a_database_that_stopped(lab: Lab) -> None:
    """transaction_timeout ends the migration's session (PostgreSQL 17+); the driver only sees a closed connection.
    The database still answers, so the kit says the server ended the session, and nothing was committed."""
    assert lab.runner.run(["upgrade", "head"]).ok
    head = lab.db.heads()[0]
    write_revision(
        lab.project,
        "0000000000e1",
        head,
        """
        op.execute("SET LOCAL transaction_timeout = '200ms'")
        op.add_column('user_profiles', sa.Column('nickname', sa.Text()))
        op.execute('SELECT pg_sleep(1)')
        """,
    )
    ended = lab.runner.run(["upgrade", "head"])
    assert not ended.ok and ended.error.startswith("The server ended the migration's session")
    assert "transaction_timeout" in ended.hint and "Nothing of the revision's open transaction" in ended.hint
    assert lab.db.heads() == (head,) and "nickname" not in columns(lab.db.engine, "user_profiles")


def test_a_command_and_a_model_load_leave_the_process_environment_as_it_was(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """env.py and main.py load ai-service/.env when DATABASE_URL is unset: that URL must not stay in this process
    (a kernel, a test run), where every program started later (a JupyterLab's terminals) inherited it."""
    from migration_lab.workspace.edits import load_models

    monkeypatch.delenv("DATABASE_URL", raising=False)
    (lab.project.service_dir / ".env").write_text(f"DATABASE_URL={lab.backend.url()}\nLAB_LEAK_PROBE=1\n")
    before = dict(os.environ)
    assert lab.runner.run("upgrade head").ok  # env.py connects through the .env's URL
    assert dict(os.environ) == before
    load_models(lab.project)
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    "line",
    [
        'revision -m "Add job entries" --rev-id {head}',  # the same id and slug: alembic wrote over the file
        'revision -m "something else" --rev-id {head}',  # another slug: two files with one id
        'merge heads -m "merge" --rev-id {head}',
    ],
)
def test_a_rev_id_that_a_revision_has_is_refused_and_its_file_is_left_as_it_was(lab: Lab, line: str) -> None:
    runner = lab.runner
    assert runner.run("upgrade head").ok
    before = {p.name: p.read_bytes() for p in lab.project.versions_dir.glob("*.py")}
    result = runner.run(line.format(head=BASELINE_HEAD))
    assert not result.ok and result.refused == "input", result
    assert f"Revision {BASELINE_HEAD} exists already" in result.error and "Leave out --rev-id" in (result.hint or "")
    assert {p.name: p.read_bytes() for p in lab.project.versions_dir.glob("*.py")} == before
    fresh = runner.run('revision -m "mine" --rev-id 0123456789ab')  # an id no revision has: as alembic does it
    assert fresh.ok, fresh.error
    assert (lab.project.versions_dir / "0123456789ab_mine.py").is_file()


def test_alembic_edit_is_refused_instead_of_waiting_for_an_editor_forever(lab: Lab) -> None:
    result = lab.runner.run("edit head")
    assert not result.ok and result.refused == "input"
    assert "in a terminal" in (result.hint or "")


def test_an_alembic_ini_alembic_cannot_read_is_one_lab_error_not_a_traceback(lab: Lab) -> None:
    """script_location pointing nowhere: `ch.alembic(...)`, `ch.check()`, `ch.rewrite_revision` raised alembic's
    CommandError as a traceback."""
    ini = lab.project.service_dir / "alembic.ini"
    ini.write_text(ini.read_text().replace("%(here)s/migrations", "%(here)s/migrationz"))
    result = lab.runner.run("upgrade head")
    assert not result.ok and result.refused == "config"
    assert result.error == (
        "alembic cannot read ai-service/alembic.ini: its script_location is ai-service/migrationz, a folder that "
        "does not exist."
    )
    assert result.hint is not None and "git checkout ai-service/alembic.ini" in result.hint
    with pytest.raises(LabError, match="alembic cannot read ai-service/alembic.ini"):
        lab.runner.script()
    ini.write_text("not an ini file\n")
    with pytest.raises(LabError, match="alembic cannot read ai-service/alembic.ini"):
        lab.runner.script(check_history=False)
