"""The exercises of chapters 02-05: their setups, and checks that read the end state.

Each check asks the database (columns, constraint names, rows, even row
versions) and alembic (Script objects) rather than trusting what a learner
typed, because the exercises are meant to be done in the editor and a terminal
as well as through the kit. Two checks rehearse on a TEMPLATE copy of the lab
database (`LabDatabase.copy()`): a round trip that proves a `downgrade()`, and
a re-run that proves a data migration is safe to run twice. The learner's own
database is never touched by a check.
"""

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from alembic.script import Script

from . import checks
from .checks import Check
from .db import CopyUnavailable, LabDatabase
from .lab import Lab
from .runner import Runner, parse
from .workspace import TEAMMATES, add_column, apply_edit, model_attributes, teammate_arrives

SEED_EMAILS = ("ada@example.org", "grace@example.org", "alan@example.org")
SEED_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing")


def _revision_texts(lab: Lab) -> Iterable[str]:
    return (p.read_text() for p in sorted(lab.project.versions_dir.glob("*.py")))


def _any_revision(lab: Lab, pattern: str) -> bool:
    return any(re.search(pattern, text) for text in _revision_texts(lab))


# --- 02: rename email, and the names that go stale ---------------------------------------------------------

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


def rename_email(lab: Lab) -> list[Check]:
    """Chapter 02: user_profiles.email renamed to email_address, every value kept, no stale constraint name."""
    address = checks.column_values(lab, "user_profiles", "email_address")
    email = checks.column_values(lab, "user_profiles", "email")
    drop_add = _any_revision(lab, r"drop_column\(\s*'user_profiles',\s*'email'")
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


# --- 03: write the missing downgrade() ---------------------------------------------------------------------

LANGUAGE_REVISION = "d4f0c3b2a1e9"
LANGUAGE_FILE = f"{LANGUAGE_REVISION}_add_language_to_settings.py"
LANGUAGE_LINE = "language = Column(String(8), nullable=True, index=True)"
LANGUAGE_INDEX = "ix_user_settings_language"
LANGUAGE_DOWN = (
    "op.drop_index(op.f('ix_user_settings_language'), table_name='user_settings')\n"
    "op.drop_column('user_settings', 'language')"
)
_LANGUAGE_SOURCE = f'''"""add language to settings

Revision ID: {LANGUAGE_REVISION}
Revises: a1c4e7f20b13
Create Date: 2026-11-30 09:00:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '{LANGUAGE_REVISION}'
down_revision: Union[str, Sequence[str], None] = 'a1c4e7f20b13'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user_settings', sa.Column('language', sa.String(length=8), nullable=True))
    op.create_index(op.f('ix_user_settings_language'), 'user_settings', ['language'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    pass
'''


def _has_language(lab: Lab) -> bool:
    """main.py's UserSettings has a `language` attribute already."""
    return "language" in model_attributes((lab.project.service_dir / "main.py").read_text(), "UserSettings")


def language_without_downgrade(lab: Lab) -> str:
    """Chapter 03's exercise: a colleague's revision, applied, whose downgrade() is `pass`."""
    lab.db.heads()  # the database first: if it is down, no file changes
    (lab.project.versions_dir / LANGUAGE_FILE).write_text(_LANGUAGE_SOURCE)
    if not _has_language(lab):  # the cell run twice adds the line once
        apply_edit(lab.project.service_dir / "main.py", add_column("UserSettings", LANGUAGE_LINE), lab.project.root)
    result = lab.runner.upgrade("head")
    return (
        f"A colleague's revision arrived and is applied: ai-service/migrations/versions/{LANGUAGE_FILE} "
        f"(UserSettings.language, with an index). Its downgrade() is `pass`. Database: {', '.join(result.after or ())}."
    )


