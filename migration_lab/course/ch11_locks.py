"""Chapter 11, Locks and downtime: the calls its cells make, and its exercise's checks.

Every demonstration runs against the real lab database while `traffic`
keeps the ai-api busy, and is bounded: a blocked statement is stopped by its
own lock_timeout or, after `CANCEL_AFTER` seconds, by the kit
(pg_cancel_backend), which says so. What is printed is a stable statement
(which locks were seen, whether requests failed), never a count or a timing,
so the notebook's saved output is the same on every run and on both routes.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..database.sql import quote
from ..lab import Lab
from ..running.runner import RunResult
from ..workspace import checkpoints
from . import checks
from .ch11_traffic import CLIENT_TIMEOUT, Seen, Tally, busy_app
from .checks import Check

TABLE = "user_profiles"
CANCEL_AFTER = 2.5  # seconds the kit lets a statement wait for its lock before it cancels it (> CLIENT_TIMEOUT)
READER_HOLDS = 2.5  # seconds the exercise's report keeps its transaction open (> CLIENT_TIMEOUT)
ATTEMPTS = 6  # how often upgrade_while_busy tries a migration that gave up on its lock
PAUSE = 0.3  # seconds between two attempts
RECORD = Path(".lab") / "chapter-11-upgrade.json"  # the last upgrade_while_busy: what the check grades

# What each lock mode a statement takes on a table means for the app's requests.
LOCK_MEANS = {
    "AccessExclusiveLock": "blocks reads and writes while held",
    "ExclusiveLock": "blocks writes; reads go on",
    "ShareRowExclusiveLock": "blocks writes; reads go on",
    "ShareLock": "blocks writes; reads go on",
    "ShareUpdateExclusiveLock": "reads and writes go on",
    "RowExclusiveLock": "reads and writes go on",
    "RowShareLock": "reads and writes go on",
    "AccessShareLock": "reads and writes go on",
}


def _lab(where: Any) -> Lab:
    """A chapter (what the notebook holds) or a Lab."""
    return where if isinstance(where, Lab) else where.lab


# --- step 1 and 2: an ALTER behind a reader, with and without lock_timeout ------------------------


@dataclass(frozen=True)
class Outcome:
    """What one statement did to the app while it ran."""

    statement: str
    done: bool  # the statement succeeded
    stopped_by: str  # "", "lock_timeout", "statement_timeout" or "the lab"
    requests: Tally
    seen: Seen

    @property
    def blocked_by_reader(self) -> bool:
        return self.seen.has("migration", "waits for") and self.seen.has("report", "holds")

    def __str__(self) -> str:
        lines = [f"=> {self.statement};"]
        if self.done:
            lines.append("Done.")
        elif self.stopped_by == "the lab":
            lines.append(
                f"Still waiting for its lock after {CANCEL_AFTER} s: the lab cancelled it (pg_cancel_backend). "
                "Nothing changed."
            )
        elif self.stopped_by:
            lines.append(f"ERROR: canceling statement due to {self.stopped_by.replace('_', ' ')}. Nothing changed.")
        if self.blocked_by_reader:
            waits = ", ".join(self.seen.modes("migration", "waits for"))
            holds = ", ".join(self.seen.modes("report", "holds"))
            lines.append(
                f"pg_locks: the ALTER waited for {waits} on {TABLE}; the report, idle in transaction, held {holds}."
            )
        elif self.seen.has("migration", "holds"):
            lines.append(f"pg_locks: it took {', '.join(self.seen.modes('migration', 'holds'))} on {TABLE} at once.")
        if self.seen.has("request", "waits for"):
            lines.append(
                f"Requests queued behind it, each waiting for {', '.join(self.seen.modes('request', 'waits for'))}."
            )
        lines.append(self.requests.statement())
        return "\n".join(lines)


def _cancel_later(lab: Lab, pid: int, after: float) -> tuple[threading.Timer, threading.Event]:
    """A timer that cancels backend `pid`'s statement after `after` seconds; the event says it fired."""
    fired = threading.Event()

    def cancel() -> None:
        fired.set()  # before the cancel: the statement's error may reach its thread before this one returns
        with lab.db.connect() as conn:
            conn.scalar(sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
            conn.commit()

    timer = threading.Timer(after, cancel)
    timer.daemon = True
    timer.start()
    return timer, fired


def run_while_busy(
    lab: Lab,
    statement: str,
    lock_timeout: str | None = None,
    reader: bool = True,
    cancel_after: float = CANCEL_AFTER,
    show: bool = True,
) -> Outcome:
    """Run one statement (as psql would) while the app is busy and, if `reader`, a report sits idle in a transaction.

    The statement never waits longer than `cancel_after` seconds: its own
    lock_timeout stops it first, or the lab cancels it.
    """
    with busy_app(lab, reader=reader, show=show) as (traffic, _, panel):
        conn = lab.db.connect()
        try:
            pid = int(conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
            if lock_timeout is not None:
                conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": lock_timeout})
            timer, fired = _cancel_later(lab, pid, cancel_after)
            started = time.monotonic()
            stopped_by = ""
            try:
                conn.execute(sa.text(statement))
                conn.commit()
            except sa.exc.DBAPIError as error:
                conn.rollback()
                code = getattr(error.orig, "pgcode", None)
                if code == "55P03":
                    stopped_by = "lock_timeout"
                elif code == "57014":
                    stopped_by = "the lab" if fired.is_set() else "statement_timeout"
                else:
                    raise
            finally:
                timer.cancel()
            ended = time.monotonic()
        finally:
            conn.close()
        # Requests started while the statement ran; they finish (or fail) once it ends.
        time.sleep(0.1)
        seen = panel.seen
    return Outcome(statement, not stopped_by, stopped_by, traffic.tally(started, ended), seen)


def alter_while_busy(chapter: Any, statement: str, lock_timeout: str | None = None, reader: bool = True) -> None:
    """The notebook's call: run the statement under traffic (and a report idle in a transaction); say what happened."""
    print(run_while_busy(_lab(chapter), statement, lock_timeout, reader))


# --- step 3 to 5: what a statement locks, rewrites, leaves behind ---------------------------------

LOCKS_TAKEN = """
SELECT DISTINCT mode FROM pg_locks
WHERE pid = pg_backend_pid() AND relation = to_regclass(:table) AND granted ORDER BY 1
"""


def _relfilenode(conn: sa.Connection, table: str) -> int | None:
    return conn.scalar(sa.text("SELECT pg_relation_filenode(to_regclass(:t))"), {"t": table})


def run_sql(chapter: Any, statement: str, table: str = TABLE) -> None:
    """Run one statement as psql would; say which locks it took on `table` and whether it rewrote it.

    In a transaction, so pg_locks can be read before the commit; a statement
    that cannot run in one (CONCURRENTLY) runs on its own, as psql runs it.
    """
    lab = _lab(chapter)
    print(f"=> {statement};")
    concurrently = bool(re.search(r"(?i)\bconcurrently\b", statement))
    with lab.db.connect() as conn:
        before = _relfilenode(conn, table)
        conn.commit()
        try:
            if concurrently:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text(statement))
                modes: list[str] = []
            else:
                conn.execute(sa.text(statement))
                modes = list(conn.scalars(sa.text(LOCKS_TAKEN), {"table": table}))
                conn.commit()
        except sa.exc.DBAPIError as error:
            conn.rollback()
            print(f"ERROR: {str(error.orig).strip()}")
            return
        after = _relfilenode(conn, table)
        conn.commit()
    if concurrently:
        print(f"Ran outside a transaction (CONCURRENTLY): reads and writes on {table} went on.")
    elif modes:
        strongest = modes[0] if len(modes) == 1 else _strongest(modes)
        print(f"Locks it took on {table}: {', '.join(modes)} - {LOCK_MEANS.get(strongest, 'see the docs')}.")
    if before is not None and after is not None:
        print(
            f"{table} was REWRITTEN (new relfilenode): every row copied, under that lock."
            if before != after
            else f"{table} was not rewritten (same relfilenode)."
        )


def _strongest(modes: list[str]) -> str:
    order = list(LOCK_MEANS)
    return min(modes, key=lambda m: order.index(m) if m in order else len(order))


INDEXES = """
SELECT i.relname, x.indisvalid FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = to_regclass(:table) ORDER BY 1
"""


def invalid_indexes(lab: Lab, table: str = TABLE) -> list[str]:
    """The indexes of `table` PostgreSQL marks INVALID (a CREATE INDEX CONCURRENTLY that failed)."""
    with lab.db.connect() as conn:
        return [name for name, valid in conn.execute(sa.text(INDEXES), {"table": table}) if not valid]


def show_indexes(chapter: Any, table: str = TABLE) -> None:
    """The table's indexes, and which ones are INVALID (pg_index.indisvalid)."""
    with _lab(chapter).db.connect() as conn:
        rows = conn.execute(sa.text(INDEXES), {"table": table}).all()
    for name, valid in rows:
        print(f"{name}: {'valid' if valid else 'INVALID - never used by queries, yet kept up to date on every write'}")


def drop_invalid_indexes(chapter: Any, table: str = TABLE) -> None:
    """Drop every INVALID index of the table, concurrently (no lock that stops the app)."""
    lab = _lab(chapter)
    names = invalid_indexes(lab, table)
    if not names:
        print(f"{table} has no INVALID index.")
    for name in names:
        with lab.db.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}")
            )
        print(f"=> DROP INDEX CONCURRENTLY IF EXISTS {name};")


