"""Errors a learner can act on: each says what happened and what to do next."""


class LabError(Exception):
    """A problem with the lab's set-up (not with the learner's migration).

    `what` says what happened; `next_step` says what to type or do about it.
    The CLI prints both without a traceback.
    """

    def __init__(self, what: str, next_step: str) -> None:
        super().__init__(what)
        self.what = what
        self.next_step = next_step

    def __str__(self) -> str:
        return f"{self.what}\nWhat to do: {self.next_step}"


class Busy(LabError):
    """Another process holds the lab's migration lock for too long, or this process runs another command."""


class Unreachable(LabError):
    """The database does not answer."""


class CopyUnavailable(LabError):
    """The database cannot be copied right now (for a rehearsal, a check's replay); `what` says why in one line."""

    def __init__(self, what: str) -> None:
        super().__init__(what, "Close what uses the database (another notebook, psql), then try again.")


class CommandLineError(LabError):
    """A command line alembic's parser (or the shell's quoting rules) refuses."""


class BrokenHistory(LabError):
    """A revision file's parent (its down_revision) is in no file: alembic cannot read the history at all."""


class BrokenConfig(LabError):
    """alembic cannot read ai-service/alembic.ini (a wrong script_location, a line that is not ini): every command
    would fail on it."""
