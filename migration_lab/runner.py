"""Run alembic commands against the lab database and report what happened.

A command line is parsed by alembic's own parser, and which command it is
comes from the function the parser chose (so `-x a=b downgrade base` is a
downgrade, whatever the first word). The command then runs in this process
through `alembic.command` (see `alembic_process`), on a connection that holds
the lab's migration lock, on every backend: the compose route reaches the
composed PostgreSQL on 127.0.0.1 and uses the same files the container sees
through its bind mount.

Every run returns a `RunResult` whose account of the database (`before`,
`after`, what was kept after a failure) is read from alembic_version, never
assumed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from alembic.config import CommandLine, Config
from alembic.script import Script, ScriptDirectory

from . import alembic_process
from .database import SERVICE
from .db import Busy as DatabaseBusy
from .db import LabDatabase, Unreachable
from .diagnosis import diagnose
from .errors import LabError
from .project import Project

WORKFLOW_PREFIX = f"docker-compose exec {SERVICE} alembic"
# alembic's own command line: its parser turns "downgrade -1" into a call. Built once (a few ms).
_ALEMBIC = CommandLine(prog="alembic")

# The commands that change which revision the database is at.
DATABASE_CHANGING = frozenset({"upgrade", "downgrade", "stamp"})
# Commands that never open the database (unless asked to mark the current revision).
FILES_ONLY = frozenset({"heads", "show", "branches", "merge", "list_templates", "edit"})


class CommandLineError(LabError):
    """A command line alembic's parser (or the shell's quoting rules) refuses."""


@dataclass(frozen=True)
class Command:
    """One alembic command, parsed: its arguments, its name, and what it touches."""

    args: tuple[str, ...]
    name: str  # the alembic.command function: "upgrade", "downgrade", "revision", ...
    options: argparse.Namespace

    @property
    def offline(self) -> bool:
        return bool(getattr(self.options, "sql", False))

    @property
    def changes_database(self) -> bool:
        return self.name in DATABASE_CHANGING and not self.offline

    @property
    def needs_database(self) -> bool:
        if self.offline or self.name in FILES_ONLY:
            return False
        if self.name == "history":  # `-i`, or a range from `current` (`history -r current:head`), reads the database
            rev_range = getattr(self.options, "rev_range", None) or ""
            return bool(getattr(self.options, "indicate_current", False)) or "current" in rev_range
        if self.name == "revision":
            return bool(getattr(self.options, "autogenerate", False))
        return True

    @property
    def target(self) -> str | None:
        """The revision argument of upgrade, downgrade and stamp ("head", "-1", an id)."""
        value = getattr(self.options, "revisions", None) or getattr(self.options, "revision", None)
        if isinstance(value, list):
            return " ".join(value)
        return value

    def with_target(self, target: str) -> Command:
        """The same command aimed at another (absolute) target."""
        args = list(self.args)
        old = self.target
        if old is not None and old in args:
            args[len(args) - 1 - args[::-1].index(old)] = target
        return parse(args)

    @property
    def local(self) -> str:
        return f"alembic {shlex.join(self.args)}"

    @property
    def workflow(self) -> str:
        return f"{WORKFLOW_PREFIX} {shlex.join(self.args)}"


def split_command(line: str) -> list[str]:
    """`alembic downgrade -1` or `downgrade -1` as typed, as alembic's arguments."""
    if "\x00" in line:
        raise CommandLineError(
            "The command line contains a NUL character.",
            "Type the command again; revision messages must be plain text.",
        )
    try:
        args = shlex.split(line)
    except ValueError as error:
        raise CommandLineError(
            f"The command line has an unmatched quote ({error}): {line}",
            'Put a message with an apostrophe in double quotes: revision -m "Add user\'s phone".',
        ) from error
    return args[1:] if args[:1] == ["alembic"] else args


def parse(args: list[str] | tuple[str, ...] | str) -> Command:
    """A command as typed (a string) or as arguments, checked by alembic's own parser."""
    args = split_command(args) if isinstance(args, str) else list(args)
    if any("\x00" in a for a in args):
        raise CommandLineError(
            "An argument contains a NUL character.", "Type the command again; revision messages must be plain text."
        )
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            options = _ALEMBIC.parser.parse_args(args)
    except SystemExit:
        lines = errors.getvalue().strip().splitlines()
        raise CommandLineError(
            lines[-1] if lines else "alembic: invalid command",
            "Check the spelling: `alembic --help` lists the commands; a message with spaces needs quotes.",
        ) from None
    if not hasattr(options, "cmd"):
        raise CommandLineError("alembic: no command given", "Try `current`, `history` or `upgrade head`.")
    options.raiseerr = True
    return Command(tuple(args), options.cmd[0].__name__, options)


