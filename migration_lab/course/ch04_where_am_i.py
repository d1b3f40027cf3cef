"""Chapter 04's exercise: which revisions will the next `upgrade head` apply?"""

from ..errors import LabError
from ..lab import Lab
from ..workspace.backups import save_work
from . import checks
from .checks import Check
from .teammates import teammate_arrives

PENDING_FROM = "8b7e5d2c6a41"


def exercise_start(lab: Lab) -> str:
    """Chapter 04's exercise: Bob's revision arrives while the database is two revisions below the old head.

    Run again after the learner upgraded (the exercise's end), the downgrade drops columns and their rows: their
    work is backed up first, and named."""
    saved = ""
    if lab.db.heads() != (PENDING_FROM,):
        backup = save_work(lab)
        saved = f"\n{backup}" if backup else ""
    down = lab.runner.run(["downgrade", PENDING_FROM])
    if not down.ok or lab.db.heads() != (PENDING_FROM,):
        at = ", ".join(lab.db.heads()) or "base"
        raise LabError(
            f"The exercise could not take your database back to {PENDING_FROM}: "
            f"{down.error if not down.ok else f'it is at {at}'}. Nothing else was changed; Bob's revision has not "
            f"arrived.{saved}",
            "A revision of yours above it fails to downgrade: fix its downgrade(), or start the chapter again with "
            "ch.reset() (your files are backed up first), then ch.start_exercise().",
        )
    came = teammate_arrives(lab.project, "bob")
    kept = " (a file of that name with your changes was there: it is kept)" if came.kept_yours else ""
    return (
        f"Back from a week away: `git pull` brought Bob's revision ai-service/migrations/versions/{came.revision}"
        f"{kept} (UserSettings.language), and your database is where you left it, at {PENDING_FROM}.{saved}"
    )


def pending(lab: Lab, start: str = PENDING_FROM) -> list[str]:
    """The revisions `alembic upgrade head` applies from `start`, oldest first, from alembic's Script objects."""
    scripts = lab.runner.script().iterate_revisions("heads", start)  # newest first, `start` itself excluded
    return [s.revision for s in reversed(list(scripts))]


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 04: the answer names exactly the revisions the next upgrade applies, in the order it applies them;
    then they are applied."""
    expected = pending(lab)
    ids = checks.revisions_named(lab, answer)
    code = f"answer = {expected!r}"
    if answer is None:
        hints: checks.Hints = (
            "`upgrade head` applies every revision after the one the database is at, up to the head, oldest first; "
            "not the one it is at.",
            "`alembic history -r current:head -i` in a terminal (or ch.alembic) lists that range, newest first, "
            "with (current) on the revision already applied. Give the others as a list of id strings, in the order "
            'the upgrade runs them: answer = ["...", "..."]',
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
    elif sorted(ids) == sorted(expected):
        hints = (
            "Those are the right revisions, in the order `history` prints them: newest first. `upgrade head` runs "
            "them oldest first, each after its parent, and the order matters (a revision needs what its parent made).",
            "Reverse the list: the revision whose parent is the one the database is at comes first.",
            code,
        )
    else:
        missing, extra = len(set(expected) - set(ids)), sorted(set(ids) - set(expected))
        hints = (
            (f"{missing} revision(s) the upgrade applies are missing. " if missing else "")
            + (f"{', '.join(extra)} is not applied by the next upgrade. " if extra else "")
            + ("A revision is named twice. " if len(ids) != len(set(ids)) else "")
            + "Look at every line between (current) and (head), Bob's included.",
            code,
        )
    return [
        Check(
            "your answer is exactly what the next `upgrade head` applies, in the order it applies them",
            ids == expected,
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
