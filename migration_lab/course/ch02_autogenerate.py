"""Chapter 02's exercise: rename the column user_profiles.email, keep every value, no stale constraint name, and
the ai-api's contract unchanged.

A column's name is the database's; the model's attribute is the application's, and through the ai-api its
clients' (`{"name": ..., "email": ...}`). Renaming the column is not a reason to break them: the model keeps
`email` and maps it to the new column, `email = Column("email_address", ...)`. Everything is judged by what
the answer does: the database's state, the revisions replayed down and up on a copy (whatever their
spelling: op.alter_column or plain SQL, single or double quotes), and the ai-api called, on a copy.
"""

import re
from typing import Any

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..lab import Lab
from ..workspace.checkpoints import SEED_EMAILS
from ..workspace.edits import load_models
from . import app_client, checks
from .checks import Check
from .round_trip import Replayed, replay

START = "a1c4e7f20b13"  # where the chapter starts
OLD_LINE = "email = Column(String(255), nullable=False, unique=True)"
NEW_LINE = 'email = Column("email_address", String(255), nullable=False, unique=True)'
EMAIL_UP = (
    "op.alter_column('user_profiles', 'email', new_column_name='email_address')\n"
    "op.execute('ALTER TABLE user_profiles RENAME CONSTRAINT uq_user_profiles_email TO uq_user_profiles_email_address')"
)
EMAIL_DOWN = (
    "op.execute('ALTER TABLE user_profiles RENAME CONSTRAINT uq_user_profiles_email_address "
    "TO uq_user_profiles_email')\n"
    "op.alter_column('user_profiles', 'email_address', new_column_name='email')"
)
EMAIL_FIX = f'ch.rewrite_revision(upgrade="""{EMAIL_UP}""", downgrade="""{EMAIL_DOWN}""")'
NEW_UNIQUE = "uq_user_profiles_email_address"
OLD_UNIQUE = "uq_user_profiles_email"
SIGN_UP = {"name": "Edsger Dijkstra", "email": "edsger@example.org"}  # the body the ai-api documents (ProfileIn)


def _unique_problem(lab: Lab) -> str | None:
    """What is wrong with the unique constraint on user_profiles.email_address, in words; None when it is right."""
    inspector = sa.inspect(lab.db.engine)
    if not inspector.has_table("user_profiles"):
        return "user_profiles is not there"
    uniques = inspector.get_unique_constraints("user_profiles")
    indexes = inspector.get_indexes("user_profiles")
    on_new = sorted(u["name"] or "" for u in uniques if u["column_names"] == ["email_address"])
    names = {u["name"] or "" for u in uniques} | {i["name"] or "" for i in indexes}
    stale = sorted(n for n in names if re.search(r"email(?!_address)", n))
    if on_new == [NEW_UNIQUE] and not stale:
        return None
    if stale:
        return (
            f"A rename moves the column, not the names built from it: {', '.join(stale)} is still named after the "
            f"old column, while main.py's naming convention expects {NEW_UNIQUE}."
        )
    if on_new:
        return f"The unique constraint on email_address is named {', '.join(on_new)}; main.py expects {NEW_UNIQUE}."
    index = [
        i["name"]
        for i in indexes
        if i["unique"] and i["column_names"] == ["email_address"] and not i.get("duplicates_constraint")
    ]
    if index:
        return (
            f"email_address has a unique index ({', '.join(str(n) for n in index)}) but no unique constraint: "
            "main.py's unique=True is a constraint, and autogenerate sees an index to drop and a constraint to add."
        )
    return (
        "email_address has no unique constraint any more: two profiles may now share an email. The rename's "
        "revision dropped it (or a downgrade and upgrade lost it)."
    )


def _emails(db: LabDatabase, column: str) -> dict[int, str] | None:
    """Each profile's user_profiles.<column>, by id; None if the column is not there."""
    with db.connect() as conn:
        if column not in {c["name"] for c in sa.inspect(conn).get_columns("user_profiles")}:
            return None
        return {int(i): v for i, v in conn.execute(sa.text(f"SELECT id, {column} FROM user_profiles"))}


