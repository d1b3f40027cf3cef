"""`python -m migration_lab`, and alembic typed by hand in a terminal after `up`."""

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from helpers import add_phone_number, tables, write_revision
from migration_lab import Project

ALEMBIC = str(Path(sys.executable).with_name("alembic"))


def run(
    argv: list[str], project: Project, extra_env: dict[str, str], stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_DATABASE_URL", "LAB_BACKEND", "DATABASE_URL")}
    env.update(LAB_PROJECT_DIR=str(project.root), **extra_env)
    return subprocess.run(
        argv, env=env, cwd=cwd or project.root, input=stdin, capture_output=True, text=True, timeout=120
    )


def lab_cli(*args: str, project: Project, env: dict[str, str], stdin: str | None = None):
    return run([sys.executable, "-m", "migration_lab", *args], project, env, stdin)


def test_url_prints_the_url_as_last_line(project: Project, database_url: str) -> None:
    done = lab_cli("url", project=project, env={"LAB_DATABASE_URL": database_url})
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == database_url


def test_nuke_without_confirmation_changes_nothing(project: Project, database_url: str, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE precious (id int)"))
    env = {"LAB_DATABASE_URL": database_url}
    for answer in (None, "", "no\n", "y\n"):  # no terminal at all, then three ways of not saying yes
        done = lab_cli("nuke", project=project, env=env, stdin=answer)
        assert done.returncode == 1
        assert "Nothing changed." in done.stderr
        assert "precious" in tables(engine)
    done = lab_cli("nuke", project=project, env=env, stdin="yes\n")
    assert done.returncode == 0 and "Fresh, empty lab database" in done.stdout
    assert tables(engine) == set()


def test_unknown_backend_is_refused_without_traceback(project: Project) -> None:
    done = lab_cli("--backend", "sqlite", "status", project=project, env={})
    assert done.returncode == 2 and "invalid choice: 'sqlite'" in done.stderr


def test_no_project_found_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "migration_lab", "status"],
        cwd=tmp_path,
        env={**os.environ, "LAB_PROJECT_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "No Migration Lab project found" in done.stderr and "LAB_PROJECT_DIR" in done.stderr
    assert "Traceback" not in done.stderr


def test_workflow_typed_by_hand_after_up(project: Project) -> None:
    """`up`, then plain `alembic ...` in ai-service/ with nothing exported, then `down`."""
    env = {"LAB_BACKEND": "embedded"}
    up = lab_cli("up", project=project, env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "Lab database is up: embedded PostgreSQL" in up.stdout
        assert "Creating a new PostgreSQL cluster" in up.stderr  # progress on the slow step

        def alembic(*args: str) -> subprocess.CompletedProcess:
            return run([ALEMBIC, *args], project, {}, cwd=project.service_dir)

        assert alembic("upgrade", "head").returncode == 0
        add_phone_number(project)
        generated = alembic("revision", "--autogenerate", "-m", "Add phone number to profile")
        assert generated.returncode == 0, generated.stderr
        [script] = project.versions_dir.glob("*_add_phone_number_to_profile.py")
        assert "op.add_column" in script.read_text()
        assert alembic("upgrade", "head").returncode == 0
        assert alembic("check").returncode == 0
        assert alembic("downgrade", "-1").returncode == 0
        behind = alembic("revision", "--autogenerate", "-m", "again")
        assert behind.returncode != 0 and "Target database is not up to date" in behind.stderr
        current = alembic("current")
        assert current.stdout.strip() == "8b7e5d2c6a41"
        assert alembic("upgrade", "head").returncode == 0

        # A data migration: an empty revision, then op.execute in upgrade().
        assert alembic("revision", "-m", "set default user status").returncode == 0
        [data] = project.versions_dir.glob("*_set_default_user_status.py")
        data.write_text(
            data.read_text().replace(
                '    """Upgrade schema."""\n    pass',
                '    """Upgrade schema."""\n    op.execute("UPDATE user_settings SET status = \'active\'")',
            )
        )
        url = lab_cli("url", project=project, env=env).stdout.splitlines()[-1]
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO user_profiles (name, email) VALUES ('Ada', 'ada@example.org')"))
            conn.execute(sa.text("INSERT INTO user_settings (user_id) SELECT id FROM user_profiles"))
        assert alembic("upgrade", "head").returncode == 0
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT status FROM user_settings")) == "active"

        # Two teammates from the same parent: two heads, then merge heads.
        data_head = data.name.split("_")[0]
        for name in ("mine", "theirs"):
            (project.versions_dir / f"{name}00000000_{name}.py").write_text(
                f"revision = '{name}00000000'\ndown_revision = '{data_head}'\nbranch_labels = None\n"
                "depends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
            )
        two_heads = alembic("upgrade", "head")
        assert two_heads.returncode != 0 and "Multiple head revisions" in two_heads.stderr
        assert alembic("merge", "heads", "-m", "merge conflict").returncode == 0
        [merge] = project.versions_dir.glob("*_merge_conflict.py")
        assert alembic("upgrade", "head").returncode == 0

        # downgrade base, a table made by hand, "already exists", then stamp head.
        assert alembic("downgrade", "base").returncode == 0
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE alembic_version"))
            conn.execute(sa.text("CREATE TABLE user_profiles (id serial PRIMARY KEY)"))
        exists = alembic("upgrade", "head")
        assert exists.returncode != 0 and 'relation "user_profiles" already exists' in exists.stderr
        assert alembic("stamp", "head").returncode == 0
        assert "(head)" in alembic("current").stdout
        engine.dispose()

        status = lab_cli("status", project=project, env=env)
        assert "running:  yes" in status.stdout
        assert f"revision: {merge.name.split('_')[0]}" in status.stdout
    finally:
        down = lab_cli("down", project=project, env=env)
    assert down.returncode == 0 and "data is kept" in down.stdout
    status = lab_cli("status", project=project, env=env)
    assert "running:  no" in status.stdout and "python -m migration_lab up" in status.stdout
    preflight = lab_cli("preflight", project=project, env=env)
    assert preflight.returncode == 1
    assert "✔ alembic 1." in preflight.stdout
    assert "✘ the lab database is not reachable. Start it with `python -m migration_lab up`" in preflight.stdout


def test_a_revision_whose_parent_is_gone_is_one_message_in_a_terminal(project: Project, database_url: str) -> None:
    """A revision file an editor saved back after a reset deleted its parent: every alembic command that
    runs env.py names the file and the two ways out, instead of a bare KeyError."""
    env = {"DATABASE_URL": database_url}
    assert run([ALEMBIC, "upgrade", "head"], project, env, cwd=project.service_dir).returncode == 0
    write_revision(project, "77aa00000001", "5c04918f04d2", "pass")
    for command in (["current"], ["upgrade", "head"], ["check"], ["history", "-r", "current:"]):
        done = run([ALEMBIC, *command], project, env, cwd=project.service_dir)
        assert done.returncode == 1, (command, done.stderr)
        what, next_step = done.stderr.splitlines()
        assert what == (
            "migrations/versions/77aa00000001_hand_written.py revises 5c04918f04d2, "
            "and no revision file is 5c04918f04d2: alembic cannot read the history."
        )
        assert next_step.startswith("Either delete 77aa00000001_hand_written.py (") and (
            "or bring 5c04918f04d2's file back (`git checkout -- migrations/versions/`, "
            "or `python -m migration_lab restore`)." in next_step
        )
        assert "KeyError" not in done.stderr and "Traceback" not in done.stderr
    (project.versions_dir / "77aa00000001_hand_written.py").unlink()  # the first way out
    assert run([ALEMBIC, "current"], project, env, cwd=project.service_dir).stdout.strip() == "8b7e5d2c6a41 (head)"


def test_preflight_passes_with_a_running_database(project: Project, database_url: str) -> None:
    done = lab_cli("preflight", project=project, env={"LAB_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stdout
    assert "✔ backend: url:" in done.stdout and "✔ PostgreSQL 18." in done.stdout


def test_reset_starts_the_chapters_notebook_over_and_keeps_the_learners_copy(
    project: Project, database_url: str
) -> None:
    """`reset 03` in a terminal: the lab and my-notebooks/03 start over; the learner's notebook is kept aside."""
    from migration_lab.launch.jupyterlab import WORKBOOK, prepare_workbook

    prepare_workbook(project)
    mine = project.root / WORKBOOK / "03-rollback.ipynb"
    fresh = mine.read_text()
    mine.write_text(
        fresh.replace('"outputs": []', '"outputs": [{"output_type": "stream", "name": "stdout", "text": "x"}]')
    )
    worked_on = mine.read_text()
    assert worked_on != fresh
    env = {"LAB_DATABASE_URL": database_url}

    kept = lab_cli("reset", "03", "--keep-notebook", project=project, env=env)
    assert kept.returncode == 0 and mine.read_text() == worked_on

    done = lab_cli("reset", "3", project=project, env=env)
    assert done.returncode == 0, done.stderr
    assert mine.read_text() == fresh
    backups = list((project.root / ".lab" / "notebook-copies").glob("03-rollback-*.ipynb"))
    assert [b.read_text() for b in backups] == [worked_on]
    said = f"Your notebook {WORKBOOK}/03-rollback.ipynb is fresh again; your copy is in .lab/notebook-copies"
    assert said in done.stdout

    again = lab_cli("reset", "03", project=project, env=env)
    assert "is already as it first was" in again.stdout
    assert len(list(backups[0].parent.iterdir())) == 1  # nothing new to keep
