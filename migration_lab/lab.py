"""The lab as one object: a project, its database backend, and a runner.

Notebooks, widgets and the CLI all go through `Lab`; nothing else in the kit
decides which database to use.
"""

import sys
from pathlib import Path

from .database.backend import Backend, Progress
from .database.choice import choose_backend
from .database.connection import LabDatabase
from .errors import LabError
from .project import Project, write_private
from .running.runner import Runner


def _print(message: str) -> None:
    print(message, end="", flush=True)


class Lab:
    """One Migration Lab checkout and the database its migrations run against."""

    def __init__(self, project: Project | None = None, backend: Backend | str | None = None) -> None:
        self.project = project or Project.find()
        if backend is None or isinstance(backend, str):
            backend = choose_backend(self.project, force=backend)
        self.backend = backend
        self.db = LabDatabase(
            backend.url,
            where=backend.where(),
            start_hint=backend.start_hint(),
            guard=self.project.state_dir / "database.lock",
        )
        self.runner = Runner(self.project, self.db)

    @property
    def env_file(self) -> Path:
        """Git-ignored; lets a plain `alembic ...` in ai-service/ find the database."""
        return self.project.service_dir / ".env"

    def up(self, progress: Progress = _print) -> str:
        """Start the database if needed and point ai-service/.env at it; say where it is.

        .env holds the database's password: it is written 0600, atomically, and
        only when its content changes.
        """
        self.backend.start(progress)
        self.db.sweep_copies()  # throw-away copies a killed kernel left behind
        self.point_env_file()
        return f"Lab database is up: {self.backend.where()}"

    def point_env_file(self) -> None:
        """ai-service/.env names the database the kit uses now (a reset does it too: a plain `alembic` in a terminal
        must not migrate the database an earlier LAB_DATABASE_URL named)."""
        write_private(
            self.env_file,
            "# Written by `python -m migration_lab up`: the lab database, for a local `alembic ...`.\n"
            f"DATABASE_URL={self.backend.url()}\n",
        )

    def down(self, progress: Progress = _print) -> str:
        self.db.dispose()
        self.backend.stop(progress)
        if self.backend.name == "url":  # a server the lab did not start: stop() left it running, and says so
            return f"Lab database left running ({self.backend.where()}): the lab stops only a server it started."
        return f"Lab database is stopped ({self.backend.where()}); its data is kept."

    def nuke(self, progress: Progress = _print) -> str:
        """Drop every table and row: the lab's "docker compose down -v".

        Under the migration lock's guard: it waits for the commands running in this
        checkout, and those started meanwhile wait for the fresh database.
        """
        with self.db.destroying():
            self.db.dispose()
            self.backend.nuke(progress)
            self.up(progress)
        return f"Fresh, empty lab database: {self.backend.where()}. Run `alembic upgrade head` to rebuild the schema."

    def preflight(self) -> tuple[bool, list[str]]:
        """Before a workshop: versions of the tools, the backend, and whether the database answers."""
        import platform
        from importlib.metadata import version

        import sqlalchemy as sa

        lines = [f"✔ Python {platform.python_version()}"]
        lines += [
            f"✔ {package} {version(package)}"
            for package in ("alembic", "SQLAlchemy", "psycopg2-binary", "jupyterlab", "ipywidgets")
        ]
        lines.append(f"✔ backend: {self.backend.name}: {self.backend.where()}")
        try:
            with self.db.connect() as conn:
                server = conn.scalar(sa.text("SHOW server_version"))
            problems = self.db.problems()
        except LabError:
            problem = self.backend.problem()
            if problem is not None:
                return False, [*lines, f"✘ {problem}"]
            return False, [*lines, f"✘ the lab database is not reachable. {self.backend.start_hint()}"]
        lines.append(f"✔ PostgreSQL {server} is reachable")
        return not problems, [*lines, *(f"✘ {problem}" for problem in problems)]

    def status(self) -> str:
        running = self.backend.is_running()
        lines = [
            f"backend:  {self.backend.name}",
            f"where:    {self.backend.where()}",
            f"running:  {'yes' if running else 'no'}",
        ]
        problem = self.backend.problem() if running else None
        if problem is not None:
            lines.append(f"database: {problem}")
        elif running:
            self.db.sweep_copies()  # throw-away copies a killed kernel left behind
            heads = self.db.heads()
            lines.append(
                f"revision: {', '.join(heads) if heads else '(none: empty database, run alembic upgrade head)'}"
            )
        else:
            lines.append(f"start:    {self.backend.start_hint()}")
        return "\n".join(lines)


def default_progress() -> Progress:
    """Progress for slow steps goes to stderr in the CLI, leaving stdout for results."""
    return lambda message: print(message, end="", file=sys.stderr, flush=True)
