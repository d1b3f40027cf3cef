"""Chapter 05's exercise: lowercase emails that collide under UNIQUE, in a migration safe to run twice."""

import re
from pathlib import Path

import sqlalchemy as sa
from alembic.script import Script

from ..errors import CopyUnavailable
from ..lab import Lab
from ..workspace.checkpoints import SEED_EMAILS
from . import checks
from .checks import Check

DEDUPLICATE = (
    "DELETE FROM user_profiles p WHERE EXISTS ("
    "SELECT 1 FROM user_profiles q WHERE lower(q.email) = lower(p.email) AND q.id < p.id)"
)
LOWERCASE = "UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)"
PEOPLE = (*SEED_EMAILS, "edsger.dijkstra@example.org")


def exercise_start(lab: Lab) -> str:
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
            runner = lab.runner.on(copy)
            runner.run(f"stamp {parent or 'base'}")
            with copy.connect() as conn:
                before = list(conn.execute(rows))
            again = runner.run(f"upgrade {script.revision}")
            if not again.ok:
                return f"the second run fails: {again.error}"
            with copy.connect() as conn:
                after = list(conn.execute(rows))
    except CopyUnavailable as why:
        return f"it could not be rehearsed: {why.what}"
    if before != after:
        touched = len(set(before) - set(after))
        return f"the second run rewrote {touched} row(s) that needed nothing"
    return None


def exercise(lab: Lab, answer: object) -> list[Check]:
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
