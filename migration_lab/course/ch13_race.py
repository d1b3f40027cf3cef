"""Two replicas of a service's migration entrypoint, raced for real on a copy of the lab database.

Two processes (each forked by a warm process of its own, ch13_replicas.py) are held behind
a barrier (an advisory lock the race holds) and released at the same moment,
on a throw-away copy of the lab database one release behind head. Without a
guard both start the same revision and one fails; with a session advisory
lock around `alembic.command.upgrade`, one migrates and the other waits and
finds head. The race also holds alembic_version until both replicas wait for a
lock at once: the first is held at the start of its migration, so a replica
that only starts later (a sleep in env.py) meets it there instead of finding
it done, as on a slow deploy.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..lab import Lab

# The race's starting barrier: each replica waits for this lock, which the race holds until both wait.
BARRIER_KEY = 13_0001
REPLICA = Path(__file__).with_name("ch13_replicas.py")  # run by path: the harness around an entrypoint, two processes
REPLICA_TIMEOUT = 60.0  # seconds a replica may take before the race gives up on it (a guard that never lets go)
# How long the first replica is held at the start of its migration while the race waits for the second to wait too:
# longer than any stagger a sleep in env.py would give, well inside REPLICA_TIMEOUT.
HOLD_SECONDS = 20.0
CLI = "alembic upgrade head"  # what an init container runs: alembic's own command line, with the service's env.py
# Where the race starts: the release is every revision above the chapter's start, two of them, so that a guard that
# lets go after the first revision (a transaction-level lock, with transaction_per_migration) shows.
RELEASE_BASE = "a1c4e7f20b13"


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
    migrate.py), or CLI: `alembic upgrade head` itself, as an init container
    runs it. Without one, the kit's own `python -m migration_lab.deploy`
    (with or without its lock).
    """
    head = tuple(lab.runner.script().get_heads())
    if script == CLI:
        target, what = ["-m", "alembic", "upgrade", "head"], f"`{CLI}`"
    elif script is not None:
        path = lab.project.service_dir / script
        target, what = [str(path)], f"`python {path.name}`"
    else:
        target = ["-m", "migration_lab.deploy"] + ([] if lock else ["--no-lock"])
        what = f"`python -m migration_lab.deploy{'' if lock else ' --no-lock'}`"
    with lab.db.copy() as copy:
        _one_release_behind(lab, copy)
        start = copy.heads()
        replicas = _run_replicas(copy, lab.project.service_dir, target)
        return Race(what, start, head, replicas, copy.heads())


def _one_release_behind(lab: Lab, copy: LabDatabase) -> None:
    """A copy above the release's base is taken down to it: a race with nothing to do shows nothing, and the whole
    release (two revisions) is raced."""
    heads = copy.heads()
    if len(heads) != 1 or heads[0] == RELEASE_BASE:
        return
    if RELEASE_BASE not in {s.revision for s in lab.runner.script().iterate_revisions(heads[0], "base")}:
        return  # below it (or on another branch): raced from where it is
    result = lab.runner.on(copy).run(["downgrade", RELEASE_BASE])
    if not result.ok:
        raise RuntimeError(f"could not take the race's copy one release down: {result.error}")