# Profiles the check signs up on a copy at the chapter's start: emails that are not the seed's (other domains,
# capitals, a plus): a revision that keeps only the exercise's emails, or rewrites the others, loses them.
OTHER_EMAILS = ("bob@corp.com", "Grace.Hopper@Navy.MIL", "ops+alerts@mail.example.co.uk")
LOST = "the emails did not survive: user_profiles.email_address does not hold them"


class _Emails:
    """The emails of a replay, by profile: what `email` held before the upgrade must be in `email_address` after
    it, and the reverse after the downgrade, for every profile (the check's own as well as the seed's)."""

    def __init__(self) -> None:
        self.were: dict[int, str] = {}

    def renamed(self, db: LabDatabase) -> str | None:
        """At head: email_address holds every email, email is gone."""
        address = _emails(db, "email_address")
        if address is None:
            return "user_profiles has no column email_address"
        if _emails(db, "email") is not None:
            return "user_profiles still has its column email"
        if not set(SEED_EMAILS) <= set(address.values()):
            return LOST
        self.were = address
        return None

    def back(self, db: LabDatabase) -> str | None:
        """After the downgrade: email holds each profile's email again, under its old constraint name."""
        emails = _emails(db, "email")
        if emails is None:
            return "user_profiles has no column email again"
        if emails != self.were:
            return f"the emails are not back in user_profiles.email: {_first_difference(self.were, emails)}"
        with db.connect() as conn:
            names = {u["name"] for u in sa.inspect(conn).get_unique_constraints("user_profiles")}
        return None if OLD_UNIQUE in names else f"the unique constraint is not named {OLD_UNIQUE} again"

    def sign_up_others(self, db: LabDatabase) -> None:
        """At the start, profiles with other emails than the seed's, as production has by now."""
        with db.engine.begin() as conn:
            for number, email in enumerate(OTHER_EMAILS):
                conn.execute(
                    sa.text("INSERT INTO user_profiles (name, email) VALUES (:name, :email)"),
                    {"name": f"Other {number}", "email": email},
                )
        self.were = _emails(db, "email") or {}

    def kept(self, db: LabDatabase) -> str | None:
        """Upgraded again over those rows: each profile's email, as it was, in email_address."""
        address = _emails(db, "email_address")
        if address is None:
            return "user_profiles has no column email_address"
        if address != self.were:
            return f"{LOST}: {_first_difference(self.were, address)}"
        return None


def _first_difference(were: dict[int, str], now: dict[int, str]) -> str:
    """The first profile whose email changed, in words."""
    for profile, email in sorted(were.items()):
        if profile not in now:
            return f"profile {profile} ({email}) is gone"
        if now[profile] != email:
            return f"profile {profile}'s {email!r} became {now[profile]!r}"
    return f"{len(set(now) - set(were))} profile(s) appeared"


# The way out of autogenerate's drop + add, after the first hint that says what it did.
_RENAME_INSTEAD = (
    "In upgrade(), one op.alter_column(table, old, new_column_name=new) instead of the drop and the add, "
    "plus the constraint's rename; in downgrade() the reverse, in reverse order.",
    EMAIL_FIX,
)


