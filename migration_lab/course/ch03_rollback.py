"""Chapter 03's exercise: write the missing downgrade() of a colleague's applied revision, proved by a round trip."""

from pathlib import Path

import sqlalchemy as sa
from alembic.script import Script

from ..database.connection import LabDatabase
from ..errors import LabError
from ..lab import Lab
from ..running.revision_bodies import does_nothing
from ..workspace.baseline import bring_revision
from ..workspace.edits import add_column, apply_edit, model_attributes
from . import checks
from .checks import Check
from .round_trip import a_profile, replay

LANGUAGE_REVISION = "d4f0c3b2a1e9"
LANGUAGE_FILE = f"{LANGUAGE_REVISION}_add_language_to_settings.py"
LANGUAGE_LINE = "language = Column(String(8), nullable=True, index=True)"
LANGUAGE_INDEX = "ix_user_settings_language"
LANGUAGE_DOWN = (
    "op.drop_index(op.f('ix_user_settings_language'), table_name='user_settings')\n"
    "op.drop_column('user_settings', 'language')"
)


def has_language(lab: Lab) -> bool:
    """main.py's UserSettings has a `language` attribute already."""
    return "language" in model_attributes((lab.project.service_dir / "main.py").read_text(), "UserSettings")


def exercise_start(lab: Lab) -> str:
    """Chapter 03's exercise: a colleague's revision, applied, whose downgrade() is `pass`."""
    lab.db.heads()  # the database first: if it is down, no file changes
    if not bring_revision(lab.project.versions_dir, LANGUAGE_FILE):  # the cell run again: the learner's fix stays
        return (
            f"ai-service/migrations/versions/{LANGUAGE_FILE} is there with your changes (your downgrade()?): it is "
            "kept, and the exercise goes on from it. To start it over with the colleague's file, ch.reset() (it "
            "backs up your work first), then this cell."
        )
    if not has_language(lab):  # the cell run twice adds the line once
        apply_edit(lab.project.service_dir / "main.py", add_column("UserSettings", LANGUAGE_LINE), lab.project.root)
    result = lab.runner.run("upgrade head")
    if not result.ok:
        raise LabError(
            f"A colleague's revision arrived (ai-service/migrations/versions/{LANGUAGE_FILE}), but `alembic upgrade "
            f"head` could not apply it: {result.error}",
            "Run this chapter's cells in order from its start (ch.reset() first, if the lab is elsewhere: it "
            "backs up your work), then this cell again.",
        )
    return (
        f"A colleague's revision arrived and is applied: ai-service/migrations/versions/{LANGUAGE_FILE} "
        f"(UserSettings.language, with an index). Its downgrade() is `pass`. Database: {', '.join(result.after or ())}."
    )


def _language_state(db: LabDatabase) -> tuple[bool, bool]:
    """(user_settings.language exists, its index exists)."""
    with db.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("user_settings"):
            return False, False
        column = any(c["name"] == "language" for c in inspector.get_columns("user_settings"))
        index = any(i["name"] == LANGUAGE_INDEX for i in inspector.get_indexes("user_settings"))
        return column, index


def _both_there(db: LabDatabase) -> str | None:
    return None if _language_state(db) == (True, True) else "user_settings lacks the column language or its index"


def _both_gone(db: LabDatabase) -> str | None:
    column, index = _language_state(db)
    left = [what for what, there in (("the column language", column), (LANGUAGE_INDEX, index)) if there]
    return f"user_settings still has {' and '.join(left)}" if left else None


def _settings_to_keep(db: LabDatabase) -> None:
    """A user's settings on the copy, if the learner's database has none: a downgrade that deletes the rows (or
    drops the table and makes it again) must show, and over an empty table it cannot."""
    with db.engine.begin() as conn:
        if not conn.scalar(sa.text("SELECT count(*) FROM user_settings")):
            conn.execute(
                sa.text("INSERT INTO user_settings (user_id, theme, status) VALUES (:owner, 'dark', 'away')"),
                {"owner": a_profile(conn)},
            )


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 03: the revision's downgrade() undoes its upgrade(), proved by a round trip on a copy."""
    path = lab.project.versions_dir / LANGUAGE_FILE
    script = lab.runner.script().get_revision(LANGUAGE_REVISION) if path.exists() else None
    parent = str(script.down_revision) if isinstance(script, Script) else "a1c4e7f20b13"
    empty = script is None or does_nothing(Path(script.path), "downgrade")
    replayed = (
        None if empty else replay(lab, parent, at_head=_both_there, downgraded=_both_gone, prepare=_settings_to_keep)
    )
    column, index = _language_state(lab.db)
    at = checks.database_heads(lab)
    code = f'ch.rewrite_revision(revision="add_language", downgrade="""{LANGUAGE_DOWN}""")'
    at_head_hints: checks.Hints = (
        "Prove it in your own database too: one revision down and back up.",
        "In a terminal in ai-service/: `alembic downgrade -1`, then `alembic upgrade head`.",
        'ch.alembic("downgrade -1", confirm=True); ch.alembic("upgrade head")',
    )
    trapped = at == parent and column  # a downgrade() that left the column ran: alembic_version moved, it stayed
    if trapped:
        at_head_hints = (
            f"alembic_version says {parent}, but user_settings still has language: a downgrade() that leaves it "
            "ran (the `pass` one, or one that drops only the index), so `upgrade head` now fails on a column that "
            "already exists. Alembic trusts alembic_version, never the tables.",
            "The tables match head: record that without running anything (`alembic stamp head`). Check that "
            "downgrade() now drops the index and then the column, and do the round trip again.",
            'ch.alembic("stamp head", confirm=True); ch.alembic("downgrade -1", confirm=True); '
            'ch.alembic("upgrade head")',
        )
    return [
        Check(
            f"the downgrade() of {LANGUAGE_REVISION} (add language to settings) does something",
            not empty,
            (
                "A downgrade() that is `pass` still succeeds: alembic moves alembic_version one step down and "
                "the column and its index stay, so the next `upgrade head` fails on them.",
                f"Open ai-service/migrations/versions/{LANGUAGE_FILE} in the editor: downgrade() undoes upgrade(), "
                "step by step in reverse order (op.drop_index, then op.drop_column).",
                code,
            ),
        ),
        Check(
            "downgrade -1 removes what the upgrade added, and upgrade head brings it back (rehearsed on a copy)",
            not empty and replayed is None,
            at_head_hints
            if trapped  # the copy fails the same way, because of the database's state, not the downgrade
            else (
                f"The round trip on a copy of your database went wrong: {replayed}."
                if replayed
                else "Write the downgrade() first.",
                "Each op in upgrade() needs its opposite in downgrade(): add_column / drop_column, "
                "create_index / drop_index.",
                code,
            ),
        ),
        checks.database_at_head(lab, at_head_hints),
        Check("user_settings.language and its index are in your database", column and index, at_head_hints),
        checks.models_match_database(
            lab,
            (
                "main.py and the database differ.",
                "`alembic check` in a terminal says what autogenerate would still do.",
                'ch.alembic("check")',
            ),
        ),
    ]
