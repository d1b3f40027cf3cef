"""Chapter 07's exercise: a new enum value, in its place, with a downgrade that rebuilds the type."""

from dataclasses import dataclass

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..lab import Lab
from ..workspace.edits import load_models
from . import checks
from .checks import Check
from .round_trip import WITH_PHONE_NUMBER_HEAD, a_profile, round_trip, undo_and_redo

ENUM_VALUES = sa.text(
    "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
    "WHERE t.typname = 'job_state' ORDER BY e.enumsortorder"
)


def enum_values(db: LabDatabase) -> tuple[str, ...]:
    """job_state's values in a database, in their order."""
    with db.engine.connect() as conn:
        return tuple(conn.scalars(ENUM_VALUES))


ADD_PAUSED = "op.execute(\"ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused' AFTER 'done'\")"


def _model_enum_values(lab: Lab) -> tuple[str, ...]:
    """JobEntry.state's Enum(...) values in main.py, in their order (loaded afresh); () if main.py does not load."""
    try:
        column = load_models(lab.project).Base.metadata.tables["job_entries"].columns["state"]
    except Exception:  # a half-edited main.py fails in any way: the first check says so
        return ()
    return tuple(getattr(column.type, "enums", ()))


def _place(value: str, order: tuple[str, ...]) -> str:
    """Where ADD VALUE puts `value` to match `order` (the model's): AFTER the value before it, else BEFORE the next."""
    if value not in order:
        return "AFTER 'done'"  # where the exercise wants it: the model does not have it yet
    at = order.index(value)
    return f"AFTER '{order[at - 1]}'" if at > 0 else f"BEFORE '{order[1]}'" if len(order) > 1 else ""


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Graded by what the revision does, however it is written (by hand, by alembic-postgresql-enum, reformatted):
    the value in the model and the database, its place, and its downgrade replayed on a copy."""
    model = _model_enum_values(lab)
    database = enum_values(lab.db)
    apply = ("The revision is written but not applied.", "Upgrade to head.", 'ch.alembic("upgrade head")')
    return [
        Check(
            "main.py's job_state has 'paused'",
            "paused" in model,
            (
                "The model first: JobEntry.state's Enum(...) lists the values job_state may take.",
                "ch.edit_model(old, new) replaces text in main.py (or edit ai-service/main.py in the editor).",
                'ch.edit_model(\'"done"\', \'"done", "paused"\')',
            ),
        ),
        Check(
            "the database's job_state has 'paused'",
            "paused" in database,
            apply
            if checks.pending(lab)
            else (
                "Plain autogenerate does not see a new enum value: the revision is yours to write (or let "
                "alembic-postgresql-enum write it, as in the steps above).",
                "An empty revision whose upgrade() runs ALTER TABLE ... ADD VALUE ... AFTER ..., inside "
                "`with op.get_context().autocommit_block():`.",
                'ch.alembic(\'revision -m "add paused job state"\'); ch.rewrite_revision(upgrade="""with '
                f'op.get_context().autocommit_block():\n    {ADD_PAUSED}""")',
            ),
        ),
        checks.database_at_head(lab, apply),
        Check(
            "job_state's values are in the same order in main.py and the database",
            bool(model) and model == database,
            (
                f"main.py says {', '.join(model)}; the database says {', '.join(database)}. An enum's order is "
                "part of the type (ORDER BY state and state > 'done' follow it), and ADD VALUE appends at the "
                "end unless told where.",
                f"ALTER TYPE job_state ADD VALUE 'paused' {_place('paused', model)} puts it where the model has it "
                "(squawk's require-enum-value-ordering asks for AFTER or BEFORE). Already applied elsewhere? "
                "PostgreSQL cannot move a value: the downgrade must rebuild the type without it (as in step 1) "
                "before you fix the upgrade and apply it again.",
                "ch.solution() starts the exercise again and adds it in its place: "
                f'ch.edit_model(\'"done"\', \'"done", "paused"\'), a revision whose upgrade() runs {ADD_PAUSED} '
                "in an autocommit_block, and a downgrade() that rebuilds the type.",
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "main.py and the database differ in something else as well.",
                'ch.alembic("check") says what differs.',
            ),
        ),
        _undone(lab, model) if "paused" in database else Check(UNDONE, False, apply),
        round_trip(
            lab,
            (
                "Your downgrade() must undo the upgrade. PostgreSQL cannot drop one value from an enum: the "
                "downgrade moves the paused rows to another value and rebuilds the type without 'paused'.",
                "As step 1's downgrade does: UPDATE the rows, RENAME the type, CREATE it again without the value, "
                "ALTER the column TYPE ... USING state::text::job_state, DROP the old type.",
                "ch.solution() shows the whole revision, downgrade() included.",
            ),
        ),
    ]


