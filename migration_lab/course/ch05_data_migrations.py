"""Chapter 05's exercise: lowercase emails that collide under UNIQUE, in a migration safe to run twice.

The exercise defines its own starting rows: `start_exercise()` takes the lab back to the chapter's start (the
chapter's steps leave 50,000 generated users and no Ada) and adds the two sign-ups, so it starts over however
often it runs. The migration is judged by what it does to those rows, replayed on a copy whatever the learner's
database holds now, and by a second run that must rewrite no row; not by how it is written.
"""

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..errors import CopyUnavailable
from ..lab import Lab
from ..running.runner import Runner
from ..workspace import checkpoints
from ..workspace.checkpoints import SEED_EMAILS, SEED_PHONES, SEED_PROFILES, WITH_PHONE_NUMBER
from . import checks
from .checks import Check

START = "a1c4e7f20b13"  # the chapter's checkpoint: the revision the exercise's migration goes after
DEDUPLICATE = (
    "DELETE FROM user_profiles p WHERE EXISTS ("
    "SELECT 1 FROM user_profiles q WHERE lower(q.email) = lower(p.email) AND q.id < p.id)"
)
LOWERCASE = "UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)"
SIGN_UPS = (
    "INSERT INTO user_profiles (name, email) VALUES ('Edsger Dijkstra', 'Edsger.Dijkstra@Example.ORG'), "
    "('Ada Lovelace', 'Ada@Example.org')"
)
PEOPLE = (*SEED_EMAILS, "edsger.dijkstra@example.org")
ANSWER = f'op.execute("{DEDUPLICATE}")\\nop.execute("{LOWERCASE}")'
START_OVER = "ch.start_exercise()"


def exercise_start(lab: Lab) -> str:
    """Chapter 05's exercise: the chapter's start again (Ada, Grace and Alan, with settings and jobs), and two
    sign-ups typed with capitals, one of them Ada's second."""
    report = checkpoints.reset(lab, WITH_PHONE_NUMBER)
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text(SIGN_UPS))
    return (
        f"The exercise starts from the chapter's start, whatever the steps above left: {report}\n"
        "Two sign-ups typed with capitals: Edsger.Dijkstra@Example.ORG (new) and Ada@Example.org (Ada again, "
        "who already has ada@example.org, her settings and her jobs). Logins compare lowercase emails."
    )


def _rows(conn: sa.Connection) -> tuple[int, dict[str, int], set[str]]:
    """(emails with capitals, {person: profiles}, the seed people whose original profile, with its settings, is
    there)."""
    mixed = conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE email <> lower(email)")) or 0
    people: dict[str, int] = dict(
        conn.execute(
            sa.text(
                "SELECT lower(email), count(*) FROM user_profiles WHERE lower(email) IN :people GROUP BY 1"
            ).bindparams(sa.bindparam("people", expanding=True)),
            {"people": list(PEOPLE)},
        ).all()
    )
    originals = conn.scalars(
        sa.text(
            "SELECT DISTINCT lower(p.email) FROM user_profiles p JOIN user_settings s ON s.user_id = p.id "
            "WHERE lower(p.email) IN :seeds"
        ).bindparams(sa.bindparam("seeds", expanding=True)),
        {"seeds": list(SEED_EMAILS)},
    )
    return mixed, people, set(originals)


def _verdict(mixed: int, people: dict[str, int], originals: set[str]) -> str | None:
    """What is wrong with the rows after the migration, or None."""
    if mixed:
        return f"{mixed} email(s) still have capitals"
    missing = [p for p in PEOPLE if not people.get(p)]
    twice = [p for p in PEOPLE if people.get(p, 0) > 1]
    if missing or twice:
        return f"{', '.join(missing)} missing" if missing else f"{', '.join(twice)} there twice"
    gone = [p for p in SEED_EMAILS if p not in originals]
    return (
        f"the original profile of {', '.join(gone)} (with the settings and jobs) went, and the later sign-up stayed"
        if gone
        else None
    )


