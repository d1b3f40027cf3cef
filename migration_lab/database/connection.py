"""One lab database as the kit uses it: connections, the migration lock, wipe, copies.

Every part of the kit that touches the database goes through one
`LabDatabase`, so the rules hold everywhere:

- No idle connections are kept (`NullPool`). A pooled idle connection in a
  notebook kernel would block `CREATE DATABASE ... TEMPLATE`, which is how
  rehearsals copy the database; a fresh connection costs a few milliseconds.
- One migration at a time: `lock()` holds a PostgreSQL advisory lock for as
  long as a command, a reset or a wipe runs, across processes and kernels.
- A nuke destroys the server itself, advisory locks and all: `destroying()`
  holds a file lock (`guard`, beside the lab's data) exclusively, which every
  `lock()` of the checkout takes shared first. A nuke waits for the commands
  running, and a command started during a nuke waits for the fresh database.
- `copy()` makes a throw-away clone of the database for a rehearsal and drops
  it afterwards: whatever a revision script does there (COMMIT, an
  `autocommit_block`, `CREATE INDEX CONCURRENTLY`) cannot reach the original.
  Its owner holds an advisory lock named after it for the copy's life; a copy
  whose lock nobody holds was left by a killed process, and `sweep_copies()`
  drops it: at `up`, `status`, every new copy and every command under `lock()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from ..errors import Busy, CopyUnavailable, LabError, Unreachable
from .sql import create_private_database, quote, said

# Any constant works; every lab process on the same database shares this one.
ADVISORY_LOCK_KEY = 0x4D4C_4142  # "MLAB"
LOCK_WAIT_SECONDS = 60.0
# How long a wipe or a copy waits for another session's table locks before saying so.
LOCK_TIMEOUT = "5s"
COPY_PREFIX = "mlab_copy_"
# The first key of a copy's advisory lock (the second: from its name), on the maintenance database.
COPY_LOCK_CLASS = 0x4D4C_4143  # "MLAC"
_COPY_KEY = "('x' || substr(md5(:name), 1, 8))::bit(32)::int"


class LabDatabase:
    """One PostgreSQL database the lab's migrations run against."""

    def __init__(
        self, url: str | Callable[[], str], where: str = "", start_hint: str = "", guard: Path | None = None
    ) -> None:
        # A callable URL is asked each time: an embedded server's socket may move when it restarts.
        self._url = url
        self.guard = guard  # the file lock a nuke holds exclusively (None: a copy, a workshop's admin)
        self._where = where
        self.start_hint = start_hint or "Start it with `python -m migration_lab up` (or `make lab`)."
        self._engine: sa.Engine | None = None
        self._engine_url = ""

    @property
    def url(self) -> str:
        return self._url() if callable(self._url) else self._url

    @property
    def where(self) -> str:
        return self._where or make_url(self.url).render_as_string(hide_password=True)

    @property
    def name(self) -> str:
        return make_url(self.url).database or ""

    @property
    def engine(self) -> sa.Engine:
        url = self.url
        if self._engine is None or self._engine_url != url:
            self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
            self._engine_url = url
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def unreachable(self, error: sa.exc.DBAPIError | None = None) -> Unreachable:
        """What to say when a connection fails; with `error`, libpq's own first line: a refused password is not a
        server that is down."""
        reason = f": {said(error)}" if error is not None else ""
        return Unreachable(f"Cannot reach the lab database ({self.where}){reason}.", self.start_hint)

    def connect(self) -> sa.Connection:
        """A new connection; `Unreachable` (a LabError) when the server does not answer."""
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as error:
            raise self.unreachable(error) from error

    def is_reachable(self) -> bool:
        try:
            with self.connect():
                return True
        except Unreachable:
            return False

    def heads(self, conn: sa.Connection | None = None) -> tuple[str, ...]:
        """The revisions recorded in alembic_version (empty before the first upgrade)."""
        if conn is not None:
            return tuple(MigrationContext.configure(conn).get_current_heads())
        with self.connect() as own:
            return tuple(MigrationContext.configure(own).get_current_heads())

    @contextmanager
    def lock(self, wait: float = LOCK_WAIT_SECONDS) -> Iterator[sa.Connection]:
        """A connection holding the lab's migration lock: one migration, reset or wipe at a time.

        A session-level advisory lock: it survives the transactions alembic
        commits, and goes with the session if the process dies. The guard file
        is held shared first: a nuke of the server is never under way meanwhile.
        Every command under it first sweeps the copies a killed process left.
        """
        with self._guarded(fcntl.LOCK_SH, wait), self._advisory_lock(wait) as conn:
            if conn.scalar(_ANY_COPY, {"prefix": _COPY_PATTERN}):  # pg_database is shared: seen from any database
                self.sweep_copies()
            conn.commit()
            yield conn

    @contextmanager
    def destroying(self, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        """Hold the guard exclusively: for a nuke, which deletes the server with its advisory locks.

        Waits for the commands and resets of this checkout that are running; those started
        meanwhile wait until it is done, then find the fresh database.
        """
        with self._guarded(fcntl.LOCK_EX, wait):
            yield

    @contextmanager
    def _guarded(self, mode: int, wait: float) -> Iterator[None]:
        fd = self._open_guard()
        if fd is None:  # no guard (a copy), or a read-only checkout: the advisory lock alone
            yield
            return
        with os.fdopen(fd, "a") as handle:  # flock goes with its holder, even a killed one: never stale
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Busy(
                            f"A nuke of the lab database has been running for {wait:.0f} s."
                            if mode == fcntl.LOCK_SH
                            else f"Another command has used the lab database for {wait:.0f} s; the nuke did not start.",
                            "Wait for it to finish (another notebook or terminal), then try again.",
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open_guard(self) -> int | None:
        """The guard, opened; None without one: no guard (a copy), no lab folder yet (nothing runs there), a folder
        that is not this user's (root must not leave files in another user's lab: the backend refuses that)."""
        if self.guard is None:
            return None
        try:
            if self.guard.parent.stat().st_uid != os.geteuid():
                return None
            # 0600: another OS user could flock a file they can open, and hold the lab up.
            return os.open(self.guard, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            return None

    @contextmanager
    def _advisory_lock(self, wait: float) -> Iterator[sa.Connection]:
        conn = self.connect()
        try:
            deadline = time.monotonic() + wait
            while not conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}):
                conn.rollback()
                if time.monotonic() > deadline:
                    raise Busy(
                        f"Another process has held the lab's migration lock for {wait:.0f} s.",
                        "Wait for the other command (another notebook or terminal) to finish, then try again.",
                    )
                time.sleep(0.05)
            conn.commit()
            yield conn
        finally:
            try:
                if conn.in_transaction():
                    conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                conn.commit()
            except sa.exc.DBAPIError:
                pass  # the connection is gone, and the lock went with its session
            conn.close()

    def wipe(self, conn: sa.Connection) -> None:
        """Drop every table, type and row of schema public, alembic_version too.

        `conn` holds the lock. When this role owns schema public it is dropped and
        made again; otherwise (a shared server's learner role) the objects the role
        owns are dropped one by one, so a role that owns its tables but not the
        schema still gets a clean slate.
        """
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        try:
            for statement in self.wipe_statements(conn):
                conn.execute(sa.text(statement))
            conn.commit()
        except sa.exc.OperationalError as error:
            conn.rollback()
            if getattr(error.orig, "pgcode", None) == "55P03":  # lock_not_available
                raise LabError(
                    "Another session is using the lab's tables, so they cannot be dropped now.",
                    "Finish or close it (an open transaction in psql, another notebook), then try again.",
                ) from error
            raise

    def wipe_statements(self, conn: sa.Connection) -> list[str]:
        """The SQL `wipe` runs, for this role in this database (a restore runs it with the dump, in one transaction)."""
        owns_schema = conn.scalar(
            sa.text("SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = 'public'")
        )
        if owns_schema or owns_schema is None:
            return ["DROP SCHEMA IF EXISTS public CASCADE", "CREATE SCHEMA public"]
        others = _foreign_objects(conn)
        if others:
            raise LabError(
                f"Schema public holds objects another role owns: {', '.join(others[:5])}.",
                "Ask the server's administrator to give them to your role (REASSIGN OWNED), "
                "or use a database of your own.",
            )
        return [f"DROP {kind} IF EXISTS {name} CASCADE" for kind, name in conn.execute(sa.text(_OWN_OBJECTS)).all()]

    def problems(self) -> list[str]:
        """What stops the lab from working in this database (empty when nothing)."""
        with self.connect() as conn:
            can_create = conn.scalar(sa.text("SELECT has_schema_privilege('public', 'CREATE')"))
            foreign = _foreign_objects(conn)
        found = []
        if not can_create:
            found.append(
                "your role may not create tables in schema public "
                "(GRANT CREATE ON SCHEMA public TO <role>, or a database of your own)"
            )
        if foreign:
            found.append(
                f"schema public holds objects another role owns ({', '.join(foreign[:5])}): "
                "the lab could not reset them (REASSIGN OWNED BY <owner> TO <role>)"
            )
        return found

    # --- throw-away copies, for rehearsals ------------------------------------------

    def _admin(self) -> sa.Engine:
        """An autocommit engine on the server's maintenance database (CREATE/DROP DATABASE)."""
        return maintenance_engine(self.url)

    @contextmanager
    def copy(self, wait: float = 2.0) -> Iterator[LabDatabase]:
        """A throw-away clone of this database (`CREATE DATABASE ... TEMPLATE`), dropped afterwards.

        PostgreSQL copies only a database nobody is connected to. Idle sessions
        (an ai-api's pool, a forgotten psql) are closed; a session in the middle
        of something is waited for, up to `wait` seconds, and then named in the
        `CopyUnavailable` raised.
        """
        name = f"{COPY_PREFIX}{secrets.token_hex(6)}"
        with self._guarded(fcntl.LOCK_SH, LOCK_WAIT_SECONDS):  # a nuke waits for the rehearsal, as for a command
            yield from self._copy(name, wait)

    def _copy(self, name: str, wait: float) -> Iterator[LabDatabase]:
        admin = self._admin()
        try:
            try:
                owner = admin.connect()
            except sa.exc.OperationalError as error:
                raise CopyUnavailable(f"cannot reach the server's maintenance database ({said(error)})") from error
            with owner:
                # Named as ours before it exists, for as long as it exists: a sweep leaves it alone.
                hold_as_copy(owner, name)
                _sweep(owner)
                self._clone(owner, name, wait)
                copy = LabDatabase(
                    make_url(self.url).set(database=name).render_as_string(hide_password=False),
                    where=f"a throw-away copy of {self.name}",
                )
                try:
                    yield copy
                finally:
                    copy.dispose()
                    # A server that died meanwhile cannot drop it: the error that says so is the one to see, not
                    # this cleanup's; the next command's sweep drops the copy.
                    with contextlib.suppress(sa.exc.DBAPIError):
                        owner.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)"))
        finally:
            admin.dispose()

    def sweep_copies(self) -> list[str]:
        """Drop the throw-away copies a killed process left (best effort: never fails a command); their names."""
        admin = self._admin()
        try:
            with admin.connect() as conn:
                return _sweep(conn)
        except sa.exc.DBAPIError:
            return []
        finally:
            admin.dispose()

    def _clone(self, conn: sa.Connection, name: str, wait: float) -> None:
        deadline = time.monotonic() + wait
        # First, or PostgreSQL waits 5 s for them before refusing (the ai-api's pool on the compose route).
        self._close_idle_sessions(conn)
        while True:
            try:
                # A copy holds the learner's rows: on a shared server no other role may connect to it.
                create_private_database(conn, name, self.name)
                return
            except sa.exc.DBAPIError as error:
                code = getattr(error.orig, "pgcode", None)
                if code == "42501":  # insufficient_privilege
                    raise CopyUnavailable("this role may not create databases (it needs CREATEDB)") from error
                if code != "55006":  # object_in_use: somebody is connected to the original
                    raise CopyUnavailable(said(error)) from error
            busy = self._close_idle_sessions(conn)
            if busy and time.monotonic() > deadline:
                raise CopyUnavailable("another session is using the database: " + "; ".join(busy))
            time.sleep(0.02)

    def _close_idle_sessions(self, conn: sa.Connection) -> list[str]:
        """Close the idle sessions on the original; describe the ones doing something.

        An idle session that holds an advisory lock is doing something: the lab's migration lock, held by another
        process's reset, restore or migration between two statements (or a deploy's guard). Ending it would end
        that command half-way; the copy waits for it instead.
        """
        rows = conn.execute(
            sa.text(
                "SELECT a.pid, a.state, coalesce(nullif(a.application_name, ''), a.usename) AS who, "
                "EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted), "
                "EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted "
                "AND l.classid = 0 AND l.objid = :key AND l.objsubid = 1) "
                "FROM pg_stat_activity a WHERE a.datname = :db AND a.pid <> pg_backend_pid()"
            ),
            {"db": self.name, "key": ADVISORY_LOCK_KEY},
        ).all()
        busy = []
        for pid, state, who, locking, ours in rows:
            if state == "idle" and not locking:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            elif ours:
                busy.append(f"{who} (pid {pid}) holds the lab's migration lock: another lab command is running")
            elif locking:
                busy.append(
                    f"{who} (pid {pid}) holds an advisory lock (a psql session's pg_advisory_lock, a deploy's guard): "
                    "end it there (SELECT pg_advisory_unlock_all(), or close it)"
                )
            else:
                busy.append(f"{who} (pid {pid}, {state})")
        return busy


