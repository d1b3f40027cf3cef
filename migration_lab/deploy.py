"""Migrations in production (chapter 13): who runs `upgrade head`, and what CI checks before it does.

Two replicas of a service that both run `alembic upgrade head` as they start
are raced for real: two processes (forked by one warm process, replica.py),
held behind a barrier (an advisory lock the race holds) and released at the same moment, on a throw-away copy of the lab
database one release behind head. Without a guard both start the same
revision and one fails; with a session advisory lock around
`alembic.command.upgrade`, one migrates and the other waits and finds head.

    python -m migration_lab.deploy            # the guarded entrypoint: lock, upgrade head, unlock
    python -m migration_lab.deploy --no-lock  # the same without the lock (what a naive entrypoint does)

Also here: the release the chapter deploys (a model change and its revision, a
slow backfill included), what `alembic check` cannot see (a schema compared
with one built by the migrations alone), and the exercise's checks.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from IPython.display import Markdown, display

from .checks import Check
from .db import LabDatabase
from .lab import Lab
from .runner import Runner
from .workspace import add_column, apply_edit, model_attributes

# The key the kit's guarded entrypoint locks: any bigint every replica agrees on.
DEPLOY_LOCK_KEY = 13_2026
# The race's starting barrier: each replica waits for this lock, which the race holds until both wait.
BARRIER_KEY = 13_0001
REPLICA = Path(__file__).with_name("replica.py")  # run by path: the harness around an entrypoint, two processes
REPLICA_TIMEOUT = 60.0  # seconds a replica may take before the race gives up on it (a guard that never lets go)

RELEASE_REVISION = "e5a9c2d7b3f1"
RELEASE_FILE = f"{RELEASE_REVISION}_add_plan_to_profile.py"
PLAN_COLUMN = 'plan = Column(String(20), nullable=False, server_default="free")'
RELEASE = '''"""Add plan to profile

Revision ID: e5a9c2d7b3f1
Revises: a1c4e7f20b13
Create Date: 2026-12-01 12:00:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "e5a9c2d7b3f1"
down_revision: Union[str, Sequence[str], None] = "a1c4e7f20b13"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("user_profiles", sa.Column("plan", sa.String(length=20), server_default="free", nullable=False))
    # The first profile ever created is grandfathered into the team plan.
    oldest = op.get_bind().execute(sa.text("SELECT min(id) FROM user_profiles")).scalar()
    op.execute(sa.text("UPDATE user_profiles SET plan = 'team' WHERE id = :id").bindparams(id=oldest))
    # A real release's backfill takes a while; a third of a second stands in for it.
    op.execute("SELECT pg_sleep(0.3)")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("user_profiles", "plan")
'''

# What a service's container runs before the app starts, as teams first write it: no guard.
ENTRYPOINT = "migrate.py"
UNGUARDED_ENTRYPOINT = '''"""Bring the database to head before the app starts (`python migrate.py && uvicorn ...`)."""

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from dotenv import load_dotenv
from sqlalchemy import create_engine, pool, text

HERE = Path(__file__).resolve().parent


def main() -> None:
    load_dotenv(HERE / ".env")  # as env.py does: DATABASE_URL from the container, else from ai-service/.env
    config = Config(HERE / "alembic.ini")
    engine = create_engine(os.environ["DATABASE_URL"], poolclass=pool.NullPool)
    with engine.connect() as connection:
        config.attributes["connection"] = connection  # env.py runs the migrations on this connection
        command.upgrade(config, "head")


if __name__ == "__main__":
    main()
