"""Run one alembic command function in this process, and put the process back as it was.

Alembic's commands touch process-wide state: `sys.stdout` ("Generating ...
done"), the `alembic` logger, `sys.path` (env.py inserts ai-service/) and
`sys.modules` (env.py imports `main`). This module sandboxes exactly that, so
the kit can call `alembic.command` functions directly (about 10 ms, against
~500 ms for the `alembic` CLI), and watches the connection for commits a
revision makes on its own (an `autocommit_block`, an `op.execute("COMMIT")`),
which alembic's bookkeeping does not record.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psycopg2.extensions
import sqlalchemy as sa
from pydantic.warnings import UnsupportedFieldAttributeWarning
from sqlalchemy import event

# Process-wide state is swapped: one in-process alembic command at a time per process.
PROCESS_LOCK = threading.Lock()
# Held while ai-service's modules are taken out of sys.modules (here) or put in (load_models, in
# another thread, while an alembic command runs): an import never finds one half gone.
SERVICE_MODULES_LOCK = threading.Lock()

# Alembic's set-up chatter, which says nothing about the learner's change.
_CHATTER_LOGGERS = ("alembic.runtime.plugins", "alembic.ddl.postgresql")
_CHATTER_MESSAGES = ("Context impl", "Will assume", "Dialect impl")


@dataclass
class Execution:
    """What happened while an alembic command function ran."""

    output: str = ""  # stdout and alembic's log lines, interleaved as they happened
    stdout: str = ""  # stdout alone: the SQL of `--sql`
    error: BaseException | None = None
    returned: object = None  # what the command function returned (Script objects for revision/merge)
    # Statements committed outside alembic's own per-revision commits (autocommit_block, COMMIT):
    # they stay even when the command fails, and alembic_version does not record them.
    stray_commits: int = 0


class _Tee(io.StringIO):
    """Writes to itself and to the combined output."""

    def __init__(self, combined: io.StringIO) -> None:
        super().__init__()
        self.combined = combined

    def write(self, text: str) -> int:
        self.combined.write(text)
        return super().write(text)


class _CaptureLog(logging.Handler):
    """Alembic's INFO lines ("Running upgrade a -> b", "Detected added column") into the output."""

    def __init__(self, sink: io.StringIO, on_log: Callable[[str], None] | None) -> None:
        super().__init__(logging.INFO)
        self.sink = sink
        self.on_log = on_log
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno < logging.WARNING and (
            record.name in _CHATTER_LOGGERS or message.startswith(_CHATTER_MESSAGES)
        ):
            return
        self.sink.write(message + "\n")
        if self.on_log is not None:
            self.on_log(message)  # live, while the command runs: progress of a long migration


class _CommitWatch:
    """Counts commits a revision makes by itself.

    Alembic writes alembic_version and then commits; any other commit (the
    one `autocommit_block` makes, a statement in autocommit mode, a literal
    COMMIT or END) is a stray: its work stays even if the command fails.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.stray = 0
        self._version_written = False

    def after_execute(self, conn, cursor, statement: str, params, context, executemany) -> None:
        dbapi = cursor.connection
        if "alembic_version" in statement:
            self._version_written = True
            return
        if dbapi.autocommit or dbapi.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            self.stray += 1

    def commit(self, conn) -> None:
        if self._version_written:
            self._version_written = False  # alembic's own commit of a recorded revision
        else:
            self.stray += 1

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        event.listen(self.conn, "after_cursor_execute", self.after_execute)
        event.listen(self.conn, "commit", self.commit)
        try:
            yield
        finally:
            event.remove(self.conn, "after_cursor_execute", self.after_execute)
            event.remove(self.conn, "commit", self.commit)


def forget_service_modules(service_dir: Path) -> None:
    """Drop main.py (and any module of ai-service/) from sys.modules.

    env.py does `from main import Base`; without this, an edit to main.py made
    after the first command would be invisible to autogenerate. A `main`
    imported from another folder goes too, or env.py would get its models.
    """
    service = str(service_dir.resolve()) + "/"
    top_level = {path.stem for path in service_dir.glob("*.py")}
    with SERVICE_MODULES_LOCK:
        for name, module in list(sys.modules.items()):
            if name in top_level or (getattr(module, "__file__", None) or "").startswith(service):
                del sys.modules[name]


def ignore_fastapi_alias_warning() -> None:
    """Ignore, process-wide, the pydantic warning FastAPI silences for each route it builds.

    FastAPI silences UnsupportedFieldAttributeWarning ("The 'alias' attribute with value 'body' ...") inside
    warnings.catch_warnings(), which is not thread-safe: the kit builds main.py's app in several threads at
    once (env.py's `from main import Base` in a deploy, a busy app's clients), one block ended another's
    silence, and the warning was printed into the learner's cell. Called before each build, since a filter
    set while another thread's block runs is dropped when that block ends (filterwarnings keeps one copy).
    """
    warnings.filterwarnings("ignore", category=UnsupportedFieldAttributeWarning)


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """os.environ exactly as it was afterwards.

    env.py and main.py read their .env with load_dotenv when DATABASE_URL is unset, which writes it into
    os.environ: left there, it outlived the command, pointed this process (a kernel, a test run) at that
    checkout's database, and was inherited by every program it started later (a JupyterLab's terminals).
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def execute(
    command: Callable[[TextIO], object],
    conn: sa.Connection | None,
    service_dir: Path,
    on_log: Callable[[str], None] | None = None,
) -> Execution:
    """Call `command(stdout)` in the sandbox: it builds alembic's Config on `stdout` and runs one command.

    The caller holds PROCESS_LOCK; sys.stdout goes to the same place, since
    alembic prints "Generating <file> ... done" there.
    """
    out = io.StringIO()
    stdout = _Tee(out)
    log = logging.getLogger("alembic")
    handler = _CaptureLog(out, on_log)
    saved = (log.level, log.propagate, list(sys.path), sys.dont_write_bytecode)
    watch = _CommitWatch(conn) if conn is not None else None
    result = Execution()
    forget_service_modules(service_dir)
    ignore_fastapi_alias_warning()  # env.py imports main.py, whose app FastAPI builds
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    sys.dont_write_bytecode = True  # an edit within the same second must never hit a stale .pyc
    try:
        with (
            contextlib.redirect_stdout(stdout),
            watch.watching() if watch else contextlib.nullcontext(),
            environment_kept(),
        ):
            result.returned = command(stdout)
    except (Exception, SystemExit) as error:  # env.py may sys.exit: report it, don't die
        result.error = error
    finally:
        log.removeHandler(handler)
        log.level, log.propagate, sys.path[:], sys.dont_write_bytecode = saved
        forget_service_modules(service_dir)
    result.output, result.stdout = out.getvalue(), stdout.getvalue()
    result.stray_commits = watch.stray if watch else 0
    return result
