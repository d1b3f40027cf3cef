"""Chapter 12, expand and contract: traffic from two app versions, and the exercise's checks.

The exercise ships the first half of `phone_number` -> `phone` the production
way: add `phone` next to `phone_number`, keep the two in step (a trigger: the
old code does not know the new column, so only the database can copy its
writes), backfill the rows there are. It is graded the way production grades
it: the old version (`phone_number`) must not fail at any step of the new
revisions, replayed one by one on a copy of the database, and at the end both
versions must work side by side.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..errors import CopyUnavailable
from ..lab import Lab
from ..running.runner import Runner
from . import checks
from .checks import Check
from .round_trip import WITH_PHONE_NUMBER_HEAD

if TYPE_CHECKING:  # the apps import FastAPI: loaded when traffic runs, not whenever the chapters are listed
    from .ch12_app_versions import Burst

OLD_PHONE, NEW_PHONE = "old-phone", "new-phone"
PHONE_LINE = "phone = Column(String, nullable=True)"


class _HasLab(Protocol):
    lab: Lab


def traffic(chapter: _HasLab, *versions: str) -> None:
    """A burst of requests from the versions that run now (reads and writes), and how many failed each."""
    from .ch12_app_versions import burst

    print(burst(chapter.lab.db.url, versions or ("old", "new")))


def exercise_start(lab: Lab) -> str:
    """The exercise's start: every profile has a phone, so a new column that is not filled shows."""
    with lab.db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE user_profiles SET phone_number = '+44 161 496 0003' WHERE email = 'alan@example.org'")
        )
    return (
        "Alan Turing added his phone number. The ai-api in production (the old version) reads and writes "
        "user_profiles.phone_number; the next release reads and writes user_profiles.phone."
    )


def _triggers(db: LabDatabase) -> list[str]:
    """The triggers on user_profiles that someone made (not a constraint's own)."""
    with db.connect() as conn:
        return list(
            conn.scalars(
                sa.text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('user_profiles') AND NOT tgisinternal "
                    "ORDER BY 1"
                )
            )
        )


def _columns(db: LabDatabase) -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns("user_profiles")}


@dataclass(frozen=True)
class Replay:
    """Revisions replayed one by one on a copy, with traffic: what the old version met, and both at the end."""

    expand: str | None = None  # the revision that added user_profiles.phone (None: no revision does)
    renamed: bool = False  # ... and took phone_number away with it: a rename in one step
    failed_at: str | None = None  # the revision after which the old version failed
    seen: "Burst | None" = None  # that burst
    problem: str = ""  # a revision that would not go down or up, or a database that could not be copied
    both: "Burst | None" = None  # both versions side by side at head (when nothing failed before)


def _down_to_before_the_expand(runner: Runner, copy: LabDatabase) -> tuple[bool, str]:
    """Step down from head, one revision at a time, until user_profiles has no phone: the copy is then where the
    expand starts, however the revisions are written. (found an expand, a step that failed)."""
    if "phone" not in _columns(copy):
        return False, ""
    while True:
        heads = copy.heads()
        if len(heads) != 1 or heads[0] == WITH_PHONE_NUMBER_HEAD:
            return False, ""
        down = runner.run(["downgrade", "-1"])
        if not down.ok:
            return False, f"`alembic downgrade -1` from {heads[0]} fails: {down.error}"
        if "phone" not in _columns(copy):
            return True, ""


# How far along the id sequence the replay signs up one more profile, below the expand: production's ids are not
# 1 to count(*) (deleted profiles, rolled-back sign-ups), and a backfill that batches up to count(*), or to a number
# it saw in the learner's database, leaves the profiles above it without a phone. Batches up to max(id) reach it.
FAR_ALONG = 10_000
FAR_PHONE = "+44 161 496 0999"


