"""Chapter 00's exercise: the database's current revision, typed as the answer."""

import re

from ..lab import Lab
from . import checks
from .checks import Check

REVISION_ID = re.compile(r"[0-9a-f]{12}")


def _answer_hints(
    answer: object, expected: str | None, concept: str, command: str, what: str, code: str
) -> checks.Hints:
    """Hints for a revision id typed as the answer: the specific mistake first."""
    if isinstance(answer, str):
        text = answer.strip()
        if text != answer or " " in text or "(" in text or "," in text:
            inner = REVISION_ID.search(text)
            return (
                f'Your answer {answer!r} is more than an id. Alembic adds notes such as "(head)", the arrow and the '
                "message to what it prints; the answer is the 12-character revision id alone.",
                f'answer = "{inner.group(0)}"' if inner else code,
            )
        if not REVISION_ID.fullmatch(text):
            return (
                f"{answer!r} is not a revision id: those are 12 characters, digits and a-f, like 0123456789ab.",
                f"{command} prints them; copy {what}.",
                code,
            )
        return (
            f"{answer!r} is a revision id, but not {what}.",
            f"Look again at what {command} prints.",
            code,
        )
    if answer is not None:
        return (f'Give the id as a string, in quotes: answer = "..." (you gave {type(answer).__name__}).', code)
    return (
        concept,
        f'{command} prints it. Give {what} as a string, the 12-character id alone: answer = "..."',
        code,
    )


def exercise(lab: Lab, answer: object) -> list[Check]:
    heads = lab.db.heads()
    expected = heads[0] if heads else None
    return [
        checks.answer_is(
            answer,
            expected,
            "your answer is the database's current revision",
            _answer_hints(
                answer,
                expected,
                "Alembic keeps the revision the database is at in its table alembic_version; "
                "`alembic current` reads it for you.",
                'The console\'s `current` button (or ch.alembic("current"))',
                "the revision the database is at",
                f'answer = "{expected}"',
            ),
        )
    ]
