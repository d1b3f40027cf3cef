"""Chapter 00's exercise: the database's current revision, typed as the answer.

Graded by the revision the answer names, not by how it is written: the id alone, the line `alembic current`
prints ("8b7e5d2c6a41 (head)"), or a prefix alembic itself accepts all name the same revision.
"""

from ..lab import Lab
from . import checks
from .checks import Check

CONCEPT = (
    "Alembic keeps the revision the database is at in its table alembic_version; `alembic current` reads it for you."
)
COMMAND = 'The console\'s `current` button (or ch.alembic("current"))'


def _answer_hints(answer: object, named: list[str] | None, expected: str | None, known: set[str]) -> checks.Hints:
    """Hints for the answer given: the specific mistake first, the code last."""
    code = f'answer = "{expected}"'
    if answer is None:
        return (
            CONCEPT,
            f'{COMMAND} prints it. Give the revision the database is at as a string: answer = "..."',
            code,
        )
    if named is None:
        return (f'Give the id as a string, in quotes: answer = "..." (you gave {type(answer).__name__}).', code)
    unknown = [name for name in named if name not in known]
    if unknown:
        return (
            f"{unknown[0]} looks like a revision id, but no revision of this project has it: `alembic history` lists "
            "the ones there are.",
            f"{COMMAND} prints the one the database is at; copy it.",
            code,
        )
    if not named:
        return (
            f"{answer!r} names no revision: a revision id is 12 characters, digits and a-f, like 0123456789ab "
            '("head" and "current" are words alembic understands, not the revision itself).',
            f"{COMMAND} prints the id; copy it.",
            code,
        )
    if len(set(named)) > 1:
        return (
            f"Your answer names {len(set(named))} revisions ({', '.join(dict.fromkeys(named))}); the database is at "
            "one. A line of `history` reads `parent -> revision`: `current` prints the database's alone.",
            code,
        )
    return (
        f"{named[0]} is a revision, but not the one the database is at.",
        f"Look again at what {COMMAND} prints.",
        code,
    )


def exercise(lab: Lab, answer: object) -> list[Check]:
    heads = lab.db.heads()
    expected = heads[0] if heads else None
    named = checks.revisions_named(lab, answer)
    known = {s.revision for s in lab.runner.script().walk_revisions()}
    return [
        Check(
            "your answer is the database's current revision",
            expected is not None and named is not None and set(named) == {expected},
            _answer_hints(answer, named, expected, known),
        )
    ]
