"""Chapter 07's exercise: a new enum value, in its place, with a downgrade that rebuilds the type."""

import sqlalchemy as sa

from ..lab import Lab
from ..workspace.edits import load_models
from . import checks
from .checks import Check
from .round_trip import round_trip


def _enum_values(lab: Lab) -> tuple[str, ...]:
    with lab.db.engine.connect() as conn:
        return tuple(
            conn.scalars(
                sa.text(
                    "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                    "WHERE t.typname = 'job_state' ORDER BY e.enumsortorder"
                )
            )
        )


ADD_PAUSED = "op.execute(\"ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused' AFTER 'done'\")"


def _model_enum_values(lab: Lab) -> tuple[str, ...]:
    """JobEntry.state's Enum(...) values in main.py, in their order (loaded afresh); () if main.py does not load."""
    try:
        column = load_models(lab.project).Base.metadata.tables["job_entries"].columns["state"]
    except Exception:  # a half-edited main.py fails in any way: the first check says so
        return ()
    return tuple(getattr(column.type, "enums", ()))


def exercise(lab: Lab, answer: object) -> list[Check]:
    model = _model_enum_values(lab)
    database = _enum_values(lab)
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
        checks.a_revision_file_matches(
            lab,
            r"'paused'",
            "adds 'paused' to job_state",
            (
                "Plain autogenerate does not see a new enum value: the revision is yours to write (or let "
                "alembic-postgresql-enum write it, as in the steps above).",
                "An empty revision whose upgrade() runs ALTER TYPE ... ADD VALUE ... AFTER ..., inside "
                "`with op.get_context().autocommit_block():`.",
                'ch.alembic(\'revision -m "add paused job state"\'); ch.rewrite_revision(upgrade="""with '
                f'op.get_context().autocommit_block():\n    {ADD_PAUSED}""")',
            ),
        ),
        Check("the database's job_state has 'paused'", "paused" in database, apply),
        checks.database_at_head(lab, apply),
        Check(
            "job_state's values are in the same order in main.py and the database",
            bool(model) and model == database,
            (
                f"main.py says {', '.join(model)}; the database says {', '.join(database)}. An enum's order is "
                "part of the type (ORDER BY state and state > 'done' follow it), and ADD VALUE appends at the "
                "end unless told where.",
                "ALTER TYPE job_state ADD VALUE 'paused' AFTER 'done' puts it where the model has it (squawk's "
                "require-enum-value-ordering asks for AFTER or BEFORE). Already applied at the end? PostgreSQL "
                "cannot move a value: the downgrade must rebuild the type without it (as in step 1) before you fix "
                "the upgrade and apply it again.",
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
