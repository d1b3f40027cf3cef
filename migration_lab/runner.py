"""Run alembic commands against the lab database and report what happened.

A command is parsed by alembic's own command line parser. On the embedded
and url backends it then runs in-process through `alembic.command` (about
10 ms, against ~500 ms for the `alembic` CLI as a subprocess), which is what
makes buttons feel instant. On the compose backend it runs inside the ai-api
container, as the workflow guide types it.

Every run returns a `RunResult`: the command as the workflow writes it and as
typed locally, success, output, duration, and the database's revision before
and after. Runs are serialized: a second command while one runs in this
process is refused ("busy"), and across processes a PostgreSQL advisory lock
makes the second wait, so two runs never apply a revision twice.

`rehearse` runs upgrade, downgrade or stamp inside a transaction that is
always rolled back: PostgreSQL runs DDL in transactions, so this shows exactly
what a command would add or drop, and how much data it would destroy, while
changing nothing.
"""

import contextlib
import io
import logging
import re
import shlex
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from alembic.config import CommandLine, Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from . import schema
from .database import SERVICE, Backend
from .project import Project

WORKFLOW_PREFIX = f"docker-compose exec {SERVICE} alembic"
# Any constant works; every lab runner on the same database shares this one.
ADVISORY_LOCK_KEY = 0x4D4C_4142  # "MLAB"
LOCK_WAIT_SECONDS = 60.0
# In-process runs swap sys.stdout, sys.path, sys.modules and alembic's logger:
# process-wide state, so one run at a time per process, whatever the Runner.
_PROCESS_LOCK = threading.Lock()
# alembic's own command line: its parser turns "downgrade -1" into a call. Built once (a few ms).
_ALEMBIC = CommandLine(prog="alembic")

# The commands that change which revision the database is at; the only ones a rehearsal runs.
REHEARSABLE = {"upgrade", "downgrade", "stamp"}

# The errors the workflow guide's troubleshooting section names, with what to do.
HINTS: tuple[tuple[str, str], ...] = (
    ("still running", "Wait for it to finish, then try again."),
    ("SyntaxError",
     "Python could not read that file. Fix the line named above, save, and run the command again; "
     "the database was not touched."),
    ("Target database is not up to date",
     "The database is behind the revision files. Run `alembic upgrade head`, then generate the revision again."),
    ("already exists",
     "The table was made outside Alembic (by hand or an old create_all()). Drop it, or, if the database "
     "already matches the models, run `alembic stamp head` to record that."),
    ("Multiple head revisions",
     "Two revisions share a parent. See them with `alembic heads`, then join them: "
     "`alembic merge heads -m \"merge heads\"`."),
    ("Ambiguous walk",
     "`-1` is ambiguous at a merge point. Name the revision to go to: `alembic downgrade <revision>`."),
    ("cannot import name",
     "Alembic cannot import your models. Check migrations/env.py: does sys.path point at ai-service/, "
     "and does `from main import ...` name models that exist in main.py?"),
    ("No module named",
     "Alembic cannot import your models. Check the sys.path line and the import in migrations/env.py."),
    ("Can't locate revision",
     "That revision id is not in migrations/versions/. `alembic history` lists the ones that are."),
    ("cannot be cast automatically",
     "PostgreSQL needs to be told how to convert the existing values: add "
     "postgresql_using='<column>::<new type>' to that op.alter_column(...), and the reverse in downgrade()."),
    ("does not exist",
     "The migration refers to something the database does not have. Check `alembic current` and the script."),
)


def hint_for(message: str) -> str | None:
    """The troubleshooting hint for an error message, if it is one the lab knows."""
    for needle, hint in HINTS:
        if needle in message:
            return hint
    return None


