"""Which database the lab uses, how it is reached, and how alembic runs on each route."""

import os
import shutil
import stat
import sys
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from helpers import add_phone_number
from migration_lab import ComposeBackend, EmbeddedBackend, Lab, LabError, Project, UrlBackend, choose_backend

FAKE_DOCKER = """#!{python}
# Stands in for the docker CLI (no Docker engine on the test machines): answers
# `compose version`, `compose ps` and `compose port` (FAKE_STACK: running, stopped or none;
# FAKE_PUBLISHED: "db=PORT ai-api=PORT"), and runs `compose exec -T ai-api alembic ...`
# with the real alembic in ai-service/, logging each call (and the ports it is given) to {log}.
import os, subprocess, sys
args = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "docker":
    if args[:1] != ["compose"]:
        sys.exit(1)
    args = args[1:]
given = [f"{{k}}={{os.environ[k]}}" for k in ("POSTGRES_PORT", "API_PORT") if k in os.environ]
with open({log!r}, "a") as log:
    log.write(" ".join(given + args) + "\\n")
stack = os.environ.get("FAKE_STACK", "running")
published = dict(pair.split("=") for pair in os.environ.get("FAKE_PUBLISHED", "").split())
if args[:1] == ["version"]:
    print("Docker Compose version v2.40.0")
elif args[:1] == ["ps"]:  # the services of the project, each with its folder
    if stack == "running" or (stack == "stopped" and "--all" in args):
        folder = os.environ.get("FAKE_STACK_FOLDER", os.getcwd())
        print(f"db\\t{{folder}}\\nai-api\\t{{folder}}")
elif args[:1] == ["port"]:
    if stack != "running" or args[1] not in published:
        sys.exit(1)
    print(f"127.0.0.1:{{published[args[1]]}}")
elif args[:4] == ["exec", "-T", "ai-api", "alembic"]:
    alembic = os.path.join(os.path.dirname({python!r}), "alembic")
    sys.exit(subprocess.run([alembic, *args[4:]], cwd="ai-service").returncode)
elif args[:1] in (["up"], ["down"], ["stop"]):
    if os.environ.get("FAKE_DOCKER_ENGINE") == "down":
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", file=sys.stderr)
        sys.exit(1)
"""


