"""The lock trace: what each statement of a revision locks, rewrites and costs, measured on a copy.

A linter reads the SQL; it cannot see how big the tables are or what
PostgreSQL actually locks. This runs `alembic upgrade <revision>` for real on
a throw-away copy of the database (`LabDatabase.copy()`, the real rows
included) and watches every statement the revision's own code sends:

- which `op.` line sent it: the revision file's frame is on the call stack
  when the statement runs, so its line is exact (loops and helpers included);
- the table locks it took, read from `pg_locks` for the migration's backend by
  a second connection. Inside the migration's transaction those locks stay
  until its COMMIT, and the trace says how long that was. A statement in an
  `autocommit_block` (CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT) holds
  its locks only while it runs, so the second connection briefly holds every
  table and reads the lock the statement queues for: deterministic however
  fast the statement is;
- whether it rewrote a table (its relfilenode changed), the statement's
  duration and the table's row count on the copy;
- which constraints of existing tables it validated (a foreign key, CHECK or
  NOT NULL whose `pg_constraint.convalidated` it made true: the scan), and the
  `lock_timeout` its session had when it was sent and after it ran, both
  read on the migration's own connection, so a timeout set in env.py, by a
  `SET LOCAL` or by a helper counts alike. Each revision runs in a session of
  its own, as a deploy's retry runs it: a plain SET in an earlier revision
  does not reach it, and the trace of that revision shows the SET
  (`LockTrace.session_lock_timeout`) so a grader can say why.

The learner's database is never touched. Durations print as "(N ms)", which
the notebooks' sanitize file replaces.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as Psycopg2Connection
from psycopg2.extensions import cursor as Psycopg2Cursor
from sqlalchemy import event

from ..database.connection import LabDatabase
from ..database.sql import quote
from ..errors import CopyUnavailable, LabError
from ..lab import Lab

# Weakest first. What each mode stops other sessions from doing, in a learner's words.
LOCK_EFFECTS = {
    "AccessShareLock": "blocks only ACCESS EXCLUSIVE: most ALTER TABLE, DROP, TRUNCATE, VACUUM FULL",
    "RowShareLock": "blocks only EXCLUSIVE and ACCESS EXCLUSIVE: most ALTER TABLE, DROP, TRUNCATE",
    "RowExclusiveLock": "reads and writes continue; blocks most ALTER TABLE and index builds",
    "ShareUpdateExclusiveLock": "reads and writes continue",
    "ShareLock": "blocks writes; reads continue",
    "ShareRowExclusiveLock": "blocks writes; reads continue",
    "ExclusiveLock": "blocks writes; reads continue",
    "AccessExclusiveLock": "blocks reads and writes",
}
STRENGTH = {mode: rank for rank, mode in enumerate(LOCK_EFFECTS)}
SHOWN_CHARS = 100  # an op. call or a statement longer than this is shortened
POLL_SECONDS = 0.001  # how often the second connection looks for the statement's queued lock
HOLD_LIMIT_SECONDS = 5.0  # the second connection never holds the tables longer, whatever happens

_TABLES = """
SELECT c.oid, CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""
_LOCKS = (
    "SELECT relation::oid, mode, granted FROM pg_locks "
    "WHERE pid = :pid AND locktype = 'relation' AND database = (SELECT oid FROM pg_database "
    "WHERE datname = current_database())"
)
_WAITS = "SELECT relation::oid, mode FROM pg_locks WHERE pid = :pid AND NOT granted"
# On the migration's own connection: its session's lock_timeout; the validated constraints (foreign keys, CHECK,
# NOT NULL) of the tables that existed before the revision, with their columns; each such table's last column.
_LOCK_TIMEOUT = "SELECT current_setting('lock_timeout')"
# A statement that sets lock_timeout for the session, not for its transaction: `SET [SESSION] lock_timeout ...`
# (not SET LOCAL), or set_config('lock_timeout', ..., false). What it sets outlives the revision's COMMIT.
_SESSION_SET = re.compile(
    r"^\s*SET\s+(SESSION\s+)?lock_timeout\b|\bset_config\s*\(\s*'lock_timeout'\s*,.*,\s*false\s*\)",
    re.IGNORECASE | re.DOTALL,
)
_VALID = (
    "SELECT conname::text, conrelid::int, conkey::int[] FROM pg_constraint "
    "WHERE convalidated AND contype IN ('f', 'c', 'n') AND conrelid::int = ANY(%s)"
)
_LAST_COLUMN = "SELECT attrelid::int, max(attnum)::int FROM pg_attribute WHERE attrelid::int = ANY(%s) GROUP BY 1"