@dataclass(frozen=True)
class RunResult:
    """What one alembic command did."""

    args: tuple[str, ...]
    workflow_command: str  # as the workflow guide types it (docker-compose exec ai-api alembic ...)
    local_command: str  # as typed in a terminal in ai-service/
    ok: bool
    output: str
    duration: float
    before: tuple[str, ...] | None  # database heads before; None if unknown
    after: tuple[str, ...] | None
    error: str | None = None
    hint: str | None = None
    new_files: tuple[Path, ...] = field(default_factory=tuple)
    stdout: str = ""  # what alembic printed, without its log lines: the SQL of `--sql`

    def __str__(self) -> str:
        """What the learner reads: both command forms, output, outcome, the database's revisions."""
        lines = [f"$ {self.local_command}", f"  (Docker route: {self.workflow_command})"]
        if self.output.strip():
            lines.append(self.output.rstrip())
        if self.ok:
            # versions/ is ai-service/migrations/versions: three folders below the project root.
            lines += [f"New file: {path.relative_to(path.parents[3])}" for path in self.new_files]
        else:
            lines.append(f"FAILED: {self.error}")
            if self.hint:
                lines.append(f"Hint: {self.hint}")
        if self.before is not None and self.after is not None and self.before != self.after:
            lines.append(f"Database: {_at(self.before)} → {_at(self.after)}")
        elif self.after is not None and self.args[:1] and self.args[0] in REHEARSABLE:
            rolled_back = " (rolled back: nothing this command did was kept)" if not self.ok else ""
            lines.append(f"Database unchanged, at {_at(self.after)}{rolled_back}")
        return "\n".join(lines)


def _at(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) if heads else "base (no revision)"


class _Outcome(NamedTuple):
    ok: bool
    output: str
    error: str | None
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None
    stdout: str = ""


class _Tee(io.StringIO):
    """Writes to itself and to the combined output the learner sees."""

    def __init__(self, combined: io.StringIO) -> None:
        super().__init__()
        self.combined = combined

    def write(self, text: str) -> int:
        self.combined.write(text)
        return super().write(text)


class Busy(Exception):
    """Another command is running in this process (a double click, say)."""


def _short_error(error: BaseException, service_dir: Path) -> str:
    """One or two lines a learner can read, instead of a traceback wall."""
    if isinstance(error, SyntaxError):
        where = Path(error.filename or "?")
        try:
            where = where.resolve().relative_to(service_dir.parent.resolve())
        except ValueError:
            pass
        return f"{type(error).__name__} in {where}, line {error.lineno}: {error.msg}"
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {str(error.orig).strip().splitlines()[0]}"
    if isinstance(error, (CommandError, ImportError)):
        return str(error)
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(service_dir))]
    where = f" ({Path(ours[-1].filename).name}, line {ours[-1].lineno})" if ours else ""
    return f"{type(error).__name__}: {error}{where}"


# Alembic's set-up chatter, which says nothing about the learner's change; dropped on both
# routes (in-process log records, and the container's log lines in alembic.ini's format).
_CHATTER_LOGGERS = ("alembic.runtime.plugins", "alembic.ddl.postgresql")
_CHATTER_MESSAGES = ("Context impl", "Will assume", "Dialect impl")
_LOG_LINE = re.compile(r"^[A-Z]+\s*\[([\w.]+)\] (.*)$")  # "INFO  [alembic.runtime.migration] ..."


def _is_chatter(logger: str, message: str) -> bool:
    return logger in _CHATTER_LOGGERS or message.startswith(_CHATTER_MESSAGES)


def split_command(line: str) -> list[str]:
    """`alembic downgrade -1` or `downgrade -1` as typed, as alembic's arguments."""
    args = shlex.split(line)
    return args[1:] if args[:1] == ["alembic"] else args


class _CaptureAlembicLog(logging.Handler):
    """Collects alembic's INFO lines ("Running upgrade a -> b") into the result, not stderr.

    Kept: what the migration did and what autogenerate detected.
    """

    def __init__(self, sink: io.StringIO, on_log: Callable[[str], None] | None = None) -> None:
        super().__init__(logging.INFO)
        self.sink = sink
        self.on_log = on_log
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno < logging.WARNING and _is_chatter(record.name, message):
            return
        self.sink.write(message + "\n")
        if self.on_log is not None:
            self.on_log(message)  # live, while the command runs: progress of a long migration