def _replay_hints(replayed: Replayed | None, lab: Lab) -> checks.Hints:
    generate = (
        "The model changed: generate a revision, and read it before you apply it.",
        '`alembic revision --autogenerate -m "..."` in a terminal in ai-service/, then open the new file.',
        "ch.alembic('revision --autogenerate -m \"rename email to email_address\"')",
    )
    if replayed is None or lab.runner.script().get_heads() == [START]:
        return generate
    if replayed.step == "upgrade" and replayed.sqlstate == "23502":  # a NOT NULL column added to the rows there
        return (
            f"Replayed on a copy of your database, {replayed}. That is what autogenerate's drop_column + add_column "
            "does for a rename (it cannot tell a rename from a new column): email_address is added NOT NULL to rows "
            "that have no value in it, and email, with every email, is dropped.",
            *_RENAME_INSTEAD,
        )
    if replayed.step == "upgrade":
        return (
            f"Replayed on a copy of your database, {replayed}.",
            "Fix what it says in the revision's upgrade(): a rename is one op.alter_column(table, old, "
            "new_column_name=new) (or ALTER TABLE ... RENAME COLUMN), plus the constraint's rename.",
            EMAIL_FIX,
        )
    if replayed.step in ("at head", "upgraded again") and LOST in replayed.problem:
        return (
            f"Replayed on a copy of your database, {replayed}. Autogenerate writes drop_column + add_column (and a "
            "unique constraint dropped and added) for a rename: it cannot tell a rename from a new column. Applied, "
            "that loses every email; a copy through a new column must keep each one as it was.",
            *_RENAME_INSTEAD,
        )
    if replayed.step in ("at head", "upgrade again", "upgraded again"):
        return (
            f"Replayed on a copy of your database, {replayed}.",
            "In upgrade(), rename the column (op.alter_column(table, old, new_column_name=new), or ALTER TABLE "
            "... RENAME COLUMN) and its unique constraint (ALTER TABLE ... RENAME CONSTRAINT).",
            EMAIL_FIX,
        )
    return (
        f"Replayed on a copy of your database (down to {START} and back up), {replayed}. downgrade() must undo "
        "upgrade(): the same renames, reversed, in reverse order.",
        "downgrade(): first the constraint back (RENAME CONSTRAINT uq_user_profiles_email_address TO "
        "uq_user_profiles_email), then the column (new_column_name='email').",
        EMAIL_FIX,
    )


def _model_columns(lab: Lab) -> tuple[set[str] | None, str]:
    """The columns main.py's UserProfile maps (as the database will name them), or None and why not."""
    try:
        models = load_models(lab.project)
        return {c.name for c in models.UserProfile.__table__.columns}, ""
    except Exception as error:  # a learner's main.py mid-edit: SyntaxError, NameError, anything
        return None, f"main.py does not load: {type(error).__name__}: {error}"


