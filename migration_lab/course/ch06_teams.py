"""Chapter 06's exercise: a teammate's branch that conflicts with yours, not just forks from it.

Two heads that touch different tables merge with an empty merge revision. Two branches that both add
user_settings.timezone do not: a merge runs both, and the second ADD COLUMN fails (DuplicateColumn). Carol's
revision reached main first, so yours must come after hers (its down_revision names her revision: a rebase, or
a merge revision when your branch has a head of its own) and change her column instead of adding it. Her column
left NULL in every row already there, which NOT NULL refuses: a server_default fills only rows inserted later.

Her revision must stay as she merged it: main's databases (CI, production) ran it already, and an edited copy
would never run there again. The history is judged by replaying it on a copy that keeps the rows (down to
her revision, where her column must be back as she made it, then to a1c4e7f20b13, and back up), where her
NULLs are, not by how your revision is written.
"""

import ast
from pathlib import Path

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..lab import Lab
from ..workspace.baseline import REVISIONS, bring_revision
from ..workspace.edits import add_column, apply_edit
from . import checks
from .checks import Check
from .round_trip import Replayed, a_profile, replay, upgrade_fails

CAROL = "c3e8a6d2f4b5_add_timezone_to_user_settings.py"
CAROL_ID = "c3e8a6d2f4b5"
START = "a1c4e7f20b13"  # where Carol's branch, and the chapter, start
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
    bring_revision(versions, CAROL)  # run again: a copy of hers you changed stays
    parent = your_parent(lab)
    where = (
        f"{START}, where Carol's branch starts too"
        if parent == (START,)
        else f"{', '.join(parent)}, your branch's head when it was written (the steps' merge, if you did them)"
    )
    return (
        f"Your branch: ai-service/migrations/versions/{YOURS} adds user_settings.timezone (String(64), NOT NULL, "
        f"default 'UTC'), and main.py has your line; its parent is {where}. Carol's branch, merged to main first: "
        f"ai-service/migrations/versions/{CAROL} adds user_settings.timezone too (String(40), nullable: NULL in "
        f"every row already there), from {START}. git stopped on both timezone lines in main.py; you kept yours. "
        f"The database is at {', '.join(lab.db.heads()) or 'base'}."
    )


def your_parent(lab: Lab) -> tuple[str, ...]:
    """Your revision's parents as its file says now (empty when the file is gone)."""
    script = lab.runner.script().get_revision(YOURS_ID) if (lab.project.versions_dir / YOURS).exists() else None
    now = script.down_revision if script is not None else None
    return (now,) if isinstance(now, str) else tuple(now or ())


def parent_line(lab: Lab) -> str:
    """The down_revision line of your revision file as it is now (for a hint that edits it)."""
    text = (lab.project.versions_dir / YOURS).read_text() if (lab.project.versions_dir / YOURS).exists() else ""
    return next((line for line in text.splitlines() if line.startswith("down_revision")), "")


def new_parent(lab: Lab) -> str | tuple[str, ...]:
    """What your revision's down_revision should be: Carol's (a rebase) when yours started where hers did, else
    your branch's parent and hers (a merge revision with content)."""
    kept = [p for p in your_parent(lab) if p not in (START, CAROL_ID)]
    return (*kept, CAROL_ID) if kept else CAROL_ID


def _code(path: Path) -> tuple[object, ...]:
    """What a revision does, whatever its formatting: its ids and its functions' statements (docstrings left out)."""
    tree = ast.parse(path.read_text())
    ids = {}
    bodies = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value:
                    ids[target.id] = ast.literal_eval(node.value)
        if isinstance(node, ast.FunctionDef):
            statements = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            bodies[node.name] = [ast.dump(s) for s in statements]
    return tuple(sorted(ids.items())), tuple(sorted((k, tuple(v)) for k, v in bodies.items()))


def carol_as_merged(lab: Lab) -> str | None:
    """None when Carol's revision is in versions/ and does what she merged; else what is wrong."""
    script = lab.runner.script().get_revision(CAROL_ID) if CAROL_ID in _ids(lab) else None
    if script is None:
        return "missing"
    try:
        same = _code(Path(script.path)) == _code(REVISIONS / CAROL)
    except (SyntaxError, ValueError):
        same = False
    return None if same else "edited"


def _ids(lab: Lab) -> set[str]:
    return {s.revision for s in lab.runner.script().walk_revisions()}


