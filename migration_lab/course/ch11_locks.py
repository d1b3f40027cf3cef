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

from ..database.connection import LabDatabase
from ..database.sql import quote
from ..errors import CopyUnavailable
from ..lab import Lab
from ..running.runner import RunResult
from ..workspace import checkpoints
from . import checks, round_trip
from .ch11_traffic import CLIENT_TIMEOUT, Seen, Tally, busy_app
from .checks import Check

TABLE = "user_profiles"
CANCEL_AFTER = 2.5  # seconds the kit lets a statement wait for its lock before it cancels it (> CLIENT_TIMEOUT)
READER_HOLDS = 2.5  # seconds the exercise's report keeps its transaction open (> CLIENT_TIMEOUT)
ATTEMPTS = 6  # how often upgrade_while_busy tries a migration that gave up on its lock (55P03), at most
PAUSE = 0.3  # seconds before the second attempt; each pause after that is twice as long
RECORD = Path(".lab") / "chapter-11-upgrade.json"  # the last upgrade_while_busy: what the check grades
# A request that waited this long for a lock on the table could not be served within a client's patience: the lock
# made it fail. A request that failed without such a wait failed for another reason (on a loaded machine, the lab's
# own process stalling every client thread at once), which the exercise does not count against the migration.
BLAME_AFTER = CLIENT_TIMEOUT - 0.5

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
    took: tuple[str, ...] = ()  # the lock modes it held on the table once done (its own pg_locks, before COMMIT)

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
        elif self.took:
            lines.append(f"pg_locks: it took {', '.join(self.took)} on {TABLE} at once.")
        if self.blocked_by_reader and self.seen.has("request", "waits for"):
            # Behind a waiting ALTER, requests queue; one that waits an instant for an ALTER that got its lock at
            # once has not "queued" in any sense a client notices.
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
            took: tuple[str, ...] = ()
            try:
                conn.execute(sa.text(statement))
                took = tuple(conn.scalars(sa.text(LOCKS_TAKEN), {"table": TABLE}))  # read, not sampled: every run
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
    return Outcome(statement, not stopped_by, stopped_by, traffic.tally(started, ended), seen, took)


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
SELECT i.relname, x.indisvalid, x.indisready FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = to_regclass(:table) ORDER BY 1
"""


def invalid_indexes(lab: Lab, table: str = TABLE) -> list[str]:
    """The indexes of `table` PostgreSQL marks INVALID (a CREATE INDEX CONCURRENTLY that failed)."""
    with lab.db.connect() as conn:
        return [name for name, valid, _ in conn.execute(sa.text(INDEXES), {"table": table}) if not valid]


def show_indexes(chapter: Any, table: str = TABLE) -> None:
    """The table's indexes, and which ones are INVALID (pg_index.indisvalid) and still maintained (indisready)."""
    with _lab(chapter).db.connect() as conn:
        rows = conn.execute(sa.text(INDEXES), {"table": table}).all()
    for name, valid, ready in rows:
        if valid:
            print(f"{name}: valid")
        elif ready:
            print(f"{name}: INVALID - never used by queries, yet kept up to date on every write")
        else:
            print(f"{name}: INVALID - never used by queries, nor kept up to date (its build failed half-way)")


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
    migration_waited: float  # seconds, the longest the migration waited for a lock on the table (the panel's view)
    requests_waited: float  # seconds, the longest a request waited for a lock on the table

    @property
    def blamed(self) -> bool:
        """Requests failed because of the migration: an error, or a wait for its lock longer than a client's."""
        return self.requests.errors > 0 or (self.requests.failed > 0 and self.requests_waited >= BLAME_AFTER)


