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

import contextlib
import gc
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from html import escape
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from ..database.compose import ComposeBackend
from ..lab import Lab
from . import app_client as api
from .ch13_replicas import describe

CLIENT_TIMEOUT = 2.0  # seconds a client of the ai-api waits for an answer; slower counts as failed
CLIENTS = 3
READER_NAME = "lab report (idle in transaction)"
JOIN_WAIT = 30.0  # seconds to wait for a client thread whose request is still running at the end


@dataclass(frozen=True)
class Call:
    """What one client asks the ai-api for, again and again: a method, a path, and a body made per request."""

    method: str
    path: str
    body: Callable[[int], Any] | None = None  # the request's number -> its JSON body (unique emails, say)

    @property
    def kind(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Request:
    started: float  # time.monotonic()
    seconds: float
    answered: bool  # a 2xx-4xx answer, in whatever time
    error: str = ""  # what failed, when it was not answered: a 5xx, an exception
    kind: str = ""  # the Call's kind, e.g. "POST /profiles/1/jobs"

    def ok(self, timeout: float) -> bool:
        return self.answered and self.seconds <= timeout


@dataclass(frozen=True)
class Tally:
    """Requests that started in a window: how many were served in time, how many failed."""

    served: int
    failed: int  # errors, and answers slower than a client waits
    errors: int  # of those: an error (a 5xx, a refused connection), however fast
    seconds: float
    first_error: str = ""  # the first of those errors, as the client saw it

    @property
    def per_second(self) -> float:
        return self.served / self.seconds if self.seconds > 0 else 0.0

    def statement(self) -> str:
        """What happened to the app, in words that are the same every run with the same outcome: which failures
        were errors (the app answered with one) and which were too slow (the client gave up)."""
        if not self.failed:
            return "Requests during the migration: failed 0 - the app kept serving."
        slow = f"slower than the {CLIENT_TIMEOUT:.0f} s a client waits, so the client gave up"
        if not self.errors:
            return f"Requests during the migration: some FAILED, {slow}: the app stopped serving."
        error = f"with an error ({self.first_error})" if self.first_error else "with an error"
        if self.failed > self.errors:
            return f"Requests during the migration: some FAILED {error}, and some were {slow}."
        return f"Requests during the migration: some FAILED {error}: the app answered, but could not serve them."


_FROZEN = threading.Lock()
_frozen_by = 0  # how many Traffic blocks run: the first freezes the collector's old objects, the last thaws them


@contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's full passes while the block runs.

    In one process the clients and the migration share the interpreter: a full collection of a notebook kernel's
    heap (a quarter of a million objects after a few chapters) stops every client thread at once, for 0.4 s and
    more on a busy machine, long enough for a client to give up for no reason of the database's. gc.freeze()
    moves them to a permanent generation; what the block allocates is still collected.
    """
    global _frozen_by
    with _FROZEN:
        _frozen_by += 1
        if _frozen_by == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _FROZEN:
            _frozen_by -= 1
            if _frozen_by == 0:
                gc.unfreeze()


class Traffic:
    """Client threads calling the ai-api until the block ends; every request is timed and kept.

    `__exit__` stops the clients and waits for each one's request in flight,
    so no thread (and no connection of theirs) outlives the cell. Whatever
    holds a lock a request waits for must be released before that: nest the
    idle reader and the migration inside the `with Traffic(...)` block.
    """

    def __init__(
        self,
        lab: Lab,
        clients: int = CLIENTS,
        timeout: float = CLIENT_TIMEOUT,
        path: str = "/profiles",
        calls: Sequence[Call] = (),
    ) -> None:
        """`clients` threads that GET `path`; or, given `calls`, one client per call."""
        self.lab = lab
        self.calls = tuple(calls) or (Call("GET", path),) * clients
        self.clients = len(self.calls)
        self.timeout = timeout
        self.path = path
        self._numbers = itertools.count()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_url: str | None = None
        self._pinned = False
        self._loaded = ExitStack()

    def __enter__(self) -> Traffic:
        # One load of main.py per saved content for all the clients, as uvicorn serves it.
        self._loaded.enter_context(api.kept_loaded(self.lab))
        self._loaded.enter_context(_old_objects_frozen())
        if not isinstance(self.lab.backend, ComposeBackend):
            # api.call sets DATABASE_URL around each in-process request and puts the old value back; with
            # several clients at once, one would put back "unset" while another runs. Pinned to the value
            # they all set, every put-back restores the same URL.
            self._saved_url = os.environ.get("DATABASE_URL")
            os.environ["DATABASE_URL"] = self.lab.backend.url()
            self._pinned = True
        try:
            for number, call in enumerate(self.calls):
                thread = threading.Thread(target=self._client, args=(call,), name=f"lab-client-{number}", daemon=True)
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
        self._loaded.close()
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

    def _client(self, call: Call) -> None:
        while not self._stop.is_set():
            body = call.body(next(self._numbers)) if call.body is not None else None
            started = time.monotonic()
            error = ""
            try:
                status, reply = api.call(self.lab, call.method, call.path, body)
                answered = status < 500
                if not answered:
                    error = f"HTTP {status}: {reply.get('detail', '') if isinstance(reply, dict) else ''}".strip(": ")
            except Exception as exception:  # refused, reset, an error the app raised: a failure, whatever the cause
                answered = False
                error = describe(exception)
            with self._lock:
                self.requests.append(Request(started, time.monotonic() - started, answered, error, call.kind))

    def tally(self, since: float, until: float | None = None) -> Tally:
        """The requests in flight at some moment between `since` and `until` (monotonic times; until: now).

        A request that was waiting when the window opened counts: it is the
        one a lock makes wait longest. One still running is not kept yet.
        """
        end = time.monotonic() if until is None else until
        window = self.window(since, end)
        served = sum(r.ok(self.timeout) for r in window)
        errors = [r.error for r in window if not r.answered]
        first = next((e for e in errors if e), "")
        return Tally(served, len(window) - served, len(errors), end - since, first)

    def window(self, since: float, until: float) -> list[Request]:
        """The requests in flight at some moment between `since` and `until`."""
        with self._lock:
            return [r for r in self.requests if r.started <= until and r.started + r.seconds >= since]

    def failed_kinds(self, since: float, until: float) -> list[str]:
        """The kinds of request (e.g. "POST /profiles") of which at least one failed in the window."""
        return sorted({r.kind for r in self.window(since, until) if not r.ok(self.timeout)})

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

    NAME = READER_NAME  # its application_name, which the panel and pg_blocking_pids show

    def __init__(self, lab: Lab, table: str = "user_profiles", hold: float | None = None) -> None:
        self.lab = lab
        self.table = table
        self.hold = hold  # seconds after which it commits by itself (a report that finishes); None: until exit
        self._conn: sa.Connection | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.pid: int | None = None  # its backend pid once it began: what pg_blocking_pids names

    def __enter__(self) -> IdleReader:
        conn = self.lab.db.connect()
        try:
            self.pid = conn.scalar(
                sa.text("SELECT pg_backend_pid() FROM set_config('application_name', :name, false)"),
                {"name": self.NAME},
            )
            conn.commit()
            self.begin(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if self.hold is not None:
            self.release_after(self.hold)
        return self

    def begin(self, conn: sa.Connection) -> None:
        """What the session does in its transaction before it sits idle: here, read the table."""
        conn.execute(sa.text(f"SELECT count(*) FROM {self.table}"))  # ACCESS SHARE, held until the transaction ends

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.release()

    @property
    def holding(self) -> bool:
        return self._conn is not None

    def configure(self, settings: tuple[tuple[str, str], ...]) -> None:
        """Set the idle session's own settings (its transaction stays open; its idle time starts anew).

        Under the lock release() takes: a timer thread may end the session at the same moment.
        """
        with self._lock:
            if self._conn is not None:
                for name, value in settings:
                    self._conn.execute(sa.text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})

    def release_after(self, seconds: float) -> None:
        """End the transaction `seconds` from now (a report that finishes), unless the exit comes first."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(seconds, self.release)
        self._timer.daemon = True
        self._timer.start()

    def release(self) -> None:
        """End the transaction and close the session (idempotent: the timer and the exit may both call it)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
        except sa.exc.SQLAlchemyError:
            pass  # the server already ended the session (or invalidated it): its lock went with it
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # a timer thread: never a traceback in the cell
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
    """Which lock modes each kind of session held or waited for on the table, over the whole run, and how long
    the longest wait of each kind lasted (as often as it was sampled)."""

    pairs: set[tuple[str, str, str]] = field(default_factory=set)  # (role, "holds" | "waits for", mode)
    longest_wait: dict[str, float] = field(default_factory=dict)  # role -> seconds, its longest wait for a lock
    _since: dict[str, float] = field(default_factory=dict, repr=False)  # role -> when its current wait began

    def add(self, found: list[Session], at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        waiting = set()
        for session in found:
            if session.role == "other":
                continue
            for verb, modes in (("holds", session.holds), ("waits for", session.waits_for)):
                for mode in filter(None, (m.strip() for m in modes.split(","))):
                    self.pairs.add((session.role, verb, mode))
            if session.waits_for:
                waiting.add(session.role)
        for role in waiting:
            since = self._since.setdefault(role, now)
            self.longest_wait[role] = max(self.longest_wait.get(role, 0.0), now - since)
        for role in set(self._since) - waiting:
            del self._since[role]

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
        if self._widget is not None and not self._widget.value.startswith("<i>panel stopped"):
            self._widget.value = self.render_summary()

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

    def _requests_line(self, found: list[Session] | None) -> str:
        """The app's side: answered in the last second, waiting now, and since the start, answered and failed."""
        if self.traffic is None:
            return ""
        now = time.monotonic()
        last = self.traffic.tally(now - 1.0, now)
        total = self.traffic.tally(0.0, now)
        waiting = "" if found is None else f", {sum(s.role == 'request' and bool(s.waits_for) for s in found)} waiting"
        color = "#c00" if total.failed else "#080"
        return (
            f"<b>ai-api</b> ({self.traffic.clients} clients): last second {last.served} answered in time{waiting}. "
            f"Since the start: {total.served} answered in time, <b style='color:{color}'>{total.failed} failed</b> "
            f"(an error, or slower than the {self.traffic.timeout:.0f} s a client waits).<br>"
        )

    def render(self, found: list[Session]) -> str:
        """The panel's HTML: the requests, then one row per session that holds or waits for a lock on the table."""
        rows = "".join(
            _row(s.role, s.state, s.wait, s.holds, s.waits_for, f"<code>{escape(s.query)}</code>", red=4)
            for s in found
            if s.role != "other" or s.holds or s.waits_for
        )
        head = _row("who", "state", "wait event", "holds", "waits for", "query", cell="th")
        return f"{self._requests_line(found)}<table style='{TABLE_STYLE}'>{head}{rows}</table>{LEGEND}"

    def render_summary(self) -> str:
        """What the panel shows once the run is over: the requests, and each kind of session's locks and waits."""
        rows = "".join(
            _row(
                role,
                ", ".join(self.seen.modes(role, "holds")),
                ", ".join(self.seen.modes(role, "waits for")),
                f"{self.seen.longest_wait[role]:.1f} s" if role in self.seen.longest_wait else "",
                red=2,
            )
            for role in ("migration", "report", "request")
            if self.seen.has(role, "holds") or self.seen.has(role, "waits for")
        )
        head = _row("who", "held", "waited for", "longest wait", cell="th")
        return f"<i>The run is over.</i> {self._requests_line(None)}<table style='{TABLE_STYLE}'>{head}{rows}</table>"


TABLE_STYLE = "border-collapse: collapse"
# Who is who in the panel's rows: "other" are the sessions the panel cannot name by what they run now.
LEGEND = (
    "<small>who: <b>migration</b>, a DDL statement running or waiting for its lock; <b>report</b>, the lab's report, "
    "idle in transaction; <b>request</b>, an ai-api query; <b>other</b>, any other session with a lock on the table, "
    "e.g. the migration or a request between two of its statements (idle in transaction: its transaction is still "
    "open, and so are its locks).</small>"
)


def _row(*values: str, cell: str = "td", red: int | None = None) -> str:
    """One table row, every cell left-aligned at the top, so the columns line up with their headers; the `red`
    column (a lock waited for) in red."""
    style = "text-align: left; vertical-align: top; padding: 0 0.6em 0 0"
    scope = " scope='col'" if cell == "th" else ""  # a header cell names its column for a screen reader
    cells = "".join(
        f"<{cell}{scope} style='{style}{'; color: #c00' if n == red else ''}'>"
        f"{value if value.startswith('<code>') else escape(value)}</{cell}>"
        for n, value in enumerate(values)
    )
    return f"<tr>{cells}</tr>"


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