def _timezone(db: LabDatabase) -> tuple[bool, int]:
    """(user_settings has timezone, how many rows hold NULL in it)."""
    with db.connect() as conn:
        if "timezone" not in {c["name"] for c in sa.inspect(conn).get_columns("user_settings")}:
            return False, 0
        return True, conn.scalar(sa.text("SELECT count(*) FROM user_settings WHERE timezone IS NULL")) or 0


def _filled(db: LabDatabase) -> str | None:
    there, empty = _timezone(db)
    if not there:
        return "user_settings has no column timezone"
    return f"{empty} row(s) of user_settings have no timezone" if empty else None


CHOSEN = "Europe/Paris"  # a timezone one of Carol's users chose, on main since her revision


def _a_user_chooses_a_timezone(db: LabDatabase) -> None:
    """At Carol's revision, one user's timezone set (her column is on main, and production rows hold real
    timezones by now): an upgrade that drops and re-adds the column, or overwrites every row, loses it."""
    with db.engine.begin() as conn:
        settings = conn.scalar(sa.text("SELECT min(id) FROM user_settings"))
        if settings is None:
            conn.execute(
                sa.text("INSERT INTO user_settings (user_id, timezone) VALUES (:owner, :zone)"),
                {"owner": a_profile(conn), "zone": CHOSEN},
            )
        else:
            conn.execute(
                sa.text("UPDATE user_settings SET timezone = :zone WHERE id = :id"), {"zone": CHOSEN, "id": settings}
            )


def _kept_and_filled(db: LabDatabase) -> str | None:
    with db.connect() as conn:
        kept = conn.scalar(sa.text("SELECT count(*) FROM user_settings WHERE timezone = :zone"), {"zone": CHOSEN})
    if not kept:
        return f"the timezone a user had chosen ({CHOSEN}) is gone: change her column's rows that hold NULL only"
    return _filled(db)


def _gone(db: LabDatabase) -> str | None:
    return "user_settings still has its column timezone" if _timezone(db)[0] else None


def _as_carol_made_it(db: LabDatabase) -> str | None:
    """At Carol's revision, her column as she made it: String(40), NULL allowed, no default. Down to START alone
    cannot tell: her own downgrade drops the column, and hides a downgrade() of yours that does nothing."""
    with db.connect() as conn:
        found = {c["name"]: c for c in sa.inspect(conn).get_columns("user_settings")}.get("timezone")
    if found is None:
        return "user_settings has no column timezone, which her revision adds"
    length = getattr(found["type"], "length", None)
    if length == 40 and found["nullable"] and found.get("default") is None:
        return None
    return (
        f"user_settings.timezone is still {found['type']}, {'NULL' if found['nullable'] else 'NOT NULL'}, "
        f"default {found.get('default')}: not her String(40), nullable, without a default. Your downgrade() does "
        "not undo your upgrade()"
    )


def exercise_start(lab: Lab) -> str:
    """Carol's branch, from a1c4e7f20b13, next to a revision of yours that adds the same column: see py."""
    return conflicting_branches(lab)


FILL = "UPDATE user_settings SET timezone = 'UTC' WHERE timezone IS NULL"


