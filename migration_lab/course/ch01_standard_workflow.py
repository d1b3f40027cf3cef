"""Chapter 01's exercise: a last_login column the database fills, for the rows it has too."""

from ..lab import Lab
from . import checks
from .checks import Check, model_line

LAST_LOGIN = "last_login = Column(DateTime(timezone=True), server_default=func.now())"


def exercise(lab: Lab, answer: object) -> list[Check]:
    line = model_line(lab, "UserProfile", "last_login") or ""
    values = checks.column_values(lab, "user_profiles", "last_login")
    empty = sum(v is None for v in values) if values is not None else None
    python_default = "default=" in line and "server_default=" not in line
    if empty is None:
        filled_hints: checks.Hints = "The column is not in the database yet: generate the revision and upgrade first."
    else:
        filled_hints = (
            f"{empty} profile(s) have no last_login. A default only fills rows inserted after it exists: a "
            "`default=` is applied by Python when the app inserts, and a server_default added to a column "
            "that is already there applies to new rows only.",
            "Either add the column with its server_default in one step (the database fills every existing row "
            "then: ch.reset() and start again), or fill the old rows in a data migration: an empty revision whose "
            'upgrade() runs op.execute("UPDATE ...").',
            f'ch.reset(), then ch.add_column("UserProfile", "{LAST_LOGIN}"), '
            'ch.alembic(\'revision --autogenerate -m "add last login"\'), ch.alembic("upgrade head")',
        )
    return [
        checks.model_has(
            lab,
            "UserProfile",
            "last_login",
            (
                "Every schema change starts in the model: class UserProfile in ai-service/main.py needs a "
                "last_login column, a timestamp the database fills in.",
                'ch.add_column("UserProfile", "last_login = Column(...)"): a DateTime(timezone=True) with '
                "server_default=func.now() (DateTime and func are imported already).",
                f'ch.add_column("UserProfile", "{LAST_LOGIN}")',
            ),
        ),
        checks.a_revision_file_matches(
            lab,
            r"add_column\(\s*'user_profiles',\s*sa\.Column\('last_login'",
            "adds user_profiles.last_login",
            (
                "The model changed, the database did not: Alembic needs a revision file that says how.",
                "Autogenerate compares the models with the database and writes it: "
                "ch.alembic('revision --autogenerate -m \"...\"'). Read it with ch.show_revision().",
                "ch.alembic('revision --autogenerate -m \"add last login\"')",
            ),
        ),
        checks.column_exists(
            lab,
            "user_profiles",
            "last_login",
            (
                "The revision is written but the database does not have the column yet: apply it.",
                "Upgrade the database to the newest revision (head).",
                'ch.alembic("upgrade head")',
            ),
        ),
        checks.column_has_server_default(
            lab,
            "user_profiles",
            "last_login",
            (
                "main.py says `default=`: that value is applied by Python when the app inserts a row; the database "
                "never sees it, so existing rows (and rows inserted by psql) get NULL."
                if python_default
                else "The database has no default for last_login, so the rows it has (and new ones) get NULL.",
                "server_default=func.now() in the model is a default the database keeps (DEFAULT now()). "
                "Fix main.py, then generate a new revision and upgrade - or ch.reset() and start again.",
                f'ch.edit_model("{line}", "{LAST_LOGIN}"), then autogenerate and upgrade head'
                if line
                else f'ch.add_column("UserProfile", "{LAST_LOGIN}")',
            ),
        ),
        Check("every existing profile has a last_login", empty == 0, filled_hints),
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ.",
                "Generate a revision for the difference, read it, and upgrade.",
                'ch.alembic(\'revision --autogenerate -m "..."\'); ch.alembic("upgrade head")',
            ),
        ),
    ]
