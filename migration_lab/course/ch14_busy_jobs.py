"""The busy app of chapters 14 and 15: jobs read and written, a session idle in its transaction, a graded deploy.

Chapter 11's busy app reads one table. The unsafe-operations catalogue needs
more: half of it blocks writes only (a foreign key's ShareRowExclusiveLock, an
index build's ShareLock), and most of it is about `job_entries`, the big
table. So these chapters start from chapter 11's start plus:

- two routes in main.py (`GET` and `POST /profiles/{id}/jobs`) and four
  clients, one per call: profiles and jobs, read and written;
- `job_entries.reviewer_id` and `request_key` (a revision of their own) and
  ROWS jobs;
- the pressure every real database has: a job worker that inserted a job and
  sits idle in its transaction (RowExclusiveLock), or a report idle on a table
  (AccessShareLock). That, not the table's size, is what makes a strong lock
  wait here, and every request queues behind a waiting lock. The session lets
  go HOLDS seconds after the migration starts to wait for it, longer than a
  client waits: counted from the wait, not from the start, so a slow machine
  cannot shorten what the requests queue for (nor a fast one lengthen the
  chapter), and its own settings (an idle_in_transaction_session_timeout) are
  set at that moment, so the server ends it that long after the wait began.

A deploy here is `alembic upgrade head`, retried after a lock timeout
(SQLSTATE 55P03) as a deploy script would. `replay` grades a release on a
throw-away copy of the database: its downgrade, the lock trace of each of its
revisions, and its upgrade under the traffic and the pressure, with the failed
requests counted. The learner's database never receives a check's traffic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from ..database.connection import ADVISORY_LOCK_KEY
from ..database.url import UrlBackend
from ..errors import CopyUnavailable
from ..lab import Lab
from ..running.runner import RunResult
from ..tools.lock_trace import LockTrace, trace_each
from ..workspace.baseline import CHECKPOINTS_DIR
from ..workspace.checkpoints import PHONE_NUMBER, SEED_PHONES, SEED_PROFILES, Checkpoint
from ..workspace.edits import add_column, replace_text
from .ch11_traffic import Call, IdleReader, Tally, Traffic
from .round_trip import Shape, built_to, shape

ROWS = 20_000  # jobs at the chapters' start: enough for a lock trace to show what a scan or a rewrite costs
CLIENT_TIMEOUT = 1.0  # seconds a client waits here (chapter 11's waited 2 s): slower counts as failed
HOLDS = 1.3  # seconds the idle session keeps its transaction once a migration waits for its lock (> CLIENT_TIMEOUT)
LONGEST_HOLD = 10.0  # seconds it keeps it at most when nobody ever waits for it (a migration that never blocks)
ATTEMPTS = 8  # how often a deploy tries a migration that gave up on its lock
PAUSE = 0.3  # seconds between two attempts
START = "f6b2d8e4a0c7"  # the chapters' start: job_entries.reviewer_id and request_key
WORKER_NAME = "lab worker (idle in transaction)"

JOB_ROUTES = replace_text(
    "\n\n# --- which models are running",
    (CHECKPOINTS_DIR / "fragments" / "job_routes.py").read_text().rstrip() + "\n\n\n# --- which models are running",
)
SEED_JOBS = f"""
UPDATE job_entries SET reviewer_id = user_id, request_key = md5('seed job ' || id);
INSERT INTO job_entries (user_id, prompt, reviewer_id, request_key)
SELECT 1 + i % 3, 'summarise thread ' || i, 1 + (i + 1) % 3, md5('job ' || i) FROM generate_series(1, {ROWS}) i;
"""
JOBS = Checkpoint(
    edits=(
        PHONE_NUMBER,
        add_column("JobEntry", "reviewer_id = Column(Integer, nullable=True)"),
        add_column("JobEntry", "request_key = Column(String(64), nullable=True)"),
        JOB_ROUTES,
    ),
    revisions=("a1c4e7f20b13_add_phone_number_to_profile.py", "f6b2d8e4a0c7_add_reviewer_and_request_key_to_jobs.py"),
    seed=(SEED_PROFILES, SEED_PHONES, SEED_JOBS),
)


TRAFFIC_EMAILS = "traffic-%@example.org"  # what the clients write, marked so it can be taken away afterwards
TRAFFIC_PROMPTS = "traffic: %"


def _signup(number: int) -> dict[str, str]:
    return {"name": f"Signup {number}", "email": f"traffic-{number}-{time.time_ns()}@example.org"}


CALLS = (
    Call("GET", "/profiles"),
    Call("GET", "/profiles/1/jobs"),
    Call("POST", "/profiles/1/jobs", lambda number: {"prompt": f"traffic: summarise thread {number}"}),
    Call("POST", "/profiles", _signup),
)


def forget_traffic(lab: Lab) -> None:
    """Delete the profiles and jobs the clients wrote: the lab's rows are again the ones the chapter describes
    (a lock trace prints row counts)."""
    with lab.db.connect() as conn:
        for table, column, marked in (
            ("job_entries", "prompt", TRAFFIC_PROMPTS),
            ("jobs", "prompt", TRAFFIC_PROMPTS),  # chapter 15 renames job_entries
            ("user_profiles", "email", TRAFFIC_EMAILS),
        ):
            if conn.scalar(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}) == "r":
                conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} LIKE :marked"), {"marked": marked})
        conn.commit()


def lab_of(where: Any) -> Lab:
    """A chapter (what the notebook holds) or a Lab."""
    return where if isinstance(where, Lab) else where.lab


# --- the pressure: a session idle in its transaction ------------------------------------------------


class IdleWorker(IdleReader):
    """A job worker that inserted a job and sat idle in its transaction: RowExclusiveLock on job_entries."""

    NAME = WORKER_NAME

    def begin(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("INSERT INTO job_entries (user_id, prompt, reviewer_id) VALUES (2, 'a worker''s job', 2)"))


@dataclass(frozen=True)
class Pressure:
    """Who sits idle in a transaction while the migration runs: a "worker" (writes) or a "report" (reads)."""

    who: str  # "worker" or "report"
    table: str = "job_entries"
    settings: tuple[tuple[str, str], ...] = ()  # the idle session's own settings (idle_in_transaction_session_timeout)

    def __str__(self) -> str:
        if self.who == "worker":
            said = "a job worker has inserted a job and keeps its transaction open"
        else:
            said = f"a report has read {self.table} and keeps its transaction open"
        said += f" {HOLDS} s longer once the migration waits for it"
        own = ", ".join(f"{name} = {value}" for name, value in self.settings)
        return f"{said} (its session has {own})" if own else said

    @contextmanager
    def holding(self, lab: Lab) -> Iterator[IdleReader]:
        """The idle session for the time of the block: it lets go HOLDS s after a session first waits for its lock
        (its settings set at that moment), at LONGEST_HOLD s if nobody does, or when the block ends."""
        idle = (IdleWorker if self.who == "worker" else IdleReader)(lab, self.table, LONGEST_HOLD)
        with idle:
            stop = threading.Event()
            watcher = threading.Thread(
                target=_on_first_wait, args=(lab, idle, self.settings, stop), name="lab-idle-watch", daemon=True
            )
            watcher.start()
            try:
                yield idle
            finally:
                stop.set()
                watcher.join(30)


_WAITS_FOR = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE :pid = ANY (pg_blocking_pids(pid)))"


def _on_first_wait(lab: Lab, idle: IdleReader, settings: tuple[tuple[str, str], ...], stop: threading.Event) -> None:
    """Poll pg_blocking_pids every 20 ms; when a session first waits for `idle`'s lock, apply `settings` to it and
    have it let go HOLDS s later."""
    try:
        with lab.db.connect() as conn:
            while not stop.is_set():
                waited = conn.scalar(sa.text(_WAITS_FOR), {"pid": idle.pid})
                conn.rollback()
                if waited:
                    idle.configure(settings)
                    idle.release_after(HOLDS)
                    return
                stop.wait(0.02)
    except Exception:  # a helper thread never prints a traceback into the learner's cell (an unreachable server)
        idle.release_after(HOLDS)  # the watch is gone: the session lets go as it would have


WORKER = Pressure("worker")
REPORT_ON_JOBS = Pressure("report", "job_entries")
REPORT_ON_PROFILES = Pressure("report", "user_profiles")


# --- who waits for whom: pg_locks on every table, pg_blocking_pids for the migration ---------------------

_SAMPLE = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), left(regexp_replace(coalesce(a.query, ''),
       '\\s+', ' ', 'g'), 70),
       EXISTS (SELECT 1 FROM pg_locks k WHERE k.pid = a.pid AND k.locktype = 'advisory' AND k.objid = :key
               AND k.granted) AS migrating,
       c.relname, l.mode, l.granted,
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END
FROM pg_stat_activity a
LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
LEFT JOIN pg_class c ON c.oid = l.relation AND c.relkind IN ('r', 'p', 'v') AND c.relnamespace = 'public'::regnamespace
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
ORDER BY a.pid
"""