def _function_is_empty(path: Path, name: str) -> bool:
    """The module's `name()` does nothing: only a docstring, `pass` or `...`."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return all(
                isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                for s in node.body
            )
    return True


def _language_state(db: LabDatabase) -> tuple[bool, bool]:
    """(user_settings.language exists, its index exists)."""
    with db.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("user_settings"):
            return False, False
        column = any(c["name"] == "language" for c in inspector.get_columns("user_settings"))
        index = any(i["name"] == LANGUAGE_INDEX for i in inspector.get_indexes("user_settings"))
        return column, index


def _round_trip(lab: Lab, parent: str) -> str | None:
    """On a TEMPLATE copy: downgrade to `parent`, then upgrade head. None if exact both ways, else what went wrong."""
    try:
        with lab.db.copy() as copy:
            runner = Runner(lab.project, copy)
            up = runner.run(parse("upgrade head"))
            if not up.ok:
                return f"`alembic upgrade head` fails: {up.error}"
            down = runner.run(parse(f"downgrade {parent}"))
            if not down.ok:
                return f"`alembic downgrade {parent}` fails: {down.error}"
            column, index = _language_state(copy)
            left = [what for what, there in (("the column language", column), (LANGUAGE_INDEX, index)) if there]
            if left:
                return f"after the downgrade user_settings still has {' and '.join(left)}"
            again = runner.run(parse("upgrade head"))
            if not again.ok:
                return f"`alembic upgrade head` after the downgrade fails: {again.error}"
            if _language_state(copy) != (True, True):
                return "after the downgrade and upgrade again, the column or its index is missing"
    except CopyUnavailable as why:
        return f"the round trip could not be rehearsed: {why}"
    return None


def write_the_downgrade(lab: Lab) -> list[Check]:
    """Chapter 03: the revision's downgrade() undoes its upgrade(), proved by a round trip on a copy."""
    path = lab.project.versions_dir / LANGUAGE_FILE
    script = lab.runner.script().get_revision(LANGUAGE_REVISION) if path.exists() else None
    parent = str(script.down_revision) if isinstance(script, Script) else "a1c4e7f20b13"
    empty = script is None or _function_is_empty(Path(script.path), "downgrade")
    problem = None if empty else _round_trip(lab, parent)
    column, index = _language_state(lab.db)
    at = checks.database_heads(lab)
    code = f'ch.rewrite_revision(revision="add_language", downgrade="""{LANGUAGE_DOWN}""")'
    at_head_hints: checks.Hints = (
        "Prove it in your own database too: one revision down and back up.",
        "In a terminal in ai-service/: `alembic downgrade -1`, then `alembic upgrade head`.",
        'ch.alembic("downgrade -1", confirm=True); ch.alembic("upgrade head")',
    )
    if at == parent and column:
        at_head_hints = (
            f"alembic_version says {parent}, but user_settings still has language: the empty downgrade() ran, "
            "so `upgrade head` now fails on a column that already exists. Alembic trusts alembic_version, "
            "never the tables.",
            "The tables do match head: record that without running anything (`alembic stamp head`), then do the "
            "round trip again with your new downgrade().",
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
            not empty and problem is None,
            (
                f"The round trip on a copy of your database went wrong: {problem}."
                if problem
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


# --- 04: what will the next upgrade apply? -----------------------------------------------------------------

PENDING_FROM = "8b7e5d2c6a41"


def back_from_holiday(lab: Lab) -> str:
    """Chapter 04's exercise: Bob's revision arrives while the database is two revisions below the old head."""
    lab.runner.downgrade(PENDING_FROM)
    if _has_language(lab):  # the cell run twice: Bob's branch is here already
        revision = TEAMMATES["bob"][0]
    else:
        revision, _ = teammate_arrives(lab.project, "bob")
    return (
        f"Back from a week away: `git pull` brought Bob's revision ai-service/migrations/versions/{revision} "
        f"(UserSettings.language), and your database is where you left it, at {PENDING_FROM}."
    )


def pending(lab: Lab, start: str = PENDING_FROM) -> list[str]:
    """The revisions `alembic upgrade head` applies from `start`, oldest first, from alembic's Script objects."""
    scripts = lab.runner.script().iterate_revisions("heads", start)  # newest first, `start` itself excluded
    return [s.revision for s in reversed(list(scripts))]


def _ids(answer: object) -> list[str] | None:
    if isinstance(answer, str):
        return re.findall(r"[0-9a-f]{12}", answer)
    if isinstance(answer, list | tuple | set) and all(isinstance(a, str) for a in answer):
        return [a.strip() for a in answer]
    return None


def next_upgrade(lab: Lab, answer: object) -> list[Check]:
    """Chapter 04: the answer names exactly the revisions the next upgrade applies; then they are applied."""
    expected = pending(lab)
    ids = _ids(answer)
    code = f"answer = {expected!r}"
    if answer is None:
        hints: checks.Hints = (
            "`upgrade head` applies every revision after the one the database is at, up to the head, oldest first; "
            "not the one it is at.",
            "`alembic history -r current:head -i` in a terminal (or ch.alembic) lists that range, newest first, "
            "with (current) on the revision already applied. Give the others as a list of id strings: "
            'answer = ["...", "..."]',
            code,
        )
    elif ids is None:
        hints = (f'Give a list of id strings: answer = ["...", "..."] (you gave {type(answer).__name__}).', code)
    elif PENDING_FROM in ids:
        hints = (
            f"Your answer includes {PENDING_FROM}, the revision the database is at: `history -r current:head` "
            "lists it, marked (current), but it is applied already. The upgrade starts after it.",
            code,
        )
    else:
        missing, extra = len(set(expected) - set(ids)), sorted(set(ids) - set(expected))
        hints = (
            (f"{missing} revision(s) the upgrade applies are missing. " if missing else "")
            + (f"{', '.join(extra)} is not applied by the next upgrade. " if extra else "")
            + "Look at every line between (current) and (head), Bob's included.",
            code,
        )
    return [
        Check(
            "your answer is exactly what the next `upgrade head` applies",
            ids is not None and sorted(ids) == sorted(expected) and len(ids) == len(expected),
            hints,
        ),
        checks.database_at_head(
            lab,
            (
                "Now apply them, and compare alembic's `Running upgrade` lines with your answer.",
                "`alembic upgrade head` in a terminal in ai-service/.",
                'ch.alembic("upgrade head")',
            ),
        ),
        checks.models_match_database(
            lab,
            ("main.py and the database differ.", "`alembic check` says how.", 'ch.alembic("check")'),
        ),
    ]


# --- 05: lowercase emails that collide, idempotently -------------------------------------------------------

DEDUPLICATE = (
    "DELETE FROM user_profiles p WHERE EXISTS ("
    "SELECT 1 FROM user_profiles q WHERE lower(q.email) = lower(p.email) AND q.id < p.id)"
)
LOWERCASE = "UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)"
PEOPLE = (*SEED_EMAILS, "edsger.dijkstra@example.org")


def mixed_case_sign_ups(lab: Lab) -> str:
    """Chapter 05's exercise: a new sign-up typed with capitals, and Ada signing up again the same way."""
    with lab.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email) VALUES ('Edsger Dijkstra', 'Edsger.Dijkstra@Example.ORG'), "
                "('Ada Lovelace', 'Ada@Example.org') ON CONFLICT (email) DO NOTHING"
            )
        )
    return (
        "Two sign-ups typed with capitals: Edsger.Dijkstra@Example.ORG (new) and Ada@Example.org (Ada again, "
        "who already has ada@example.org). Logins compare lowercase emails."
    )