@dataclass(frozen=True)
class Lock:
    """A lock one statement took (or queued for) on a table that existed before the revision."""

    table: str
    mode: str

    def __str__(self) -> str:
        return f"{self.mode} on {self.table} ({LOCK_EFFECTS[self.mode]})"


@dataclass(frozen=True)
class Step:
    """One statement the revision sent, and what it did on the copy."""

    line: int  # the revision file's line that sent it
    source: str  # that line's op. call (or code), as written, shortened
    sql: str
    locks: tuple[Lock, ...] = ()  # the strongest new lock per existing table
    rewrites: tuple[str, ...] = ()  # tables whose relfilenode changed: every row copied
    rows: tuple[tuple[str, int], ...] = ()  # row counts, before the revision, of the tables above
    duration: float = 0.0  # seconds the statement ran
    held: float = 0.0  # seconds its locks were held: until the COMMIT, or the statement's end in autocommit
    autocommit: bool = False  # ran outside the migration's transaction (an autocommit_block)
    error: str | None = None  # PostgreSQL's message, when this statement failed
    already: tuple[Lock, ...] = ()  # what earlier statements locked in the same transaction, still held
    validates: tuple[str, ...] = ()  # constraints of existing tables this statement made valid (it scanned)
    lock_timeout: str = "0"  # the session's lock_timeout when the statement was sent ("0": waits forever)
    lock_timeout_after: str | None = None  # ... when it had run (None: it failed)

    def sets_session_lock_timeout(self) -> bool:
        """This statement changed the session's lock_timeout with a plain SET (no LOCAL), so the value outlives the
        revision's transaction: in one `alembic upgrade head` every later revision gets it, while the same revision
        retried on its own (a deploy's retry, `alembic upgrade +1`) runs in a new session without it.

        Measured (the session's value before and after the statement) and read from the statement (LOCAL or not:
        PostgreSQL shows a SET LOCAL's value the same way until the COMMIT).
        """
        changed = self.lock_timeout_after is not None and self.lock_timeout_after != self.lock_timeout
        return changed and _SESSION_SET.search(self.sql) is not None

    def lines(self) -> list[str]:
        """What the learner reads: the op. line, the SQL, each lock and what it blocks, rewrite or not, timings."""
        lines = [f"line {self.line}: {self.source}", f"    {_shorten(self.sql)}"]
        if self.error is not None:
            lines.append(f"    FAILED here: {self.error}")
        rows = dict(self.rows)
        earlier = {lock.table: lock for lock in self.already}
        for lock in self.locks:
            if self.autocommit:
                until = f"only while the statement runs, outside the migration's transaction: ({_ms(self.held)})"
            else:
                until = f"held until the migration's transaction ends: ({_ms(self.held)})"
            stronger = earlier.get(lock.table)
            if stronger is not None and STRENGTH.get(stronger.mode, -1) > STRENGTH.get(lock.mode, -1):
                until += f"; an earlier statement's {stronger.mode} on {lock.table} is still held"
            lines.append(f"    {lock}, {until}")
        if not self.locks and self.already:
            lines.append(
                f"    no new lock; the migration's transaction already holds {', '.join(map(str, self.already))}"
            )
        elif not self.locks and self.error is None:
            lines.append("    no lock on an existing table")
        for name in self.validates:
            held = [lock for lock in (*self.locks, *self.already) if STRENGTH[lock.mode] >= STRENGTH["ShareLock"]]
            lines.append(
                f"    validates {name}"
                + (f", while holding {', '.join(lock.mode + ' on ' + lock.table for lock in held)}" if held else "")
            )
        for table in self.rewrites:
            under = self.strongest(table)
            lines.append(
                f"    REWRITES {table} (a new relfilenode): all {rows.get(table, 0):,} rows copied "
                f"({_ms(self.duration)})" + (f", under {under.mode} for all of it" if under else "")
            )
        locked = [lock.table for lock in self.locks if lock.table not in self.rewrites]
        if locked and self.error is None:
            counted = ", ".join(f"{table} ({rows.get(table, 0):,} rows)" for table in locked)
            lines.append(f"    no rewrite of {counted}; the statement took ({_ms(self.duration)})")
        elif not self.rewrites:
            lines.append(f"    the statement took ({_ms(self.duration)})")
        return lines

    def blocks_writes_while_validating(self) -> tuple[Lock, ...]:
        """The locks that stop writes (ShareLock or stronger) held while this statement validated something."""
        if not self.validates:
            return ()
        return tuple(lock for lock in (*self.locks, *self.already) if STRENGTH[lock.mode] >= STRENGTH["ShareLock"])

    def builds_an_index_blocking_writes(self) -> tuple[Lock, ...]:
        """The ShareLocks this statement took: only a CREATE INDEX without CONCURRENTLY takes one, and holds it,
        writes stopped, for the whole scan of the table (the NOT VALID key's ShareRowExclusiveLock scans nothing)."""
        return tuple(lock for lock in self.locks if lock.mode == "ShareLock")

    def strongest(self, table: str) -> Lock | None:
        """The strongest lock on `table` while this statement ran: its own, or an earlier one still held."""
        mine = [lock for lock in (*self.locks, *self.already) if lock.table == table]
        return max(mine, key=lambda lock: STRENGTH.get(lock.mode, -1)) if mine else None