def upgrade_under_traffic(
    lab: Lab, line: str = "upgrade head", reader_holds: float = READER_HOLDS, show: bool = True
) -> BusyUpgrade:
    """`alembic <line>` while the app is busy and a report holds its read lock for `reader_holds` seconds.

    A run that gave up on its lock (lock_timeout: SQLSTATE 55P03), and only
    that, is retried a few times, each pause twice the last, as a deploy step
    should. The report always ends, so a migration without lock_timeout ends
    too; the requests it made wait are counted.
    """
    attempts = 0
    with busy_app(lab, reader=True, reader_holds=reader_holds, show=show) as (traffic, _, panel):
        started = time.monotonic()
        while True:
            attempts += 1
            result = lab.runner.run(line)
            if result.ok or result.sqlstate != LOCK_NOT_AVAILABLE or attempts >= ATTEMPTS:
                break
            time.sleep(PAUSE * 2 ** (attempts - 1))
        ended = time.monotonic()
        time.sleep(0.1)
    waited = panel.seen.longest_wait.get("migration", 0.0)
    upgrade = BusyUpgrade(
        result, attempts, traffic.tally(started, ended), waited, panel.seen.longest_wait.get("request", 0.0)
    )
    _save_record(lab, upgrade)
    return upgrade


def _save_record(lab: Lab, upgrade: BusyUpgrade) -> None:
    """What the exercise's check reads: how the last run under traffic went, and whether it applied anything (a run
    with nothing left to apply, after a plain `upgrade head`, fails no request and proves nothing). Running it
    again at the same heads, with nothing left, keeps the record of the run that applied them."""
    path = lab.project.root / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = list(upgrade.result.after or ())
    applied = upgrade.result.ok and upgrade.result.before is not None and list(upgrade.result.before) != heads
    earlier = _record(lab)
    if not applied and earlier is not None and earlier.get("heads") == heads and earlier.get("applied"):
        return
    tally = upgrade.requests
    path.write_text(
        json.dumps(
            {
                "heads": heads,
                "failed": tally.failed,
                "errors": tally.errors,
                "first_error": tally.first_error,
                "ok": upgrade.result.ok,
                "error": upgrade.result.error,
                "migration_waited": round(upgrade.migration_waited, 1),
                "requests_waited": round(upgrade.requests_waited, 1),
                "blamed": upgrade.blamed,
                "applied": applied,
            }
        )
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
            "The lab retried it, as a deploy step would, waiting longer each time, until it got its lock."
        )
    print(upgrade.result)
    print(upgrade.requests.statement())
    if upgrade.requests.errors:
        print(
            "An error, not a wait: the running app's code asked the database for something it did not have yet "
            "(the model shipped before the migration?)."
        )
    elif upgrade.blamed:
        print(
            "Too slow, not an error: they queued behind the migration's ALTER, which waited for the report's lock "
            "(a lock_timeout makes it give up sooner)."
        )
    elif upgrade.requests.failed:
        print(
            "Too slow, but no lock of the migration kept them waiting: the lab's own process stalled (a loaded "
            "machine), not the app behind your migration. The check does not count these."
        )


# --- the exercise's start and checks ----------------------------------------------------------------

PLAN_LINE = 'plan = Column(String(20), nullable=False, server_default="free")'
# Well under the 2 s a client waits: a request that arrives while the ALTER waits queues behind it that long, and then
# still has its own work to do (on a loaded machine, most of a second).
LOCK_TIMEOUT = "500ms"
PLAN_UPGRADE = f"""op.execute("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
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


PLAN_TYPE = "character varying(20)"  # text of up to 20 characters: String(20)
PLAN_STATE = """
SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.atthasmissing, format_type(a.atttypid, a.atttypmod),
       (SELECT count(*) FROM user_profiles WHERE plan IS DISTINCT FROM 'free')
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass('user_profiles') AND a.attname = 'plan' AND NOT a.attisdropped
"""


@dataclass(frozen=True)
class Plan:
    """user_profiles.plan as a database has it: what the learner's migration made."""

    not_null: bool
    default: str  # the server default's SQL, e.g. 'free'::character varying
    without_rewrite: bool  # PostgreSQL 11+ kept the default in the catalogue (atthasmissing): no row was rewritten
    type: str  # as PostgreSQL names it: character varying(20)
    not_free: int  # profiles whose plan is not 'free'

    @property
    def right(self) -> bool:
        return self.type == PLAN_TYPE and self.not_null and "'free'" in self.default and self.not_free == 0