UNDONE = "your downgrade() takes 'paused' out again, and the upgrade puts it back in place (replayed on a copy)"
DOWNGRADE_HINTS = (
    "PostgreSQL cannot drop one value from an enum: the downgrade moves the paused rows to another value and "
    "rebuilds the type without 'paused'.",
    "As step 1's downgrade does: UPDATE the rows, RENAME the type, CREATE it again without the value, ALTER the "
    "column TYPE ... USING state::text::job_state (its default dropped and set again), DROP the old type. "
    'alembic-postgresql-enum\'s sync_enum_values rebuilds the type but moves no row: an op.execute("UPDATE ...") '
    "before it does.",
    "ch.solution() shows the whole revision, downgrade() included.",
)


# A job in each state the downgrade must handle: 'paused' (the value it takes away) and two it must leave alone.
JOBS_ON_THE_COPY = ("paused", "running", "done")
PUT_JOB = sa.text(
    "INSERT INTO job_entries (user_id, prompt, state) "
    "VALUES (:owner, 'a job in the copy the check replays on', CAST(:state AS job_state))"
)


def _put_jobs(db: LabDatabase) -> None:
    """A paused job, a running one and a done one on the copy: over an empty table, a downgrade that only works
    while no job is paused, that deletes the paused jobs, or that sends every job back to the queue runs fine."""
    with db.engine.begin() as conn:
        owner = a_profile(conn)
        for state in JOBS_ON_THE_COPY:
            conn.execute(PUT_JOB, {"owner": owner, "state": state})


@dataclass(frozen=True)
class _Jobs:
    """What the downgrade is judged on: job_state's values in order, and each job's state by id."""

    values: tuple[str, ...]
    states: dict[int, str]


def _jobs(db: LabDatabase) -> _Jobs:
    with db.engine.connect() as conn:
        has_jobs = sa.inspect(conn).has_table("job_entries")
        rows = conn.execute(sa.text("SELECT id, state::text FROM job_entries")).all() if has_jobs else []
    return _Jobs(enum_values(db), {int(job_id): str(state) for job_id, state in rows})


def _what_the_downgrade_did_to_jobs(before: _Jobs, after: _Jobs) -> str:
    """'' when every job is still there and only the paused ones changed state; else what happened, in words."""
    lost = [i for i in before.states if i not in after.states]
    moved = [i for i, state in before.states.items() if state != "paused" and after.states.get(i, state) != state]
    if lost:
        states = ", ".join(sorted({before.states[i] for i in lost}))
        return f"deletes {len(lost)} job(s) ({states}): a downgrade gives the schema back and keeps the rows"
    if moved:
        changes = ", ".join(sorted({f"{before.states[i]} → {after.states[i]}" for i in moved}))
        return f"changes the state of jobs that were not paused ({changes}): only the paused ones need a new state"
    return ""


def _undone(lab: Lab, model: tuple[str, ...]) -> Check:
    """Step down from where the database is, on a copy with jobs in it, until 'paused' is gone: that revision's
    downgrade must leave the type as the model has it without 'paused', keep every job (the paused ones moved to
    another state, the others untouched), and leave the rest of the schema as the upgrade found it; its upgrade
    must put the value back where it was."""
    undo = undo_and_redo(lab, _jobs, lambda jobs: "paused" in jobs.values, WITH_PHONE_NUMBER_HEAD, prepare=_put_jobs)
    without = tuple(v for v in model if v != "paused")
    if undo.problem:
        first = f"Replayed on a copy of your database with a paused job in it, {undo.problem}."
    elif undo.revision is None:
        first = (
            "Replayed on a copy of your database, no downgrade() takes 'paused' out: job_state keeps it all the way "
            "down to the chapter's start. A downgrade that runs (a `pass`) is not one that undoes."
        )
    elif undo.down.values != without:
        first = (
            f"Replayed on a copy, `downgrade -1` from {undo.revision} leaves job_state as "
            f"({', '.join(undo.down.values)}): with 'paused' gone, it should be ({', '.join(without)}), as main.py "
            "has it."
        )
    elif done_to_jobs := _what_the_downgrade_did_to_jobs(undo.before, undo.down):
        first = (
            f"Replayed on a copy with a paused, a running and a done job in it, `downgrade -1` from {undo.revision} "
            f"takes 'paused' out but {done_to_jobs}. Move only the paused jobs to another state "
            "(UPDATE job_entries SET state = 'queued' WHERE state = 'paused')."
        )
    elif undo.up.values != undo.before.values:
        first = (
            f"Replayed on a copy, the downgrade of {undo.revision} takes 'paused' out, but its upgrade does not put "
            f"job_state back as it was ({', '.join(undo.before.values)}): it gives ({', '.join(undo.up.values)}). "
            "Is that revision yours, or did an earlier revision's downgrade take 'paused' with it?"
        )
    elif undo.changed:
        first = (
            f"Replayed on a copy, `downgrade -1` then `upgrade {undo.revision}` do not give the schema back as it "
            f"was: {undo.changed}. The downgrade leaves something behind or takes something with it (the column's "
            "default dropped and not set again? the old type not dropped?)."
        )
    else:
        return Check(UNDONE, True, DOWNGRADE_HINTS)
    return Check(UNDONE, False, (f"{first} {DOWNGRADE_HINTS[0]}", *DOWNGRADE_HINTS[1:]))