def _sign_up_far_along(copy: LabDatabase) -> None:
    """At the replay's floor (the old version's schema, whatever else the learner's revisions changed before), a
    copy of the first profile with an email and a phone number of its own, FAR_ALONG ids after the last one: the
    backfill must fill it as it fills the others. Skipped on an empty table, or when the row does not fit."""
    quote = copy.engine.dialect.identifier_preparer.quote
    names = [c["name"] for c in sa.inspect(copy.engine).get_columns("user_profiles") if c["name"] != "id"]
    if not {"email", "phone_number"} <= set(names):
        return
    values = {"email": ":email", "phone_number": ":phone"}
    copied = ", ".join(values.get(name, quote(name)) for name in names)
    try:
        with copy.engine.begin() as conn:
            if conn.scalar(sa.text("SELECT min(id) FROM user_profiles")) is None:
                return
            conn.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('user_profiles', 'id'), "
                    "(SELECT max(id) FROM user_profiles) + :gap)"
                ),
                {"gap": FAR_ALONG},
            )
            conn.execute(
                sa.text(
                    f"INSERT INTO user_profiles ({', '.join(quote(n) for n in names)}) SELECT {copied} "
                    "FROM user_profiles ORDER BY id LIMIT 1"
                ),
                {"email": "far-along@example.org", "phone": FAR_PHONE},
            )
    except sa.exc.SQLAlchemyError:  # a unique column besides email, a constraint of the learner's: not this row's
        return


def replay(lab: Lab, start: str | None = None) -> Replay:
    """On one copy, at head: down to where the expand starts (the last revision without user_profiles.phone, found
    by stepping down; or `start`), then up one revision at a time with the old version's traffic after each, then
    both versions' traffic at head.

    A copy, so the learner's database never gets the traffic's rows, and a downgrade there costs nothing.
    """
    from .ch12_app_versions import burst

    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            up = runner.run("upgrade head")
            if not up.ok:
                return Replay(problem=f"upgrade head fails: {up.error}")
            if start is None:
                found, problem = _down_to_before_the_expand(runner, copy)
                if problem or not found:
                    return Replay(problem=problem)
                below = burst(copy.url, [OLD_PHONE])  # a rollback's state: the old code runs alone again
                if not below.ok:
                    failure = below.of(OLD_PHONE).failures[0]
                    left = _triggers(copy)
                    why = (
                        f"trigger {', '.join(left)} on user_profiles is still there: made by hand (in no revision), "
                        "or left by the downgrade. A revision makes it, and its downgrade() drops it"
                        if left
                        else "a trigger or function the downgrade left behind?"
                    )
                    return Replay(
                        problem=f"after the downgrades below the expand, the old version fails: {failure} ({why})"
                    )
            else:
                down = runner.run(["downgrade", start])
                if not down.ok:
                    return Replay(problem=f"downgrade {start} fails: {down.error}")
            _sign_up_far_along(copy)
            at = copy.heads()
            steps = [
                s.revision for s in reversed(list(runner.script().iterate_revisions("heads", at[0] if at else "base")))
            ]
            expand, renamed = None, False
            for revision in steps:
                up = runner.run(["upgrade", revision])
                if not up.ok:
                    return Replay(expand, renamed, problem=f"upgrade {revision} fails: {up.error}")
                if expand is None and "phone" in (columns := _columns(copy)):
                    expand, renamed = revision, "phone_number" not in columns
                seen = burst(copy.url, [OLD_PHONE])
                if not seen.ok:
                    return Replay(expand, renamed, failed_at=revision, seen=seen)
            return Replay(expand, renamed, both=burst(copy.url, [OLD_PHONE, NEW_PHONE]))
    except CopyUnavailable as why:
        return Replay(problem=f"the database could not be copied ({why.what})")


TRIGGER_HINT = (
    "A trigger in the expand revision: BEFORE INSERT OR UPDATE ON user_profiles FOR EACH ROW, a plpgsql function "
    "that copies phone_number to phone when phone_number changed, and phone to phone_number when phone changed. "
    'op.execute("CREATE OR REPLACE FUNCTION ...") and op.execute("CREATE TRIGGER ..."); the downgrade drops both first.'
)
SOLUTION = "ch.solution() shows notebooks/solutions/12.py (an expand revision with the trigger, a backfill) and runs it"


