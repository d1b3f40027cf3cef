"""Chapter 15, Retries, drops and renames: the calls its cells make, and its exercise's checks.

The second half of the catalogue, on chapter 14's busy app: waiting for a lock
without stopping the app (retries inside the migration with backoff, who
blocks it, the two timeouts that end a transaction), and the changes the
running code notices at once (a column it still maps dropped, a table
renamed). The exercise drops a column the right way round, graded on a copy:
the code stops mapping it first (the replay's traffic runs main.py as saved),
the DROP asks for its lock briefly (the lock trace reads the session's
lock_timeout, however it was set), 0 failed requests while a report sits idle
on user_profiles, and a downgrade that gives the column back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import LabError
from ..lab import Lab
from ..tools.lock_trace import LockTrace, Step
from ..workspace import checkpoints
from ..workspace.edits import apply_edit
from . import checks
from .ch14_busy_jobs import CLIENT_TIMEOUT, HOLDS, JOBS, REPORT_ON_PROFILES, Replay, lab_of, replay
from .checks import Check

# The helper a revision carries (ai-service never imports the kit): GitLab's with_lock_retries, in Python.
LOCK_RETRIES = '''

def with_lock_retries(work, lock_timeout="200ms", attempts=10, pause=0.1):
    """Run work() asking for its locks briefly; when one is not free (SQLSTATE 55P03), undo it, wait, try again.

    Each attempt runs in a SAVEPOINT with SET LOCAL lock_timeout: a failed attempt is rolled back to it, and the
    pause doubles each time (backoff). Anything else, or the last attempt, fails the migration. Make work() the
    revision's first statement that takes a lock: what earlier statements locked stays locked while it sleeps.
    """
    import time

    from sqlalchemy.exc import OperationalError

    if op.get_context().as_sql:  # `alembic upgrade --sql`: print the statements, there is nothing to retry
        op.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        return work()
    bind = op.get_bind()
    for attempt in range(1, attempts + 1):
        try:
            with bind.begin_nested():
                bind.exec_driver_sql(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                return work()
        except OperationalError as error:
            if getattr(error.orig, "pgcode", None) != "55P03" or attempt == attempts:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

'''


def _newest_revision(lab: Lab) -> Path:
    heads = lab.runner.script().get_revisions("heads")
    if len(heads) != 1 or heads[0] is None:
        raise LabError("There is not exactly one head revision.", "`alembic heads` lists them.")
    return Path(heads[0].path)


def add_lock_retries(chapter: Any) -> None:
    """Put the with_lock_retries helper in the newest revision file, above upgrade(); show the diff."""
    from IPython.display import Markdown, display

    lab = lab_of(chapter)
    path = _newest_revision(lab)

    def edit(source: str) -> str:
        if "def with_lock_retries(" in source:
            return source
        index = source.index("\ndef upgrade(")
        return source[:index].rstrip("\n") + "\n" + LOCK_RETRIES + source[index:]

    diff = apply_edit(path, edit, lab.project.root)
    display(Markdown(f"```diff\n{diff}```" if diff else "_No change: the helper is there._"))


# --- the exercise: drop user_profiles.phone_number without a failed request -----------------------------

PHONE_LINE = "phone_number = Column(String, nullable=True)"
SAFE_UPGRADE = """op.execute("SET LOCAL lock_timeout = '200ms'")  # ask briefly; the deploy retries
op.drop_column('user_profiles', 'phone_number')"""
SAFE_DOWNGRADE = "op.add_column('user_profiles', sa.Column('phone_number', sa.String(), nullable=True))"
CODE_FIRST = f"ch.edit_model('    {PHONE_LINE}\\n', '')"


def write_safe(found: Replay) -> str:
    """The hint's code: back to the start, the newest revision of the release rewritten the safe way, upgrade (it
    drops the numbers: the kit asks first)."""
    return found.redo_call(SAFE_UPGRADE, SAFE_DOWNGRADE, asks=True)


# What the old code writes in phone_number: a number as its users type it, as long as the longest the lab holds
# (a type made for phone numbers, varchar(16) or more, holds it; char(1), what sa.CHAR() makes, does not).
A_PHONE_NUMBER = "+44 161 496 0003"


def phone_number_state(lab: Lab) -> dict[str, Any]:
    """{"column": user_profiles.phone_number exists, "nullable": it accepts NULL, "type": its type, "text": the
    type holds what the old code writes there (a phone number comes back from it as it went in: an integer fails,
    and so do char(1), which sa.CHAR() makes, and a varchar too short)}."""
    with lab.db.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT NOT a.attnotnull, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass('user_profiles') AND a.attname = 'phone_number' AND NOT a.attisdropped"
            )
        ).first()
        if found is None:
            return {"column": False, "nullable": False, "type": None, "text": False}
        try:  # format_type's name, quoted where it must be; the value cast to it and back, compared by PostgreSQL
            holds = conn.scalar(
                sa.text(f"SELECT CAST(CAST(:phone AS {found[1]}) AS text) = :phone"), {"phone": A_PHONE_NUMBER}
            )
        except sa.exc.SQLAlchemyError:  # no cast from text (integer: invalid input; a type of the learner's own)
            holds = False
    return {"column": True, "nullable": bool(found[0]), "type": found[1], "text": bool(holds)}


def exercise_start(lab: Lab) -> str:
    """Back to the chapter's start: the steps' revisions and model edits undone."""
    if checkpoints.at_checkpoint(lab, JOBS):
        return "The lab is at the chapter's start already: nothing to undo."
    checkpoints.reset(lab, JOBS)
    return (
        "Back to the chapter's start (the steps' revisions are gone, your files backed up). UserProfile still maps "
        "phone_number, and the app reads and writes user_profiles all the time."
    )


def _timeout_seconds(setting: str) -> float | None:
    """A lock_timeout as PostgreSQL shows it ("200ms", "1s", "0") in seconds; None when it is 0 (no limit)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)?", setting.strip())
    if match is None:
        return None
    value = float(match.group(1)) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600, None: 0.001}[match.group(2)]
    return value or None