def _app_problem(lab: Lab) -> str | None:
    """Sign up and list profiles through the ai-api on a copy, as its clients do; None if both work."""
    try:
        with lab.db.copy() as copy:
            status, created = app_client.call_in_process(lab.project, copy.url, "POST", "/profiles", SIGN_UP)
            if status != 201 or not isinstance(created, dict) or created.get("email") != SIGN_UP["email"]:
                return f"POST /profiles {SIGN_UP} answers {status} {_short(created)}"
            status, listed = app_client.call_in_process(lab.project, copy.url, "GET", "/profiles")
            if status != 200 or not isinstance(listed, list) or any("email" not in p for p in listed):
                return f"GET /profiles answers {status} {_short(listed)}"
    except Exception as error:  # the app's own exception, as its server would log it
        return f"the ai-api fails: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def _short(payload: Any) -> str:
    text = str(payload)
    return text if len(text) < 160 else text[:157] + "..."


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 02: the column renamed to email_address, every value kept, no stale constraint name, and the
    ai-api's clients still sign up and read with `email`."""
    address = checks.column_values(lab, "user_profiles", "email_address")
    email = checks.column_values(lab, "user_profiles", "email")
    emails = _Emails()
    replayed = replay(
        lab,
        START,
        at_head=emails.renamed,
        downgraded=emails.back,
        below=emails.sign_up_others,
        upgraded_again=emails.kept,
    )
    kept = address is not None and set(SEED_EMAILS) <= set(address)
    apply = ("The fixed revision is not applied yet.", "Upgrade the database to head.", 'ch.alembic("upgrade head")')
    if kept:
        survived = Check("the emails are in user_profiles.email_address", True)
    elif address is not None and email is None:
        survived = Check(
            "the emails are in user_profiles.email_address",
            False,
            (
                "The emails are gone: user_profiles.email was dropped and email_address added empty. That is what "
                "applying autogenerate's drop + add does.",
                "They cannot come back from this database. Start again with ch.reset() (your files are backed up), "
                "and fix the revision before you upgrade.",
                f"ch.reset(); map the column in the model, autogenerate, {EMAIL_FIX}; upgrade head",
            ),
        )
    else:
        survived = Check(
            "the emails are in user_profiles.email_address",
            False,
            (
                "The emails are still in user_profiles.email, safe: no revision has renamed the column yet"
                + (" (an upgrade that failed was rolled back)." if replayed and replayed.step == "upgrade" else "."),
                "A rename in a revision: op.alter_column(table, old, new_column_name=new), then upgrade.",
                f'{EMAIL_FIX}; ch.alembic("upgrade head")',
            ),
        )
    unique = _unique_problem(lab)
    unique_named = Check(
        f"the unique constraint on email_address is named {NEW_UNIQUE} (no stale name)",
        unique is None,
        (
            f"{unique} Autogenerate (and `alembic check`) see a constraint to drop or to add.",
            "PostgreSQL renames a constraint, with its index, by ALTER TABLE user_profiles RENAME CONSTRAINT old TO "
            "new; alembic has no op for it, so op.execute(...) it in upgrade() after the column's rename, and the "
            "reverse in downgrade(). Then upgrade (or, if it is applied already, a new revision for the rename).",
            EMAIL_FIX,
        ),
    )
    mapped, why = _model_columns(lab)
    renamed = checks.model_line(lab, "UserProfile", "email_address")  # the attribute renamed: the app's name
    app = _app_problem(lab) if mapped is not None and "email_address" in mapped else "the model is not changed yet"
    found = [
        Check(
            "main.py's UserProfile maps the column email_address, and no column email",
            mapped is not None and "email_address" in mapped and "email" not in mapped,
            (
                why
                or "The exercise renames the column user_profiles.email to email_address: the model in "
                "ai-service/main.py first. The attribute can stay `email`: the app and its clients use that name.",
                "Give the column its new name and keep the attribute: Column's first argument is the column's name "
                "in the database.",
                f"ch.edit_model('{OLD_LINE}', '{NEW_LINE}')",
            ),
        ),
        Check(
            "a revision renames the column and its constraint, and its downgrade renames them back "
            "(replayed on a copy)",
            replayed is None,
            _replay_hints(replayed, lab),
        ),
        checks.column_exists(lab, "user_profiles", "email_address", apply),
        checks.column_absent(lab, "user_profiles", "email", apply),
        survived,
        unique_named,
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ: `alembic check` lists what autogenerate would still do.",
                'Run `alembic check` in a terminal (or ch.alembic("check")) and fix each line it prints.',
                'ch.alembic("check")',
            ),
        ),
        Check(
            "the ai-api's clients still sign up and read profiles with `email` (POST and GET /profiles, on a copy)",
            app is None,
            (
                f"{app}. A column's name is the database's; the model's attribute is what the app (and, through the "
                "ai-api, its clients: ProfileIn.email, `UserProfile(**body.model_dump())`) uses. Renaming the "
                "attribute breaks them.",
                'Keep the attribute `email` and map it to the renamed column: email = Column("email_address", '
                "String(255), ...). The database changes, the API does not.",
                f"ch.edit_model({renamed!r}, {NEW_LINE!r})"
                if renamed
                else f"ch.edit_model('{OLD_LINE}', '{NEW_LINE}')",
            ),
        ),
    ]
    if address is not None and email is None and not kept:
        found.remove(survived)  # data lost: that is what the learner needs to hear first
        found.insert(0, survived)
    return found