# --- the exercise: a migration applied while the app is busy ---------------------------------------

LOCK_NOT_AVAILABLE = "55P03"  # the SQLSTATE of a statement that gave up waiting for its lock (lock_timeout)


@dataclass(frozen=True)
class BusyUpgrade:
    result: RunResult
    attempts: int
    requests: Tally


def upgrade_under_traffic(
    lab: Lab, line: str = "upgrade head", reader_holds: float = READER_HOLDS, show: bool = True
) -> BusyUpgrade:
    """`alembic <line>` while the app is busy and a report holds its read lock for `reader_holds` seconds.

    A run that gave up on its lock (lock_timeout: SQLSTATE 55P03) is retried
    after a pause, as a deploy script would. The report always ends, so a
    migration without lock_timeout ends too; the requests it made wait are counted.
    """
    attempts = 0
    with busy_app(lab, reader=True, reader_holds=reader_holds, show=show) as (traffic, _, _panel):
        started = time.monotonic()
        while True:
            attempts += 1
            result = lab.runner.run(line)
            if result.ok or result.sqlstate != LOCK_NOT_AVAILABLE or attempts >= ATTEMPTS:
                break
            time.sleep(PAUSE)
        ended = time.monotonic()
        time.sleep(0.1)
    upgrade = BusyUpgrade(result, attempts, traffic.tally(started, ended))
    _save_record(lab, upgrade)
    return upgrade