def _lowercase_script(lab: Lab) -> Script | None:
    """The newest revision whose file lowercases emails."""
    for script in lab.runner.script().walk_revisions():
        if re.search(r"(?i)lower\(", Path(script.path).read_text()):
            return script
    return None


def _rerun(lab: Lab, script: Script) -> str | None:
    """Run `script`'s upgrade again on a TEMPLATE copy where it already ran, as after a failure before it was
    recorded. None if that works and rewrites no row of user_profiles (same xmin everywhere); else what happened."""
    parent = script.down_revision if isinstance(script.down_revision, str) else None
    rows = sa.text("SELECT id, xmin::text FROM user_profiles ORDER BY id")
    try:
        with lab.db.copy() as copy:
            runner = Runner(lab.project, copy)
            runner.run(parse(f"stamp {parent or 'base'}"))
            with copy.connect() as conn:
                before = list(conn.execute(rows))
            again = runner.run(parse(f"upgrade {script.revision}"))
            if not again.ok:
                return f"the second run fails: {again.error}"
            with copy.connect() as conn:
                after = list(conn.execute(rows))
    except CopyUnavailable as why:
        return f"it could not be rehearsed: {why}"
    if before != after:
        touched = len(set(before) - set(after))
        return f"the second run rewrote {touched} row(s) that needed nothing"
    return None