def exercise(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.script().get_heads()
    parent = parent_line(lab)
    wanted = repr(new_parent(lab))
    carol = carol_as_merged(lab)
    on_top = (
        "Both branches add user_settings.timezone. Carol's revision reached main first: yours must run after "
        "hers and change her column, not add it again (a merge of the two heads runs both ADD COLUMNs, and "
        "the second fails: DuplicateColumn).",
        f"In your revision ({YOURS}), set down_revision to {wanted} (a rebase; a tuple makes it a merge "
        "revision with content), and write upgrade() with op.alter_column(): first fill the NULLs her column left "
        "in every existing row (op.execute(UPDATE ... WHERE timezone IS NULL): a server_default fills only new "
        "rows), then type_, server_default and nullable as main.py has them; downgrade() the reverse. Editor or "
        "ch.edit_file + ch.rewrite_revision.",
        f'ch.edit_file("migrations/versions/{YOURS}", "{parent}", '
        f'"down_revision: Union[str, Sequence[str], None] = {wanted}"); '
        f'ch.rewrite_revision(revision="{YOURS_ID}", upgrade="""{ON_TOP_UPGRADE}""", '
        f'downgrade="""{ON_TOP_DOWNGRADE}""")',
    )
    nulls = (
        "`upgrade head` fails with NotNullViolation: Carol's column holds NULL in every row that was already "
        "there, and NOT NULL refuses them. Her server_default would not help: a default fills only rows inserted "
        "later (ALTER ... SET DEFAULT changes no existing row).",
        f'Fill them first, in your revision, before the alter_column: op.execute("{FILL}").',
        f'ch.rewrite_revision(revision="{YOURS_ID}", upgrade="""{ON_TOP_UPGRADE}"""); ch.alembic("upgrade head")',
    )
    at_head = checks.database_at_head(lab, ())
    if not at_head.passed:
        failure = upgrade_fails(lab)
        hints: checks.Hints = (
            nulls
            if failure == "23502"
            else (f"`upgrade head` fails with DuplicateColumn. {on_top[0]}", *on_top[1:])
            if failure == "42701"
            else (
                "Your revision and Carol's are not both applied yet.",
                "Upgrade to head: with one head, alembic knows where that is.",
                'ch.alembic("upgrade head")',
            )
        )
        at_head = checks.database_at_head(lab, hints)
    replayed = (
        replay(
            lab,
            CAROL_ID,
            at_head=_filled,
            downgraded=_as_carol_made_it,
            below=_a_user_chooses_a_timezone,
            upgraded_again=_kept_and_filled,
        )
        if carol is None
        else None
    )
    replayed = replayed or replay(lab, START, at_head=_filled, downgraded=_gone)
    return [
        Check(
            f"Carol's revision ({CAROL_ID}) is in versions/, as she merged it",
            carol is None,
            (
                f"Carol's revision is not in migrations/versions/ ({CAROL}): her branch has not arrived yet, or "
                "the file was deleted. It is on main: your history must keep it.",
                "ch.start_exercise() brings it, as a git pull would (and leaves your revision as it is).",
                "ch.start_exercise()",
            )
            if carol == "missing"
            else (
                "Carol's revision was changed. It is on main already: CI and production ran it as she wrote it, "
                "and alembic never runs a revision twice, so an edited copy changes nothing there (their column "
                "stays String(40), nullable) while yours would say it is done.",
                f"Give her file back as it was (`git checkout -- ai-service/migrations/versions/{CAROL}`; here "
                "ch.start_exercise() brings it back and leaves your revision alone), and make your own revision, "
                "after hers, change her column.",
                "ch.start_exercise()",
            ),
        ),
        Check(
            "there is a single head",
            len(heads) == 1,
            (
                f"There are {len(heads)} heads ({', '.join(sorted(heads))}): Carol's branch starts from {START}, "
                f"yours from {', '.join(your_parent(lab)) or START}, so `upgrade head` does not know which head you "
                "mean. Look at what each adds before you join them.",
                *on_top[1:],
            ),
        ),
        at_head,
        checks.column_exists(lab, "user_settings", "timezone", at_head.hints or on_top),
        checks.models_match_database(
            lab,
            (
                "user_settings.timezone is not what main.py says (String(64), NOT NULL, default 'UTC').",
                *on_top[1:],
            ),
        ),
        Check(
            f"the history goes down to {START} and back up with the rows kept (tried on a copy)",
            replayed is None,
            _replay_hints(replayed, nulls),
        ),
    ]


def _replay_hints(replayed: Replayed | None, nulls: checks.Hints) -> checks.Hints:
    if replayed is not None and "NotNullViolation" in replayed.problem:
        return (f"On a copy that keeps the rows, {replayed}.", *checks.levels(nulls)[1:])
    if replayed is not None and replayed.step in ("at head", "upgraded again"):  # the upgrade ran; the rows are wrong
        return (
            f"On a copy that keeps the rows, {replayed}. Your revision's upgrade() runs on rows that hold real "
            "timezones by now (production's, since Carol's revision): it must fill the empty ones and leave the "
            "others as they are.",
            f'In upgrade(), before the alter_column: op.execute("{FILL}"), and no UPDATE of every row, no drop and '
            "add of the column.",
            f'ch.rewrite_revision(revision="{YOURS_ID}", upgrade="""{ON_TOP_UPGRADE}""", confirm=True)',
        )
    return (
        f"On a copy that keeps the rows, {replayed}. Your revision's downgrade() must undo its upgrade(): give "
        "Carol's column back as she made it."
        if replayed
        else "Your revision's downgrade() must undo its upgrade().",
        f'downgrade() with op.alter_column(...): """{ON_TOP_DOWNGRADE}"""',
    )
