"""Chapter 10's exercise: a NOT NULL country on a table with rows, in a revision that reviews clean."""

import re
from typing import Any

import sqlalchemy as sa

from ..lab import Lab
from . import checks
from .checks import Check, revision_texts
from .round_trip import round_trip

COUNTRY = 'country = Column(String(2), nullable=False, server_default="GB")'
# The other right answer, the one that works on any table: add it nullable, backfill, then NOT NULL.
COUNTRY_IN_STEPS = """op.add_column('user_profiles', sa.Column('country', sa.String(length=2), nullable=True))
op.execute("UPDATE user_profiles SET country = 'GB' WHERE country IS NULL")
op.alter_column('user_profiles', 'country', existing_type=sa.String(length=2), nullable=False)"""


def exercise(lab: Lab, answer: object) -> list[Check]:
    columns: dict[str, Any] = {c["name"]: c for c in sa.inspect(lab.db.engine).get_columns("user_profiles")}
    country = columns.get("country")
    revisions = [
        t
        for t in revision_texts(lab).values()
        if re.search(r"add_column\(\s*'user_profiles',\s*sa\.Column\('country'", t)
    ]
    not_null_no_default = [t for t in revisions if "nullable=False" in t and "server_default" not in t]
    at_head = lab.db.heads() and set(lab.db.heads()) == set(lab.runner.script().get_heads())
    # Both answers a careful team gives: a value for the rows already there, from a server_default or a backfill.
    two_ways = (
        "NOT NULL on a table with rows: the rows already there need a value. Two ways: a server_default (the "
        "database fills the old rows, and new ones too), or add the column nullable, backfill it with an UPDATE, "
        "then make it NOT NULL.",
        "Either server_default='GB' in the model and in the revision's add_column, or rewrite upgrade(): "
        'op.add_column(... nullable=True), op.execute("UPDATE ..."), op.alter_column(..., nullable=False). '
        "Fix the revision (ch.rewrite_revision or the editor), or ch.reset() and start again.",
        f'ch.rewrite_revision(upgrade="""{COUNTRY_IN_STEPS}""")',
    )
    if not_null_no_default and not at_head:
        # The upgrade failed (NOT NULL without a value for the rows): that is what the learner needs now.
        exists_hints: checks.Hints = (
            "The revision adds country NOT NULL in one step, without a server default, so its upgrade fails on "
            "the rows user_profiles already has (and was rolled back). " + two_ways[0],
            *two_ways[1:],
        )
    elif revisions:
        exists_hints = (
            "The revision is written but not applied.",
            "Review it (ch.review(), or `alembic upgrade <parent>:head --sql` and squawk), then upgrade to head.",
            'ch.review(); ch.alembic("upgrade head")',
        )
    else:
        exists_hints = (
            "The model has the column; the database needs a revision for it.",
            "Generate it, review it (ch.review()), then apply it.",
            'ch.alembic(\'revision --autogenerate -m "add country"\'); ch.review(); ch.alembic("upgrade head")',
        )
    return [
        checks.model_has(
            lab,
            "UserProfile",
            "country",
            (
                "The model first: every profile gets a two-letter country, never empty.",
                'ch.add_column("UserProfile", "country = Column(...)") or the editor: String(2), nullable=False '
                "(and, if you like, a server_default for the rows that are already there).",
                f"ch.add_column(\"UserProfile\", '{COUNTRY}')",
            ),
        ),
        checks.column_exists(lab, "user_profiles", "country", exists_hints),
        checks.Check(
            "user_profiles.country is NOT NULL, so every profile has one",
            country is not None and not country["nullable"],
            (
                "Every profile needs a country: the column must be NOT NULL.",
                "nullable=False in the model, then a revision that fills the empty rows and alters the column "
                "(op.alter_column(..., nullable=False)), and upgrade.",
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ (a server_default in one and not the other counts too).",
                "Generate a revision for the difference, review it, upgrade.",
            ),
        ),
        round_trip(
            lab,
            (
                "The revision's downgrade() does not undo its upgrade().",
                "downgrade() drops the column: op.drop_column('user_profiles', 'country').",
            ),
        ),
    ]
