"""Chapter 09's exercise: start fresh with one initial revision, reviewed and round-tripped."""

import sqlalchemy as sa

from ..errors import CopyUnavailable
from ..lab import Lab
from ..workspace.edits import load_models
from . import checks
from .checks import Check, revision_texts
from .round_trip import round_trip

TABLES = ("user_profiles", "user_settings", "job_entries")
# The initial revision's downgrade(), reviewed: autogenerate's, plus the ENUM type its create_table made.
INITIAL_DOWNGRADE = """op.drop_table('user_settings')
op.drop_index(op.f('ix_job_entries_user_id'), table_name='job_entries')
op.drop_table('job_entries')
op.drop_table('user_profiles')
sa.Enum(name='job_state').drop(op.get_bind())"""


def _model_enums(lab: Lab) -> dict[str, tuple[str, ...]]:
    """{type name: its values, in order} of the named Enum types main.py's models use ({} if it does not load)."""
    try:
        metadata = load_models(lab.project).Base.metadata
    except Exception:  # a main.py mid-edit: alembic check says why
        return {}
    return {
        column.type.name: tuple(column.type.enums)
        for table in metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, sa.Enum) and column.type.native_enum and column.type.name
    }


def _enums_differ(lab: Lab, built: dict[str, tuple[str, ...]]) -> str:
    """How the enum types the revisions built differ from main.py's, in words; "" when they do not. `alembic check`
    never compares an enum's values: a revision that lists them in another order, or misses one, passes it."""
    return "; ".join(
        f"type {name} is ({', '.join(built.get(name, ()))}) where main.py has ({', '.join(values)})"
        if name in built
        else f"it makes no type {name}, which main.py's models use"
        for name, values in sorted(_model_enums(lab).items())
        if built.get(name) != values
    )


def _builds_from_nothing(lab: Lab) -> tuple[set[str], str, str]:
    """On a copy wiped empty, `upgrade head`: which of TABLES the revisions alone build (whatever their spelling:
    op.create_table, plain SQL, double quotes), the error of that upgrade, if it failed, and how the enum types it
    built differ from main.py's ("" when they do not)."""
    try:
        with lab.db.copy() as copy:
            with copy.connect() as conn:
                copy.wipe(conn)
                conn.commit()
            result = lab.runner.on(copy).run("upgrade head")
            if not result.ok:
                return set(), f"`alembic upgrade head` from an empty database fails: {result.error}", ""
            inspector = sa.inspect(copy.engine)
            enums = {e["name"]: tuple(e["labels"]) for e in inspector.get_enums()}  # type: ignore[attr-defined]
            return set(TABLES) & set(inspector.get_table_names()), "", _enums_differ(lab, enums)
    except CopyUnavailable as why:
        return set(), f"the lab could not copy the database ({why.what})", ""


def exercise(lab: Lab, answer: object) -> list[Check]:
    texts = revision_texts(lab)
    built, failed, enums = _builds_from_nothing(lab) if len(texts) == 1 else (set(), "", "")
    empty_initial = len(texts) == 1 and not failed and built != set(TABLES)
    whole = built == set(TABLES) and not enums
    return [
        Check(
            "versions/ holds exactly one revision",
            len(texts) == 1,
            (
                f"It holds {len(texts)}. Starting fresh means one revision for the whole schema, none of the old "
                "history.",
                "ch.clean_versions() deletes every revision file; then autogenerate one against an empty database.",
                "ch.nuke(confirm=True); ch.clean_versions(); "
                "ch.alembic('revision --autogenerate -m \"initial schema\"')",
            ),
        ),
        Check(
            "that revision creates the whole schema (every table)",
            len(texts) == 1 and whole,
            (
                "The one revision does not create every table: autogenerate compared the models with a database "
                "that still had them, so it found little or nothing to do."
                if empty_initial
                else f"On a copy of your database, {failed}."
                if failed
                else f"Built from an empty database on a copy, {enums}. An enum's values and their order are part "
                "of the type (ORDER BY and < follow it), and `alembic check` does not compare them (without the "
                "alembic-postgresql-enum plugin): the revision's "
                "sa.Enum(...) (or CREATE TYPE) must list main.py's, in main.py's order."
                if enums
                else "One revision file has to create every table: " + ", ".join(TABLES) + ".",
                "Autogenerate writes the whole schema only when the database is empty: ch.nuke(confirm=True), "
                "delete the revision, autogenerate again.",
                "ch.nuke(confirm=True); ch.clean_versions(); "
                "ch.alembic('revision --autogenerate -m \"initial schema\"')",
            ),
        ),
        checks.database_at_head(
            lab,
            ("The new revision is not applied yet.", "Upgrade to head.", 'ch.alembic("upgrade head")'),
        ),
        checks.models_match_database(
            lab,
            ("Autogenerate against an empty database, then upgrade.", 'ch.alembic("check") says what differs.'),
        ),
        round_trip(
            lab,
            (
                "create_table made the ENUM type job_state, and downgrade() must drop it too, after the tables that "
                "use it (autogenerate's drops only the tables; a type still in use cannot go): otherwise, after "
                "`downgrade base`, the next `upgrade head` fails on CREATE TYPE (DuplicateObject).",
                "End downgrade() with sa.Enum(name='job_state').drop(op.get_bind()) (or op.execute(\"DROP TYPE "
                'job_state")), after the drop_table calls; ch.rewrite_revision(downgrade=...) or the editor.',
                f'ch.rewrite_revision(downgrade="""{INITIAL_DOWNGRADE}""")',
            ),
        ),
    ]