def exercise(lab: Lab, answer: object) -> list[Check]:
    """The exercise: expand phone_number -> phone, with zero failed requests from either version."""
    at_head = checks.database_at_head(
        lab, ("Your revisions are written but not applied.", "Upgrade to head.", 'ch.alembic("upgrade head")')
    )
    replayed = replay(lab)
    renamed = replayed.renamed
    replay_hints: checks.Hints
    if replayed.problem:
        replay_hints = (
            f"Replayed on a copy of the database, {replayed.problem}. Every revision must go down and up again.",
            "Fix the revision's upgrade() or downgrade() (ch.rewrite_revision(revision=..., ...)), "
            "or ch.reset() and start again.",
        )
    elif replayed.expand is None:
        replay_hints = (
            "Write the expand revision first: no revision adds user_profiles.phone (replayed on a copy).",
            "Add phone to the model, autogenerate the expand revision, add the trigger, upgrade.",
            SOLUTION,
        )
    elif renamed:
        replay_hints = (
            "A rename in one step: the moment it commits, the old version's requests fail (column "
            "phone_number does not exist) until every instance runs the new code.",
            "Expand instead: a new column next to the old one, both kept in step, the old one dropped in a "
            "later release (contract).",
            SOLUTION,
        )
    else:
        failure = replayed.seen.of(OLD_PHONE).failures[0] if replayed.seen else ""
        replay_hints = (
            f"After revision {replayed.failed_at} the old version fails: {failure}. A change that the old code "
            "cannot live with must wait for the contract step.",
            "The expand step only adds: a nullable column, a trigger, a backfill. Nothing the old version "
            "reads or writes may be renamed, dropped or made NOT NULL.",
            SOLUTION,
        )
    replay_check = Check(
        "the old version (phone_number) never fails while your revisions are applied",
        replayed.expand is not None and not replayed.problem and replayed.failed_at is None,
        replay_hints,
    )
    both = replayed.both
    if both is None or not at_head.passed:
        both_hints: checks.Hints = (
            "Your revisions are not all applied: upgrade to head first."
            if not at_head.passed
            else "Make the check above pass first: the old version must never fail."
        )
        old_ok = new_ok = False
    else:
        old_ok, new_ok = both.of(OLD_PHONE).failed == 0, both.of(NEW_PHONE).failed == 0
        found = str(next((r for r in both.results if r.failures), ""))
        if "does not exist" in found:
            concept = f"{found}. The new version needs its column: expand first."
            api = "Add phone to the model, autogenerate the expand revision, add the trigger, upgrade."
        elif "differ from" in found or "have no phone" in found:
            concept = (
                f"{found}. The rows there were before the expand have phone_number but no phone: they need a backfill "
                f"(all of them: on its copy the check signs up one more profile {FAR_ALONG:,} ids further along, as "
                "production's ids have gaps, so batches go up to max(id), not to count(*) or a number your database "
                "has)."
            )
            api = (
                "A data migration in batches by primary key, each in its own transaction (autocommit_block): "
                "UPDATE user_profiles SET phone = phone_number WHERE id > :start AND id <= :start + 1000 AND phone "
                "IS NULL, for start in range(0, max(id), 1000). The WHERE makes it safe to run twice."
            )
        else:
            concept = (
                f"{found}. The old code does not know phone exists, so what it writes lands in phone_number only "
                "(and the new code's writes in phone only): only the database can keep the two in step."
            )
            api = TRIGGER_HINT
        both_hints = (concept, api, SOLUTION)
    return [
        checks.model_maps(
            lab,
            "UserProfile",
            "phone",
            (
                "Expand first: the new column goes next to the old one, in the model and then in the database. "
                "The old version still runs and still uses phone_number.",
                'ch.add_column("UserProfile", "phone = Column(...)"), nullable (the old version inserts rows '
                "without it), then autogenerate.",
                f'ch.add_column("UserProfile", "{PHONE_LINE}")',
            ),
        ),
        checks.model_maps(
            lab,
            "UserProfile",
            "phone_number",
            (
                "Keep phone_number in the model: the old version still reads and writes it. Dropping it is the "
                "contract step, in a later release, once no old version runs.",
                "Put the line back in class UserProfile (ch.add_column), or ch.reset() and start again.",
                'ch.add_column("UserProfile", "phone_number = Column(String, nullable=True)")',
            ),
        ),
        checks.column_exists(
            lab,
            "user_profiles",
            "phone",
            (
                "The model has phone; the database does not yet.",
                "Autogenerate the expand revision, add the trigger to it, and upgrade.",
                "ch.alembic('revision --autogenerate -m \"expand phone\"'), ch.rewrite_revision(...), "
                'ch.alembic("upgrade head")',
            ),
        ),
        at_head,
        replay_check,
        Check("the old version (phone_number) works next to the new one: 0 failed requests", old_ok, both_hints),
        Check("the new version (phone) works next to the old one: 0 failed requests", new_ok, both_hints),
        checks.models_match_database(
            lab,
            (
                "main.py and the database differ.",
                'ch.alembic("check") says how; generate a revision for the difference, or fix the model.',
            ),
        ),
    ]