def _plan(db: LabDatabase) -> Plan | None:
    """The plan column of a database, or None when it has none."""
    with db.connect() as conn:
        try:
            row = conn.execute(sa.text(PLAN_STATE)).first()
        except sa.exc.ProgrammingError:  # no plan column: the count fails
            return None
    return None if row is None else Plan(bool(row[0]), row[1] or "", bool(row[2]), str(row[3]), int(row[4] or 0))


def _planned(lab: Lab) -> tuple[Plan | None, str]:
    """What the revisions do: the plan column in the database if it is there, else on a copy after `upgrade head`
    (the learner's database untouched); and the error of that upgrade, if it failed."""
    found = _plan(lab.db)
    if found is not None:
        return found, ""
    try:
        with lab.db.copy() as copy:
            result = lab.runner.on(copy).run("upgrade head")
            return _plan(copy), "" if result.ok else str(result.error)
    except CopyUnavailable as why:
        return None, f"the lab could not copy the database to try it ({why.what})"


START = "a1c4e7f20b13"  # the chapter's start: checkpoints.WITH_PHONE_NUMBER's revision


def _plan_left(copy: LabDatabase) -> str | None:
    return "user_profiles still has plan" if _plan(copy) is not None else None


def _undone(lab: Lab, planned: Plan | None, upgrade_error: str, write: checks.Hints) -> Check:
    """The revisions' downgrade, replayed on a copy: back to the chapter's start, plan must be gone (and nothing
    else), and `upgrade head` must work again. `alembic revision -m` writes `pass` there."""
    name = "its downgrade() takes plan away again (replayed on a copy)"
    if planned is None or upgrade_error:
        return Check(name, False, write)
    replayed = round_trip.replay(lab, START, downgraded=_plan_left)
    heads = lab.db.heads()
    named = f', revision="{heads[0]}"' if len(heads) == 1 and heads[0] != START else ""
    return Check(
        name,
        replayed is None,
        (
            f"Replayed on a copy, {replayed.problem if replayed else ''}. Rolling this release back (`alembic "
            f"downgrade {START}`) must take plan away, and only plan, so that the release can be applied again.",
            "downgrade() undoes upgrade(), in reverse: op.drop_column('user_profiles', 'plan'). Only downgrade() "
            "changes: your database stays as it is.",
            f'ch.rewrite_revision(downgrade="{PLAN_DOWNGRADE}"{named})',
        ),
    )


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 11: a required `plan` column added to the busy user_profiles, no request failed, then the code.

    Graded by what the migration does, never by how it is written: the column it makes (in the database, or on a
    copy before it is applied), whether PostgreSQL rewrote the table, the requests that failed while it ran under
    the lab's traffic (and how long its ALTER waited for its lock), then the model.
    """
    planned, upgrade_error = _planned(lab)
    applied = _plan(lab.db)
    record = _record(lab)
    heads = list(lab.db.heads())
    apply_busy = (
        "The grade is the app's: apply your revision while the lab's traffic and a report run, so the failed "
        "requests can be counted.",
        "locks.upgrade_while_busy(ch) runs `alembic upgrade head` under that traffic (if you upgraded already, "
        'go back first: ch.alembic("downgrade -1", confirm=True)).',
        "locks.upgrade_while_busy(ch)",
    )
    served = Check("the upgrade ran while the app was busy, and no request failed because of it", False, apply_busy)
    if record is not None and record.get("heads") == heads and applied is not None and record.get("applied") is False:
        served = Check(
            served.name,
            False,
            (
                "Your last run under traffic had nothing to apply: plan was in the database already (applied with a "
                "plain `upgrade head`?), so no request could fail because of it, and none proves it would not.",
                *apply_busy[1:],
            ),
        )
    elif record is not None and record.get("heads") == heads and applied is not None:
        waited = float(record.get("migration_waited") or 0)
        if record.get("errors"):
            why: checks.Hints = (
                f"Requests failed with an error while your migration ran ({record.get('first_error') or 'a 5xx'}): "
                "the running app already used the new model (main.py has plan), and the column was not there "
                "yet. The migration ships before the code that needs it.",
                'Take plan out of main.py, go back (ch.alembic("downgrade -1", confirm=True)), run the migration '
                "under traffic, and only then add plan to the model.",
                f"ch.edit_model({checks.model_line(lab, 'UserProfile', 'plan') or PLAN_LINE!r}, ''); "
                'ch.alembic("downgrade -1", confirm=True); '
                "locks.upgrade_while_busy(ch)",
            )
        else:
            waiting = (
                f"its ALTER TABLE waited {waited:.1f} s for its lock behind the report, and every request queued "
                "behind it"
                if waited
                else "they took longer"
            )
            why = (
                f"Requests failed while your migration ran: {waiting}, longer than the {CLIENT_TIMEOUT:.0f} s a "
                "client waits.",
                "Make the migration give up quickly instead, and let the lab retry it: a lock_timeout well under the "
                f"{CLIENT_TIMEOUT:.0f} s a client waits, at the start of upgrade() (SET LOCAL lock_timeout) or in "
                'env.py after configure(). Go back (ch.alembic("downgrade -1", confirm=True)), fix it, and run it '
                "under traffic again.",
                f'ch.rewrite_revision(upgrade="""{PLAN_UPGRADE}"""), then locks.upgrade_while_busy(ch)',
            )
        served = Check(served.name, not record.get("blamed", record.get("failed")), why)
    elif record is not None and not record.get("ok") and record.get("error"):
        served = Check(
            served.name,
            False,
            (f"The last locks.upgrade_while_busy(ch) failed: {record['error']}", *apply_busy[1:]),
        )
    write = (
        "The migration comes first, while the running app does not know the column yet: a revision that adds plan "
        "to user_profiles (text, required, 'free' for everyone already there).",
        "An empty revision (ch.alembic('revision -m \"...\"')) whose upgrade() is an op.add_column(...) (or the "
        "ALTER TABLE in op.execute) and downgrade() an op.drop_column(...): ch.rewrite_revision(upgrade=..., "
        "downgrade=...), or the editor.",
        WRITE_PLAN,
    )
    if upgrade_error:
        write = (f"On a copy of your database, `alembic upgrade head` fails: {upgrade_error}", *write[1:])
    elif planned is not None and not planned.right:
        write = (
            "Your revision adds plan, but "
            + (
                f"as {planned.type}: a plan is text of up to 20 characters, {PLAN_TYPE} (String(20))."
                if planned.type != PLAN_TYPE
                else "the column allows NULL: every profile needs a plan."
                if not planned.not_null
                else "not with 'free' for the profiles already there (the server default)."
            ),
            "nullable=False and server_default='free' in the revision's sa.Column(...) (ALTER TABLE ... ADD COLUMN "
            "plan varchar(20) NOT NULL DEFAULT 'free').",
            WRITE_PLAN,
        )
    return [
        Check(
            "a revision adds user_profiles.plan: varchar(20), NOT NULL, 'free' for the profiles already there",
            planned is not None and planned.right,
            write,
        ),
        _undone(lab, planned, upgrade_error, write),
        Check("your database has it: the revision is applied", applied is not None, apply_busy),
        Check(
            "the column was added without rewriting the table (a non-volatile default)",
            planned is not None and planned.without_rewrite,
            (
                "A constant server_default ('free') is stored once in the catalogue since PostgreSQL 11, and so is "
                "a stable one like now() (computed once for the ALTER); a volatile one (clock_timestamp(), random(), "
                "gen_random_uuid()) makes PostgreSQL write it into every row, under ACCESS EXCLUSIVE.",
                "server_default='free' in the revision's sa.Column(...), and no UPDATE of every row.",
            ),
        ),
        served,
        checks.model_maps(
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
