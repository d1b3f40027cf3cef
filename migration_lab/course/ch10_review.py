"""Chapter 10's exercise: a NOT NULL country on a table with rows, in a revision that reviews clean."""

import re

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..lab import Lab
from . import checks
from .checks import Check
from .round_trip import WITH_PHONE_NUMBER_HEAD, round_trip, undo_and_redo, upgrade_fails

COUNTRY = 'country = Column(String(2), nullable=False, server_default="GB")'
# The other right answer, the one that works on any table: add it nullable, backfill, then NOT NULL.
COUNTRY_IN_STEPS = """op.execute("SET LOCAL lock_timeout = '1s'")
op.execute("SET LOCAL statement_timeout = '10s'")
op.add_column('user_profiles', sa.Column('country', sa.String(length=2), nullable=True))
op.execute("UPDATE user_profiles SET country = 'GB' WHERE country IS NULL")
op.alter_column('user_profiles', 'country', existing_type=sa.String(length=2), nullable=False)"""


def country_column(db: LabDatabase) -> tuple[bool, str, int] | None:
    """user_profiles.country in a database: (NOT NULL, its type, how many profiles have none), or None."""
    columns = {c["name"]: c for c in sa.inspect(db.engine).get_columns("user_profiles")}
    if "country" not in columns:
        return None
    with db.engine.connect() as conn:
        empty = conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE country IS NULL"))
    return not columns["country"]["nullable"], str(columns["country"]["type"]), int(empty or 0)


TWO_LETTERS = ("VARCHAR(2)", "CHAR(2)")  # String(2) or CHAR(2): a country code, as ISO 3166 writes it
A_CODE = "^[A-Za-z]{2}$"  # two letters: '' or '??' fits String(2), and is no country
NOT_A_CODE = sa.text(
    "SELECT count(*), min(quote_literal(country)) FROM user_profiles WHERE country IS NOT NULL AND country !~ :code"
)
COUNTRY_DEFAULT = sa.text(
    "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_attrdef d "
    "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = to_regclass('user_profiles') AND a.attname = 'country' AND NOT a.attisdropped"
)


def not_a_country(db: LabDatabase) -> str | None:
    """What in user_profiles.country is no two-letter code: rows, or the default new rows get; None if all are."""
    with db.connect() as conn:
        count, example = conn.execute(NOT_A_CODE, {"code": A_CODE}).one()
        default = conn.scalar(COUNTRY_DEFAULT)
        if count:
            return f"{count} profile(s) have {example} as their country"
        if default is None:
            return None
        try:  # the learner's own expression, with their own credentials: read-only, briefly, rolled back
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql("SET LOCAL statement_timeout = '2s'")
            value = conn.exec_driver_sql(f"SELECT ({default})::text").scalar()
        except sa.exc.SQLAlchemyError:
            return None  # what the default is made of is not this check's business: alembic check compares it
    if value is not None and not re.fullmatch(A_CODE, value):
        return f"its server default gives new profiles {value!r} as their country"
    return None


def _country_and_profiles(db: LabDatabase) -> tuple[tuple[bool, str, int] | None, int]:
    """What the one-step replay compares: the country column, and how many profiles there are."""
    with db.engine.connect() as conn:
        profiles = conn.scalar(sa.text("SELECT count(*) FROM user_profiles"))
    return country_column(db), int(profiles or 0)


A_PROFILE = sa.text(
    "INSERT INTO user_profiles (name, email, country) VALUES ('Country Check', 'country-check@example.com', 'FR')"
)


def _put_a_profile(db: LabDatabase) -> None:
    """A profile on the copy, with its country: the replayed upgrade adds country to a table with rows, as it did
    in the learner's database (a learner who emptied the table to get past NotNullViolation left none)."""
    with db.engine.begin() as conn:
        conn.execute(A_PROFILE)


def _pending_upgrade_fails(lab: Lab) -> str | None:
    """The SQLSTATE (or "error") with which `upgrade head` fails on a copy, when there is something to apply."""
    if not checks.pending(lab):
        return None
    failed = upgrade_fails(lab)
    return None if failed is None else failed or "error"


UNDONE = "your downgrade() takes country out again, and the upgrade puts it back as it was (replayed on a copy)"