def _save_record(lab: Lab, upgrade: BusyUpgrade) -> None:
    path = lab.project.root / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = list(upgrade.result.after or ())
    tally = upgrade.requests
    path.write_text(
        json.dumps({"heads": heads, "failed": tally.failed, "errors": tally.errors, "ok": upgrade.result.ok})
    )


def _record(lab: Lab) -> dict[str, Any] | None:
    path = lab.project.root / RECORD
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def upgrade_while_busy(chapter: Any, line: str = "upgrade head") -> None:
    """The notebook's call: apply the migration while the app is busy and a report reads; say how the app fared."""
    lab = _lab(chapter)
    print(
        f"The ai-api is serving {TABLE} to 3 clients (each gives up after {CLIENT_TIMEOUT:.0f} s); a report holds "
        f"a read lock on {TABLE} for {READER_HOLDS} s."
    )
    upgrade = upgrade_under_traffic(lab, line)
    if upgrade.attempts > 1 and upgrade.result.ok:
        print(
            "The first attempt gave up on its lock (lock_timeout) while the report held it; nothing changed. "
            "The lab retried it, as a deploy script would, until it got its lock."
        )
    print(upgrade.result)
    print(upgrade.requests.statement())


# --- the exercise's start and checks ----------------------------------------------------------------

PLAN_LINE = 'plan = Column(String(20), nullable=False, server_default="free")'
PLAN_UPGRADE = """op.execute("SET lock_timeout = '1s'")
op.add_column('user_profiles', sa.Column('plan', sa.String(length=20), server_default='free', nullable=False))"""
PLAN_DOWNGRADE = "op.drop_column('user_profiles', 'plan')"
WRITE_PLAN = (
    "ch.alembic('revision -m \"add plan\"'); "
    f'ch.rewrite_revision(upgrade="""{PLAN_UPGRADE}""", downgrade="{PLAN_DOWNGRADE}")'
)


def exercise_start(lab: Lab) -> str:
    """The steps' experiments (columns, indexes, constraints) undone: the exercise starts from the chapter's start."""
    checkpoints.reset(lab, checkpoints.WITH_PHONE_NUMBER)
    (lab.project.root / RECORD).unlink(missing_ok=True)
    return (
        "Back to the chapter's start (the experiments of the steps are undone, your files backed up). "
        "user_profiles is busy: the app reads it all the time, and reports read it in long transactions."
    )


def _plan_revisions(lab: Lab) -> list[str]:
    return [
        p.read_text()
        for p in sorted(lab.project.versions_dir.glob("*.py"))
        if re.search(r"add_column\(\s*'user_profiles',\s*sa\.Column\('plan'", p.read_text())
    ]


def _plan_column(lab: Lab) -> dict[str, Any] | None:
    inspector = sa.inspect(lab.db.engine)
    return next((dict(c) for c in inspector.get_columns(TABLE) if c["name"] == "plan"), None)


