"""The chapters: each one's title, starting checkpoint, and exercise checks."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import checks
from .checks import Check
from .errors import LabError
from .lab import Lab
from .workspace import (
    BASELINE_CHECKPOINT,
    WITH_PHONE_NUMBER,
    Checkpoint,
    ResetReport,
    load_models,
    restore_checkpoint,
    teammate_arrives,
)

SEED_NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]


@dataclass(frozen=True)
class ChapterSpec:
    number: str
    title: str
    checkpoint: Checkpoint
    exercise: Callable[[Lab, object], list[Check]]
    # Puts the lab where the exercise starts (a teammate's branch, a broken env.py); says what it did.
    exercise_setup: Callable[[Lab], str] | None = None


def _mixed_case_sign_up(lab: Lab) -> str:
    with lab.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email) VALUES ('Edsger Dijkstra', 'Edsger.Dijkstra@Example.ORG') "
                "ON CONFLICT (email) DO NOTHING"
            )
        )
    return "A new sign-up, typed with capitals: Edsger.Dijkstra@Example.ORG. Logins compare lowercase emails."


def _carol_arrives(lab: Lab) -> str:
    revision, _ = teammate_arrives(lab.project, "carol")
    return (
        f"Carol's branch arrived: her model change (UserSettings.timezone) and "
        f"ai-service/migrations/versions/{revision}. Her branch started from a1c4e7f20b13."
    )


BROKEN_ENV_IMPORT = "from main import Base, JobQueue  # noqa: E402  (needs the sys.path line above)"


def _break_the_lab(lab: Lab) -> str:
    """A colleague's "quick fix": env.py imports a model that does not exist, tables made by create_all."""
    env = lab.project.service_dir / "migrations" / "env.py"
    with lab.runner.exclusive() as conn:  # the database first: if it is down, no file changes
        env.write_text(re.sub(r"(?m)^from main import .*$", BROKEN_ENV_IMPORT, env.read_text(), count=1))
        lab.db.wipe(conn)
        load_models(lab.project).Base.metadata.create_all(conn)
        conn.commit()
    return (
        "A colleague's quick fix: migrations/env.py now imports a model `JobQueue`, and the database was "
        "rebuilt with Base.metadata.create_all() (no alembic_version). Make `alembic upgrade head` work."
    )


def _revision_with_message(lab: Lab, message: str) -> str | None:
    for script in lab.runner.script().walk_revisions():
        if (script.doc or "").strip() == message:
            return script.revision
    return None


