"""Run alembic commands against the lab database and report what happened.

A command line is parsed by alembic's own parser (`command.parse`); it then
runs in this process through `alembic.command` (see `alembic_process`), on a connection that holds
the lab's migration lock, on every backend: the compose route reaches the
composed PostgreSQL on 127.0.0.1 and uses the same files the container sees
through its bind mount.

Every run returns a `RunResult` whose account of the database (`before`,
`after`, what was kept after a failure) is read from alembic_version, never
assumed.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import io
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util.exc import CommandError

from ..database.connection import LabDatabase
from ..errors import BrokenConfig, BrokenHistory, Busy, CommandLineError, LabError, Unreachable
from ..project import Project
from . import alembic_process, history
from .command import WORKFLOW_PREFIX, Command, parse
from .diagnosis import Diagnosis, behind_by_empty_revisions, diagnose, not_at_head


def at(heads: tuple[str, ...] | None) -> str:
    """Where the database is, in words: its revisions, or "base (no revision)"."""
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
    refused: str = ""  # why the kit did not start it: "input", "busy", "unreachable", "moved", "history", "config"
    # alembic said it was done, but left its work in a transaction it never committed (env.py began one before
    # configure()): rolled back, as a terminal's `alembic` does when it closes the connection.
    uncommitted: bool = False

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
        partly = not self.ok and self.stray_commits > 0
        if moved:
            lines = [f"Database: {at(self.before or ())} → {at(self.after)}"]
        elif partly:  # alembic_version did not move, but the database did: never "unchanged"
            lines = [f"alembic_version unchanged, at {at(self.after)}; the database did change:"]
        else:
            lines = [f"Database unchanged, at {at(self.after)}"]
        if not self.ok:
            if moved:
                lines.append(
                    "The revisions before the failing one were applied and recorded; "
                    "the failing revision was rolled back."
                )
            if partly:
                lines.append(
                    f"PARTLY APPLIED: the failing revision committed {self.stray_commits} statement(s) itself "
                    "(an autocommit_block or a COMMIT). Those changes are kept, although alembic_version does "
                    "not record the revision. Make them safe to run twice (a WHERE that skips done rows; for an "
                    "index built CONCURRENTLY, DROP INDEX CONCURRENTLY IF EXISTS before building it, since IF NOT "
                    "EXISTS would keep the INVALID index a failed build leaves), fix the error, and run the "
                    "command again."
                )
            elif not moved and not self.uncommitted:
                lines.append("The failing revision was rolled back: nothing this command did was kept.")
        return lines


class Runner:
    """Runs alembic commands for one project against one database."""

    def __init__(self, project: Project, db: LabDatabase) -> None:
        self.project = project
        self.db = db

    def on(self, db: LabDatabase) -> Runner:
        """The same project's commands against another database (a throw-away copy, say)."""
        return Runner(self.project, db)

    def config(self, stdout: TextIO, options: argparse.Namespace | None = None) -> Config:
        cfg = Config(str(self.project.service_dir / "alembic.ini"), stdout=stdout, cmd_opts=options)
        cfg.attributes["configure_logger"] = False
        # Offline mode (--sql) needs a URL for its dialect; online runs get the connection itself.
        cfg.set_main_option("sqlalchemy.url", self.db.url.replace("%", "%%"))
        return cfg

    def script(self, check_history: bool = True) -> ScriptDirectory:
        """The revision files, as alembic reads them (fresh each call: files change).

        Raises BrokenHistory (a LabError naming the file and the ways out) when a
        revision's parent is in no file: alembic could not answer anything then.
        `check_history=False` for what needs the files alone (`history.loaded`).
        """
        scripts = self._scripts()
        return history.checked(scripts, self.project.root, self._heads_if_reachable) if check_history else scripts

    def _scripts(self) -> ScriptDirectory:
        """The revision files alembic.ini points to; BrokenConfig (one LabError) when alembic cannot read it: its
        CommandError, or configparser's, would otherwise reach the learner as a traceback."""
        try:
            return ScriptDirectory.from_config(self.config(io.StringIO()))
        except (CommandError, configparser.Error, UnicodeDecodeError) as error:  # saved as Latin-1, say
            raise BrokenConfig(
                f"alembic cannot read ai-service/alembic.ini: {self._config_problem(error)}",
                "Undo your change to ai-service/alembic.ini (`git diff ai-service/alembic.ini` shows it; "
                "`git checkout ai-service/alembic.ini` undoes it), or reset the chapter (`ch.reset()`, or "
                "`python -m migration_lab reset NN`: it backs up your work and puts the chapter's alembic.ini back).",
            ) from error

    def _config_problem(self, error: Exception) -> str:
        """What is wrong, as a learner can find it: a script_location that is no folder (alembic's own words
        for it suggest `alembic init`, which would start a new history), else alembic's first line."""
        try:
            location = self.config(io.StringIO()).get_alembic_option("script_location")
        except (configparser.Error, UnicodeDecodeError):
            location = None
        if location and not Path(location).is_dir():
            where = history.shown(Path(location), self.project.root)
            return f"its script_location is {where}, a folder that does not exist."
        return str(error).strip().splitlines()[0].replace(str(self.project.root) + "/", "")

    def _heads_if_reachable(self) -> tuple[str, ...] | None:
        """The database's revisions (() before the first upgrade); None when it cannot say (down)."""
        try:
            return self.db.heads()
        except (LabError, sa.exc.DBAPIError):
            return None

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
        conn: sa.Connection | None = None,
    ) -> RunResult:
        """Run `alembic <args>` and report what happened; never raises for a failed command.

        `expect`: the database heads this command was planned (rehearsed, confirmed)
        against. If the database has moved since, nothing runs and the result says so.
        `on_log` receives alembic's log lines as they happen. `conn`: a connection
        that holds the migration lock already (`exclusive()`: a reset holds it for
        longer than one command); by default the run takes it itself.
        """
        try:
            command = args if isinstance(args, Command) else parse(args)
        except CommandLineError as error:
            line = args if isinstance(args, str) else shlex.join(args.args if isinstance(args, Command) else args)
            return self.refuse(line.replace("\x00", "\\x00"), "input", error.what, error.next_step)
        if conn is not None:
            return self._on_locked(conn, command, on_log, expect)
        try:
            if not command.needs_database:
                with self._process_turn():
                    return self._execute(command, None, on_log)
            with self.exclusive() as locked:
                return self._on_locked(locked, command, on_log, expect)
        except Unreachable as error:
            return self.refuse(command, "unreachable", error.what, error.next_step)
        except Busy as error:
            return self.refuse(command, "busy", error.what, error.next_step)

    @contextlib.contextmanager
    def _process_turn(self) -> Iterator[None]:
        if not alembic_process.PROCESS_LOCK.acquire(blocking=False):
            raise Busy(
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

    def _on_locked(
        self,
        conn: sa.Connection,
        command: Command,
        on_log: Callable[[str], None] | None,
        expect: tuple[str, ...] | None,
    ) -> RunResult:
        """Run a command on `conn`, which holds the migration lock, if the database is where it was planned."""
        if expect is not None:
            now = self.db.heads(conn)
            conn.commit()
            if now != expect:
                return self.refuse(
                    command,
                    "moved",
                    f"The database moved since this command was checked: it was at {at(expect)}, "
                    f"it is now at {at(now)}. Nothing was done.",
                    "Look at where it is now (`alembic current`), then run the command again: "
                    "it will be checked again from there.",
                )
        return self._execute(command, conn, on_log)

    def _execute(self, command: Command, conn: sa.Connection | None, on_log: Callable[[str], None] | None) -> RunResult:
        try:
            loaded = self.script()  # about 1 ms; every command would fail on a broken history, with a bare KeyError
        except BrokenHistory as error:
            return self.refuse(command, "history", error.what, error.next_step)
        except BrokenConfig as error:
            return self.refuse(command, "config", error.what, error.next_step)
        except Exception:  # noqa: BLE001 - a file alembic cannot read: the command meets it, and `diagnose` names it
            loaded = None
        taken = getattr(command.options, "rev_id", None) if command.name in ("revision", "merge") else None
        existing = {s.revision: s for s in loaded.walk_revisions()} if loaded is not None and taken else {}
        if taken in existing:
            return self.refuse(
                command,
                "input",
                f"Revision {taken} exists already ({Path(existing[taken].path).name}): with `--rev-id {taken}` "
                "alembic would write over that file, or give a second file the same id. Nothing was written.",
                "Leave out --rev-id (alembic picks a new id), or give an id no revision has.",
            )
        started = time.perf_counter()
        before = after = None
        if conn is not None:
            try:
                before = self.db.heads(conn)
                conn.commit()  # alembic must own the transactions it runs migrations in
            except sa.exc.DBAPIError as error:
                unreachable = self.db.unreachable(error)
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
        uncommitted = False
        if conn is not None:
            try:
                # A transaction still open is not alembic's to keep: a terminal's `alembic` closes the connection
                # and PostgreSQL rolls it back. Roll it back here too, and say so if it held recorded revisions.
                inside = None
                if conn.in_transaction():
                    inside = self.db.heads(conn) if execution.error is None else None
                    conn.rollback()
                after = self.db.heads(conn)
                uncommitted = inside is not None and inside != after
                conn.commit()
            except sa.exc.DBAPIError:
                after = None  # the database died under the command: say so, don't guess
        failure = execution.error
        if failure is not None:  # a parent deleted while the command ran: the map's KeyError, recognised
            failure = (
                history.broken_history(
                    self.script(check_history=False), self.project.root, failure, self._heads_if_reachable
                )
                or failure
            )
        lost = isinstance(failure, sa.exc.DBAPIError) and failure.connection_invalidated
        server_up = lost and self.db.is_reachable()  # the session ended, not the server: a timeout, a terminate
        diagnosis = diagnose(failure, self.project.service_dir, server_up) if failure else None
        hint = diagnosis.hint if diagnosis else None
        if failure is not None and not_at_head(failure) and after is not None:
            hint = behind_by_empty_revisions(self.script(check_history=False), after) or hint
        if uncommitted:
            diagnosis = Diagnosis(
                "alembic printed its steps and ended without an error, but committed none of them: nothing was applied",
                "migrations/env.py began a transaction before context.configure() (a connection.execute(...), "
                "a SET, say), so alembic took it for the caller's, ran every revision in it and never committed "
                "it; the connection closed with a ROLLBACK. A terminal's `alembic upgrade` does the same and "
                "exits 0. Run that statement after configure(), inside `with context.begin_transaction():` "
                "(context.execute(...)), or commit it (connection.commit()) before configure().",
            )
            hint = diagnosis.hint
        root = str(self.project.root) + "/"  # paths as a learner sees them: from the project folder
        returned = execution.returned
        scripts = returned if isinstance(returned, list) else [returned]
        made = sorted((s for s in scripts if isinstance(s, Script)), key=lambda s: s.path)
        new_files = tuple(Path(s.path) for s in made)
        return RunResult(
            command.args,
            command.workflow,
            command.local,
            ok=execution.error is None and not uncommitted,
            output=execution.output.replace(root, ""),
            duration=time.perf_counter() - started,
            before=before,
            after=after,
            error=diagnosis.message.replace(root, "") if diagnosis else None,
            hint=hint,
            sqlstate=diagnosis.sqlstate if diagnosis else None,
            new_files=new_files if execution.error is None else (),
            new_revisions=tuple(s.revision for s in made) if execution.error is None else (),
            stdout=execution.stdout,
            changes_database=command.changes_database,
            stray_commits=execution.stray_commits if execution.error else 0,
            uncommitted=uncommitted,
        )