SIGNED_UP_EARLIER = "UPDATE user_profiles SET created_at = created_at - interval '1 day'"
# The same shape the other way round: the OLDER profile is the one typed with capitals (Grace's, from before the
# app lowercased anything), her later sign-up lowercase. A migration that deletes the capitalised duplicate, or
# the rows of the exercise by their emails, deletes her original profile here. Her later sign-up comes before
# Edsger's: a migration that deletes the exercise's duplicate by its id deletes Edsger here.
OLDER_CAPITALISED = (
    "UPDATE user_profiles SET email = 'Grace@Example.org' WHERE email = 'grace@example.org'",
    "INSERT INTO user_profiles (name, email) VALUES ('Grace Hopper', 'grace@example.org'), "
    "('Edsger Dijkstra', 'Edsger.Dijkstra@Example.ORG')",
)
EXERCISE_ROWS = "Run on a copy holding the exercise's rows"
OTHER_ROWS = (
    "Run on a copy where the OLDER duplicate has the capitals (Grace@Example.org, then her later sign-up "
    "grace@example.org)"
)


def _starting_rows(copy: LabDatabase, sign_ups: tuple[str, ...]) -> None:
    """The seed people (ids 1-3) and then, later, `sign_ups` (in one transaction now() is one time, and a migration
    that keeps the older profile by created_at would find every profile as old as every other)."""
    with copy.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE user_profiles, user_settings, job_entries RESTART IDENTITY CASCADE"))
        for sql in (SEED_PROFILES, SEED_PHONES, SIGNED_UP_EARLIER, *sign_ups):
            conn.execute(sa.text(sql))


def _replay(lab: Lab) -> tuple[str | None, str | None]:
    """The revisions after START, run on a copy holding the exercise's starting rows, then once more from START, as
    after a failure before alembic recorded them, then on the other data set: (what the first run got wrong, what
    the second one changed), each a sentence."""
    rows = sa.text("SELECT id, xmin::text FROM user_profiles ORDER BY id")
    try:
        with lab.db.copy() as copy:
            runner = lab.runner.on(copy)
            wrong = _run_on(runner, copy, (SIGN_UPS,))
            if wrong:
                return f"{EXERCISE_ROWS}, {wrong}", None
            with copy.connect() as conn:
                before = list(conn.execute(rows))
            runner.run(["stamp", START])
            again = runner.run("upgrade head")
            if not again.ok:
                return None, f"the second run fails: {again.error}"
            with copy.connect() as conn:
                after = list(conn.execute(rows))
            wrong = _run_on(runner, copy, OLDER_CAPITALISED)
            if wrong:
                return f"{OTHER_ROWS}, {wrong}", None
    except CopyUnavailable as why:
        return f"{EXERCISE_ROWS}, it could not be tried: {why.what}", None
    touched = len(set(before) - set(after))
    return None, f"the second run rewrote {touched} row(s) that needed nothing" if touched else None