def lowercase_emails(lab: Lab) -> list[Check]:
    """Chapter 05: every email lowercase, each person once, and the migration safe to run again."""
    with lab.db.engine.connect() as conn:
        mixed = conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE email <> lower(email)"))
        people: dict[str, int] = dict(
            conn.execute(
                sa.text(
                    "SELECT lower(email), count(*) FROM user_profiles WHERE lower(email) IN :people GROUP BY 1"
                ).bindparams(sa.bindparam("people", expanding=True)),
                {"people": list(PEOPLE)},
            ).all()
        )
        ada = conn.scalar(sa.text("SELECT min(id) FROM user_profiles WHERE lower(email) = 'ada@example.org'"))
    duplicates = sum(n - 1 for n in people.values())
    once = all(people.get(p) == 1 for p in PEOPLE)
    script = _lowercase_script(lab)
    at_head = checks.database_at_head(
        lab,
        (
            f"The UPDATE fails on the UNIQUE constraint: {duplicates + 1} profiles become the same email after "
            "lower(), and the revision was rolled back (nothing of it stays)."
            if duplicates and script
            else "The data migration is written but not applied.",
            "Decide what happens to the duplicate first: the older profile (Ada's, with her settings and jobs) "
            "stays, the later sign-up goes. In upgrade(), op.execute() a DELETE of every row for which an older row "
            "has the same lower(email), then the UPDATE.",
            f'ch.rewrite_revision(upgrade=\'op.execute("{DEDUPLICATE}")\\nop.execute("{LOWERCASE}")\'); '
            'ch.alembic("upgrade head", confirm=True)',
        ),
    )
    rerun = _rerun(lab, script) if script and at_head.passed else "the migration is not applied yet"
    return [
        checks.a_revision_file_matches(
            lab,
            r"(?i)lower\(",
            "lowercases the emails",
            (
                "The capitals are in the rows, not in the schema: this needs a data migration, which autogenerate "
                "never writes (it compares schemas only).",
                'An empty revision (`alembic revision -m "..."` in a terminal in ai-service/), then SQL in its '
                "upgrade() with op.execute(...). SQL's lower() lowercases. Mind the UNIQUE constraint on email.",
                "ch.alembic('revision -m \"lowercase emails\"'); "
                f'ch.rewrite_revision(upgrade=\'op.execute("{DEDUPLICATE}")\\nop.execute("{LOWERCASE}")\')',
            ),
        ),
        checks.no_revision_file_matches(
            lab,
            r"(?m)^\s*(from main import|import main)",
            "imports today's models from main.py",
            (
                "A migration must not import the models of main.py: they describe today's schema, not the one "
                "at that revision.",
                'Use op.execute("...") or a snapshot of the columns you need: sa.table(name, sa.column(...)).',
            ),
        ),
        at_head,
        Check(
            "every email is lowercase in the database",
            mixed == 0,
            (
                f"{mixed} email(s) still have capitals, although the revision ran: does its UPDATE reach every "
                "row (no WHERE that skips them)?"
                if script and at_head.passed
                else f"{mixed} email(s) still have capitals: write and apply the data migration.",
                f'upgrade() needs: op.execute("{LOWERCASE}")',
            ),
        ),
        Check(
            "every person is there once, Ada with her original profile",
            once and ada == 1,
            (
                "A profile is missing, or one is there twice: only the later duplicate sign-up should go."
                if not once
                else "Ada's original profile (id 1, with her settings and jobs) went, and the later sign-up stayed.",
                "Delete the row for which an OLDER row (smaller id) has the same lower(email); keep the others.",
                f'op.execute("{DEDUPLICATE}")',
            ),
        ),
        Check(
            "running the migration again changes no row (rehearsed on a copy)",
            rerun is None,
            (
                f"Run again on a copy of your database, {rerun}. A migration can run twice: after a failure before "
                "alembic recorded it, or when batches in an autocommit_block committed and a later one failed."
                if rerun != "the migration is not applied yet"
                else "Apply the migration first; then the check runs it a second time on a copy.",
                "Touch only the rows that still need it: UPDATE ... WHERE email <> lower(email); a DELETE of "
                "duplicates finds none the second time.",
                f'op.execute("{LOWERCASE}")',
            ),
        ),
    ]