def _role(name: str, migrating: bool) -> str:
    """Who a session is: the migration (it holds the kit's migration lock), the idle worker or report, or the
    app serving a request."""
    if migrating:
        return "migration"
    if name == WORKER_NAME:
        return "worker"
    if name == IdleReader.NAME:
        return "report"
    return "request"


@dataclass
class Watch:
    """Samples pg_locks while a migration runs: who held or waited for which lock on which table, and whom
    pg_blocking_pids named for a waiting migration. A live panel in the notebook, when shown."""

    lab: Lab
    traffic: Traffic | None = None
    show: bool = True
    every: float = 0.05
    pairs: set[tuple[str, str, str, str]] = field(default_factory=set)  # (role, "holds"/"waits for", mode, table)
    blockers: set[str] = field(default_factory=set)  # roles of the sessions that blocked the migration
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _widget: Any = None

    def __enter__(self) -> Watch:
        if self.show:
            import ipywidgets as widgets
            from IPython.display import display

            self._widget = widgets.HTML(value="<i>live panel: pg_locks, pg_blocking_pids, requests per second</i>")
            display(self._widget)
        self._thread = threading.Thread(target=self._sample, name="lab-lock-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _sample(self) -> None:
        try:
            with self.lab.db.connect() as conn:
                while not self._stop.is_set():
                    rows = list(conn.execute(sa.text(_SAMPLE), {"key": ADVISORY_LOCK_KEY}).all())
                    conn.rollback()
                    self._add(rows)
                    if self._widget is not None:
                        self._widget.value = self._render(rows)
                    self._stop.wait(self.every)
        except Exception as error:  # the watch is a view: it never takes the cell down with it
            if self._widget is not None:
                self._widget.value = f"<i>panel stopped: {escape(str(error).splitlines()[0])}</i>"

    def _add(self, rows: list[Any]) -> None:
        roles = {pid: _role(name, migrating) for pid, name, _state, _q, migrating, *_ in rows}
        for pid, _name, _state, _query, _migrating, table, mode, granted, blocking in rows:
            role = roles[pid]
            if table and mode:
                self.pairs.add((role, "holds" if granted else "waits for", mode, table))
            if role == "migration" and blocking:
                self.blockers.update(roles.get(b, "another session") for b in blocking)

    def _render(self, rows: list[Any]) -> str:
        line = ""
        if self.traffic is not None:
            now = time.monotonic()
            last = self.traffic.tally(now - 1.0, now)
            line = f"<b>ai-api</b>: {last.served} requests served in time in the last second, {last.failed} failed<br>"
        cells = []
        for _pid, name, state, query, migrating, table, mode, granted, _blocking in rows:
            role = _role(name, migrating)
            if table:
                colour = "" if granted else " style='color:#c00'"
                verb = "holds" if granted else "waits for"
                cells.append(
                    f"<tr><td>{escape(role)}</td><td>{escape(state)}</td><td{colour}>{verb} {escape(mode)} "
                    f"on {escape(table)}</td><td><code>{escape(query)}</code></td></tr>"
                )
        head = "<tr><th>who</th><th>state</th><th>lock</th><th>query</th></tr>"
        return f"{line}<table>{head}{''.join(cells)}</table>"

    def has(self, role: str, verb: str, mode: str | None = None, table: str | None = None) -> bool:
        return any(r == role and v == verb and mode in (None, m) and table in (None, t) for r, v, m, t in self.pairs)

    def locks(self, role: str, verb: str) -> list[str]:
        """ "Mode on table" for each lock the role held (or waited for), in a stable order."""
        return sorted({f"{m} on {t}" for r, v, m, t in self.pairs if r == role and v == verb})


# --- a migration under traffic --------------------------------------------------------------------------


@dataclass(frozen=True)
class BusyRun:
    """What one deploy did while the app was busy: its result, the requests, and who waited for whom."""

    result: RunResult
    attempts: int
    requests: Tally
    failed_kinds: tuple[str, ...]  # e.g. ("POST /profiles/1/jobs",): which calls failed at least once
    watch: Watch
    pressure: Pressure | None

    @property
    def failed(self) -> int:
        return self.requests.failed

    def statement(self) -> str:
        """What happened, in words that are the same every run with the same outcome (no counts, no times)."""
        lines = []
        if self.attempts > 1 and self.result.ok:
            lines.append(
                "The deploy's first attempt gave up on its lock (lock_timeout) and changed nothing; it was retried, "
                "as a deploy script does, until it got its lock."
            )
        idle = {"worker": WORKER_NAME, "report": IdleReader.NAME}
        named = [idle[b] for b in sorted(self.watch.blockers) if b in idle]
        if named and self.watch.has("migration", "waits for"):  # a wait behind a request is too short to say
            lines.append(
                f"pg_locks: the migration waited for {', '.join(self.watch.locks('migration', 'waits for'))}; "
                f"pg_blocking_pids named the {' and the '.join(named)}."
            )
        lines.append(self.requests_statement())
        return "\n".join(lines)

    def requests_statement(self) -> str:
        """Errors (5xx) mean the code and the schema disagree; slow answers, that requests queued behind a lock."""
        if not self.failed:
            return "Requests during the migration: failed 0 - the app kept serving."
        if self.requests.errors:
            return (
                "Requests during the migration: some FAILED with errors, at once: the running code and the "
                "schema disagree."
            )
        return (
            "Requests during the migration: some FAILED, queued behind the waiting migration longer than the "
            f"{CLIENT_TIMEOUT:.0f} s a client waits: the app stopped serving."
        )


def deploy(lab: Lab, line: str = "upgrade head") -> tuple[RunResult, int]:
    """`alembic <line>`, retried after a lock timeout (SQLSTATE 55P03) as a deploy script does; (result, attempts)."""
    attempts = 0
    while True:
        attempts += 1
        result = lab.runner.run(line)
        if result.ok or result.sqlstate != "55P03" or attempts >= ATTEMPTS:
            return result, attempts
        time.sleep(PAUSE)


@contextmanager
def busy(lab: Lab, show: bool = False) -> Iterator[tuple[Traffic, Watch]]:
    """The four clients, and a watch on the locks (a live panel if `show`); ended in reverse."""
    with Traffic(lab, timeout=CLIENT_TIMEOUT, calls=CALLS) as traffic:
        traffic.wait_for_first_requests(len(CALLS))
        with Watch(lab, traffic, show) as watch:
            yield traffic, watch


def run_busy(
    lab: Lab, action: Callable[[], tuple[RunResult, int]], pressure: Pressure | None = WORKER, show: bool = False
) -> BusyRun:
    """`action` (a deploy) while the app is busy and, if `pressure`, a session sits idle in its transaction."""
    with busy(lab, show) as (traffic, watch):
        started = time.monotonic()
        if pressure is None:
            result, attempts = action()
        else:
            with pressure.holding(lab):
                result, attempts = action()
        ended = time.monotonic()
        time.sleep(0.1)  # requests that started while it ran finish (or fail)
    return BusyRun(
        result,
        attempts,
        traffic.tally(started, ended),
        tuple(traffic.failed_kinds(started, ended)),
        watch,
        pressure,
    )


def upgrade_while_busy(chapter: Any, pressure: Pressure | None = WORKER) -> None:
    """The notebook's call: `alembic upgrade head` as a deploy runs it, while the app is busy; say how it fared.

    What the clients wrote is deleted afterwards, so the lab's rows stay the ones the chapter describes.
    """
    lab = lab_of(chapter)
    print(
        f"The ai-api serves 4 clients (profiles and jobs, read and written; each gives up after "
        f"{CLIENT_TIMEOUT:.0f} s); {pressure or 'no session sits idle in a transaction'}."
    )
    run = run_busy(lab, lambda: deploy(lab), pressure, show=True)
    forget_traffic(lab)
    print(run.result)
    print(run.statement())


# --- a release graded on a copy: downgrade, lock trace, upgrade under traffic ------------------------------


@dataclass(frozen=True)
class Replay:
    """A release (the revisions after START) replayed on a throw-away copy of the learner's database."""

    revisions: tuple[str, ...]
    traces: tuple[LockTrace, ...] = ()
    run: BusyRun | None = None  # the upgrade from START under traffic, on the copy
    downgrade: RunResult | None = None  # then back to START, on the copy
    end: dict[str, Any] = field(default_factory=dict)  # what `inspect` read on the copy at head
    undone: dict[str, Any] = field(default_factory=dict)  # what it read after the downgrade back to the start
    at_start: dict[str, Any] = field(default_factory=dict)  # what it read on the copy as it came, before any step
    schema_lost: str = ""  # what of the start's schema the downgrade did not give back, in a few words
    unavailable: str = ""  # why nothing could be replayed
    went_back: bool = False  # the copy was past the start: the release's own downgrade() took it back first

    @property
    def upgraded(self) -> bool:
        return self.run is not None and self.run.result.ok

    def rewrite_call(self, upgrade: str, downgrade: str) -> str:
        """The `ch.rewrite_revision(...)` a hint gives, naming the release's newest revision: a learner who wrote
        it in the editor (or restarted the kernel) has no revision "generated in this kernel" to rewrite."""
        named = f'revision="{self.revisions[-1]}", ' if self.revisions else ""
        return f'ch.rewrite_revision({named}upgrade="""{upgrade}""", downgrade="""{downgrade}""")'

    def redo_call(self, upgrade: str, downgrade: str, asks: bool = False) -> str:
        """The hint's code: back to the start, the release's newest revision rewritten (`rewrite_call`), upgrade.
        `asks`: the upgrade loses data (a drop), so the kit asks first and the hint confirms."""
        confirmed = ", confirm=True" if asks else ""
        return (
            f'ch.alembic("downgrade {START}", confirm=True); {self.rewrite_call(upgrade, downgrade)}; '
            f'ch.alembic("upgrade head"{confirmed})'
        )

    def _upgrade_failed(self) -> tuple[str | None, str | None]:
        """The replayed upgrade's failure (a revision's trace, or the deploy under traffic) and its SQLSTATE."""
        broken = next((t for t in self.traces if t.error or t.unavailable), None)
        if broken is not None:
            return broken.error or broken.unavailable, broken.sqlstate
        if self.run is not None and not self.run.result.ok:
            return self.run.result.error, self.run.result.sqlstate
        return None, None

    @property
    def undone_badly(self) -> bool:
        """The copy came past the start, the release's own downgrade() took it back, and the upgrade then met what
        that downgrade left (or had not given back): the replay stopped because of the downgrade, so a grader shows
        its check about the downgrade first."""
        failed, code = self._upgrade_failed()
        return failed is not None and self.went_back and code in UNDONE_BADLY

    def fix_the_downgrade(self, how: str) -> tuple[str, str]:
        """The hints of a chapter's downgrade check when the replay stopped because of the downgrade (`undone_badly`):
        what the upgrade met, and `how` to undo it, in the file (the learner's own database can stay where it is)."""
        return (
            (self.failure() or ("",))[0],
            how + " Fix it in the revision file (ch.show_revision() shows it); your database can stay where it is: "
            "the replay starts from a copy of it and runs the downgrade as it is now.",
        )

    def failure(self) -> tuple[str, ...] | None:
        """Hints when the release could not be replayed, or its upgrade fails on the copy; None otherwise."""
        if self.unavailable and self.revisions:
            return (f"Your revisions could not be replayed on a copy: {self.unavailable}.", "Try again in a moment.")
        if self.downgrade is not None and not self.downgrade.ok and self.run is None:
            return (
                f"Your revisions could not be replayed: going back to the chapter's start ({START}) on a copy "
                f"failed: {self.downgrade.error}",
                "Fix downgrade() so it undoes upgrade(), in reverse; then check again.",
            )
        failed, _code = self._upgrade_failed()
        if self.undone_badly:
            return (
                f"Replayed on a copy of your database, taken back to the chapter's start by your downgrade(), the "
                f"upgrade fails: {failed}. Does downgrade() undo everything upgrade() does?",
                "Make downgrade() undo upgrade(), in reverse; or fix the revision (ch.show_revision() shows it).",
            )
        if failed is not None:
            return (
                f"Replayed on a copy, the upgrade fails: {failed}",
                "Fix the revision (ch.show_revision() shows it), then check again.",
            )
        return None


# What an upgrade meets when the downgrade before it did not undo it (SQLSTATE class 42): what it makes is there
# already (duplicate_column, _table, _object, _function, _schema, _database), or what it changes was not given back
# (undefined_column, _table, _object, _function). A timeout or a lock is the upgrade's own.
UNDONE_BADLY = {"42701", "42P07", "42710", "42723", "42P06", "42P04", "42703", "42P01", "42704", "42883"}


def release(lab: Lab, start: str = START) -> tuple[str, ...]:
    """The revisions after `start` up to the single head, oldest first (empty when head is `start`)."""
    script = lab.runner.script()
    heads = script.get_heads()
    if len(heads) != 1:
        return ()
    found = [s.revision for s in script.walk_revisions(base=start, head=heads[0]) if s.revision != start]
    return tuple(reversed(found))


def replay(
    lab: Lab,
    pressure: Pressure | None,
    inspect: Callable[[Lab], dict[str, Any]],
    start: str = START,
    schema: bool = False,
) -> Replay:
    """A release graded on one throw-away copy of the database: back to `start`, each revision upgraded and traced,
    its downgrade back to `start` (read: undone?), then the upgrade to head under the traffic and the pressure
    (deploy retries), and the end state read. `inspect` reads the copy as it came too (`at_start`: the learner's
    database, at head or at `start`). With `schema`, the schema after the downgrade is compared with the one the
    revisions build up to `start` (`schema_lost`).

    The learner's database is never touched; the in-process app (main.py as saved) serves the traffic on the
    copy, on every route.
    """
    revisions = release(lab, start)
    if not revisions:
        return Replay(revisions, unavailable="no revision after the chapter's start")
    built = built_to(lab, (start,)) if schema else None
    try:
        with lab.db.copy() as copy:
            on_copy = Lab(lab.project, UrlBackend(copy.url))
            try:
                return _replay_on(on_copy, revisions, pressure, inspect, start, built)
            finally:
                on_copy.db.dispose()
    except CopyUnavailable as why:
        return Replay(revisions, unavailable=why.what)


def _replay_on(
    lab: Lab,
    revisions: tuple[str, ...],
    pressure: Pressure | None,
    inspect: Callable[[Lab], dict[str, Any]],
    start: str,
    built: Shape | None,
) -> Replay:
    at_start = inspect(lab)
    heads = lab.db.heads()
    went_back = False
    if heads != (start,):
        went_back = bool(heads) and heads[0] in revisions
        back = lab.runner.run(["downgrade" if went_back else "upgrade", start])
        if not back.ok:
            return Replay(revisions, downgrade=back, went_back=went_back)
    traces = tuple(trace_each(list(revisions), lab, in_place=True))
    if any(t.error is not None or t.unavailable is not None for t in traces):
        return Replay(revisions, traces, went_back=went_back)
    down = lab.runner.run(["downgrade", start])
    if not down.ok:
        return Replay(revisions, traces, downgrade=down)
    undone = inspect(lab)
    schema_lost = ""
    if built is not None:
        with lab.db.connect() as conn:
            schema_lost = built.lost_in(shape(conn))
    run = run_busy(lab, lambda: deploy(lab), pressure)
    return Replay(
        revisions,
        traces,
        run,
        down,
        inspect(lab) if run.result.ok else {},
        undone,
        at_start,
        schema_lost,
        went_back=went_back,
    )