def _at(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) if heads else "base (no revision)"


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
    after: tuple[str, ...] | None  # read back from alembic_version afterwards; None if unknown
    error: str | None = None
    hint: str | None = None
    sqlstate: str | None = None  # PostgreSQL's error code of the failure, e.g. "55P03" (lock_timeout)
    new_files: tuple[Path, ...] = field(default_factory=tuple)
    new_revisions: tuple[str, ...] = ()  # their revision ids, from the Script objects alembic returned
    stdout: str = ""  # what alembic printed, without its log lines: the SQL of `--sql`
    changes_database: bool = False
    # Statements the failing revision committed itself (autocommit_block, COMMIT): kept, unrecorded.
    stray_commits: int = 0
    refused: str = ""  # why the kit did not start it: "input", "busy", "unreachable", "moved"

    @property
    def started(self) -> bool:
        return not self.refused

    def __str__(self) -> str:
        """What the learner reads: both command forms, output, outcome, the database's revisions."""
        lines = [f"$ {self.local_command}", f"  (Docker route: {self.workflow_command})"]
        if self.output.strip():
            lines.append(self.output.rstrip())
        if self.ok:
            lines += [f"New file: ai-service/migrations/versions/{path.name}" for path in self.new_files]
        else:
            lines.append(f"FAILED: {self.error}")
            if self.hint:
                lines.append(f"Hint: {self.hint}")
        lines += self.database_lines()
        return "\n".join(lines)

    def database_lines(self) -> list[str]:
        """The database's account, as read back: never claims more than alembic_version shows."""
        if not self.changes_database or not self.started:
            return []
        if self.after is None:
            return [
                "The database's revision is unknown (it did not answer afterwards): "
                "run `alembic current` once it is back."
            ]
        moved = self.before is not None and self.before != self.after
        lines = [
            f"Database: {_at(self.before or ())} → {_at(self.after)}"
            if moved
            else f"Database unchanged, at {_at(self.after)}"
        ]
        if not self.ok:
            if moved:
                lines.append(
                    "The revisions before the failing one were applied and recorded; "
                    "the failing revision was rolled back."
                )
            if self.stray_commits:
                lines.append(
                    f"PARTLY APPLIED: the failing revision committed {self.stray_commits} statement(s) itself "
                    "(an autocommit_block or a COMMIT). Those changes are kept, although alembic_version does "
                    "not record the revision. Make them safe to run twice (IF NOT EXISTS, a WHERE that skips "
                    "done rows), fix the error, and run the command again."
                )
            elif not moved:
                lines.append("The failing revision was rolled back: nothing this command did was kept.")
        return lines


class InProcessBusy(LabError):
    """Another command is running in this process (a double click, say)."""