class _Harness:
    """The warm processes that fork the replicas (ch13_replicas.py), one per replica, and the files their stderr
    goes to.

    One per replica, each with its own PYTHONHASHSEED, as two containers have: two forks of one process share its
    hash seed, so a guard keyed on hash("some name") would take the same lock in both replicas here, and two
    different ones in production.
    """

    def __init__(self) -> None:
        seeds = random.sample(range(1, 2**32), 2)  # 0 would turn hash randomisation off: two distinct others
        self.logs = [tempfile.TemporaryFile() for _ in seeds]  # noqa: SIM115  (live as long as their processes)
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(REPLICA)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": str(seed)},
                start_new_session=True,  # its own process group: a race that times out ends it and its replica
            )
            for seed, log in zip(seeds, self.logs, strict=True)
        ]

    @property
    def dead(self) -> bool:
        return any(process.poll() is not None for process in self.processes)

    def start(self, race: dict[str, Any]) -> None:
        for number, process in enumerate(self.processes):
            assert process.stdin is not None
            process.stdin.write(json.dumps({**race, "numbers": [number]}).encode() + b"\n")
            process.stdin.flush()

    def kill(self) -> None:
        """Both warm processes and what they forked: a replica may outlive the warm process that forked it."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def last_words(self) -> str:
        dead = [n for n, process in enumerate(self.processes) if process.poll() is not None] or [0]
        log = self.logs[dead[0]]
        log.seek(0)
        return (log.read().decode(errors="replace").strip().splitlines() or ["no reason given"])[-1]


_harness: _Harness | None = None  # started by the first race of this process, again if it died


def _run_replicas(copy: LabDatabase, service_dir: Path, target: list[str]) -> tuple[Replica, ...]:
    """Both replicas, held at the barrier until both wait, then let go at once."""
    global _harness
    with tempfile.TemporaryDirectory() as tmp, copy.connect() as barrier:
        barrier.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": BARRIER_KEY})
        barrier.commit()
        results = [Path(tmp) / f"replica{n}.json" for n in range(2)]
        if _harness is None or _harness.dead:
            if _harness is not None:
                _harness.kill()  # one warm process died: the other, and any replica left, go before two new ones
            _harness = _Harness()
        harness = _harness
        harness.start(
            {
                "service_dir": str(service_dir),
                "database_url": copy.url,
                "results": tmp,
                "barrier_key": BARRIER_KEY,
                "target": target,
            }
        )
        deadline = time.monotonic() + REPLICA_TIMEOUT

        def finished() -> bool:
            return harness.dead or all(r.exists() for r in results)

        _wait_until_two(barrier, BARRIER_WAITS, {"key": BARRIER_KEY}, finished, deadline)
        with copy.connect() as hold:
            held = _hold_version_table(hold)
            barrier.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": BARRIER_KEY})
            barrier.commit()
            if held is not None:  # until both wait, or one is done already (it gave up, or skipped: no turn to take)
                one_done = lambda: harness.dead or any(r.exists() for r in results)  # noqa: E731
                until = min(deadline, time.monotonic() + HOLD_SECONDS)
                _wait_until_two(barrier, LOCK_WAITS, {"hold": held}, one_done, until)
            hold.rollback()  # the version table is theirs: whoever is let through first migrates
        while not finished() and time.monotonic() < deadline:
            time.sleep(0.01)
        if harness.dead:
            why = "the replica process died: " + harness.last_words()
        else:
            why = f"still running after {REPLICA_TIMEOUT:.0f} s: does a lock never get released?"
            if not finished():
                harness.kill()  # a replica that never finishes: both go, with their warm processes
                _harness = None
        return tuple(_outcome(r, why) for r in results)


def _hold_version_table(hold: sa.Connection) -> int | None:
    """Lock alembic_version against every reader, in an open transaction: the backend's pid, or None without one.

    A replica's upgrade starts by reading it, so this holds the first replica at the start of its migration for as
    long as the race wants, whatever its timing. A guard (a lock the other replica waits for) shows as a lock wait
    there; a stagger (a sleep before configure()) only delays the second replica until it reads the table too.
    """
    if hold.scalar(sa.text("SELECT to_regclass('alembic_version') IS NOT NULL")):
        hold.execute(sa.text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        return int(hold.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
    hold.rollback()
    return None


# Backends of this database waiting for a lock, but the race's own (`:hold`, the one holding alembic_version).
LOCK_WAITS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
    "AND pid NOT IN (pg_backend_pid(), :hold)"
)
# The replicas waiting at the barrier.
BARRIER_WAITS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = :key "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _wait_until_two(
    barrier: sa.Connection, waiting: str, values: dict[str, int], done: Callable[[], bool], deadline: float
) -> None:
    """Until `waiting` counts two (both replicas wait: at the barrier, or for a lock at once), or `done`, or
    `deadline` (a crash, a dead harness; a guard that polls instead of waiting is let through then)."""
    while barrier.scalar(sa.text(waiting), values) < 2:
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
