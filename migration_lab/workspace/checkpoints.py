"""Chapter checkpoints and the reset: where a chapter starts, and going back there.

A checkpoint is the state a chapter starts from: ai-service's files (the
pristine baseline in `checkpoints/baseline/`, plus model edits and revision
files of earlier chapters) and the database (emptied, upgraded to a target,
seeded with rows). `reset` restores both, in well under a second, so every
chapter runs in any order, and again.
"""

import hashlib
import shutil
import time
from dataclasses import dataclass, field, replace

import sqlalchemy as sa

from ..errors import LabError
from ..lab import Lab
from ..project import Project
from . import deletions, interruptions, templates, writable
from .backups import Backup, Backups
from .baseline import BASELINE, REVISIONS, pristine_files
from .edits import ModelEdit, add_column

SEED_PROFILES = """
INSERT INTO user_profiles (name, email) VALUES
    ('Ada Lovelace', 'ada@example.org'),
    ('Grace Hopper', 'grace@example.org'),
    ('Alan Turing', 'alan@example.org');
INSERT INTO user_settings (user_id, theme) SELECT id, 'dark' FROM user_profiles;
INSERT INTO job_entries (user_id, prompt) SELECT id, 'summarise my inbox' FROM user_profiles;
"""
SEED_EMAILS = ("ada@example.org", "grace@example.org", "alan@example.org")
SEED_PHONES = """
UPDATE user_profiles SET phone_number = '+44 20 7946 0001' WHERE name = 'Ada Lovelace';
UPDATE user_profiles SET phone_number = '+1 202 555 0102' WHERE name = 'Grace Hopper';
"""
PHONE_NUMBER = add_column("UserProfile", "phone_number = Column(String, nullable=True)")


@dataclass(frozen=True)
class Checkpoint:
    """Where a chapter starts: files, database revision and rows."""

    edits: tuple[ModelEdit, ...] = ()
    revisions: tuple[str, ...] = ()  # file names in checkpoints/revisions/
    target: str = "head"
    seed: tuple[str, ...] = field(default=(SEED_PROFILES,))

    def fingerprint(self) -> str:
        """12 hex digits that change whenever what the checkpoint puts in the database changes."""
        digest = hashlib.sha256()
        main = (BASELINE / "main.py").read_text()
        for edit in self.edits:
            main = edit(main)
        digest.update(main.encode())
        files = sorted(BASELINE.glob("versions/*.py")) + [REVISIONS / name for name in sorted(self.revisions)]
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        digest.update(self.target.encode())
        for sql in self.seed:
            digest.update(sql.encode())
        return digest.hexdigest()[:12]


BASELINE_CHECKPOINT = Checkpoint()
WITH_PHONE_NUMBER = Checkpoint(
    edits=(PHONE_NUMBER,),
    revisions=("a1c4e7f20b13_add_phone_number_to_profile.py",),
    seed=(SEED_PROFILES, SEED_PHONES),
)


@dataclass(frozen=True)
class ResetReport:
    revision: tuple[str, ...]
    tables: int
    rows: int
    seconds: float
    backup: Backup | None = None
    interrupted: interruptions.Interrupted | None = None  # a reset or restore killed before this one: its backup

    def __str__(self) -> str:
        at = ", ".join(self.revision) or "base (empty)"
        text = (
            f"ai-service/ files and the database are reset: database at {at}, {self.tables} tables, {self.rows} rows."
        )
        earlier = self.interrupted.behind() if self.interrupted else None
        return "\n".join(str(part) for part in (text, self.backup, earlier) if part)


def restore_files(project: Project, checkpoint: Checkpoint, why: str = "a reset of the lab") -> None:
    """ai-service's models, env.py, database_url.py, alembic.ini and versions/ exactly as the checkpoint has them.

    Revision files the checkpoint lacks are deleted and recorded (`deletions`), saying `why`.
    """
    main = BASELINE.joinpath("main.py").read_text()
    for edit in checkpoint.edits:
        main = edit(main)
    project.service_dir.joinpath("main.py").write_text(main)
    shutil.copy(BASELINE / "env.py", project.service_dir / "migrations" / "env.py")
    shutil.copy(BASELINE / "database_url.py", project.service_dir / "database_url.py")
    shutil.copy(BASELINE / "alembic.ini", project.service_dir / "alembic.ini")  # the upgrade below reads it
    wanted = {p.name: p for p in BASELINE.joinpath("versions").glob("*.py")}
    wanted.update({name: REVISIONS / name for name in checkpoint.revisions})
    project.versions_dir.mkdir(parents=True, exist_ok=True)
    # A link goes too, even to a wanted name: the checkpoint's copy must not be written into the link's target.
    stale = [p for p in project.versions_dir.glob("*.py") if p.name not in wanted or p.is_symlink()]
    deletions.delete(project, stale, why)
    shutil.rmtree(project.versions_dir / "__pycache__", ignore_errors=True)
    for name, source in wanted.items():
        shutil.copy(source, project.versions_dir / name)