@dataclass(frozen=True)
class _Carried:
    """A DROP that had no short lock_timeout in its own session, and the earlier revision's plain SET that gives it
    one in a single `alembic upgrade head` (the session keeps it), not when its revision runs on its own."""

    drop: str  # the file of the revision that drops
    setter: str  # the file of the earlier revision that sets it
    step: Step  # the plain SET there

    def explained(self) -> str:
        return (
            f"In one `alembic upgrade head` it gets one only because line {self.step.line} of {self.setter} sets "
            f"lock_timeout to {self.step.lock_timeout_after} with a plain SET (no LOCAL), which the session keeps "
            f"after that revision. But a deploy that retries after a failure, or `alembic upgrade +1`, applies "
            f"{self.drop} in a new session, without it, and the DROP waits as long as it takes (the lock trace runs "
            "each revision that way); and a plain SET leaks into every later revision, whatever that one runs."
        )


def _drop_waits(found: Replay) -> tuple[list[str], list[_Carried]]:
    """The statements that took ACCESS EXCLUSIVE on user_profiles with no lock_timeout shorter than a client
    waits ("line N of file: lock_timeout 0"); and, for those, the plain SET of an earlier revision that would have
    given them a short one in the same session (the trace runs each revision in a session of its own, as a retry
    does, so the verdict stands: the hint says why)."""
    said: list[str] = []
    carried: list[_Carried] = []
    earlier: tuple[LockTrace, Step] | None = None  # the last plain SET of lock_timeout in an earlier revision
    for traced in found.traces:
        for step in traced.steps:
            if any(lock.table == "user_profiles" and lock.mode == "AccessExclusiveLock" for lock in step.locks):
                seconds = _timeout_seconds(step.lock_timeout)
                if seconds is None or seconds >= CLIENT_TIMEOUT:
                    said.append(f"line {step.line} of {traced.path.name}: lock_timeout {step.lock_timeout}")
                    if earlier is not None and _short(earlier[1].lock_timeout_after):
                        carried.append(_Carried(traced.path.name, earlier[0].path.name, earlier[1]))
        setter = traced.session_lock_timeout()
        earlier = (traced, setter) if setter is not None else earlier
    return said, carried