def _run_on(runner: Runner, copy: LabDatabase, sign_ups: tuple[str, ...]) -> str | None:
    """The seed people and `sign_ups` on the copy at START, then `upgrade head`: what went wrong, or None."""
    stamped = runner.run(["stamp", START])
    if not stamped.ok:
        return f"it could not be tried: `alembic stamp {START}` fails: {stamped.error}"
    try:
        _starting_rows(copy, sign_ups)
    except sa.exc.DBAPIError as error:
        return f"the exercise's rows do not fit your schema any more: {error.orig}"
    first = runner.run("upgrade head")
    if not first.ok:
        return f"the migration fails: {first.error}"
    with copy.connect() as conn:
        wrong = _verdict(*_rows(conn))
    return f"after it, {wrong}" if wrong else None


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 05: the migration lowercases the exercise's rows keeping Ada's original, and is safe to run again;
    the learner's database is at head with the same result."""
    with lab.db.engine.connect() as conn:
        mixed, people, originals = _rows(conn)
    seeded = all(people.get(p) for p in SEED_EMAILS[1:])  # Grace and Alan: Ada's original may be what went
    duplicates = sum(n - 1 for n in people.values())
    written = bool(list(lab.runner.script().iterate_revisions("heads", START)))
    first, second = _replay(lab)
    start_over = (
        "The rows in your database are not the exercise's any more: Ada, Grace or Alan are missing (the chapter's "
        "steps, or a `downgrade base` + `upgrade head`, emptied the tables). Your migration is judged on a copy "
        "holding the exercise's rows (the check above); your own database needs those rows back.",
        f"{START_OVER} puts them back. It starts from the chapter's start and backs up your files first, so your "
        "revision goes into the backup it names: copy it back into ai-service/migrations/versions/ (or write it "
        "again), then `alembic upgrade head`.",
        f"{START_OVER}  # then: cp .lab/backups/<the folder it names>/ai-service/migrations/versions/<your "
        'revision>.py ai-service/migrations/versions/ ; ch.alembic("upgrade head", confirm=True)',
    )
    at_head = checks.database_at_head(
        lab,
        (
            f"The UPDATE fails on the UNIQUE constraint: {duplicates + 1} profiles become the same email after "
            "lower(), and the revision was rolled back (nothing of it stays)."
            if duplicates and written
            else "The data migration is written but not applied.",
            "Decide what happens to the duplicate first: the older profile (Ada's, with her settings and jobs) "
            "stays, the later sign-up goes. In upgrade(), op.execute() a DELETE of every row for which an older row "
            "has the same lower(email), then the UPDATE.",
            f"ch.rewrite_revision(upgrade='{ANSWER}'); ch.alembic(\"upgrade head\", confirm=True)",
        ),
    )
    return [
        checks.no_revision_imports(
            lab,
            "main",
            "imports today's models from main.py",
            (
                "A migration must not import the models of main.py: they describe today's schema, not the one "
                "at that revision.",
                'Use op.execute("...") or a snapshot of the columns you need: sa.table(name, sa.column(...)).',
            ),
        ),
        Check(
            "your migration, run on the exercise's rows, lowercases every email and keeps Ada's original "
            "profile (tried on a copy)",
            first is None,
            (
                "The capitals are in the rows, not in the schema: this needs a data migration, which autogenerate "
                "never writes (it compares schemas only)."
                if not written
                else f"{first}.",
                'An empty revision (`alembic revision -m "..."` in a terminal in ai-service/), then SQL in its '
                "upgrade() with op.execute(...). SQL's lower() lowercases. Mind the UNIQUE constraint on email: "
                "the older profile stays, the later duplicate goes."
                if not written
                else "Delete the row for which an OLDER row (smaller id) has the same lower(email), then lowercase "
                "what still has capitals.",
                f"ch.alembic('revision -m \"lowercase emails\"'); ch.rewrite_revision(upgrade='{ANSWER}')"
                if not written
                else f"ch.rewrite_revision(upgrade='{ANSWER}')",
            ),
        ),
        at_head,
        Check(
            "every email is lowercase in your database",
            mixed == 0,
            start_over
            if not seeded
            else (
                f"{mixed} email(s) still have capitals in your database, although the migration does it on the "
                "exercise's rows: were they added after it ran? Start over to get the exercise's rows back.",
                *start_over[1:],
            )
            if first is None
            else (
                f"{mixed} email(s) still have capitals in your database: the migration does not lowercase them "
                "all (see the check above).",
                f"Fix the migration first; then apply it again (downgrade, upgrade) or start over with {START_OVER}.",
            ),
        ),
        Check(
            "every person is there once in your database, Ada with her original profile",
            seeded and _verdict(0, people, originals) is None,
            start_over
            if not seeded or first is None
            else (
                "A profile is missing, or one is there twice: only the later duplicate sign-up should go.",
                "Delete the row for which an OLDER row (smaller id) has the same lower(email); keep the others.",
                f'op.execute("{DEDUPLICATE}")',
            ),
        ),
        Check(
            "running the migration again changes no row (tried on a copy)",
            first is None and second is None,
            (
                f"Run again on a copy, {second}. A migration can run twice: after a failure before alembic recorded "
                "it, or when batches in an autocommit_block committed and a later one failed."
                if second
                else "First make the migration right on the exercise's rows; then it is run a second time.",
                "Touch only the rows that still need it: UPDATE ... WHERE email <> lower(email); a DELETE of "
                "duplicates finds none the second time.",
                f'op.execute("{LOWERCASE}")',
            ),
        ),
    ]