class Runner:
    """Runs alembic commands for one project against one database."""

    def __init__(self, project: Project, db: LabDatabase) -> None:
        self.project = project
        self.db = db

    # --- the commands the workflow uses, by name --------------------------------

    def current(self, verbose: bool = False) -> RunResult:
        return self.run(["current", *(["--verbose"] if verbose else [])])

    def history(self, rev_range: str | None = None, verbose: bool = False) -> RunResult:
        """`alembic history -i` (marks the database's revision with "(current)")."""
        return self.run(
            ["history", *(["-r", rev_range] if rev_range else []), *(["--verbose"] if verbose else []), "-i"]
        )

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
        return self.run(line, on_log)

    # --- machinery ------------------------------------------------------------

    @staticmethod
    def command_lines(args: list[str]) -> tuple[str, str]:
        """(the workflow's form, the local form) of `alembic <args>`, shell-quoted."""
        quoted = shlex.join(args)
        return f"{WORKFLOW_PREFIX} {quoted}", f"alembic {quoted}"

    def config(self, stdout: TextIO, options: argparse.Namespace | None = None) -> Config:
        cfg = Config(str(self.project.service_dir / "alembic.ini"), stdout=stdout, cmd_opts=options)
        cfg.attributes["configure_logger"] = False
        # Offline mode (--sql) needs a URL for its dialect; online runs get the connection itself.
        cfg.set_main_option("sqlalchemy.url", self.db.url.replace("%", "%%"))
        return cfg

    def script(self) -> ScriptDirectory:
        """The revision files, as alembic reads them (fresh each call: files change)."""
        return ScriptDirectory.from_config(self.config(io.StringIO()))

    def database_heads(self) -> tuple[str, ...]:
        """The revisions recorded in alembic_version (empty before the first upgrade)."""
        return self.db.heads()

    def refuse(self, command: Command | str, why: str, error: str, hint: str | None) -> RunResult:
        """A result for a command the kit did not start, and why not."""
        if isinstance(command, Command):
            args, workflow, local = command.args, command.workflow, command.local
        else:  # a line that could not be parsed: shown as typed
            args, workflow, local = (command,), f"{WORKFLOW_PREFIX} {command}", f"alembic {command}"
        return RunResult(
            tuple(args),
            workflow,
            local,
            ok=False,
            output="",
            duration=0.0,
            before=None,
            after=None,
            error=error,
            hint=hint,
            refused=why,
        )

    def run(
        self,
        args: list[str] | tuple[str, ...] | str | Command,
        on_log: Callable[[str], None] | None = None,
        expect: tuple[str, ...] | None = None,
    ) -> RunResult:
        """Run `alembic <args>` and report what happened; never raises for a failed command.

        `expect`: the database heads this command was planned (rehearsed, confirmed)
        against. If the database has moved since, nothing runs and the result says so.
        `on_log` receives alembic's log lines as they happen.
        """
        try:
            command = args if isinstance(args, Command) else parse(args)
        except CommandLineError as error:
            line = args if isinstance(args, str) else shlex.join(args.args if isinstance(args, Command) else args)
            return self.refuse(line.replace("\x00", "\\x00"), "input", error.what, error.next_step)
        try:
            if not command.needs_database:
                with self._process_turn():
                    return self._execute(command, None, on_log)
            with self.exclusive() as conn:
                return self.run_locked(conn, command, on_log, expect)
        except Unreachable as error:
            return self.refuse(command, "unreachable", error.what, error.next_step)
        except (InProcessBusy, DatabaseBusy) as error:
            return self.refuse(command, "busy", error.what, error.next_step)

    @contextlib.contextmanager
    def _process_turn(self) -> Iterator[None]:
        if not alembic_process.PROCESS_LOCK.acquire(blocking=False):
            raise InProcessBusy(
                "Another alembic command is still running; this one was not started.",
                "Wait for it to finish, then try again.",
            )
        try:
            yield
        finally:
            alembic_process.PROCESS_LOCK.release()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[sa.Connection]:
        """This process's turn and the database's migration lock: a connection nobody else migrates on.

        Raises `Unreachable` (the database is down) or a busy LabError; both before anything ran.
        """
        with self._process_turn(), self.db.lock() as conn:
            yield conn

    def run_locked(
        self,
        conn: sa.Connection,
        command: Command,
        on_log: Callable[[str], None] | None = None,
        expect: tuple[str, ...] | None = None,
    ) -> RunResult:
        """Run a command on `conn`, which holds the migration lock (a reset holds it for longer)."""
        if expect is not None:
            now = self.db.heads(conn)
            conn.commit()
            if now != expect:
                return self.refuse(
                    command,
                    "moved",
                    f"The database moved since this command was checked: it was at {_at(expect)}, "
                    f"it is now at {_at(now)}. Nothing was done.",
                    "Look at where it is now (`alembic current`), then run the command again: "
                    "it will be checked again from there.",
                )
        return self._execute(command, conn, on_log)

    def _execute(self, command: Command, conn: sa.Connection | None, on_log: Callable[[str], None] | None) -> RunResult:
        started = time.perf_counter()
        before = after = None
        if conn is not None:
            try:
                before = self.db.heads(conn)
                conn.commit()  # alembic must own the transactions it runs migrations in
            except sa.exc.DBAPIError:
                unreachable = self.db.unreachable()
                return self.refuse(command, "unreachable", unreachable.what, unreachable.next_step)

        def call(stdout: TextIO) -> object:
            cfg = self.config(stdout, command.options)
            if conn is not None:
                cfg.attributes["connection"] = conn
            fn, positional, kwarg = command.options.cmd
            return fn(
                cfg,
                *[getattr(command.options, k, None) for k in positional],
                **{k: getattr(command.options, k, None) for k in kwarg},
            )

        execution = alembic_process.execute(call, conn, self.project.service_dir, on_log)
        if conn is not None:
            try:
                if conn.in_transaction():
                    if execution.error is None:
                        conn.commit()
                    else:
                        conn.rollback()
                after = self.db.heads(conn)
                conn.commit()
            except sa.exc.DBAPIError:
                after = None  # the database died under the command: say so, don't guess
        diagnosis = diagnose(execution.error, self.project.service_dir) if execution.error else None
        root = str(self.project.root) + "/"  # paths as a learner sees them: from the project folder
        returned = execution.returned
        scripts = returned if isinstance(returned, list) else [returned]
        made = sorted((s for s in scripts if isinstance(s, Script)), key=lambda s: s.path)
        new_files = tuple(Path(s.path) for s in made)
        return RunResult(
            command.args,
            command.workflow,
            command.local,
            ok=execution.error is None,
            output=execution.output.replace(root, ""),
            duration=time.perf_counter() - started,
            before=before,
            after=after,
            error=diagnosis.message.replace(root, "") if diagnosis else None,
            hint=diagnosis.hint if diagnosis else None,
            sqlstate=diagnosis.sqlstate if diagnosis else None,
            new_files=new_files if execution.error is None else (),
            new_revisions=tuple(s.revision for s in made) if execution.error is None else (),
            stdout=execution.stdout,
            changes_database=command.changes_database,
            stray_commits=execution.stray_commits if execution.error else 0,
        )


__all__ = [
    "InProcessBusy",
    "Command",
    "CommandLineError",
    "RunResult",
    "Runner",
    "Unreachable",
    "parse",
    "split_command",
]