def _short(setting: str | None) -> bool:
    """A lock_timeout shorter than a client waits (and not 0, no limit)."""
    seconds = _timeout_seconds(setting) if setting is not None else None
    return seconds is not None and seconds < CLIENT_TIMEOUT


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 15: user_profiles.phone_number dropped while the app serves it, code first."""
    found = replay(lab, REPORT_ON_PROFILES, phone_number_state)
    end, undone = found.end, found.undone
    dropped = found.upgraded and end.get("column") is False
    write = (
        "Nothing uses phone_number any more; drop it. The running code must stop mapping it before the column goes "
        "(a query that names a missing column fails), and the DROP needs the table's strongest lock for a moment.",
        "First the code: remove phone_number from UserProfile in main.py (that is the deploy). Then a revision "
        "(ch.alembic('revision -m \"...\"')) whose upgrade() sets a short lock_timeout and calls "
        "op.drop_column('user_profiles', 'phone_number'); its downgrade() adds the column back, nullable.",
        f"{CODE_FIRST}; ch.alembic('revision -m \"drop phone number\"'); "
        f'ch.rewrite_revision(upgrade="""{SAFE_UPGRADE}""", downgrade="""{SAFE_DOWNGRADE}"""); '
        'ch.alembic("upgrade head", confirm=True)',
    )
    results = [
        Check(
            "a revision after the chapter's start drops user_profiles.phone_number",
            dropped,
            found.failure() or write,
        ),
        checks.model_unmaps(
            lab,
            "UserProfile",
            "phone_number",
            (
                "The code still maps phone_number: from the moment the column is gone, every query the running app "
                "makes on user_profiles names it and fails. The code stops using a column first; the drop follows.",
                "Remove the phone_number line from UserProfile in main.py (ch.edit_model, or the editor): the "
                "replay runs the app as main.py is saved.",
                CODE_FIRST,
            ),
        ),
    ]
    waits, carried = _drop_waits(found)
    how = (
        "op.execute(\"SET LOCAL lock_timeout = '200ms'\") before the drop (the deploy retries), or the "
        "with_lock_retries helper around it; a timeout set in env.py counts too. Shorter than the "
        f"{CLIENT_TIMEOUT:.0f} s a client waits."
    )
    if carried:
        how = (
            f"Set it in {carried[0].drop} itself, where the DROP is: " + how + f" And make the SET in "
            f"{carried[0].setter} a SET LOCAL (or remove it), so it no longer reaches the revisions after it."
        )
    results.append(
        Check(
            "the lock trace: the DROP asks for its lock with a lock_timeout shorter than a client waits",
            dropped and not waits,
            (
                "Your DROP asks for ACCESS EXCLUSIVE on user_profiles without a short lock_timeout ("
                + "; ".join(waits)
                + "): behind a report's open transaction it waits, and every query on the table waits behind it."
                + "".join(" " + why.explained() for why in carried[:1]),
                how,
                write_safe(found),
            ),
        )
    )
    run = found.run
    results.append(
        Check(
            "replayed on a copy under the app's traffic and a report: 0 failed requests",
            dropped and run is not None and run.failed == 0,
            (
                f"Requests failed while your release ran ({', '.join(run.failed_kinds) if run else ''}). "
                + (
                    "They failed with errors at once: the running code still named phone_number."
                    if run is not None and run.requests.errors
                    else f"A report kept its transaction open on user_profiles {HOLDS} s after the DROP began to "
                    f"wait for it, and the requests queued behind the waiting DROP, longer than a client waits."
                ),
                "Code first (main.py without phone_number), and a DROP that asks for its lock briefly: SET LOCAL "
                "lock_timeout = '200ms' (the deploy retries) or with_lock_retries.",
                f"{CODE_FIRST}; {write_safe(found)}",
            ),
        )
    )
    down = found.downgrade
    gives_back = f"downgrade(): {SAFE_DOWNGRADE}"
    undoes = Check(
        "its downgrade() runs and gives the column back, nullable (replayed on the copy)",
        dropped
        and down is not None
        and down.ok
        and undone.get("column") is True
        and bool(undone.get("nullable"))
        and bool(undone.get("text")),
        found.fix_the_downgrade(gives_back)
        if found.undone_badly
        else (
            "Replayed on a copy, going back to the chapter's start "
            + (
                f"fails: {down.error}"
                if down is not None and not down.ok
                else f"gives phone_number back as {undone['type']}, which does not hold the phone numbers the old "
                f"code writes there as text ({A_PHONE_NUMBER!r} does not come back as it went in)"
                if undone.get("column") and not undone.get("text")
                else "gives phone_number back NOT NULL: every profile the old code signs up without a phone "
                "fails then, and a default that fills the gap is a made-up number in every row"
                if undone.get("column") and not undone.get("nullable")
                else "does not give phone_number back"
            )
            + ". A downgrade cannot bring the numbers back, but it must bring the column back (nullable: the "
            "old rows have no value any more), or the old code cannot run again.",
            gives_back,
            write_safe(found),
        ),
    )
    # When the replay stopped where the release's own downgrade left the copy (the column still dropped), the first
    # check says no revision drops it, though one does: the learner reads the first failing check, so the one about
    # the downgrade comes first then (as in chapter 14); no check's verdict changes.
    results.insert(0 if found.undone_badly else len(results), undoes)
    results.append(
        checks.database_at_head(
            lab,
            (
                "Your release passes on a copy, but your own database has not run it yet.",
                'Apply it: ch.alembic("upgrade head", confirm=True) (it drops the numbers, so the kit asks first), or '
                "`alembic upgrade head` in a terminal.",
            ),
        )
    )
    results.append(
        checks.models_match_database(
            lab,
            (
                "main.py's models and your database differ.",
                'ch.alembic("check") says how: the model must say what the database has.',
            ),
        )
    )
    return results