def _start_here(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.database_heads()
    return [
        checks.answer_is(
            answer,
            heads[0] if heads else None,
            "your answer is the database's current revision",
            'Click `current` in the console (or run ch.alembic("current")) and copy the 12-character id it prints, '
            'as a string: answer = "..."',
        )
    ]


def _standard_workflow(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.model_has(
            lab,
            "UserProfile",
            "last_login",
            "Add `last_login = Column(DateTime(timezone=True), server_default=func.now())` to "
            "class UserProfile in ai-service/main.py (DateTime and func are imported already).",
        ),
        checks.a_revision_file_matches(
            lab,
            r"add_column\(\s*'user_profiles',\s*sa\.Column\('last_login'",
            "adds user_profiles.last_login",
            "Generate the revision: ch.alembic('revision --autogenerate -m \"add last login\"')",
        ),
        checks.column_exists(lab, "user_profiles", "last_login", 'Apply the revision: ch.alembic("upgrade head")'),
        checks.column_has_server_default(
            lab,
            "user_profiles",
            "last_login",
            "Use server_default=func.now(), not default=...: `default` is applied by Python only, so the "
            "database (and every existing row) never sees it. Fix main.py, generate a new revision, upgrade.",
        ),
        checks.models_match_database(lab, "Generate a revision for the difference and upgrade."),
    ]


def _never_trust_autogenerate(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.model_has(
            lab,
            "UserProfile",
            "full_name",
            'Rename the attribute in main.py: ch.rename_column("UserProfile", "name", "full_name")',
        ),
        checks.model_lacks(lab, "UserProfile", "name", "Rename `name`, don't add a second column."),
        checks.a_revision_file_matches(
            lab,
            r"alter_column\(\s*'user_profiles',\s*'name',[^)]*new_column_name='full_name'",
            "renames user_profiles.name with op.alter_column",
            "Autogenerate wrote drop_column + add_column. In upgrade() replace both with "
            "op.alter_column('user_profiles', 'name', new_column_name='full_name'), and in downgrade() "
            "with the reverse (ch.rewrite_revision, as in the steps above).",
        ),
        checks.column_exists(lab, "user_profiles", "full_name", 'Apply the fixed revision: ch.alembic("upgrade head")'),
        checks.column_absent(lab, "user_profiles", "name", 'Apply the fixed revision: ch.alembic("upgrade head")'),
        checks.values_preserved(
            lab,
            "user_profiles",
            "full_name",
            SEED_NAMES,
            "The names are gone: a revision dropped the column and added an empty one. "
            "Start again with ch.reset(), and fix the script before you upgrade.",
        ),
    ]


def _rollback(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.a_revision_file_matches(
            lab,
            r"revision: str = 'a1c4e7f20b13'",
            "for a1c4e7f20b13 (add phone number) still exists",
            "A downgrade changes the database; the revision file stays. Deleted it? ch.reset() brings it back.",
        ),
        checks.database_at(
            lab,
            "8b7e5d2c6a41",
            {
                "a1c4e7f20b13": 'The database is still at head: ch.alembic("downgrade -1", confirm=True)',
                "3f1c2a9d4b10": 'One step too far: ch.alembic("upgrade +1")',
                "base": 'Much too far (base): ch.alembic("upgrade 8b7e5d2c6a41")',
            },
            'Go to exactly one revision below head: ch.alembic("upgrade head"), '
            'then ch.alembic("downgrade -1", confirm=True)',
        ),
    ]


def _where_am_i(lab: Lab, answer: object) -> list[Check]:
    wanted = _revision_with_message(lab, "create user profiles and settings")
    return [
        checks.answer_is(
            answer,
            wanted,
            "your answer is the id of 'create user profiles and settings'",
            'Run ch.alembic("history"): each line reads `parent -> revision, message`. '
            "Copy the revision of 'create user profiles and settings' as a string: answer = \"...\"",
        ),
        checks.database_at(
            lab,
            wanted or "",
            {"base": f'Too far down: ch.alembic("upgrade {wanted}")'},
            f'Move the database there: ch.alembic("downgrade {wanted}", confirm=True)',
        ),
    ]


def _data_migrations(lab: Lab, answer: object) -> list[Check]:
    with lab.db.engine.connect() as conn:
        mixed = conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE email <> lower(email)"))
    return [
        checks.a_revision_file_matches(
            lab,
            r"(?i)lower\(",
            "lowercases the emails",
            "Make an empty revision (ch.alembic('revision -m \"lowercase emails\"')) and give its upgrade() "
            'op.execute("UPDATE user_profiles SET email = lower(email)") with ch.rewrite_revision(...).',
        ),
        checks.no_revision_file_matches(
            lab,
            r"(?m)^\s*(from main import|import main)",
            "imports today's models from main.py",
            "A migration must not import the models of main.py: they change after it is written. "
            "Use op.execute(...) or sa.table(...) instead",
        ),
        checks.database_at_head(lab, 'Apply it: ch.alembic("upgrade head")'),
        checks.Check(
            "every email is lowercase in the database",
            mixed == 0,
            f"{mixed} email(s) still have capitals: is the revision applied?",
        ),
    ]


def _teams(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.script().get_heads()
    return [
        checks.a_revision_file_matches(
            lab,
            r"revision: str = 'c3e8a6d2f4b5'",
            "from Carol (c3e8a6d2f4b5) is in versions/",
            'Carol\'s branch has not arrived yet: run ch.teammate_revision("carol")',
        ),
        checks.Check(
            "there is a single head",
            len(heads) == 1,
            f"There are {len(heads)} heads ({', '.join(sorted(heads))}): ch.alembic('merge heads -m \"merge carol\"')",
        ),
        checks.database_at_head(lab, 'Apply everything: ch.alembic("upgrade head")'),
        checks.column_exists(lab, "user_settings", "timezone", 'Apply everything: ch.alembic("upgrade head")'),
    ]


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


def _enums(lab: Lab, answer: object) -> list[Check]:
    model = (lab.project.service_dir / "main.py").read_text()
    return [
        checks.Check(
            "main.py's job_state has 'paused'",
            '"paused"' in model,
            'Add "paused" to the Enum(...) of JobEntry.state in main.py (ch.edit_model).',
        ),
        checks.a_revision_file_matches(
            lab,
            r"'paused'",
            "adds 'paused' to job_state",
            "Write it: a revision whose upgrade() runs op.execute(\"ALTER TYPE job_state ADD VALUE 'paused'\") "
            "inside `with op.get_context().autocommit_block():` (or autogenerate, now that "
            "alembic-postgresql-enum is in env.py).",
        ),
        checks.Check(
            "the database's job_state has 'paused'",
            "paused" in _enum_values(lab),
            'Apply it: ch.alembic("upgrade head")',
        ),
        checks.database_at_head(lab, 'Apply it: ch.alembic("upgrade head")'),
    ]


def _troubleshooting(lab: Lab, answer: object) -> list[Check]:
    current = lab.runner.current()
    return [
        checks.Check(
            "alembic can load env.py and the models",
            current.ok,
            f"`alembic current` fails: {current.error}. Fix the import in migrations/env.py "
            '(ch.edit_file("migrations/env.py", old, new)): import only models main.py has.',
        ),
        checks.database_at_head(
            lab,
            "The tables exist (create_all made them) but alembic_version is empty. They match the "
            'models, so record that: ch.alembic("stamp head")',
        ),
        checks.models_match_database(lab, "Stamp only when the tables really match the models."),
    ]


def _nuke(lab: Lab, answer: object) -> list[Check]:
    files = list(lab.project.versions_dir.glob("*.py"))
    return [
        checks.Check(
            "versions/ holds exactly one revision",
            len(files) == 1,
            f"It holds {len(files)}: delete them all (ch.clean_versions()), then generate one "
            "revision for the whole schema: ch.alembic('revision --autogenerate -m \"initial schema\"')",
        ),
        checks.a_revision_file_matches(
            lab,
            r"create_table\('user_profiles'",
            "creates the whole schema",
            "The database must be empty when you autogenerate: ch.nuke(confirm=True) first, then autogenerate.",
        ),
        checks.database_at_head(lab, 'Apply it: ch.alembic("upgrade head")'),
        checks.models_match_database(lab, "Autogenerate against an empty database, then upgrade."),
    ]


def _review(lab: Lab, answer: object) -> list[Check]:
    columns: dict[str, Any] = {c["name"]: c for c in sa.inspect(lab.db.engine).get_columns("user_profiles")}
    country = columns.get("country")
    return [
        checks.model_has(
            lab,
            "UserProfile",
            "country",
            'Add `country = Column(String(2), nullable=False, server_default="GB")` to UserProfile.',
        ),
        checks.column_exists(lab, "user_profiles", "country", "Generate, review and apply a revision."),
        checks.Check(
            "user_profiles.country is NOT NULL",
            country is not None and not country["nullable"],
            "Every profile needs a country: nullable=False.",
        ),
        checks.column_has_server_default(
            lab,
            "user_profiles",
            "country",
            "NOT NULL on a table with rows needs a server_default (the review said not-null-without-default): "
            "existing rows get it. Fix main.py and the revision, or reset and start again.",
        ),
        checks.models_match_database(lab, "Generate a revision for the difference and upgrade."),
    ]


CHAPTERS: dict[str, ChapterSpec] = {
    spec.number: spec
    for spec in (
        ChapterSpec("00", "Start here", BASELINE_CHECKPOINT, _start_here),
        ChapterSpec("01", "The standard workflow", BASELINE_CHECKPOINT, _standard_workflow),
        ChapterSpec("02", "Never trust autogenerate", WITH_PHONE_NUMBER, _never_trust_autogenerate),
        ChapterSpec("03", "Rollback", WITH_PHONE_NUMBER, _rollback),
        ChapterSpec("04", "Where am I", WITH_PHONE_NUMBER, _where_am_i),
        ChapterSpec("05", "Data migrations", WITH_PHONE_NUMBER, _data_migrations, _mixed_case_sign_up),
        ChapterSpec("06", "Teams and two heads", WITH_PHONE_NUMBER, _teams, _carol_arrives),
        ChapterSpec("07", "Enums and special types", WITH_PHONE_NUMBER, _enums),
        ChapterSpec("08", "Troubleshooting", WITH_PHONE_NUMBER, _troubleshooting, _break_the_lab),
        ChapterSpec("09", "The nuke option", WITH_PHONE_NUMBER, _nuke),
        ChapterSpec("10", "Review before you apply", WITH_PHONE_NUMBER, _review),
    )
}


def spec(number: str) -> ChapterSpec:
    """A chapter by number ("1", "01" and "01-standard-workflow" all mean chapter 01)."""
    match = re.fullmatch(r"(\d{1,2})(-[\w-]+)?(\.ipynb)?", str(number).strip())
    key = match.group(1).zfill(2) if match else None
    if key is None or key not in CHAPTERS:
        raise LabError(f"There is no chapter {number!r}.", f"Chapters: {', '.join(CHAPTERS)}.")
    return CHAPTERS[key]


def reset(number: str, lab: Lab | None = None) -> ResetReport:
    """Restore ai-service/ files and the database to the start of chapter `number`."""
    return restore_checkpoint(lab or Lab(), spec(number).checkpoint)