_COPY_PATTERN = COPY_PREFIX.replace("_", r"\_") + "%"
_COPIES = "FROM pg_database WHERE datname LIKE :prefix AND pg_has_role(datdba, 'USAGE')"
_ANY_COPY = sa.text(f"SELECT EXISTS (SELECT 1 {_COPIES})")


def maintenance_engine(url: str) -> sa.Engine:
    """An autocommit engine on the maintenance database of `url`'s server: CREATE/DROP DATABASE, and the copies'
    advisory locks (an advisory lock belongs to one database: a sweep sees only those taken where it looks)."""
    return sa.create_engine(
        make_url(url).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5},
    )


def hold_as_copy(conn: sa.Connection, name: str) -> None:
    """Name database `name` (a COPY_PREFIX one, made after this) as `conn`'s own for as long as `conn` lives: the
    advisory lock a sweep tests. A throw-away database made without it (the migration tests' scratch one) outlived
    a killed kernel for good; held, the next command's sweep drops it once its owner is gone. `conn` is on the
    maintenance database (`maintenance_engine`), where sweeps look."""
    conn.execute(sa.text(f"SELECT pg_advisory_lock({COPY_LOCK_CLASS}, {_COPY_KEY})"), {"name": name})


def _sweep(conn: sa.Connection) -> list[str]:
    """On the maintenance database: drop each copy (of a database this role may use) whose owner's lock is free."""
    names = conn.scalars(sa.text(f"SELECT datname {_COPIES} ORDER BY 1"), {"prefix": _COPY_PATTERN}).all()
    swept = []
    for name in names:
        if not conn.scalar(sa.text(f"SELECT pg_try_advisory_lock({COPY_LOCK_CLASS}, {_COPY_KEY})"), {"name": name}):
            continue  # its owner is alive, using it
        try:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)"))
                swept.append(name)
        finally:
            conn.execute(sa.text(f"SELECT pg_advisory_unlock({COPY_LOCK_CLASS}, {_COPY_KEY})"), {"name": name})
    return swept


# What this role owns in schema public, as (kind, qualified name) for DROP ... CASCADE: tables, views,
# sequences, types, and functions (a chapter's trigger functions), leaving out what an extension owns.
_OWN_OBJECTS = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      ELSE 'TABLE' END, format('public.%I', c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND pg_has_role(c.relowner, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT 'TYPE', format('public.%I', t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c') AND pg_has_role(t.typowner, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       format('public.%I(%s)', p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND pg_has_role(p.proowner, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
"""


def _foreign_objects(conn: sa.Connection) -> list[str]:
    """Tables and types in schema public that this role does not own (and so cannot drop)."""
    return list(
        conn.scalars(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') "
                "AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1"
            )
        )
    )