def install_fake(bin_dir: Path, name: str, log: Path) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(FAKE_DOCKER.format(python=sys.executable, log=str(log)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with neither docker nor docker-compose on it; returns that folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_url_wins_over_everything_unforced(project: Project) -> None:
    backend = choose_backend(project, env={"LAB_DATABASE_URL": "postgresql+psycopg2://u:p@db.example/lab"})
    assert isinstance(backend, UrlBackend)
    # In words, not a URL JupyterLab would make a link of; never the password.
    assert backend.where() == "the server at db.example, database lab, user u (LAB_DATABASE_URL)"
    socket = UrlBackend("postgresql+psycopg2://u:secret@:5433/lab?host=/run/pg")
    assert socket.where() == "the server at /run/pg:5433, database lab, user u (LAB_DATABASE_URL)"
    in_query = UrlBackend("postgresql+psycopg2://u:secret@/lab?host=/run/pg&port=5433")  # libpq's form: the port too
    assert in_query.where() == socket.where()


def test_forced_backend_wins_over_url(project: Project) -> None:
    backend = choose_backend(project, force="embedded", env={"LAB_DATABASE_URL": "postgresql://u@h/db"})
    assert isinstance(backend, EmbeddedBackend)
    assert backend.pgdata == project.root / ".lab" / "pgdata"
    assert isinstance(choose_backend(project, env={"LAB_BACKEND": "compose"}), ComposeBackend)


def test_unknown_or_incomplete_choice_is_a_clear_error(project: Project) -> None:
    with pytest.raises(LabError, match="Unknown backend 'sqlite'") as error:
        choose_backend(project, force="sqlite", env={})
    assert "embedded, compose, url" in error.value.next_step
    with pytest.raises(LabError, match="needs LAB_DATABASE_URL"):
        choose_backend(project, force="url", env={})


def test_embedded_without_docker(project: Project, no_docker: Path) -> None:
    assert isinstance(choose_backend(project, env={}), EmbeddedBackend)
    with pytest.raises(LabError, match="Neither `docker compose` nor `docker-compose`"):
        ComposeBackend(project.root).command()


def test_running_compose_stack_is_chosen(project: Project, no_docker: Path, tmp_path: Path) -> None:
    install_fake(no_docker, "docker", tmp_path / "docker.log")
    backend = choose_backend(project, env={})
    assert isinstance(backend, ComposeBackend)
    assert backend.command() == ["docker", "compose"]


def test_compose_falls_back_to_docker_compose_v1(project: Project, no_docker: Path, tmp_path: Path) -> None:
    install_fake(no_docker, "docker-compose", tmp_path / "docker.log")
    assert ComposeBackend(project.root).command() == ["docker-compose"]


def test_compose_url_comes_from_env_file(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("POSTGRES_")]:
        monkeypatch.delenv(name)
    backend = ComposeBackend(project.root)
    assert backend.url() == "postgresql+psycopg2://lab:change-me@127.0.0.1:5432/ai_service"
    (project.root / ".env").write_text(
        "POSTGRES_USER=me\nPOSTGRES_PASSWORD=p@ss:word\nPOSTGRES_DB=x\nPOSTGRES_PORT=6543\n"
    )
    assert backend.url() == "postgresql+psycopg2://me:p%40ss%3Aword@127.0.0.1:6543/x"


def test_compose_route_runs_alembic_in_process_against_the_composed_database(
    project: Project, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the compose route alembic runs here, on the host's files (the container's bind mount),
    against the composed PostgreSQL: same output, rehearsals and speed as embedded; the
    learner still sees the guide's `docker-compose exec ai-api alembic ...` form."""
    monkeypatch.setattr(ComposeBackend, "url", lambda self: database_url)
    runner = Lab(project, ComposeBackend(project.root)).runner
    add_phone_number(project)
    assert runner.run("upgrade head").ok
    generated = runner.run(["revision", "--autogenerate", "-m", 'Add phone number to profile "now"'])
    assert generated.ok, generated.error
    assert generated.workflow_command == (
        "docker-compose exec ai-api alembic revision --autogenerate -m 'Add phone number to profile \"now\"'"
    )
    [script] = generated.new_files
    assert script.parent == project.versions_dir and "op.add_column" in script.read_text()
    failed = runner.run("downgrade nonsense")
    assert not failed.ok and "nonsense" in failed.error
    assert failed.before == failed.after  # read back from the database, never invented


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_embedded_lifecycle_keeps_data_until_nuked(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / ".lab")
    messages: list[str] = []
    try:
        backend.start(messages.append)
        assert "Creating a new PostgreSQL cluster in" in messages[0]
        assert backend.is_running()
        assert "host=" in backend.url() and "@/ai_service?" in backend.url()  # Unix socket, no TCP
        engine = sa.create_engine(backend.url(), poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (id int)"))
        backend.stop()
        assert not backend.is_running() and _postgres_processes(backend.pgdata) == []
        backend.start()  # data survives a stop
        assert sa.inspect(engine).has_table("kept")
        backend.nuke()
        assert backend.is_running() and not sa.inspect(engine).has_table("kept")
        engine.dispose()
    finally:
        backend.stop()
    assert _postgres_processes(backend.pgdata) == []


def test_compose_nuke_is_the_workflow_guides_volume_reset(
    project: Project, no_docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "docker.log"
    install_fake(no_docker, "docker", log)
    backend = ComposeBackend(project.root)
    said: list[str] = []
    backend.nuke(said.append)
    assert log.read_text().splitlines()[-2:] == ["down -v", "up -d --build --wait"]
    assert said == ["$ docker compose down -v\n", "$ docker compose up -d --build --wait\n"]
    backend.stop()
    assert log.read_text().splitlines()[-1] == "stop"
    monkeypatch.setenv("FAKE_DOCKER_ENGINE", "down")
    with pytest.raises(LabError, match="Cannot connect to the Docker daemon") as error:
        backend.nuke()
    assert "docker info" in error.value.next_step and "--backend embedded" in error.value.next_step


@pytest.fixture
def guide_stack(project: Project, no_docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack started by hand the workflow guide's way (`cp .env.example .env; docker-compose up -d --build`),
    from a shell that published other ports than .env names; returns the fake docker's log."""
    for name in [n for n in os.environ if n.startswith(("POSTGRES_", "COMPOSE_")) or n in ("API_PORT", "LAB_UID")]:
        monkeypatch.delenv(name)
    shutil.copy(project.root / ".env.example", project.root / ".env")
    install_fake(no_docker, "docker", tmp_path / "docker.log")
    monkeypatch.setenv("FAKE_PUBLISHED", "db=15432 ai-api=18000")
    return tmp_path / "docker.log"


def test_a_stack_started_by_hand_is_addressed_on_the_ports_it_published(project: Project, guide_stack: Path) -> None:
    env_file = (project.root / ".env").read_bytes()
    backend = choose_backend(project, env={})
    assert isinstance(backend, ComposeBackend)
    Lab(project, backend).up()  # what chapter 00 and `python -m migration_lab up` do
    assert (project.root / ".env").read_bytes() == env_file, ".env was rewritten under a running stack"
    assert not [line for line in guide_stack.read_text().splitlines() if line.startswith(("up", "down"))]
    assert backend.url().endswith("@127.0.0.1:15432/ai_service") and ":15432" in backend.where()
    assert backend.api_url() == "http://127.0.0.1:18000"
    assert f"DATABASE_URL={backend.url()}" in (project.service_dir / ".env").read_text()


def test_the_nuke_brings_a_hand_started_stack_back_on_its_ports(project: Project, guide_stack: Path) -> None:
    env_file = (project.root / ".env").read_bytes()
    said: list[str] = []
    ComposeBackend(project.root).nuke(said.append)
    assert guide_stack.read_text().splitlines()[-2:] == [
        "down -v",
        "POSTGRES_PORT=15432 API_PORT=18000 up -d --build --wait",
    ]
    assert said[-1] == "$ POSTGRES_PORT=15432 API_PORT=18000 docker compose up -d --build --wait\n"
    assert (project.root / ".env").read_bytes() == env_file


def test_a_stopped_stack_starts_again_as_it_was(
    project: Project, guide_stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker compose stop` (or a reboot): up again with .env as it is, not as another project."""
    env_file = (project.root / ".env").read_bytes()
    monkeypatch.setenv("FAKE_STACK", "stopped")
    ComposeBackend(project.root).start()
    assert guide_stack.read_text().splitlines()[-1] == "up -d --build --wait"
    assert (project.root / ".env").read_bytes() == env_file
    monkeypatch.setenv("FAKE_STACK", "none")  # no stack yet: this checkout's own name and ports first
    ComposeBackend(project.root).start()
    assert "COMPOSE_PROJECT_NAME=migration-lab-" in (project.root / ".env").read_text()


def test_a_stack_of_another_folder_of_the_same_name_is_not_this_checkouts(
    project: Project, guide_stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without COMPOSE_PROJECT_NAME compose names the project after the folder: a second clone in another
    `migration-lab/` folder finds the first one's containers, which are not its own."""
    monkeypatch.setenv("FAKE_STACK_FOLDER", f"/elsewhere/{project.root.name}")
    assert isinstance(choose_backend(project, env={}), EmbeddedBackend)
    backend = ComposeBackend(project.root)
    assert backend.url().endswith("@127.0.0.1:5432/ai_service")  # what .env makes it, not the other's 15432
    backend.start()
    assert "COMPOSE_PROJECT_NAME=migration-lab-" in (project.root / ".env").read_text()
    assert guide_stack.read_text().splitlines()[-1] == "up -d --build --wait"


def test_a_reset_points_ai_service_env_at_the_database_the_kit_uses_now(project: Project, database_url: str) -> None:
    """`up` with LAB_DATABASE_URL wrote .env; a reset later on another database left it there, and a plain
    `alembic upgrade head` in a terminal migrated the database the kit no longer used."""
    from sqlalchemy.engine import make_url

    from migration_lab.course.registry import reset as reset_chapter

    other = make_url(database_url).set(database=make_url(database_url).database + "_other")
    admin = sa.create_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{other.database}"'))
    try:
        first = Lab(project, UrlBackend(other.render_as_string(hide_password=False)))
        first.up(progress=lambda message: None)
        first.db.dispose()
        assert f"/{other.database}?" in (project.service_dir / ".env").read_text()
        lab = Lab(project, UrlBackend(database_url))
        reset_chapter("03", lab)
        lab.db.dispose()
        said = (project.service_dir / ".env").read_text()
        assert f"/{make_url(database_url).database}?" in said and other.database not in said
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{other.database}" WITH (FORCE)'))
        admin.dispose()


def test_down_on_a_server_the_lab_did_not_start_says_it_left_it_running(project: Project, database_url: str) -> None:
    """It printed "not the lab's to stop; nothing done" and then "Lab database is stopped"."""
    lab = Lab(project, UrlBackend(database_url))
    said = lab.down(progress=lambda message: None)
    assert "left running" in said and "stopped" not in said
    assert lab.db.is_reachable()
    lab.db.dispose()