TWO_WAYS = (
    "NOT NULL on a table with rows: the rows already there need a value. Two ways: a server_default (the "
    "database fills the old rows, and new ones too), or add the column nullable, backfill it with an UPDATE, "
    "then make it NOT NULL.",
    "Either server_default='GB' in the model and in the revision's add_column, or rewrite upgrade(): "
    'op.add_column(... nullable=True), op.execute("UPDATE ..."), op.alter_column(..., nullable=False). '
    "Fix the revision (ch.rewrite_revision or the editor), or ch.reset() and start again.",
    f'ch.rewrite_revision(upgrade="""{COUNTRY_IN_STEPS}""")',
)


def _undone(lab: Lab) -> Check:
    undo = undo_and_redo(
        lab, _country_and_profiles, lambda found: found[0] is not None, WITH_PHONE_NUMBER_HEAD, prepare=_put_a_profile
    )
    hints = (
        "The revision's downgrade() does not undo its upgrade().",
        "downgrade() drops the column: op.drop_column('user_profiles', 'country').",
    )
    if undo.problem:
        said = f"Replayed on a copy of your database with a profile in it, {undo.problem}."
        if "NotNullViolation" in undo.problem:  # the upgrade, not the downgrade: no value for the rows there are
            return Check(UNDONE, False, (f"{said} {TWO_WAYS[0]}", *TWO_WAYS[1:]))
        return Check(UNDONE, False, (f"{said} {hints[0]}", hints[1]))
    if undo.revision is None:
        return Check(UNDONE, False, ("Replayed on a copy of your database, no downgrade() takes country out.", *hints))
    if undo.up is not None and undo.up[1] < undo.before[1]:
        lost = undo.before[1] - undo.up[1]
        first = f"Replayed on a copy, `downgrade -1` then `upgrade {undo.revision}` lose {lost} profile(s)."
        return Check(UNDONE, False, (f"{first} A migration keeps the rows it finds. {hints[0]}", hints[1]))
    if undo.changed:
        first = (
            f"Replayed on a copy, `downgrade -1` then `upgrade {undo.revision}` do not give the schema back as it "
            f"was: {undo.changed}."
        )
        return Check(UNDONE, False, (f"{first} {hints[0]}", hints[1]))
    return Check(UNDONE, undo.restored, hints)


def exercise(lab: Lab, answer: object) -> list[Check]:
    country = country_column(lab.db)
    wrong_value = not_a_country(lab.db) if country is not None else None
    failing = _pending_upgrade_fails(lab)
    # Both answers a careful team gives: a value for the rows already there, from a server_default or a backfill.
    if failing == "23502":
        # The upgrade fails (NOT NULL without a value for the rows): that is what the learner needs now.
        exists_hints: checks.Hints = (
            "The revision adds country NOT NULL with no value for the rows already there, so its upgrade fails on "
            "the rows user_profiles has (and is rolled back). " + TWO_WAYS[0],
            *TWO_WAYS[1:],
        )
    elif failing is not None:
        exists_hints = (
            "The revision is written but its upgrade fails (tried on a copy): see what `alembic upgrade head` says.",
            "Review it (ch.review(): it rehearses the upgrade and says why it fails), fix it, then upgrade to head.",
            'ch.review(); ch.alembic("upgrade head")',
        )
    elif checks.pending(lab):
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
        checks.model_maps(
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
            "user_profiles.country holds two letters (String(2) or CHAR(2))",
            country is not None and country[1] in TWO_LETTERS,
            (
                f"The database's country is {country[1] if country else 'not there yet'}: a country is a two-letter "
                "code (GB, FR), and a longer column lets 'England' in.",
                "String(2) in the model and in the revision's sa.Column(...); for a column already applied, fix the "
                "model, autogenerate (it writes the ALTER COLUMN ... TYPE), review and upgrade.",
            ),
        ),
        checks.Check(
            "every profile's country is two letters, and so is the default new ones get (never empty)",
            country is not None and wrong_value is None,
            (
                f"{wrong_value or 'user_profiles has no country yet'}: an empty string (or '??') gets past NOT NULL, "
                "and is no country.",
                "A country is a code like GB or FR: a server_default='GB', or a backfill UPDATE ... SET country = "
                "'GB', for the rows already there. Once applied, fix it in a new revision: UPDATE the rows that hold "
                "no code, and op.alter_column(..., server_default=...) if the default is wrong (the model's too).",
            ),
        ),
        checks.Check(
            "user_profiles.country is NOT NULL, so every profile has one",
            country is not None and country[0],
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
        _undone(lab) if country is not None else Check(UNDONE, False, exists_hints),
        round_trip(
            lab,
            (
                "The revision's downgrade() does not undo its upgrade().",
                "downgrade() drops the column: op.drop_column('user_profiles', 'country').",
            ),
        ),
    ]
