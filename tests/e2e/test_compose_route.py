"""The Docker route for real, on temporary copies of the project, each with its own stack.

1. The README's Docker route, verbatim.
2. The workflow guide's commands, verbatim, through `docker-compose exec ai-api alembic ...`:
   files on the host (and their owner), columns, rows and the API after each step, then the nuke.
3. Every notebook under strict nbval with the stack up (the kit picks the compose backend on its
   own), against the same committed outputs as on the embedded route.
4. A stack started the workflow guide's way (`cp .env.example .env`, `docker-compose up -d --build`,
   nothing of the kit's in `.env`), on other ports than `.env` names: every chapter in sequence on
   it under strict nbval, chapter 09's nuke included; `.env` is never rewritten.
The stacks are always taken down (`down -v`) at the end, whatever happened.

It needs a Docker engine and the images docker-compose.yml names (real, pulled, or the test
stand-ins of tests/docker/build_standins.sh). Mandatory in CI (`.ci/run` prepares the engine and
sets LAB_REQUIRE_DOCKER=1); skipped elsewhere, saying why. The copy gets its own project name and
ports (`python -m migration_lab --backend compose up` writes them into its `.env`), so nothing
else on this machine — another checkout's stack, a server on 5432 — matters.
"""

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import REPO, add_phone_number, columns, copy_project, require, tables, write_revision
from migration_lab import ComposeBackend, Lab, Project
from migration_lab.course.app_client import wait_for_reload
from migration_lab.workspace.checkpoints import BASELINE_CHECKPOINT, restore_files
from migration_lab.workspace.edits import load_models

IMAGES = ("postgres:18-alpine", "python:3.12-slim")
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
VENV_BIN = str(Path(sys.executable).parent)


def _why_not() -> str | None:
    """None when the route can run here, else why it cannot."""
    if not shutil.which("docker"):
        return "no `docker` command"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine answers (`docker info`)"
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        return "no Compose v2 (`docker compose version`)"
    if not shutil.which("docker-compose"):
        return "no `docker-compose` on PATH (the guide's spelling)"
    for image in IMAGES:
        present = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30)
        if present.returncode != 0 and subprocess.run(["docker", "pull", "-q", image], capture_output=True).returncode:
            return f"image {image} is not here and cannot be pulled (tests/docker/build_standins.sh builds stand-ins)"
    return None


_reason = _why_not()
require("LAB_REQUIRE_DOCKER", _reason is None, f"the compose end-to-end test cannot run: {_reason}")


