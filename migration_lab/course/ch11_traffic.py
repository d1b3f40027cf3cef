"""A busy app for the production chapters: background requests, a report idle in a transaction, a live panel.

Chapter 11 shows what a migration's lock does to an app that is serving
requests. Three things make that visible, and each is a context manager that
cleans up after itself even when the cell fails or is interrupted:

- `Traffic`: client threads calling the ai-api through `api.call` (in-process
  on the embedded route, over HTTP on the compose route), each request timed.
  A request slower than `CLIENT_TIMEOUT` counts as failed: that is when a real
  client gives up, and it is how "queued behind the lock" shows up.
- `idle_reader`: a connection that read user_profiles in a transaction and was
  left open, as a report or a forgotten psql does. It holds ACCESS SHARE, which
  an ALTER TABLE must wait for; the kit ends it (or a timer does).
- `LockPanel`: samples pg_stat_activity and pg_locks while a migration runs,
  shows who waits for whom (and requests per second) in a live widget, and
  remembers which lock modes it saw, so the final summary is a stable
  statement rather than counts or timings.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from ..database.compose import ComposeBackend
from ..lab import Lab
from . import app_client as api

CLIENT_TIMEOUT = 2.0  # seconds a client of the ai-api waits for an answer; slower counts as failed
CLIENTS = 3
READER_NAME = "lab report (idle in transaction)"
JOIN_WAIT = 30.0  # seconds to wait for a client thread whose request is still running at the end


@dataclass(frozen=True)
class Request:
    started: float  # time.monotonic()
    seconds: float
    answered: bool  # a 2xx-4xx answer, in whatever time

    def ok(self, timeout: float) -> bool:
        return self.answered and self.seconds <= timeout


@dataclass(frozen=True)
class Tally:
    """Requests that started in a window: how many were served in time, how many failed."""

    served: int
    failed: int  # errors, and answers slower than a client waits
    errors: int  # of those: an error (a 5xx, a refused connection), however fast
    seconds: float

    @property
    def per_second(self) -> float:
        return self.served / self.seconds if self.seconds > 0 else 0.0

    def statement(self) -> str:
        """What happened to the app, in words that are the same every run with the same outcome."""
        if self.failed:
            return (
                f"Requests during the migration: some FAILED (errors, or slower than the {CLIENT_TIMEOUT:.0f} s "
                "a client waits): the app stopped serving."
            )
        return "Requests during the migration: failed 0 - the app kept serving."


class Traffic:
    """Client threads calling the ai-api until the block ends; every request is timed and kept.

    `__exit__` stops the clients and waits for each one's request in flight,
    so no thread (and no connection of theirs) outlives the cell. Whatever
    holds a lock a request waits for must be released before that: nest the
    idle reader and the migration inside the `with Traffic(...)` block.
    """

    def __init__(
        self, lab: Lab, clients: int = CLIENTS, timeout: float = CLIENT_TIMEOUT, path: str = "/profiles"
    ) -> None:
        self.lab = lab
        self.clients = clients
        self.timeout = timeout
        self.path = path
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_url: str | None = None
        self._pinned = False

    def __enter__(self) -> Traffic:
        if not isinstance(self.lab.backend, ComposeBackend):
            # api.call sets DATABASE_URL around each in-process request and puts the old value back; with
            # several clients at once, one would put back "unset" while another runs. Pinned to the value
            # they all set, every put-back restores the same URL.
            self._saved_url = os.environ.get("DATABASE_URL")
            os.environ["DATABASE_URL"] = self.lab.backend.url()
            self._pinned = True
        try:
            for number in range(self.clients):
                thread = threading.Thread(target=self._client, name=f"lab-client-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every client and wait for its last request; put DATABASE_URL back."""
        self._stop.set()
        for thread in self._threads:
            thread.join(JOIN_WAIT)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._pinned:
            if self._saved_url is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = self._saved_url
            self._pinned = False

    @property
    def running(self) -> int:
        """Client threads still alive (0 once the block has ended)."""
        return sum(t.is_alive() for t in self._threads)

    def _client(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _ = api.call(self.lab, "GET", self.path)
                answered = status < 500
            except Exception:  # refused, reset, timed out: the client sees a failure, whatever the cause
                answered = False
            with self._lock:
                self.requests.append(Request(started, time.monotonic() - started, answered))

    def tally(self, since: float, until: float | None = None) -> Tally:
        """The requests in flight at some moment between `since` and `until` (monotonic times; until: now).

        A request that was waiting when the window opened counts: it is the
        one a lock makes wait longest. One still running is not kept yet.
        """
        end = time.monotonic() if until is None else until
        with self._lock:
            window = [r for r in self.requests if r.started <= end and r.started + r.seconds >= since]
        served = sum(r.ok(self.timeout) for r in window)
        return Tally(served, len(window) - served, sum(not r.answered for r in window), end - since)

    def wait_for_first_requests(self, count: int = 3, wait: float = 10.0) -> None:
        """Until the app has answered `count` requests (the first in-process call loads the app)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                if sum(r.answered for r in self.requests) >= count:
                    return
            time.sleep(0.02)


class IdleReader:
    """A session that read `table` in a transaction and then sat idle: it holds ACCESS SHARE until released."""

    def __init__(self, lab: Lab, table: str = "user_profiles", hold: float | None = None) -> None:
        self.lab = lab
        self.table = table
        self.hold = hold  # seconds after which it commits by itself (a report that finishes); None: until exit
        self._conn: sa.Connection | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> IdleReader:
        conn = self.lab.db.connect()
        try:
            conn.execute(sa.text("SELECT set_config('application_name', :name, false)"), {"name": READER_NAME})
            conn.commit()
            conn.execute(sa.text(f"SELECT count(*) FROM {self.table}"))  # ACCESS SHARE, held until the transaction ends
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if self.hold is not None:
            self._timer = threading.Timer(self.hold, self.release)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.release()

    @property
    def holding(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        """End the transaction and close the session (idempotent: the timer and the exit may both call it)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
        except sa.exc.DBAPIError:
            pass  # the server already ended the session: its lock went with it
        finally:
            conn.close()


# --- the panel: who waits for whom ------------------------------------------------------------

SESSIONS = """
SELECT a.pid, a.application_name, a.state, coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''),
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70),
       (SELECT string_agg(DISTINCT l.mode, ', ') FROM pg_locks l
         WHERE l.pid = a.pid AND l.relation = to_regclass(:table) AND l.granted),
       (SELECT string_agg(DISTINCT l.mode, ', ') FROM pg_locks l
         WHERE l.pid = a.pid AND l.relation = to_regclass(:table) AND NOT l.granted)
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
ORDER BY a.pid
"""

DDL = ("ALTER", "CREATE", "DROP")


@dataclass(frozen=True)
class Session:
    role: str  # "migration", "report", "request" or "other"
    state: str
    wait: str  # wait_event_type/wait_event, or ""
    query: str
    holds: str  # lock modes granted on the table
    waits_for: str  # lock modes requested on the table, not granted yet


def _role(application_name: str, query: str, state: str) -> str:
    if application_name == READER_NAME:
        return "report"
    if query.lstrip().upper().startswith(DDL) and state != "idle":
        return "migration"
    if state == "active" and "user_profiles" in query:
        return "request"
    return "other"


def sessions(lab: Lab, table: str, conn: sa.Connection | None = None) -> list[Session]:
    """The database's client sessions and their locks on `table`, as pg_stat_activity and pg_locks see them."""

    def read(c: sa.Connection) -> list[Session]:
        rows = c.execute(sa.text(SESSIONS), {"table": table}).all()
        c.rollback()
        return [
            Session(
                _role(name or "", query or "", state or ""),
                state or "",
                f"{kind}/{event}" if kind else "",
                query or "",
                holds or "",
                waits or "",
            )
            for _, name, state, kind, event, query, holds, waits in rows
        ]

    if conn is not None:
        return read(conn)
    with lab.db.connect() as own:
        return read(own)


@dataclass
class Seen:
    """Which lock modes each kind of session held or waited for on the table, over the whole run."""

    pairs: set[tuple[str, str, str]] = field(default_factory=set)  # (role, "holds" | "waits for", mode)

    def add(self, found: list[Session]) -> None:
        for session in found:
            if session.role == "other":
                continue
            for verb, modes in (("holds", session.holds), ("waits for", session.waits_for)):
                for mode in filter(None, (m.strip() for m in modes.split(","))):
                    self.pairs.add((session.role, verb, mode))

    def has(self, role: str, verb: str, mode: str | None = None) -> bool:
        return any(r == role and v == verb and (mode is None or m == mode) for r, v, m in self.pairs)

    def modes(self, role: str, verb: str) -> list[str]:
        return sorted({m for r, v, m in self.pairs if r == role and v == verb})


class LockPanel:
    """A live view of the table's sessions and the app's requests, sampled in a thread while a migration runs.

    On a notebook the panel is an ipywidgets HTML shown once and updated in
    place (its saved text is the first, fixed value); the updates never reach
    the cell's output, so nbval sees the same output every run.
    """

    EVERY = 0.1  # seconds between samples

    def __init__(self, lab: Lab, traffic: Traffic | None, table: str = "user_profiles", show: bool = True) -> None:
        self.lab = lab
        self.traffic = traffic
        self.table = table
        self.seen = Seen()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widget: Any = None
        if show:
            import ipywidgets as widgets
            from IPython.display import display

            self._widget = widgets.HTML(value="<i>live panel: pg_stat_activity, pg_locks, requests per second</i>")
            display(self._widget)

    def __enter__(self) -> LockPanel:
        self._thread = threading.Thread(target=self._sample, name="lab-lock-panel", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_WAIT)

    def _sample(self) -> None:
        try:
            with self.lab.db.connect() as conn:
                while not self._stop.is_set():
                    found = sessions(self.lab, self.table, conn)
                    self.seen.add(found)
                    if self._widget is not None:
                        self._widget.value = self.render(found)
                    self._stop.wait(self.EVERY)
        except Exception as error:  # the panel is a view: it must never take the cell down with it
            if self._widget is not None:
                self._widget.value = f"<i>panel stopped: {escape(str(error).splitlines()[0])}</i>"

    def render(self, found: list[Session]) -> str:
        """The panel's HTML: the last second's requests, then one row per session that touches the table."""
        now = time.monotonic()
        line = ""
        if self.traffic is not None:
            last = self.traffic.tally(now - 1.0, now)
            total = self.traffic.tally(0.0, now)
            line = (
                f"<b>ai-api</b>: {last.served} requests/s served in time; "
                f"{total.served} served, <b style='color:{'#c00' if total.failed else '#080'}'>"
                f"{total.failed} failed</b> so far<br>"
            )
        rows = "".join(
            f"<tr><td>{escape(s.role)}</td><td>{escape(s.state)}</td><td>{escape(s.wait)}</td>"
            f"<td>{escape(s.holds)}</td><td style='color:#c00'>{escape(s.waits_for)}</td>"
            f"<td><code>{escape(s.query)}</code></td></tr>"
            for s in found
            if s.role != "other" or s.holds or s.waits_for
        )
        columns = ("who", "state", "wait event", "holds", "waits for", "query")
        head = "<tr>" + "".join(f"<th scope='col'>{column}</th>" for column in columns) + "</tr>"
        return f"{line}<table>{head}{rows}</table>"


@contextmanager
def busy_app(
    lab: Lab, reader: bool = True, reader_holds: float | None = None, show: bool = True, table: str = "user_profiles"
) -> Iterator[tuple[Traffic, IdleReader | None, LockPanel]]:
    """Traffic, an idle reader (optional) and the panel, started in that order and ended in reverse.

    The reader goes before the traffic stops, so no client is left waiting
    for a lock; the panel stops last but one, the traffic last.
    """
    with Traffic(lab) as traffic:
        traffic.wait_for_first_requests()
        panel = LockPanel(lab, traffic, table, show)
        with panel:
            if reader:
                with IdleReader(lab, table, reader_holds) as idle:
                    yield traffic, idle, panel
            else:
                yield traffic, None, panel
