"""The compose backend: the `db` service of this checkout's docker-compose stack, on 127.0.0.1.

Alembic runs here, in this process, on the files the `ai-api` container sees
through its bind mount.
"""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import sqlalchemy as sa
from dotenv import dotenv_values

from ..errors import LabError
from ..project import write_private
from .backend import Backend, Progress, quiet

SERVICE = "ai-api"  # the compose service alembic runs in
# What the stack publishes on 127.0.0.1: (service, its port inside, the .env setting naming the host port, default)
Published = tuple[str, int, str, int]
DATABASE_PORT: Published = ("db", 5432, "POSTGRES_PORT", 5432)
API_PORT: Published = ("ai-api", 8000, "API_PORT", 8000)
# `compose ps --format`: each container's service, and its project's folder (a label compose puts on it)
PS_FORMAT = '{{.Service}}\t{{.Label "com.docker.compose.project.working_dir"}}'


def compose_command() -> list[str] | None:
    """`docker compose` (v2) if it answers, else `docker-compose` (the guide's spelling), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port` (connections lingering in TIME_WAIT do not count)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as docker-proxy binds it
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PORT_RANGE = range(20000, 30000)  # below the ephemeral ports (32768+) outgoing connections take


def free_port(preferred: int, taken: set[int]) -> int:
    """`preferred` when nothing listens on it, else the next free one up (wrapping) in PORT_RANGE."""
    start = PORT_RANGE.index(preferred)
    for port in [*PORT_RANGE[start:], *PORT_RANGE[:start]]:
        if port not in taken and port_is_free(port):
            return port
    raise LabError(
        f"No free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} on 127.0.0.1.",
        "Set POSTGRES_PORT and API_PORT in .env to two free ports.",
    )


class ComposeBackend(Backend):
    """The `db` service of this project's docker-compose stack.

    The kit runs alembic in this process, on the host's ai-service/ (the very
    files the ai-api container sees through its bind mount), against the
    composed database, reached on 127.0.0.1 with the credentials of `.env`
    (or `.env.example` when there is no `.env`). Output, rehearsals and speed
    are the embedded route's; the learner types the guide's
    `docker-compose exec ai-api alembic ...` against the same stack.

    Each checkout is its own stack: `start` writes a project name derived from
    the checkout's path, free ports and the learner's uid into `.env` (when they
    are not there yet, and only while the checkout has no stack), and every
    compose command runs in the checkout, so `docker compose ...` typed by hand
    there and the kit address the same stack, and a second checkout's stack is
    never this one's. A stack started by hand (the workflow guide's
    `cp .env.example .env; docker-compose up -d --build`) is taken as it is: the
    kit reaches it on the ports compose published, whatever `.env` says.
    """

    name = "compose"
    SETTINGS = ("COMPOSE_PROJECT_NAME", "POSTGRES_PORT", "API_PORT", "LAB_UID", "LAB_GID")

    def __init__(self, root: Path) -> None:
        self.root = root
        self._command: list[str] | None = None
        self._published: dict[tuple[str, int], int | None] = {}

    def command(self) -> list[str]:
        if self._command is None:
            found = compose_command()
            if found is None:
                raise LabError(
                    "Neither `docker compose` nor `docker-compose` is available on this machine.",
                    "Install Docker, or use the embedded database: `python -m migration_lab --backend embedded up`.",
                )
            self._command = found
        return self._command

    def _compose(
        self, *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command(), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **env} if env else None,
        )

    def settings(self) -> dict[str, str]:
        """The variables docker-compose substitutes: `.env` if present, else the example; the environment wins."""
        env_file = self.root / ".env"
        if not env_file.exists():
            env_file = self.root / ".env.example"
        values = {k: v or "" for k, v in dotenv_values(env_file).items()}
        values.update({k: v for k, v in os.environ.items() if k.startswith("POSTGRES_") or k in self.SETTINGS})
        return values

    def checkout_settings(self) -> dict[str, str]:
        """This checkout's own project name, ports and uid: derived from its path, ports checked free."""
        key = hashlib.sha256(str(self.root).encode()).hexdigest()
        slot = int(key[8:12], 16) % (len(PORT_RANGE) // 2)  # a stable pair of ports per checkout
        postgres = free_port(PORT_RANGE.start + 2 * slot, set())
        return {
            "COMPOSE_PROJECT_NAME": f"migration-lab-{key[:8]}",
            "POSTGRES_PORT": str(postgres),
            "API_PORT": str(free_port(postgres + 1 if postgres + 1 in PORT_RANGE else PORT_RANGE.start, {postgres})),
            "LAB_UID": str(os.getuid()),
            "LAB_GID": str(os.getgid()),
        }

    def prepare(self, progress: Progress = quiet) -> None:
        """Write this checkout's name, ports and uid into `.env` where it does not set them yet.

        `.env` is made from `.env.example` when missing. Values already there
        (or set in the environment) are kept: the learner's choice wins.
        """
        env_file = self.root / ".env"
        text = env_file.read_text() if env_file.exists() else (self.root / ".env.example").read_text()
        present = self.settings() if env_file.exists() else dict(os.environ)
        missing = {k: v for k, v in self.checkout_settings().items() if not present.get(k)}
        if not missing and env_file.exists():
            return
        if missing:
            text = text.rstrip("\n") + "\n# This checkout's own stack (written by `python -m migration_lab up`):\n"
            text += "".join(f"{k}={v}\n" for k, v in missing.items())
        write_private(env_file, text)
        progress(f"Wrote {', '.join(missing) or 'the example settings'} to {env_file}\n")

    def project_name(self) -> str:
        """The compose project: COMPOSE_PROJECT_NAME, else compose's default, the folder's name."""
        name = self.settings().get("COMPOSE_PROJECT_NAME")
        return name or re.sub(r"[^a-z0-9_-]", "", self.root.name.lower())

    def published(self, service: str, port: int) -> int | None:
        """The host port compose published for `service`'s `port` (`docker compose port`); None without one.

        Asked once and kept until this backend starts, stops or nukes the stack:
        the kit's URL is read at every connection.
        """
        key = (service, port)
        if key not in self._published:
            answer = ""
            if self.is_running():  # else compose would answer for another checkout's project of the same name
                try:
                    done = self._compose("port", service, str(port), timeout=20)
                    answer = done.stdout.strip().rpartition(":")[2] if done.returncode == 0 else ""
                except (LabError, subprocess.TimeoutExpired, OSError):
                    pass
            self._published[key] = int(answer) if answer.isdigit() else None
        return self._published[key]

    def _port(self, which: Published) -> int:
        """The port the stack publishes, as compose says; without a running stack, what `.env` would make it."""
        return self.published(which[0], which[1]) or self._configured(which)

    def _configured(self, which: Published) -> int:
        """The host port `.env` (or the environment, or compose's default) asks for."""
        return int(self.settings().get(which[2]) or which[3])

    def api_url(self) -> str:
        """Where the ai-api container answers on this machine."""
        return f"http://127.0.0.1:{self._port(API_PORT)}"

    def url(self) -> str:
        s = self.settings()
        return str(
            sa.URL.create(
                "postgresql+psycopg2",
                username=s.get("POSTGRES_USER", "postgres"),
                password=s.get("POSTGRES_PASSWORD"),
                host="127.0.0.1",
                port=self._port(DATABASE_PORT),
                database=s.get("POSTGRES_DB", "ai_service"),
            ).render_as_string(hide_password=False)
        )

    def where(self) -> str:
        port = self._port(DATABASE_PORT)
        return f"docker-compose project {self.project_name()} in {self.root}: service db on 127.0.0.1:{port}"

    def is_running(self) -> bool:
        return SERVICE in self._services("--status", "running")

    def _exists(self) -> bool:
        """Whether this checkout has a stack at all (its containers, running or stopped)."""
        return bool(self._services("--all"))

    def _services(self, *which: str) -> list[str]:
        """The services of this checkout's containers (`which`: ps's filters).

        Compose finds a project by name only, and without COMPOSE_PROJECT_NAME the
        name is the folder's: a checkout elsewhere in a folder of the same name
        would otherwise pass for this one. Each container carries its folder.
        """
        try:
            ps = self._compose("ps", *which, "--format", PS_FORMAT, timeout=20)
        except (LabError, subprocess.TimeoutExpired, OSError):
            return []
        rows = [line.split("\t") for line in ps.stdout.splitlines()] if ps.returncode == 0 else []
        return [row[0] for row in rows if len(row) == 2 and Path(row[1]).resolve() == self.root.resolve()]

    def _checked(self, *args: str, progress: Progress, env: dict[str, str] | None = None) -> None:
        said = " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), *self.command(), *args])
        progress(f"$ {said}\n")
        done = self._compose(*args, env=env)
        if done.returncode != 0 and "address already in use" in done.stderr:
            s = self.settings()
            raise LabError(
                f"`{' '.join([*self.command(), *args])}` failed: a port it publishes is taken:\n{done.stderr.strip()}",
                f"Set POSTGRES_PORT (now {s.get('POSTGRES_PORT') or 5432}) and API_PORT (now "
                f"{s.get('API_PORT') or 8000}) in {self.root / '.env'} to free ports, or delete those two lines "
                "and run `python -m migration_lab --backend compose up` to have free ones chosen.",
            )
        if done.returncode != 0:
            raise LabError(
                f"`{' '.join([*self.command(), *args])}` failed:\n{done.stderr.strip()}",
                "Is the Docker engine running? `docker info` tells. "
                "Or use the embedded database: `python -m migration_lab --backend embedded up`.",
            )

    def start(self, progress: Progress = quiet) -> None:
        """Up, as it is when this checkout has a stack (started by hand too); else with its own name and ports.

        `.env` is never written under an existing stack: compose, and every
        `docker compose ...` typed here, would then address another project.
        """
        self._published.clear()
        if self.is_running():
            return
        if not self._exists():
            self.prepare(progress)
        self._checked("up", "-d", "--build", "--wait", progress=progress)

    def stop(self, progress: Progress = quiet) -> None:
        self._published.clear()
        self._checked("stop", progress=progress)

    def nuke(self, progress: Progress = quiet) -> None:
        """`down -v` and up again, on the ports the stack published (a stack started by hand may use others)."""
        kept = {
            which[2]: str(port)
            for which in (DATABASE_PORT, API_PORT)
            if (port := self.published(which[0], which[1])) and port != self._configured(which)
        }
        self._published.clear()
        self._checked("down", "-v", progress=progress)
        self._checked("up", "-d", "--build", "--wait", progress=progress, env=kept)

    def start_hint(self) -> str:
        return "Start the stack with `python -m migration_lab --backend compose up` in the project folder."