def checkpoint_files(checkpoint: Checkpoint) -> dict[str, bytes]:
    """{path under ai-service/: content} of the files the checkpoint restores."""
    main = BASELINE.joinpath("main.py").read_text()
    for edit in checkpoint.edits:
        main = edit(main)
    files = {
        "main.py": main.encode(),
        "migrations/env.py": (BASELINE / "env.py").read_bytes(),
        "database_url.py": (BASELINE / "database_url.py").read_bytes(),
        "alembic.ini": (BASELINE / "alembic.ini").read_bytes(),
    }
    files.update({f"migrations/versions/{p.name}": p.read_bytes() for p in BASELINE.joinpath("versions").glob("*.py")})
    files.update({f"migrations/versions/{name}": (REVISIONS / name).read_bytes() for name in checkpoint.revisions})
    return files


def at_checkpoint(lab: Lab, checkpoint: Checkpoint) -> bool:
    """The lab is where `checkpoint` puts it: its files exactly, and nothing changed since the last reset."""
    service = lab.project.service_dir
    versions = {f"migrations/versions/{p.name}" for p in lab.project.versions_dir.glob("*.py")}
    wanted = checkpoint_files(checkpoint)
    if versions != {path for path in wanted if path.startswith("migrations/versions/")}:
        return False
    if any(
        not (service / path).is_file() or (service / path).read_bytes() != content for path, content in wanted.items()
    ):
        return False
    return Backups(lab.project, lab.db.url).unchanged_since_reset()


def reset(lab: Lab, checkpoint: Checkpoint) -> ResetReport:
    """Restore files and database to the checkpoint, after backing up the learner's work.

    The database is reached (and the migration lock taken) before any file is
    touched: with the database down, nothing changes and a LabError says what to do.
    A workshop learner's database is cloned again from the checkpoint's template
    when the server has it (tens of ms, see `templates`); otherwise it is wiped,
    upgraded and seeded.
    """
    started = time.perf_counter()
    backups = Backups(lab.project, lab.db.url)
    with lab.runner.exclusive() as conn:
        # Before the backup and the wipe: a file it cannot write changes nothing (found after the wipe, an
        # immutable revision file left an empty database and a PermissionError traceback).
        writable.check(lab.project, [lab.project.service_dir / rel for rel in checkpoint_files(checkpoint)], "reset")
        left = interruptions.found(lab.project)  # a reset or restore killed half-way: its backup is named too
        backup = backups.save(pristine_files())  # what is there now: the half-done state, or work done since
        marked = backup.name if backup else left.backup if left else None
        try:
            with interruptions.under_way(lab.project, "reset", marked):
                report = _reset_under_lock(lab, checkpoint, conn, backups, backup, started)
            return replace(report, interrupted=left if left and left.backup else None)
        except (LabError, sa.exc.DBAPIError, OSError, KeyboardInterrupt) as error:
            if backup is None and isinstance(error, OSError):  # nothing to name, but still no traceback
                raise LabError(
                    f"The reset stopped half-way: {error}. Nothing of yours was lost (nothing had changed since "
                    "the last reset), but files and database may not match now.",
                    "Fix what it says (a full disk, a file you cannot write), then reset again: it puts both back.",
                ) from error
            if backup is None:
                raise
            what = (
                error.what
                if isinstance(error, LabError)
                else "The reset was interrupted (Ctrl-C, or the kernel's stop button) half-way."
                if isinstance(error, KeyboardInterrupt)
                else str(error).strip().splitlines()[0]
            )
            raise (type(error) if isinstance(error, LabError) else LabError)(
                f"{what} Your work as it was before this reset is in .lab/backups/{backup.name}/.",
                (error.next_step + " " if isinstance(error, LabError) else "")
                + f"To go back to it instead: `python -m migration_lab restore {backup.name}`.",
            ) from error


def _reset_under_lock(
    lab: Lab, checkpoint: Checkpoint, conn: sa.Connection, backups: Backups, backup: Backup | None, started: float
) -> ResetReport:
    """The reset's work, under the migration lock, once the learner's work is backed up."""
    kept = f" (your copy is in .lab/backups/{backup.name}/)" if backup else ""
    why = f"a reset of the lab{kept}"
    template = templates.reclone_source(conn, checkpoint.fingerprint()) if lab.backend.name == "url" else None
    if template is not None:
        restore_files(lab.project, checkpoint, why)  # first: the reclone ends `conn`, and with it the lock
        templates.reclone(lab.db, conn, template)
    else:
        # The wipe before the files: one another session's lock refuses leaves the files as they were too, never
        # the checkpoint's files over a database that still holds the learner's revisions.
        lab.db.wipe(conn)
        restore_files(lab.project, checkpoint, why)  # the checkpoint's revisions, for its upgrade
        result = lab.runner.run(["upgrade", checkpoint.target], conn=conn)
        if not result.ok:
            raise LabError(
                f"Reset could not upgrade the database: {result.error}",
                "Run `python -m migration_lab nuke`, then reset again."
                if lab.db.is_reachable()
                else "The database stopped: start it (`python -m migration_lab up`), then reset again.",
            )
        with conn.begin():
            for sql in checkpoint.seed:
                conn.execute(sa.text(sql))
        conn.commit()
    # Still under the lock's guard: a nuke waits until the reset has read back what it made.
    with lab.db.connect() as after:
        heads = lab.db.heads(after)
        tables = [t for t in sa.inspect(after).get_table_names() if t != "alembic_version"]
        rows = sum(after.scalar(sa.select(sa.func.count()).select_from(sa.table(t))) or 0 for t in tables)
    backups.remember_reset()
    lab.point_env_file()
    return ResetReport(heads, len(tables), rows, time.perf_counter() - started, backup)