@dataclass(frozen=True)
class LockTrace:
    """The steps of one revision's upgrade, rehearsed on a copy; or why there was no rehearsal."""

    revision: str
    path: Path
    steps: tuple[Step, ...] = ()
    error: str | None = None  # the upgrade failed: alembic's message, diagnosed
    unavailable: str | None = None  # why nothing ran
    sqlstate: str | None = None  # PostgreSQL's code for that failure, e.g. 42701 (a column that is there already)

    def __str__(self) -> str:
        head = f"Lock trace of {self.revision} ({self.path.name})"
        if self.unavailable is not None:
            return f"{head}: not traced, {self.unavailable}."
        lines = [f"{head}, rehearsed on a throw-away copy of the database (yours is untouched):"]
        for step in self.steps:
            lines += step.lines()
        if not self.steps:
            lines.append("The revision sent no statement.")
        if self.error is not None:
            lines.append(f"The upgrade FAILS: {self.error}")
        return "\n".join(lines)

    @property
    def failed(self) -> Step | None:
        """The statement that failed, if one did."""
        return next((step for step in self.steps if step.error is not None), None)

    def session_lock_timeout(self) -> Step | None:
        """The last statement that set the session's lock_timeout with a plain SET (`Step.sets_session_lock_timeout`):
        what the session still had after this revision, which `alembic upgrade head` hands to the next ones."""
        return next((step for step in reversed(self.steps) if step.sets_session_lock_timeout()), None)


def _ran_from(pending: _Pending, ended: float) -> float:
    """When the statement really started: when the hold let it go, if it queued for the hold; a statement that
    takes no lock never waits (the hold lets go after it ended), so it ran from when it was sent."""
    waited = bool(pending.released) and pending.released[0] <= ended
    return pending.released[0] if waited else pending.started


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