@dataclass(frozen=True)
class Rehearsal:
    """What a command would do, found by running it and rolling it back."""

    result: RunResult
    changes: schema.SchemaDiff
    losses: tuple[schema.Loss, ...]
    renames: tuple[schema.Rename, ...] = ()
    preview: tuple[tuple, ...] | None = None  # rows of `show_table` as they would be afterwards
    preview_columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"Rehearsal (rolled back, nothing changed) of: {self.result.local_command}"]
        if not self.result.ok:
            lines.append(f"It would FAIL: {self.result.error}")
        lines += self.changes.lines() or ["No change to tables or columns."]
        lines += [f"Renamed: {rename}" for rename in self.renames]
        lines += [f"DATA LOSS: {loss}" for loss in self.losses]
        return "\n".join(lines)


class Runner:
    """Runs alembic commands for one project against one backend."""

    def __init__(self, project: Project, backend: Backend) -> None:
        self.project = project
        self.backend = backend
        self._engine: sa.Engine | None = None

    # --- the commands the workflow uses, by name --------------------------------

    def current(self, verbose: bool = False) -> RunResult:
        return self.run(["current", *(["--verbose"] if verbose else [])])

    def history(self, rev_range: str | None = None, verbose: bool = False) -> RunResult:
        """`alembic history -i` (marks the database's revision with "(current)")."""
        return self.run(["history", *(["-r", rev_range] if rev_range else []),
                         *(["--verbose"] if verbose else []), "-i"])

    def heads(self, verbose: bool = False) -> RunResult:
        return self.run(["heads", *(["--verbose"] if verbose else [])])

    def show(self, revision: str) -> RunResult:
        return self.run(["show", revision])

    def upgrade(self, target: str = "head") -> RunResult:
        return self.run(["upgrade", target])

    def downgrade(self, target: str = "-1") -> RunResult:
        return self.run(["downgrade", target])

    def stamp(self, target: str = "head") -> RunResult:
        return self.run(["stamp", target])

    def check(self) -> RunResult:
        return self.run(["check"])

    def revision(self, message: str, autogenerate: bool = False) -> RunResult:
        """`alembic revision [--autogenerate] -m MESSAGE`; the message is only ever a message."""
        return self.run(["revision", *(["--autogenerate"] if autogenerate else []), "-m", message])

    def merge(self, message: str, revisions: str = "heads") -> RunResult:
        return self.run(["merge", revisions, "-m", message])

    def run_line(self, line: str, on_log: Callable[[str], None] | None = None) -> RunResult:
        """A command as typed: `upgrade head`, `alembic downgrade -1`, `revision -m "x"`."""
        return self.run(split_command(line), on_log)

    # --- machinery ------------------------------------------------------------

    @staticmethod
    def command_lines(args: list[str]) -> tuple[str, str]:
        """(the workflow's form, the local form) of `alembic <args>`, shell-quoted."""
        quoted = shlex.join(args)
        return f"{WORKFLOW_PREFIX} {quoted}", f"alembic {quoted}"

    @property
    def can_rehearse(self) -> bool:
        """Rehearsals need the database connection in this process; the compose route runs alembic elsewhere."""
        return self.backend.in_process

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.backend.url(), pool_pre_ping=True)
        return self._engine

    def dispose(self) -> None:
        """Close pooled connections (before the database is stopped or dropped)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def config(self, stdout: io.StringIO) -> Config:
        cfg = Config(str(self.project.service_dir / "alembic.ini"), stdout=stdout)
        cfg.attributes["configure_logger"] = False
        return cfg

    def script(self) -> ScriptDirectory:
        """The revision files, as alembic reads them (fresh each call: files change)."""
        return ScriptDirectory.from_config(self.config(io.StringIO()))

    def database_heads(self) -> tuple[str, ...]:
        """The revisions recorded in alembic_version (empty before the first upgrade)."""
        with self.engine().connect() as conn:
            return MigrationContext.configure(conn).get_current_heads()

    def _versions(self) -> set[Path]:
        return set(self.project.versions_dir.glob("*.py"))

    @staticmethod
    def _parse(args: list[str]):
        """alembic's own parser; (options, None) or (None, its error message)."""
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                options = _ALEMBIC.parser.parse_args(args)
        except SystemExit:
            lines = errors.getvalue().strip().splitlines()
            return None, lines[-1] if lines else "alembic: invalid command"
        if not hasattr(options, "cmd"):
            return None, "alembic: no command given (try `current`, `upgrade head`, ...)"
        options.raiseerr = True
        return options, None

    def run(self, args: list[str], on_log: Callable[[str], None] | None = None) -> RunResult:
        """Run `alembic <args>` and report what happened; never raises for a failed command.

        `on_log` receives alembic's log lines as they happen (in-process runs only).
        """
        return self._run(list(args), on_log=on_log)[0]

    def rehearse(self, args: list[str] | str, show_table: str | None = None) -> Rehearsal:
        """Run upgrade/downgrade/stamp in a transaction that is rolled back; report what it would do."""
        args = split_command(args) if isinstance(args, str) else list(args)
        if args[:1] and args[0] not in REHEARSABLE:
            raise ValueError(f"only {', '.join(sorted(REHEARSABLE))} can be rehearsed, not {args[0]!r}")
        result, rehearsal = self._run(args, rehearse=True, show_table=show_table)
        return rehearsal or Rehearsal(result, schema.SchemaDiff(), ())

    def _run(self, args: list[str], rehearse: bool = False, show_table: str | None = None,
             on_log: Callable[[str], None] | None = None):
        workflow, local = self.command_lines(args)

        def failed(error: str) -> RunResult:
            return RunResult(tuple(args), workflow, local, ok=False, output="", duration=0.0,
                             before=None, after=None, error=error, hint=hint_for(error))

        options, problem = self._parse(args)
        if problem:
            return failed(problem), None
        if not _PROCESS_LOCK.acquire(blocking=False):
            return failed("Another alembic command is still running; this one was not started."), None
        try:
            started = time.perf_counter()
            files_before = self._versions()
            if rehearse and not self.can_rehearse:
                return failed("Rehearsal needs direct database access; the compose route runs "
                              "alembic in its container."), None
            argv = self.backend.alembic_argv(args)
            if argv is not None:
                outcome, rehearsal_parts = self._subprocess(argv), None
            else:
                outcome, rehearsal_parts = self._in_process(options, rehearse, show_table, on_log)
            duration = time.perf_counter() - started
            new_files = tuple(sorted(self._versions() - files_before))
        finally:
            _PROCESS_LOCK.release()
        root = str(self.project.root) + "/"  # paths as a learner sees them: from the project folder
        output = outcome.output.replace(root, "")
        error = outcome.error.replace(root, "") if outcome.error else None
        result = RunResult(tuple(args), workflow, local, ok=outcome.ok, output=output,
                           duration=duration, before=outcome.before, after=outcome.after,
                           error=error, hint=hint_for(error) if error else None,
                           new_files=new_files, stdout=outcome.stdout)
        if rehearsal_parts is None:
            return result, None
        changes, lost, renamed, preview = rehearsal_parts
        columns, rows = preview or ((), None)
        return result, Rehearsal(result, changes, tuple(lost), tuple(renamed), rows, columns)

    def _connect(self) -> sa.Connection:
        try:
            return self.engine().connect()
        except sa.exc.OperationalError as error:
            raise ConnectionError(
                f"Cannot reach the lab database ({self.backend.where()}). {self.backend.start_hint()}"
            ) from error

    def _in_process(self, options, rehearse: bool, show_table: str | None,
                    on_log: Callable[[str], None] | None = None):
        out = io.StringIO()
        stdout = _Tee(out)
        cfg = self.config(stdout)
        # Offline mode (--sql) needs a URL for its dialect; the in-process connection serves online mode.
        cfg.set_main_option("sqlalchemy.url", self.backend.url().replace("%", "%%"))
        log = logging.getLogger("alembic")
        handler = _CaptureAlembicLog(out, on_log)
        saved = (log.level, log.propagate, list(sys.path), sys.dont_write_bytecode)
        try:
            conn = self._connect()
        except ConnectionError as error:
            return _Outcome(False, "", str(error), None, None), None
        before = after = None
        rehearsal_parts = None
        try:
            try:
                self._advisory_lock(conn)
            except Busy as busy:
                return _Outcome(False, "", str(busy), None, None), None
            before = MigrationContext.configure(conn).get_current_heads()
            conn.commit()  # alembic must own the transaction it runs migrations in...
            if rehearse:
                # ...unless rehearsing: then an outer transaction alembic will not commit.
                conn.begin()
                schema_before = schema.snapshot(conn)
                savepoint = conn.begin_nested()
            self._forget_service_modules()
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
            sys.dont_write_bytecode = True  # an edit within the same second must never hit a stale .pyc
            cfg.attributes["connection"] = conn
            try:
                with contextlib.redirect_stdout(stdout):  # "Generating <file> ... done" goes to sys.stdout
                    _ALEMBIC.run_cmd(cfg, options)
                ok, error = True, None
            except (Exception, SystemExit) as exc:  # env.py may sys.exit; show it, don't die
                ok, error = False, _short_error(exc, self.project.service_dir)
                if not rehearse and conn.in_transaction():
                    conn.rollback()
            if rehearse:
                if ok:
                    after = MigrationContext.configure(conn).get_current_heads()
                    schema_after = schema.snapshot(conn)
                    added = schema.fingerprints(conn, schema.diff(schema_before, schema_after).added_columns)
                    preview = None
                    if show_table and show_table in schema_after:
                        rows = conn.execute(sa.select(sa.text("*")).select_from(sa.table(show_table))
                                            .order_by(sa.text("1")))
                        preview = (tuple(rows.keys()), tuple(tuple(r) for r in rows))
                    savepoint.rollback()
                else:  # the failed statement aborted the savepoint: nothing to measure after it
                    savepoint.rollback()
                    schema_after, preview, added, after = schema_before, None, {}, before
                changes = schema.diff(schema_before, schema_after)
                rehearsal_parts = (changes, *schema.account(conn, changes, added), preview)
                conn.rollback()
            else:
                after = MigrationContext.configure(conn).get_current_heads()
                conn.commit()
        finally:
            log.removeHandler(handler)
            log.level, log.propagate, sys.path[:], sys.dont_write_bytecode = saved
            self._forget_service_modules()
            self._advisory_unlock(conn)
            conn.close()
        return _Outcome(ok, out.getvalue(), error, before, after, stdout.getvalue()), rehearsal_parts

    def _advisory_lock(self, conn: sa.Connection) -> None:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}):
            if time.monotonic() > deadline:
                raise Busy(f"Another process has held the lab's migration lock for {LOCK_WAIT_SECONDS:.0f} s.")
            time.sleep(0.05)
        conn.commit()

    @staticmethod
    def _advisory_unlock(conn: sa.Connection) -> None:
        try:
            if conn.in_transaction():
                conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
        except sa.exc.DBAPIError:
            pass  # the connection is gone, and the lock went with its session

    def _forget_service_modules(self) -> None:
        """Drop main.py (and any module of ai-service/) from sys.modules.

        env.py does `from main import Base`; without this, an edit to main.py
        made after the first command would be invisible to autogenerate. A
        `main` imported from another folder (another copy of the service) goes
        too, or env.py would silently get that one's models.
        """
        service = str(self.project.service_dir.resolve()) + "/"
        top_level = {path.stem for path in self.project.service_dir.glob("*.py")}
        for name, module in list(sys.modules.items()):
            # env.py puts the resolved ai-service/ on sys.path, so its modules' paths start with it.
            if name in top_level or (getattr(module, "__file__", None) or "").startswith(service):
                del sys.modules[name]

    def _subprocess(self, argv: list[str]) -> _Outcome:
        """Run alembic in the container; revisions are read from the database from here."""
        try:
            before = self.database_heads()
        except sa.exc.OperationalError:
            before = None
        done = subprocess.run(argv, cwd=self.project.root, capture_output=True, text=True)
        try:
            after = self.database_heads()
        except sa.exc.OperationalError:
            after = None
        output = "".join(
            line + "\n" for line in (done.stdout + done.stderr).splitlines()
            if not ((match := _LOG_LINE.match(line)) and _is_chatter(*match.groups()))
        )
        if done.returncode == 0:
            return _Outcome(True, output, None, before, after, done.stdout)
        last = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return _Outcome(False, output, last[-1] if last else f"exit code {done.returncode}", before, after,
                        done.stdout)