'''
GUARD_LOCK = '        connection.execute(text("SELECT pg_advisory_lock(13)"))\n        connection.commit()\n'
GUARD_UNLOCK = '        connection.execute(text("SELECT pg_advisory_unlock(13)"))\n        connection.commit()\n'


# --- the release and the entrypoint --------------------------------------------------------


def prepare_release(lab: Lab) -> str:
    """The chapter's exercise start: a release to deploy (model + revision) and the service's naive entrypoint.

    A migrate.py the learner changed is kept as migrate.py.bak (resets save main.py and revisions only).
    """
    service = lab.project.service_dir
    if "plan" not in model_attributes((service / "main.py").read_text(), "UserProfile"):  # run again: once
        apply_edit(service / "main.py", add_column("UserProfile", PLAN_COLUMN), lab.project.root)
    (lab.project.versions_dir / RELEASE_FILE).write_text(RELEASE)
    entrypoint = service / ENTRYPOINT
    kept = ""
    if entrypoint.is_file() and entrypoint.read_text() != UNGUARDED_ENTRYPOINT:
        entrypoint.with_name(ENTRYPOINT + ".bak").write_text(entrypoint.read_text())
        kept = " Your earlier migrate.py is kept as ai-service/migrate.py.bak."
    entrypoint.write_text(UNGUARDED_ENTRYPOINT)
    return (
        "The release to deploy: UserProfile.plan in main.py and its revision "
        f"ai-service/migrations/versions/{RELEASE_FILE} (not applied yet). The service's entrypoint, "
        f"ai-service/{ENTRYPOINT}, runs `upgrade head` before the app starts.{kept}"
    )


def upgrade_head(service_dir: Path, url: str, lock: bool = True) -> None:
    """`alembic upgrade head` for a service, guarded by a session advisory lock unless lock=False.

    The lock is taken on the very connection alembic migrates on: a session
    lock survives the transactions alembic commits (one per revision) and goes
    with the session if the process dies, so a crashed replica never leaves
    the others waiting. The replica that gets it second finds head: nothing to do.
    """
    config = Config(service_dir / "alembic.ini")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if lock:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": DEPLOY_LOCK_KEY})
                connection.commit()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            if lock:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": DEPLOY_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


def show_file(lab: Lab, path: str) -> None:
    """A file of ai-service/, highlighted, as the editor shows it."""
    text = (lab.project.service_dir / path).read_text().rstrip()
    display(Markdown(f"`ai-service/{path}`:\n\n```python\n{text}\n```"))


def show_guarded_entrypoint() -> None:
    """The kit's guarded `upgrade head`, as its source says (`python -m migration_lab.deploy` runs it)."""
    source = inspect.getsource(upgrade_head)
    display(Markdown(f"`migration_lab/deploy.py` (`DEPLOY_LOCK_KEY = {DEPLOY_LOCK_KEY}`):\n\n```python\n{source}```"))


# What alembic.ini needs to format every revision it writes with ruff (`python -m ruff`, alembic's own Python).
POST_WRITE_HOOKS = """[post_write_hooks]
hooks = ruff_format
ruff_format.type = module
ruff_format.module = ruff
ruff_format.options = format REVISION_SCRIPT_FILENAME
"""


def show_post_write_hooks() -> None:
    """The [post_write_hooks] section, for a project whose venv has ruff (the course's venv does not)."""
    display(Markdown(f"`alembic.ini`:\n\n```ini\n{POST_WRITE_HOOKS}```"))


# --- the race ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    """What one replica did: the revisions it applied, its error, and where the database was as it exited."""

    applied: tuple[tuple[str, str], ...]  # (from, to) of each upgrade step it ran
    error: str | None
    at_exit: tuple[str, ...]

    @property
    def problem(self) -> str | None:
        """Its error, or an upgrade it ran that did not stay (rolled back with a transaction never committed)."""
        if self.error:
            return self.error
        if self.applied and self.applied[-1][1] not in self.at_exit:
            at = ", ".join(self.at_exit) or "base"
            return f"its upgrade was rolled back, the database at {at} as it exited: was its transaction committed?"
        return None

    def describe(self, head: tuple[str, ...]) -> str:
        if self.problem:
            return f"✘ FAILED: {self.problem}"
        if self.applied:
            steps = ", ".join(f"{down or 'base'} → {up}" for down, up in self.applied)
            return f"✔ upgraded {steps}"
        if self.at_exit == head:
            return "✔ found the database at head: nothing to do"
        return f"✘ exited without upgrading, the database still at {', '.join(self.at_exit) or 'base'}"


@dataclass(frozen=True)
class Race:
    what: str
    start: tuple[str, ...]
    head: tuple[str, ...]
    replicas: tuple[Replica, ...]
    end: tuple[str, ...]

    @property
    def failures(self) -> list[Replica]:
        return [r for r in self.replicas if r.problem]

    @property
    def one_migrated_one_waited(self) -> bool:
        """Exactly one replica upgraded; the other did nothing, and only once the database was at head."""
        upgraded = [r for r in self.replicas if r.applied and not r.problem]
        waited = [r for r in self.replicas if not r.applied and not r.problem and r.at_exit == self.head]
        return len(upgraded) == 1 and len(waited) == 1 and self.end == self.head

    def __str__(self) -> str:
        # Replicas in a stable order (successes first): which of the two wins the race is chance.
        ordered = sorted(self.replicas, key=lambda r: (r.problem is not None, not r.applied))
        lines = [r.describe(self.head) for r in ordered]
        at = ", ".join(self.start) or "base"
        return "\n".join(
            [
                f"Two replicas run {self.what} at the same moment, on a copy of your database at {at}:",
                *(f"  replica: {line}" for line in lines),
                f"Afterwards the database is at {', '.join(self.end) or 'base'}.",
            ]
        )


def race(lab: Lab, script: str | Path | None = None, lock: bool = True) -> Race:
    """Start two replicas of an entrypoint at once on a copy of the lab database, one release behind head.

    `script` is an entrypoint file, relative to ai-service/ (the service's
    migrate.py); without one, the kit's own `python -m migration_lab.deploy`
    (with or without its lock).
    """
    script = lab.project.service_dir / script if script is not None else None
    head = tuple(lab.runner.script().get_heads())
    what = f"`python {script.name}`" if script else f"`python -m migration_lab.deploy{'' if lock else ' --no-lock'}`"
    with lab.db.copy() as copy:
        _one_release_behind(lab, copy, head)
        start = copy.heads()
        replicas = _run_replicas(copy, lab.project.service_dir, script, lock)
        return Race(what, start, head, replicas, copy.heads())


def _one_release_behind(lab: Lab, copy: LabDatabase, head: tuple[str, ...]) -> None:
    """A copy already at head is taken one revision down: a race with nothing to do shows nothing."""
    if copy.heads() != head or len(head) != 1:
        return
    down = lab.runner.script().get_revision(head[0])
    if down is None or not isinstance(down.down_revision, str):
        return
    result = Runner(lab.project, copy).downgrade(down.down_revision)
    if not result.ok:
        raise RuntimeError(f"could not take the race's copy one release down: {result.error}")


class _Harness:
    """The warm process that forks replicas (replica.py), and the file its stderr goes to."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the process it logs)
        self.process = subprocess.Popen(
            [sys.executable, str(REPLICA)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            start_new_session=True,  # its own process group: a race that times out ends it and its replicas
        )

    @property
    def dead(self) -> bool:
        return self.process.poll() is not None

    def start(self, race: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(race).encode() + b"\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def last_words(self) -> str:
        self.log.seek(0)
        return (self.log.read().decode(errors="replace").strip().splitlines() or ["no reason given"])[-1]


_harness: _Harness | None = None  # started by the first race of this process, again if it died


def _run_replicas(copy: LabDatabase, service_dir: Path, script: Path | None, lock: bool) -> tuple[Replica, ...]:
    """Both replicas, held at the barrier until both wait, then let go at once."""
    global _harness
    with tempfile.TemporaryDirectory() as tmp, copy.connect() as barrier:
        barrier.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": BARRIER_KEY})
        barrier.commit()
        results = [Path(tmp) / f"replica{n}.json" for n in range(2)]
        if _harness is None or _harness.dead:
            _harness = _Harness()
        harness = _harness
        harness.start(
            {
                "service_dir": str(service_dir),
                "database_url": copy.url,
                "results": tmp,
                "barrier_key": BARRIER_KEY,
                "target": [str(script)] if script else ["-m", "migration_lab.deploy"] + ([] if lock else ["--no-lock"]),
            }
        )
        deadline = time.monotonic() + REPLICA_TIMEOUT

        def finished() -> bool:
            return harness.dead or all(r.exists() for r in results)

        _wait_at_barrier(barrier, finished, deadline)
        barrier.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": BARRIER_KEY})
        barrier.commit()
        while not finished() and time.monotonic() < deadline:
            time.sleep(0.01)
        if harness.dead:
            why = "the replica process died: " + harness.last_words()
        else:
            why = f"still running after {REPLICA_TIMEOUT:.0f} s: does a lock never get released?"
            if not finished():
                harness.kill()  # a replica that never finishes: both go, with the harness
                _harness = None
        return tuple(_outcome(r, why) for r in results)


def _wait_at_barrier(barrier: sa.Connection, done: Callable[[], bool], deadline: float) -> None:
    """Until both replicas wait for the barrier, or they have finished (a crash) or the harness died."""
    waiting = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = :key "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while barrier.scalar(waiting, {"key": BARRIER_KEY}) < 2:
        barrier.rollback()
        if done() or time.monotonic() > deadline:
            return
        time.sleep(0.01)
    barrier.rollback()


def _outcome(result: Path, why: str) -> Replica:
    if not result.is_file():
        return Replica((), why, ())
    data = json.loads(result.read_text())
    return Replica(tuple((d, u) for d, u in data["applied"]), data["error"], tuple(data["at_exit"]))


# --- what `alembic check` cannot see ------------------------------------------------------------

CATALOG = {
    "CHECK constraint": "SELECT conrelid::regclass::text || '.' || conname || ' ' || pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace",
    "enum value": "SELECT t.typname || '.' || e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
    "WHERE t.typnamespace = 'public'::regnamespace",
    "trigger": "SELECT tgrelid::regclass::text || '.' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = tgrelid "
    "WHERE NOT tgisinternal AND c.relnamespace = 'public'::regnamespace",
    "view": "SELECT viewname || ' AS ' || definition FROM pg_views WHERE schemaname = 'public'",
}


def _catalog(conn: sa.Connection) -> set[tuple[str, str]]:
    return {(kind, row) for kind, query in CATALOG.items() for row in conn.scalars(sa.text(query))}


@dataclass(frozen=True)
class Drift:
    only_here: tuple[tuple[str, str], ...]  # in the lab database, not made by the migrations
    only_migrations: tuple[tuple[str, str], ...]  # made by the migrations, missing here

    def __str__(self) -> str:
        if not (self.only_here or self.only_migrations):
            return "No drift: CHECK constraints, enum values, triggers and views are what the migrations make."
        lines = ["Drift that `alembic check` does not see:"]
        lines += [f"  + {kind} {what}: in your database, no migration makes it" for kind, what in self.only_here]
        lines += [
            f"  - {kind} {what}: the migrations make it, your database lacks it" for kind, what in self.only_migrations
        ]
        return "\n".join(lines)


def drift(lab: Lab) -> Drift:
    """Compare the lab database with one the migrations alone build (a copy, wiped, upgraded to head)."""
    with lab.db.connect() as conn:
        here = _catalog(conn)
    with lab.db.copy() as fresh:
        with fresh.connect() as conn:
            fresh.wipe(conn)
            conn.commit()
        result = Runner(lab.project, fresh).upgrade("head")
        if not result.ok:
            raise RuntimeError(f"the migrations alone do not reach head: {result.error}")
        with fresh.connect() as conn:
            built = _catalog(conn)
    return Drift(tuple(sorted(here - built)), tuple(sorted(built - here)))


# --- the exercise ---------------------------------------------------------------------------------


def exercise(lab: Lab, answer: object = None) -> list[Check]:
    """Make the service's migrate.py safe for two replicas, then deploy the release."""
    entrypoint = lab.project.service_dir / ENTRYPOINT
    if not entrypoint.is_file():
        return [
            Check(
                f"ai-service/{ENTRYPOINT} exists",
                False,
                (
                    "The service's entrypoint is gone: the exercise needs it to race two replicas.",
                    "Reset the chapter's exercise: ch.start_exercise() writes it again (your files are kept).",
                ),
            )
        ]
    raced = race(lab, entrypoint)
    failed = raced.failures
    return [
        Check(
            f"two replicas of {ENTRYPOINT} started at once: neither fails",
            not failed,
            (
                "Both replicas read the database one release behind and start the same revision; one of them ends "
                f"badly ({failed[0].problem if failed else ''}). Make them take turns: the second must wait until "
                "the first has finished, then find nothing to do.",
                "PostgreSQL's advisory locks: `SELECT pg_advisory_lock(<key>)` waits until no other session holds "
                "that key. Take it on the connection alembic migrates on, before command.upgrade(), and release it "
                "with pg_advisory_unlock(<key>) after; commit after taking it (env.py starts its own transactions).",
                "In main() of ai-service/migrate.py, inside `with engine.connect() as connection:` and before "
                f'`command.upgrade`:\n{GUARD_LOCK}and after `command.upgrade(config, "head")`:\n{GUARD_UNLOCK}',
            ),
        ),
        Check(
            "exactly one replica upgrades; the other waits and finds the database at head",
            raced.one_migrated_one_waited,
            (
                f"What the race saw:\n{raced}\nThe second replica must wait (not skip, not fail) until the "
                "database is at head: an app that starts before then serves the old schema.",
                "pg_advisory_lock waits; pg_try_advisory_lock returns false at once. Wait, then run the upgrade: "
                "alembic finds head and does nothing.",
                f"Take the lock with\n{GUARD_LOCK}before command.upgrade, and release it after.",
            ),
        ),
        Check(
            "the release is deployed: your database is at head",
            lab.db.heads() == tuple(lab.runner.script().get_heads()),
            (
                "Your migrate.py is safe now: deploy the release to your own database with it.",
                "In a terminal, `cd ai-service` and `python migrate.py` (it runs upgrade head); or the "
                "console's upgrade head button.",
                'ch.alembic("upgrade head")',
            ),
        ),
    ]


# --- command line --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m migration_lab.deploy",
        description="Bring the database in $DATABASE_URL to head, for the service in the current folder.",
    )
    parser.add_argument("--no-lock", action="store_true", help="skip the advisory lock (two replicas then collide)")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set: run `python -m migration_lab up`, then `python -m migration_lab url`.")
        return 2
    upgrade_head(Path.cwd(), url, lock=not args.no_lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