def _env() -> dict[str, str]:
    """A learner's shell: the venv first on PATH, no lab overrides."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "POSTGRES_", "COMPOSE_")) and k != "API_PORT"
    }
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env


def sh(root: Path, line: str, ok: bool = True, exported: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One command line, typed in the project's folder (in a shell that exported `exported`)."""
    done = subprocess.run(
        ["bash", "-c", line],
        cwd=root,
        env={**_env(), **(exported or {})},
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if ok:
        assert done.returncode == 0, f"$ {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def readme_route() -> list[str]:
    """The command lines of the README's Docker route, as printed there."""
    section = (REPO / "README.md").read_text().split("## The Docker route", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def _take_down(project: Project) -> None:
    """Whatever the tests left running in `project` goes, volume and image too."""
    subprocess.run(
        ["docker", "compose", "down", "-v", "--remove-orphans", "--rmi", "local"],
        cwd=project.root,
        env=_env(),
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A copy of the project; whatever the tests leave running there is taken down, volume and image too."""
    project = copy_project(tmp_path_factory.mktemp("compose") / "project")
    try:
        yield project
    finally:
        _take_down(project)


@pytest.fixture(scope="module")
def guide_checkout() -> Iterator[Project]:
    """A copy of the project for the guide's way: its folder's name (compose's project name, as the guide
    sets none) is unique on this engine, and the ai-api's uid 1000 (the guide sets no LAB_UID) can enter it."""
    base = Path(tempfile.mkdtemp(prefix="mlab-guide-"))
    base.chmod(0o755)
    project = copy_project(base / f"guide-{secrets.token_hex(4)}")
    try:
        yield project
    finally:
        _take_down(project)
        shutil.rmtree(base, ignore_errors=True)


def _engine(project: Project) -> sa.Engine:
    return sa.create_engine(ComposeBackend(project.root).url(), poolclass=sa.pool.NullPool)


def _api(project: Project, method: str, path: str, json: object = None) -> tuple[int, object]:
    import httpx

    base = ComposeBackend(project.root).api_url()
    fingerprint = load_models(project).models_fingerprint()
    assert wait_for_reload(base, fingerprint, project.service_dir / "main.py"), "the ai-api did not reload main.py"
    reply = httpx.request(method, f"{base}{path}", json=json, timeout=10)
    return reply.status_code, reply.json()


def _new_files(project: Project, before: set[Path]) -> list[Path]:
    return sorted(set(project.versions_dir.glob("*.py")) - before)


def test_readme_route_then_the_guides_commands_verbatim(stack: Project) -> None:
    root, timings = stack.root, {}
    alembic = "docker-compose exec ai-api alembic"

    # The README's Docker route, line by line, as a learner types it.
    for line in readme_route():
        started = time.monotonic()
        done = sh(root, line)
        timings[line.split("#")[0].strip()] = time.monotonic() - started
        if "compose ps" in line:
            assert "ai-api" in done.stdout and "healthy" in done.stdout
    settings = ComposeBackend(root).settings()
    assert settings["COMPOSE_PROJECT_NAME"].startswith("migration-lab-"), "the checkout's own project name"
    assert settings["POSTGRES_PORT"] != "5432" and settings["API_PORT"] != "8000"
    assert ComposeBackend(root).is_running()
    status = sh(root, "python -m migration_lab status").stdout
    assert "compose" in status and settings["COMPOSE_PROJECT_NAME"] in status, status
    other = ComposeBackend(copy_project(root.parent / "second-checkout").root)
    other.prepare()  # what `up` writes in a second checkout on the same machine
    assert other.project_name() != ComposeBackend(root).project_name()
    assert not other.is_running(), "a second checkout must not take this checkout's stack for its own"
    engine = _engine(stack)
    assert {"user_profiles", "user_settings", "job_entries", "alembic_version"} <= tables(engine)
    assert _api(stack, "GET", "/health") == (200, {"status": "ok"})

    # Step 1 of the guide: the model gains phone_number; autogenerate in the container.
    add_phone_number(stack)
    before = set(stack.versions_dir.glob("*.py"))
    done = sh(root, f'{alembic} revision --autogenerate -m "Add phone number to profile"')
    assert "Detected added column 'user_profiles.phone_number'" in done.stdout + done.stderr
    [script] = _new_files(stack, before)
    assert script.name.endswith("_add_phone_number_to_profile.py"), script.name
    assert script.stat().st_uid == os.getuid() and script.stat().st_gid == os.getgid(), "the file is the learner's"
    assert "op.add_column('user_profiles', sa.Column('phone_number'" in script.read_text()
    status, body = _api(stack, "GET", "/profiles")
    assert status == 503 and "alembic upgrade head" in body["detail"], body  # code ahead of the schema

    # Apply it: the column is there and the API serves it.
    sh(root, f"{alembic} upgrade head")
    assert "phone_number" in columns(engine, "user_profiles")
    assert _api(stack, "POST", "/profiles", {"name": "Ada", "email": "ada@example.com"})[0] == 201
    status, body = _api(stack, "GET", "/profiles")
    assert status == 200 and body[0]["phone_number"] is None and body[0]["name"] == "Ada"

    # Roll it back: the column goes, the API says what to do.
    sh(root, f"{alembic} downgrade -1")
    assert "phone_number" not in columns(engine, "user_profiles")
    status, body = _api(stack, "GET", "/profiles")
    assert status == 503 and "alembic upgrade head" in body["detail"]
    sh(root, f"{alembic} upgrade head")

    # A data migration: an empty revision, filled in by hand, with a real downgrade.
    before = set(stack.versions_dir.glob("*.py"))
    sh(root, f'{alembic} revision -m "Backfill phone numbers"')
    [data] = _new_files(stack, before)
    assert data.stat().st_uid == os.getuid()
    text = data.read_text()
    for step, sql in (
        ("upgrade", "UPDATE user_profiles SET phone_number = 'unknown' WHERE phone_number IS NULL"),
        ("downgrade", "UPDATE user_profiles SET phone_number = NULL WHERE phone_number = 'unknown'"),
    ):  # the body of upgrade() / downgrade(), after alembic's docstring, was `pass`
        text = re.sub(
            rf'(def {step}\(\) -> None:\n(?:    """.*"""\n)?)    pass\n', rf'\1    op.execute("{sql}")\n', text
        )
    assert "UPDATE user_profiles" in text, text
    data.write_text(text)
    sh(root, f"{alembic} upgrade head")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT phone_number FROM user_profiles")).scalars().all() == ["unknown"]
    head = re.search(r"^revision\b.*= '(\w+)'", text, re.M)
    parent = re.search(r"^down_revision\b.*= '(\w+)'", text, re.M)
    assert head and parent

    # A teammate's revision from the same parent: two heads, then the merge.
    write_revision(stack, "teammate0001", parent[1], "op.create_index('ix_profiles_name', 'user_profiles', ['name'])")
    done = sh(root, f"{alembic} upgrade head", ok=False)
    assert done.returncode != 0 and "Multiple head revisions" in done.stdout + done.stderr
    heads = sh(root, f"{alembic} heads").stdout
    assert head[1] in heads and "teammate0001" in heads
    before = set(stack.versions_dir.glob("*.py"))
    sh(root, f'{alembic} merge heads -m "merge heads"')
    [merge] = _new_files(stack, before)
    assert merge.stat().st_uid == os.getuid() and "teammate0001" in merge.read_text()
    sh(root, f"{alembic} upgrade head")
    assert len(sh(root, f"{alembic} heads").stdout.strip().splitlines()) == 1
    assert "ix_profiles_name" in {ix["name"] for ix in sa.inspect(engine).get_indexes("user_profiles")}

    # All the way down, then the nuke: the volume goes, a fresh empty database comes up.
    sh(root, f"{alembic} downgrade base")
    assert tables(engine) == {"alembic_version"}
    engine.dispose()
    project_name = ComposeBackend(root).project_name()
    sh(root, "docker-compose down -v")
    volumes = sh(root, "docker volume ls -q").stdout.split()
    assert f"{project_name}_db-data" not in volumes
    for path in stack.versions_dir.glob("*.py"):
        path.unlink()  # clean versions/: one initial revision replaces the history
    started = time.monotonic()
    sh(root, "docker compose up -d --build --wait")
    timings["up after the nuke"] = time.monotonic() - started
    engine = _engine(stack)
    assert tables(engine) == set()
    sh(root, f'{alembic} revision --autogenerate -m "Initial schema"')
    [initial] = _new_files(stack, set())
    assert initial.stat().st_uid == os.getuid() and "op.create_table('user_profiles'" in initial.read_text()
    sh(root, f"{alembic} upgrade head")
    assert "phone_number" in columns(engine, "user_profiles")  # the models as they are now
    assert {"user_profiles", "user_settings", "job_entries"} <= tables(engine)
    assert _api(stack, "GET", "/profiles") == (200, [])
    engine.dispose()
    print("\ncompose route timings (s):", {k: round(v, 1) for k, v in timings.items()})


def nbval(project: Project, notebook: Path) -> subprocess.CompletedProcess:
    """`notebook` under strict nbval in `project`, with whatever stack runs there.

    As on the embedded route (tests/course/test_notebooks.py), the chapter starts from a fresh copy and an
    empty database: the baseline files, no .lab/ (no earlier reset to back up), schema public wiped.
    """
    shutil.rmtree(project.state_dir, ignore_errors=True)
    restore_files(project, BASELINE_CHECKPOINT)
    lab = Lab(project, ComposeBackend(project.root))
    with lab.db.lock() as conn:
        lab.db.wipe(conn)
    lab.db.dispose()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            str(project.root / "notebooks" / notebook.name),
            "--nbval-sanitize-with",
            str(REPO / "tests" / "nbval_sanitize.cfg"),
            "--rootdir",
            str(project.root),
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=project.root / "notebooks",
        env=_env(),  # no LAB_DATABASE_URL: with the stack up, the kit picks the compose backend
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_on_the_compose_route_matches_its_committed_outputs(stack: Project, notebook: Path) -> None:
    if not ComposeBackend(
        stack.root
    ).is_running():  # the first test failed half-way: bring the stack up as the README does
        sh(stack.root, "python -m migration_lab --backend compose up")
    done = nbval(stack, notebook)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_chapter_in_sequence_on_a_stack_started_the_guides_way(guide_checkout: Project) -> None:
    """The learner follows the workflow guide, not the README: `cp .env.example .env`, `docker-compose up -d
    --build`, then opens the chapters one after the other. The shell that started the stack exported two free
    ports (so nothing else on this machine matters), which `.env` does not name: the kit, run without them,
    must find what compose published, never write `.env` under the running stack, and still reach the
    database after chapter 09's nuke (`down -v`, then up)."""
    root = guide_checkout.root
    exported = {"POSTGRES_PORT": str(_free_port()), "API_PORT": str(_free_port())}
    sh(root, "cp .env.example .env")
    sh(root, "docker-compose up -d --build", exported=exported)
    env_file = (root / ".env").read_bytes()

    status = sh(root, "python -m migration_lab status").stdout
    assert "backend:  compose" in status and f"service db on 127.0.0.1:{exported['POSTGRES_PORT']}" in status, status
    assert "revision: " in status  # reached: the database answered
    sh(root, "python -m migration_lab up")
    assert (root / ".env").read_bytes() == env_file, "the kit rewrote .env under the running stack"
    twin = ComposeBackend(copy_project(Path(tempfile.mkdtemp(prefix="mlab-twin-")) / root.name).root)
    try:  # another clone in a folder of the same name: compose's project name, not its stack
        shutil.copy(twin.root / ".env.example", twin.root / ".env")
        assert not twin.is_running() and twin.published("db", 5432) is None, "a namesake took this stack for its own"
    finally:
        shutil.rmtree(twin.root.parent)

    failed = {}
    for notebook in NOTEBOOKS:  # whatever chapters there are, in their order
        done = nbval(guide_checkout, notebook)
        if done.returncode != 0:
            failed[notebook.stem] = done.stdout[-3000:] + done.stderr[-1000:]
    assert not failed, f"{len(failed)} of {len(NOTEBOOKS)} chapters differ: {list(failed)}\n" + "\n".join(
        failed.values()
    )
    assert (root / ".env").read_bytes() == env_file == (root / ".env.example").read_bytes(), "a chapter wrote .env"
    backend = ComposeBackend(root)
    assert backend.project_name() == root.name and backend.is_running()
    assert backend.published("db", 5432) == int(exported["POSTGRES_PORT"]), "chapter 09's nuke moved the stack"
    assert Lab(guide_checkout, backend).db.is_reachable()
