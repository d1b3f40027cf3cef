"""Chapter 02's exercise: rename user_profiles.email, keep every value, and no stale constraint name."""

import re

import sqlalchemy as sa

from ..lab import Lab
from ..workspace.checkpoints import SEED_EMAILS
from . import checks
from .checks import Check, any_revision

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


def _user_profile_names(lab: Lab) -> tuple[set[str], set[str]]:
    """(names of the unique constraints on user_profiles.email_address, names of every index and constraint)."""
    inspector = sa.inspect(lab.db.engine)
    if not inspector.has_table("user_profiles"):
        return set(), set()
    uniques = inspector.get_unique_constraints("user_profiles")
    on_new = {u["name"] or "" for u in uniques if u["column_names"] == ["email_address"]}
    everything = {u["name"] or "" for u in uniques} | {i["name"] or "" for i in inspector.get_indexes("user_profiles")}
    return on_new, everything


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 02: user_profiles.email renamed to email_address, every value kept, no stale constraint name."""
    address = checks.column_values(lab, "user_profiles", "email_address")
    email = checks.column_values(lab, "user_profiles", "email")
    drop_add = any_revision(lab, r"drop_column\(\s*'user_profiles',\s*'email'")
    kept = address is not None and sorted(v for v in address if v) == sorted(SEED_EMAILS)
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
                f"ch.reset(); rename in the model, autogenerate, {EMAIL_FIX}; upgrade head",
            ),
        )
    else:
        survived = Check(
            "the emails are in user_profiles.email_address",
            False,
            (
                "The emails are still in user_profiles.email, safe: no revision has renamed the column yet"
                + (" (an upgrade that failed was rolled back)." if drop_add else "."),
                "A rename in a revision: op.alter_column(table, old, new_column_name=new), then upgrade.",
                f'{EMAIL_FIX}; ch.alembic("upgrade head")',
            ),
        )
    on_new, names = _user_profile_names(lab)
    stale = sorted(n for n in names if re.search(r"email(?!_address)", n))
    unique_named = Check(
        f"the unique constraint on email_address is named {NEW_UNIQUE} (no stale name)",
        on_new == {NEW_UNIQUE} and not stale,
        (
            "A rename moves the column, not the names built from it: the unique constraint is still "
            f"{', '.join(stale) or 'named after the old column'}, while main.py's naming convention now expects "
            f"{NEW_UNIQUE}. Autogenerate (and `alembic check`) see a constraint to drop and one to add.",
            "PostgreSQL renames a constraint, with its index, by ALTER TABLE user_profiles RENAME CONSTRAINT old TO "
            "new; alembic has no op for it, so op.execute(...) it in upgrade() after the column's rename, and the "
            "reverse in downgrade(). Then upgrade (or, if it is applied already, a new revision for the rename).",
            EMAIL_FIX,
        ),
    )
    rename = checks.a_revision_file_matches(
        lab,
        r"alter_column\(\s*'user_profiles',\s*'email',[^)]*new_column_name='email_address'",
        "renames user_profiles.email with op.alter_column",
        (
            "Autogenerate wrote drop_column + add_column (and a unique constraint dropped and added): it cannot tell "
            "a rename from a new column. Applied, that loses every email."
            if drop_add
            else "The model changed: generate a revision, and read it before you apply it.",
            "In upgrade(), one op.alter_column(table, old, new_column_name=new) instead of the drop and the add, "
            "plus the constraint's rename; in downgrade() the reverse, in reverse order."
            if drop_add
            else '`alembic revision --autogenerate -m "..."` in a terminal in ai-service/, then open the new file.',
            EMAIL_FIX,
        ),
    )
    found = [
        checks.model_has(
            lab,
            "UserProfile",
            "email_address",
            (
                "The exercise renames UserProfile.email to email_address: the model in ai-service/main.py first.",
                "Rename the attribute in the editor, or ch.rename_column(model, old, new).",
                'ch.rename_column("UserProfile", "email", "email_address")',
            ),
        ),
        checks.model_lacks(
            lab,
            "UserProfile",
            "email",
            (
                "Rename `email`, don't add a second column next to it.",
                'ch.rename_column("UserProfile", "email", "email_address")',
            ),
        ),
        rename,
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
    ]
    if address is not None and email is None and not kept:
        found.remove(survived)  # data lost: that is what the learner needs to hear first
        found.insert(0, survived)
    return found
