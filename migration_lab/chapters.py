"""The chapters: each one's title, starting checkpoint, and exercise checks."""

from collections.abc import Callable
from dataclasses import dataclass

from . import checks
from .checks import Check
from .lab import Lab
from .errors import LabError
from .workspace import BASELINE_CHECKPOINT, WITH_PHONE_NUMBER, Checkpoint, ResetReport
from .workspace import reset as reset_to

SEED_NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]


@dataclass(frozen=True)
class ChapterSpec:
    number: str
    title: str
    checkpoint: Checkpoint
    exercise: Callable[[Lab, object], list[Check]]


def _revision_with_message(lab: Lab, message: str) -> str | None:
    for script in lab.runner.script().walk_revisions():
        if (script.doc or "").strip() == message:
            return script.revision
    return None


def _start_here(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.database_heads()
    return [checks.answer_is(
        answer, heads[0] if heads else None, "your answer is the database's current revision",
        "Click `current` in the console (or run ch.alembic(\"current\")) and copy the 12-character id it prints, "
        "as a string: answer = \"...\"")]


def _standard_workflow(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.model_has(lab, "UserProfile", "last_login",
                         "Add `last_login = Column(DateTime(timezone=True), server_default=func.now())` to "
                         "class UserProfile in ai-service/main.py (DateTime and func are imported already)."),
        checks.a_revision_file_matches(
            lab, r"add_column\(\s*'user_profiles',\s*sa\.Column\('last_login'", "adds user_profiles.last_login",
            "Generate the revision: ch.alembic('revision --autogenerate -m \"add last login\"')"),
        checks.column_exists(lab, "user_profiles", "last_login", "Apply the revision: ch.alembic(\"upgrade head\")"),
        checks.column_has_server_default(
            lab, "user_profiles", "last_login",
            "Use server_default=func.now(), not default=...: `default` is applied by Python only, so the "
            "database (and every existing row) never sees it. Fix main.py, generate a new revision, upgrade."),
        checks.models_match_database(lab, "Generate a revision for the difference and upgrade."),
    ]


def _never_trust_autogenerate(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.model_has(lab, "UserProfile", "full_name",
                         "Rename the attribute in main.py: ch.rename_column(\"UserProfile\", \"name\", \"full_name\")"),
        checks.model_lacks(lab, "UserProfile", "name", "Rename `name`, don't add a second column."),
        checks.a_revision_file_matches(
            lab, r"alter_column\(\s*'user_profiles',\s*'name',[^)]*new_column_name='full_name'",
            "renames user_profiles.name with op.alter_column",
            "Autogenerate wrote drop_column + add_column. In upgrade() replace both with "
            "op.alter_column('user_profiles', 'name', new_column_name='full_name'), and in downgrade() "
            "with the reverse (ch.rewrite_revision, as in the steps above)."),
        checks.column_exists(lab, "user_profiles", "full_name", "Apply the fixed revision: ch.alembic(\"upgrade head\")"),
        checks.column_absent(lab, "user_profiles", "name", "Apply the fixed revision: ch.alembic(\"upgrade head\")"),
        checks.values_preserved(
            lab, "user_profiles", "full_name", SEED_NAMES,
            "The names are gone: a revision dropped the column and added an empty one. "
            "Start again with ch.reset(), and fix the script before you upgrade."),
    ]


def _rollback(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.a_revision_file_matches(
            lab, r"revision: str = 'a1c4e7f20b13'", "for a1c4e7f20b13 (add phone number) still exists",
            "A downgrade changes the database; the revision file stays. Deleted it? ch.reset() brings it back."),
        checks.database_at(
            lab, "8b7e5d2c6a41",
            {"a1c4e7f20b13": "The database is still at head: ch.alembic(\"downgrade -1\", confirm=True)",
             "3f1c2a9d4b10": "One step too far: ch.alembic(\"upgrade +1\")",
             "base": "Much too far (base): ch.alembic(\"upgrade 8b7e5d2c6a41\")"},
            "Go to exactly one revision below head: ch.alembic(\"upgrade head\"), then ch.alembic(\"downgrade -1\", confirm=True)"),
    ]


def _where_am_i(lab: Lab, answer: object) -> list[Check]:
    wanted = _revision_with_message(lab, "create user profiles and settings")
    return [
        checks.answer_is(
            answer, wanted, "your answer is the id of 'create user profiles and settings'",
            "Run ch.alembic(\"history\"): each line reads `parent -> revision, message`. "
            "Copy the revision of 'create user profiles and settings' as a string: answer = \"...\""),
        checks.database_at(
            lab, wanted,
            {"base": f"Too far down: ch.alembic(\"upgrade {wanted}\")"},
            f"Move the database there: ch.alembic(\"downgrade {wanted}\", confirm=True)"),
    ]


CHAPTERS: dict[str, ChapterSpec] = {
    spec.number: spec
    for spec in (
        ChapterSpec("00", "Start here", BASELINE_CHECKPOINT, _start_here),
        ChapterSpec("01", "The standard workflow", BASELINE_CHECKPOINT, _standard_workflow),
        ChapterSpec("02", "Never trust autogenerate", WITH_PHONE_NUMBER, _never_trust_autogenerate),
        ChapterSpec("03", "Rollback", WITH_PHONE_NUMBER, _rollback),
        ChapterSpec("04", "Where am I", WITH_PHONE_NUMBER, _where_am_i),
    )
}


def spec(number: str) -> ChapterSpec:
    """A chapter by number ("1", "01" and "01-standard-workflow" all mean chapter 01)."""
    key = number.split("-")[0].zfill(2)
    if key not in CHAPTERS:
        raise LabError(f"There is no chapter {number!r}.", f"Chapters: {', '.join(CHAPTERS)}.")
    return CHAPTERS[key]


def reset(number: str, lab: Lab | None = None) -> ResetReport:
    """Restore ai-service/ files and the database to the start of chapter `number`."""
    return reset_to(lab or Lab(), spec(number).checkpoint)
