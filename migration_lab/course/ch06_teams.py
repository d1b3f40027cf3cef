"""Chapter 06's exercise: a teammate's branch that conflicts with yours, not just forks from it.

Two heads that touch different tables merge with an empty merge revision. Two branches that both add
user_settings.timezone do not: a merge runs both, and the second ADD COLUMN fails (DuplicateColumn). Carol's
revision reached main first, so yours must come after hers (its down_revision names her revision: a rebase, or
a merge revision when your branch has a head of its own) and change her column instead of adding it.
"""

import shutil

from ..lab import Lab
from ..workspace.baseline import REVISIONS
from ..workspace.edits import add_column, apply_edit
from . import checks
from .checks import Check, any_revision
from .round_trip import round_trip

CAROL = "c3e8a6d2f4b5_add_timezone_to_user_settings.py"
CAROL_ID = "c3e8a6d2f4b5"
YOURS_ID = "0d0000000006"
YOURS = f"{YOURS_ID}_timezone_for_reminders.py"
# Your model line; git stopped on Carol's `timezone = Column(String(40), nullable=True)` in the same place, and
# you kept yours (reminders need a timezone for every user).
YOUR_LINE = 'timezone = Column(String(64), nullable=False, server_default="UTC")'

YOUR_REVISION = '''"""timezone for reminders

Revision ID: {rev}
Revises: {parent}
Create Date: 2026-11-24 11:00:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '{rev}'
down_revision: Union[str, Sequence[str], None] = {parent!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user_settings', sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('user_settings', 'timezone')
'''

# Your revision once it follows Carol's: her column, made what yours needs; and back.
ON_TOP_UPGRADE = """op.execute("UPDATE user_settings SET timezone = 'UTC' WHERE timezone IS NULL")
op.alter_column('user_settings', 'timezone', existing_type=sa.String(length=40), type_=sa.String(length=64),
                server_default='UTC', nullable=False)"""
ON_TOP_DOWNGRADE = """op.alter_column('user_settings', 'timezone', existing_type=sa.String(length=64),
                type_=sa.String(length=40), server_default=None, nullable=True)"""


def conflicting_branches(lab: Lab) -> str:
    """Your revision adding user_settings.timezone on your branch's head; Carol's, adding it too, from a1c4e7f20b13."""
    versions = lab.project.versions_dir
    if not (versions / YOURS).exists():
        heads = lab.runner.script().get_heads()
        parent = heads[0] if len(heads) == 1 else tuple(sorted(heads))
        (versions / YOURS).write_text(YOUR_REVISION.format(rev=YOURS_ID, parent=parent))
        apply_edit(lab.project.service_dir / "main.py", add_column("UserSettings", YOUR_LINE), lab.project.root)
    shutil.copy(REVISIONS / CAROL, versions / CAROL)
    return (
        f"Your branch: ai-service/migrations/versions/{YOURS} adds user_settings.timezone (String(64), NOT NULL, "
        f"default 'UTC'), and main.py has your line. Carol's branch, merged to main first: "
        f"ai-service/migrations/versions/{CAROL} adds user_settings.timezone too (String(40), nullable), from "
        "a1c4e7f20b13. git stopped on both timezone lines in main.py; you kept yours."
    )


def parent_line(lab: Lab) -> str:
    """The down_revision line of your revision file as it is now (for a hint that edits it)."""
    text = (lab.project.versions_dir / YOURS).read_text() if (lab.project.versions_dir / YOURS).exists() else ""
    return next((line for line in text.splitlines() if line.startswith("down_revision")), "")


def new_parent(lab: Lab) -> str | tuple[str, ...]:
    """What your revision's down_revision should be: Carol's (a rebase) when yours started where hers did, else
    your branch's parent and hers (a merge revision with content)."""
    script = lab.runner.script().get_revision(YOURS_ID) if (lab.project.versions_dir / YOURS).exists() else None
    now = script.down_revision if script is not None else None
    parents = [now] if isinstance(now, str) else list(now or ())
    kept = [p for p in parents if p not in ("a1c4e7f20b13", CAROL_ID)]
    return (*kept, CAROL_ID) if kept else CAROL_ID


def exercise_start(lab: Lab) -> str:
    """Carol's branch, from a1c4e7f20b13, next to a revision of yours that adds the same column: see py."""
    return conflicting_branches(lab)


def exercise(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.script().get_heads()
    parent = parent_line(lab)
    wanted = repr(new_parent(lab))
    on_top = (
        "Both branches add user_settings.timezone. Carol's revision reached main first: yours must run after "
        "hers and change her column, not add it again (a merge of the two heads runs both ADD COLUMNs, and "
        "the second fails: DuplicateColumn).",
        f"In your revision ({YOURS}), set down_revision to {wanted} (a rebase; a tuple makes it a merge "
        "revision with content), and write upgrade() with op.alter_column(): fill the NULLs, then type_, "
        "server_default and nullable as main.py has them; downgrade() the reverse. Editor or ch.edit_file + "
        "ch.rewrite_revision.",
        f'ch.edit_file("migrations/versions/{YOURS}", "{parent}", '
        f'"down_revision: Union[str, Sequence[str], None] = {wanted}"); '
        f'ch.rewrite_revision(revision="{YOURS_ID}", upgrade="""{ON_TOP_UPGRADE}""", '
        f'downgrade="""{ON_TOP_DOWNGRADE}""")',
    )
    apply = (
        "Your revision and Carol's are not both applied yet.",
        "Upgrade to head: with one head, alembic knows where that is.",
        'ch.alembic("upgrade head")',
    )
    return [
        checks.a_revision_file_matches(
            lab,
            rf"revision: str = '{CAROL_ID}'",
            f"from Carol ({CAROL_ID}) is in versions/",
            (
                "Carol's branch has not arrived yet.",
                "ch.start_exercise() brings it, as a git pull would.",
                "ch.start_exercise()",
            ),
        ),
        Check(
            "there is a single head",
            len(heads) == 1,
            (
                f"There are {len(heads)} heads ({', '.join(sorted(heads))}): your branch and Carol's both start "
                "from a1c4e7f20b13, so `upgrade head` does not know which head you mean. Look at what each adds "
                "before you join them.",
                *on_top[1:],
            ),
        ),
        checks.database_at_head(
            lab,
            (
                f"{apply[0]} If `upgrade head` failed with DuplicateColumn: " + on_top[0],
                *on_top[1:],
            )
            if any_revision(lab, r"add_column\('user_settings', sa\.Column\('timezone'.*length=64")
            else apply,
        ),
        checks.column_exists(lab, "user_settings", "timezone", apply),
        checks.models_match_database(
            lab,
            (
                "user_settings.timezone is not what main.py says (String(64), NOT NULL, default 'UTC').",
                *on_top[1:],
            ),
        ),
        round_trip(
            lab,
            (
                "Your revision's downgrade() must undo its upgrade(): give Carol's column back as she made it.",
                f'downgrade() with op.alter_column(...): """{ON_TOP_DOWNGRADE}"""',
            ),
        ),
    ]