@dataclass
class _Source:
    """The revision file: which op. call (or code) each line belongs to."""

    path: Path
    text: str = ""
    calls: list[ast.Call] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> _Source:
        text = path.read_text()
        calls = [
            node
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "op"
            and node.func.attr != "f"  # op.f() only marks a name as final; the operation is the call around it
        ]
        return cls(path, text, calls)

    def describe(self, line: int) -> str:
        """The op. call that starts on `line` (or spans it), else the line's own code."""
        spanning = [c for c in self.calls if c.lineno <= line <= (c.end_lineno or c.lineno)]
        if spanning:
            call = min(spanning, key=lambda c: (c.lineno != line, (c.end_lineno or c.lineno) - c.lineno))
            return _shorten(ast.get_source_segment(self.text, call) or "")
        lines = self.text.splitlines()
        return _shorten(lines[line - 1]) if 0 < line <= len(lines) else ""


class _Observer:
    """The second connection: reads the migration's locks in pg_locks; holds tables for autocommit statements."""

    def __init__(self, conn: sa.Connection, tables: dict[int, str]) -> None:
        self.conn = conn
        self.tables = tables

    def locks(self, pid: int) -> dict[int, set[str]]:
        """The modes the migration's backend holds (or waits for) on each pre-existing table."""
        held: dict[int, set[str]] = {}
        for oid, mode, _granted in self.conn.execute(sa.text(_LOCKS), {"pid": pid}):
            if oid in self.tables:
                held.setdefault(oid, set()).add(mode)
        self.conn.rollback()
        return held

    @contextlib.contextmanager
    def queued_lock(self, pid: int, found: dict[int, set[str]], released: list[float]) -> Iterator[threading.Event]:
        """Hold every table while an autocommit statement starts; record the lock it queues for, then let go.

        Yields an event to set when the statement has ended (it may need no table lock at all).
        """
        done = threading.Event()
        names = ", ".join(_quoted(name) for name in self.tables.values())
        try:
            self.conn.execute(sa.text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE NOWAIT"))
        except sa.exc.DBAPIError:
            self.conn.rollback()  # something else holds a table: trace without the queued lock
            yield done
            return

        def watch() -> None:
            give_up = time.perf_counter() + HOLD_LIMIT_SECONDS
            try:
                while not done.is_set() and time.perf_counter() < give_up:
                    # Any wait counts, not only for a table: CREATE INDEX CONCURRENTLY also waits for older
                    # transactions, this one included, which must then end rather than wait with it.
                    waiting = self.conn.execute(sa.text(_WAITS), {"pid": pid}).all()
                    if waiting:
                        for oid, mode in waiting:
                            if oid in self.tables:
                                found.setdefault(oid, set()).add(mode)
                        break
                    time.sleep(POLL_SECONDS)
            finally:
                self.conn.rollback()
                released.append(time.perf_counter())

        thread = threading.Thread(target=watch, name="lock-trace-observer", daemon=True)
        thread.start()
        try:
            yield done
        finally:
            done.set()
            thread.join()


def _quoted(name: str) -> str:
    """A schema-qualified table name, each part quoted."""
    return ".".join(quote(part) for part in name.split("."))


@dataclass
class _Pending:
    """A statement being run: what was known just before it."""

    line: int
    sql: str
    pid: int
    autocommit: bool
    locks_before: dict[int, set[str]]
    files_before: dict[int, int]
    started: float
    lock_timeout: str = "0"
    valid_before: frozenset[str] = frozenset()
    last_column: dict[int, int] = field(default_factory=dict)
    queued: dict[int, set[str]] = field(default_factory=dict)
    released: list[float] = field(default_factory=list)
    hold: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class _Tracer:
    """The engine events of the copy: one `Step` per statement the revision file sends."""

    def __init__(self, source: _Source, observer: _Observer, rows: dict[str, int]) -> None:
        self.source = source
        self.observer = observer
        self.rows = rows
        self.paths = {str(source.path), str(source.path.resolve())}  # as alembic loaded it, and resolved
        self.steps: list[Step] = []
        self.open: list[tuple[int, float]] = []  # (step, its start): locks the migration's transaction still holds
        self.pending: _Pending | None = None

    def _revision_line(self) -> int | None:
        """The line of the revision file running now, if the revision's code sent this statement.

        The innermost frame of that file: the op. call itself, even inside a loop or a helper function.
        """
        frame = inspect.currentframe()
        while frame is not None:
            if frame.f_code.co_filename in self.paths:
                return frame.f_lineno
            frame = frame.f_back
        return None

    def _files(self, dbapi: Psycopg2Connection) -> dict[int, int]:
        """The relfilenode of every pre-existing table, as the migration's own transaction sees it."""
        cursor = dbapi.cursor()
        try:
            cursor.execute(
                "SELECT oid::int, relfilenode::int FROM pg_class WHERE oid = ANY(%s)", (list(self.observer.tables),)
            )
            return dict(cursor.fetchall())
        finally:
            cursor.close()

    def _session(self, dbapi: Psycopg2Connection) -> tuple[str, frozenset[str], dict[int, int]]:
        """As the migration's session sees it: its lock_timeout, the validated constraints of pre-existing tables,
        and each such table's last column number."""
        timeout = self._lock_timeout(dbapi)
        cursor = dbapi.cursor()
        try:
            cursor.execute(_VALID, (list(self.observer.tables),))
            valid = frozenset(name for name, _table, _columns in cursor.fetchall())
            cursor.execute(_LAST_COLUMN, (list(self.observer.tables),))
            return timeout, valid, dict(cursor.fetchall())
        finally:
            cursor.close()

    def _lock_timeout(self, dbapi: Psycopg2Connection) -> str:
        """The session's lock_timeout now, on the migration's own connection."""
        cursor = dbapi.cursor()
        try:
            cursor.execute(_LOCK_TIMEOUT)
            (timeout,) = cursor.fetchone()
            return str(timeout)
        finally:
            cursor.close()

    def _validated(self, dbapi: Psycopg2Connection, pending: _Pending) -> tuple[str, ...]:
        """Constraints the statement made valid on columns that were there before it: what it had to scan for.

        A column added NOT NULL with its default, or with its REFERENCES, is
        checked as it is written; it is not a scan of the table's rows.
        """
        cursor = dbapi.cursor()
        try:
            cursor.execute(_VALID, (list(self.observer.tables),))
            found = cursor.fetchall()
        finally:
            cursor.close()
        return tuple(
            sorted(
                name
                for name, table, columns in found
                if name not in pending.valid_before
                and all(0 < column <= pending.last_column.get(table, 0) for column in columns or ())
            )
        )

    def _release(self) -> None:
        """The migration's transaction ended: its locks went with it."""
        now = time.perf_counter()
        for index, started in self.open:
            self.steps[index] = replace(self.steps[index], held=now - started)
        self.open = []

    def before(
        self,
        conn: sa.Connection,
        cursor: Psycopg2Cursor,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        """Just before a statement: if the revision sent it, what its backend holds and each table's file."""
        line = self._revision_line()
        if line is None:
            return  # alembic's own statements (alembic_version, reflection), not the revision's
        dbapi = cursor.connection
        autocommit = bool(dbapi.autocommit)
        pid = dbapi.info.backend_pid
        pending = _Pending(
            line,
            statement,
            pid,
            autocommit,
            {} if autocommit else self.observer.locks(pid),
            self._files(dbapi),
            0.0,
        )
        pending.lock_timeout, pending.valid_before, pending.last_column = self._session(dbapi)
        if autocommit:
            pending.hold.enter_context(self.observer.queued_lock(pid, pending.queued, pending.released))
        pending.started = time.perf_counter()
        self.pending = pending

    def after(
        self,
        conn: sa.Connection,
        cursor: Psycopg2Cursor,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        """The statement succeeded: which locks are new, which tables got a new file."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        ended = time.perf_counter()
        pending.hold.close()
        started = _ran_from(pending, ended)
        if pending.autocommit:
            new = pending.queued
        else:
            now = self.observer.locks(pending.pid)
            new = {oid: modes - pending.locks_before.get(oid, set()) for oid, modes in now.items()}
        files_after = self._files(cursor.connection)
        rewrites = tuple(
            sorted(
                self.observer.tables[oid]
                for oid, node in pending.files_before.items()
                if node and files_after.get(oid) not in (None, node)
            )
        )
        self._record(
            pending,
            new,
            rewrites,
            started,
            ended,
            None,
            self._validated(cursor.connection, pending),
            self._lock_timeout(cursor.connection),
        )
        if not pending.autocommit and cursor.connection.info.transaction_status == TRANSACTION_STATUS_IDLE:
            self._release()  # a literal COMMIT (or END) in the revision ended the transaction

    def failed(self, context: sa.engine.ExceptionContext) -> None:
        """The statement failed: record it with PostgreSQL's message; alembic stops there."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        ended = time.perf_counter()
        pending.hold.close()
        started = _ran_from(pending, ended)
        new = pending.queued
        if not pending.autocommit:
            # The aborted transaction still holds what it took, until alembic rolls it back.
            now = self.observer.locks(pending.pid)
            new = {oid: modes - pending.locks_before.get(oid, set()) for oid, modes in now.items()}
        error = getattr(context.original_exception, "pgerror", None) or str(context.original_exception)
        self._record(pending, new, (), started, ended, error.strip().splitlines()[0].removeprefix("ERROR:  "))

    def _record(
        self,
        pending: _Pending,
        new: dict[int, set[str]],
        rewrites: tuple[str, ...],
        started: float,
        ended: float,
        error: str | None,
        validates: tuple[str, ...] = (),
        lock_timeout_after: str | None = None,
    ) -> None:
        locks = self._strongest(new)
        touched = {lock.table for lock in locks} | set(rewrites)
        step = Step(
            pending.line,
            self.source.describe(pending.line),
            pending.sql,
            locks,
            rewrites,
            tuple((table, self.rows.get(table, 0)) for table in sorted(touched)),
            ended - started,
            ended - started if pending.autocommit else 0.0,  # in a transaction: set when it ends
            pending.autocommit,
            error,
            self._still_held(),
            validates,
            pending.lock_timeout,
            lock_timeout_after,
        )
        self.steps.append(step)
        if not pending.autocommit:
            self.open.append((len(self.steps) - 1, started))

    def _strongest(self, modes: dict[int, set[str]]) -> tuple[Lock, ...]:
        """The strongest mode on each table, tables in name order."""
        return tuple(
            Lock(self.observer.tables[oid], max(held, key=lambda m: STRENGTH.get(m, -1)))
            for oid, held in sorted(modes.items(), key=lambda item: self.observer.tables[item[0]])
            if held
        )

    def _still_held(self) -> tuple[Lock, ...]:
        """The locks earlier statements took in the migration's transaction, which it still holds."""
        held: dict[str, str] = {}
        for index, _started in self.open:
            for lock in self.steps[index].locks:
                if STRENGTH.get(lock.mode, -1) > STRENGTH.get(held.get(lock.table, ""), -1):
                    held[lock.table] = lock.mode
        return tuple(Lock(table, mode) for table, mode in sorted(held.items()))

    def transaction_ended(self, conn: sa.Connection | None) -> None:
        """COMMIT or ROLLBACK of the migration's connection: the locks its statements held are gone."""
        self._release()

    @contextlib.contextmanager
    def listening(self, engine: sa.Engine) -> Iterator[None]:
        hooks: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", self.before),
            ("after_cursor_execute", self.after),
            ("handle_error", self.failed),
            ("commit", self.transaction_ended),
            ("rollback", self.transaction_ended),
        ]
        for name, hook in hooks:
            event.listen(engine, name, hook)
        try:
            yield
        finally:
            for name, hook in hooks:
                event.remove(engine, name, hook)


def _tables_and_rows(copy: LabDatabase) -> tuple[dict[int, str], dict[str, int]]:
    with copy.connect() as conn:
        tables = {int(oid): name for oid, name in conn.execute(sa.text(_TABLES))}
        rows = {name: conn.scalar(sa.text(f"SELECT count(*) FROM {_quoted(name)}")) or 0 for name in tables.values()}
    return tables, rows


def trace(revision: str = "head", lab: Lab | None = None) -> LockTrace:
    """Upgrade one revision (an id, "head", a unique prefix) on a copy, and trace each of its statements.

    The database must be at the revision's parent, as for a rehearsal; otherwise the trace says why not.
    """
    lab = lab or Lab()
    return trace_each([revision], lab)[0]


def trace_each(revisions: list[str], lab: Lab, in_place: bool = False) -> list[LockTrace]:
    """Several revisions, each the parent of the next, upgraded one by one on one copy, each traced.

    The database must be at the first one's parent. A revision that fails ends
    the run: the ones after it are not traced (they say so). `in_place`: the
    lab's database is itself a throw-away copy (a grader's): trace on it, and
    leave it where the revisions took it.
    """
    scripts = lab.runner.script()
    found = []
    for revision in revisions:
        script = scripts.get_revision(revision)
        if script is None:
            raise LabError(f"There is no revision {revision!r}.", "`alembic history` lists the revisions.")
        found.append(script)
    traces: list[LockTrace] = []
    for script, following in zip(found, found[1:], strict=False):
        if following.down_revision != script.revision:
            raise LabError(
                f"{following.revision} does not follow {script.revision}.", "Trace revisions in the order they run."
            )
    if not found:
        return traces
    first = found[0]
    parent = first.down_revision
    if not isinstance(parent, (str, type(None))):
        return [
            LockTrace(
                first.revision, Path(first.path), unavailable="it is a merge point: trace each revision it merges"
            )
        ]
    heads = lab.db.heads()
    if heads != ((parent,) if parent else ()):
        unavailable = (
            f"the database is at {', '.join(heads) or 'base'}, not at this revision's parent "
            f"({parent or 'base'}); `alembic upgrade {parent or 'base'}` first"
        )
        return [LockTrace(first.revision, Path(first.path), unavailable=unavailable)]
    try:
        with contextlib.nullcontext(lab.db) if in_place else lab.db.copy() as copy:
            for script in found:
                if traces and (traces[-1].error is not None or traces[-1].unavailable is not None):
                    unavailable = f"{traces[-1].revision} before it did not run"
                    traces.append(LockTrace(script.revision, Path(script.path), unavailable=unavailable))
                    continue
                traces.append(_on_copy(lab, copy, script.revision, Path(script.path)))
    except CopyUnavailable as why:
        return [LockTrace(script.revision, Path(script.path), unavailable=why.what) for script in found]
    return traces


def _on_copy(lab: Lab, copy: LabDatabase, revision: str, path: Path) -> LockTrace:
    tables, rows = _tables_and_rows(copy)
    # An engine of its own: the copy's engine carries the tracer's events, which must not see the observer.
    observer = sa.create_engine(copy.url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with observer.connect() as watching:
            tracer = _Tracer(_Source.read(path), _Observer(watching, tables), rows)
            with tracer.listening(copy.engine):
                result = lab.runner.on(copy).run(["upgrade", revision])
            tracer.transaction_ended(None)
    finally:
        observer.dispose()
    return LockTrace(revision, path, tuple(tracer.steps), None if result.ok else result.error, sqlstate=result.sqlstate)
