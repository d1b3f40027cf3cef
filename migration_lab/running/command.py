"""One alembic command line, parsed by alembic's own parser: its arguments, its name, what it touches.

Which command it is comes from the function the parser chose (so
`-x a=b downgrade base` is a downgrade, whatever the first word).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from dataclasses import dataclass

from alembic.config import CommandLine

from ..database.compose import SERVICE
from ..errors import CommandLineError

WORKFLOW_PREFIX = f"docker-compose exec {SERVICE} alembic"
# alembic's own command line: its parser turns "downgrade -1" into a call. Built once (a few ms).
_ALEMBIC = CommandLine(prog="alembic")

# The commands that change which revision the database is at.
DATABASE_CHANGING = frozenset({"upgrade", "downgrade", "stamp"})
# Commands that never open the database (unless asked to mark the current revision).
FILES_ONLY = frozenset({"heads", "show", "branches", "merge", "list_templates"})


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
    if options.cmd[0].__name__ == "edit":  # it starts an editor, which waits for a terminal a kernel has not
        raise CommandLineError(
            "`alembic edit` opens the revision in a terminal's editor: here nothing could type in it, and the cell "
            "would wait forever. Nothing was started.",
            "Open the file from JupyterLab's file browser (ai-service/migrations/versions/), or type `alembic edit "
            "head` in a terminal (File > New > Terminal).",
        )
    options.raiseerr = True
    return Command(tuple(args), options.cmd[0].__name__, options)
