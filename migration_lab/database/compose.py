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
    are not there yet), and every compose command runs in the checkout, so
    `docker compose ...` typed by hand there and the kit address the same stack,
    and a second checkout's stack is never this one's.
    """

    name = "compose"
    SETTINGS = ("COMPOSE_PROJECT_NAME", "POSTGRES_PORT", "API_PORT", "LAB_UID", "LAB_GID")

    def __init__(self, root: Path) -> None:
        self.root = root
        self._command: list[str] | None = None

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

    def _compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command(), *args], cwd=self.root, capture_output=True, text=True, timeout=timeout)

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

    def api_url(self) -> str:
        """Where the ai-api container answers on this machine."""
        return f"http://127.0.0.1:{self.settings().get('API_PORT') or '8000'}"

    def url(self) -> str:
        s = self.settings()
        return str(
            sa.URL.create(
                "postgresql+psycopg2",
                username=s.get("POSTGRES_USER", "postgres"),
                password=s.get("POSTGRES_PASSWORD"),
                host="127.0.0.1",
                port=int(s.get("POSTGRES_PORT") or "5432"),
                database=s.get("POSTGRES_DB", "ai_service"),
            ).render_as_string(hide_password=False)
        )

    def where(self) -> str:
        port = self.settings().get("POSTGRES_PORT") or "5432"
        return f"docker-compose project {self.project_name()} in {self.root}: service db on 127.0.0.1:{port}"

    def is_running(self) -> bool:
        try:
            ps = self._compose("ps", "--status", "running", "--services", timeout=20)
        except (LabError, subprocess.TimeoutExpired, OSError):
            return False
        return ps.returncode == 0 and SERVICE in ps.stdout.split()

    def _checked(self, *args: str, progress: Progress) -> None:
        progress(f"$ {' '.join([*self.command(), *args])}\n")
        done = self._compose(*args)
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
        self.prepare(progress)
        if not self.is_running():
            self._checked("up", "-d", "--build", "--wait", progress=progress)

    def stop(self, progress: Progress = quiet) -> None:
        self._checked("stop", progress=progress)

    def nuke(self, progress: Progress = quiet) -> None:
        self._checked("down", "-v", progress=progress)
        self._checked("up", "-d", "--build", "--wait", progress=progress)

    def start_hint(self) -> str:
        return "Start the stack with `python -m migration_lab --backend compose up` in the project folder."