def _added_without_rewrite(lab: Lab) -> bool:
    """PostgreSQL 11+ keeps a constant default in the catalogue (atthasmissing) instead of writing every row."""
    with lab.db.connect() as conn:
        return bool(
            conn.scalar(
                sa.text("SELECT atthasmissing FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attname = 'plan'"),
                {"t": TABLE},
            )
        )


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 11: a required `plan` column added to the busy user_profiles, no request failed, then the code."""
    revisions = _plan_revisions(lab)
    column = _plan_column(lab)
    record = _record(lab)
    heads = list(lab.db.heads())
    apply_busy = (
        "The grade is the app's: apply your revision while the lab's traffic and a report run, so the failed "
        "requests can be counted.",
        "locks.upgrade_while_busy(ch) runs `alembic upgrade head` under that traffic (if you upgraded already, "
        'go back first: ch.alembic("downgrade -1", confirm=True)).',
        "locks.upgrade_while_busy(ch)",
    )
    served = Check("the upgrade ran while the app was busy, and no request failed", False, apply_busy)
    if record is not None and record.get("heads") == heads and column is not None:
        if record.get("errors"):
            why: checks.Hints = (
                "Requests failed with errors while your migration ran: the running app already used the new "
                "model (main.py has plan), and the column was not there yet. The migration ships before the code "
                "that needs it.",
                'Take plan out of main.py, go back (ch.alembic("downgrade -1", confirm=True)), run the migration '
                "under traffic, and only then add plan to the model.",
                f"ch.edit_model('{PLAN_LINE}', ''); ch.alembic(\"downgrade -1\", confirm=True); "
                "locks.upgrade_while_busy(ch)",
            )
        else:
            why = (
                "Requests failed while your migration ran: its ALTER TABLE waited for the report's lock, and every "
                "request queued behind it, longer than a client waits.",
                "Make the migration give up quickly instead: SET lock_timeout at the start of upgrade(), shorter "
                f"than the {CLIENT_TIMEOUT:.0f} s a client waits; the lab retries it. Go back "
                '(ch.alembic("downgrade -1", confirm=True)), fix the revision, and run it under traffic again.',
                f'ch.rewrite_revision(upgrade="""{PLAN_UPGRADE}"""), then locks.upgrade_while_busy(ch)',
            )
        served = Check(served.name, record.get("failed") == 0, why)
    return [
        checks.a_revision_file_matches(
            lab,
            r"add_column\(\s*'user_profiles',\s*sa\.Column\('plan'",
            "adds user_profiles.plan",
            (
                "The migration comes first, while the running app does not know the column yet: a revision that "
                "adds plan to user_profiles (text, required, 'free' for everyone already there).",
                "An empty revision (ch.alembic('revision -m \"...\"')) whose upgrade() is an op.add_column(...) "
                "and downgrade() an op.drop_column(...): ch.rewrite_revision(upgrade=..., downgrade=...).",
                WRITE_PLAN,
            ),
        ),
        Check(
            "that revision sets a lock_timeout first",
            any(re.search(r"lock_timeout", text) for text in revisions),
            (
                "Its ALTER TABLE needs an ACCESS EXCLUSIVE lock on a table the app and a report are reading: "
                "without a lock_timeout it waits for the report, and every request waits behind it.",
                "Begin upgrade() with op.execute(\"SET lock_timeout = '1s'\"): shorter than a client waits. "
                "ch.rewrite_revision(upgrade=...) rewrites it.",
                f'ch.rewrite_revision(upgrade="""{PLAN_UPGRADE}""")',
            ),
        ),
        Check(
            "user_profiles.plan is in the database, NOT NULL",
            column is not None and not column["nullable"],
            apply_busy
            if column is None
            else (
                "The column is there but allows NULL: every profile needs a plan.",
                "nullable=False in the revision's sa.Column(...), with server_default='free' for the existing rows.",
            ),
        ),
        Check(
            "the column was added without rewriting the table (a constant default)",
            column is not None and _added_without_rewrite(lab),
            (
                "A constant server_default ('free') is stored once in the catalogue since PostgreSQL 11; a volatile "
                "one (now(), clock_timestamp(), random()) makes PostgreSQL write it into every row, under ACCESS "
                "EXCLUSIVE.",
                "server_default='free' in the revision's sa.Column(...).",
            ),
        ),
        served,
        checks.model_has(
            lab,
            "UserProfile",
            "plan",
            (
                "The database has plan; now the code that uses it ships: the model.",
                'ch.add_column("UserProfile", "plan = Column(...)"): the same column as the revision\'s.',
                f"ch.add_column(\"UserProfile\", '{PLAN_LINE}')",
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "main.py's model and the column the migration made differ.",
                'ch.alembic("check") says how; make the model say what the revision did.',
            ),
        ),
    ]
