"""The room's progress taken away: one row per learner and chapter, as CSV or JSON for a spreadsheet or an LMS.

`workshop status --format csv|json` and the room view's "Save" buttons.
The rows come from `Workshop.status()`, the instructor's one read of the
room's store (`room`), never from a learner's own database. Only what the
store records is exported: checks passed and total, when every check first
passed, the last error, the first and last record of each chapter, how often
Check my work ran and how many commands failed. Nothing is guessed: a value
the store does not know is an empty cell (JSON null).

Learners write the text that ends up here (the last error is a message they
can shape, a learner with psql can call the store's functions directly).
So in CSV every text cell loses its control characters and bidirectional
overrides, and one a spreadsheet would run as a formula (starting with
`=`, `+`, `-`, `@`) gets a leading `'`. JSON keeps the text as recorded
(an LMS wants the real text), with every control character written as a
`\\u` escape, so the document itself drives no terminal it is printed in.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..course.registry import CHAPTERS
from ..errors import LabError
from ..project import write_private
from .room import LearnerStatus, unprintable

FORMAT = "migration-lab-progress/1"
FORMATS = ("csv", "json")
# What a spreadsheet reads as the start of a formula (and their full-width forms, which some convert).
FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Where a spreadsheet may start a cell, spaces before a formula aside: the text's start, and after a `;`, which
# German, French or Spanish Excel (and LibreOffice's import, by default) split a .csv on: a text without comma or
# quote is written unquoted there.
_FORMULA_AT = re.compile(r"(^\s*|;\s*)(?=[" + re.escape("".join(FORMULA_STARTS)) + "])")

# (name, type, meaning), in order. Types: text, int, bool, time (ISO 8601 UTC, seconds, Z), minutes (one decimal).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("learner", "text", "the learner's workshop name (their PostgreSQL role), e.g. learner07"),
    ("chapter", "text", "two digits, e.g. 01; empty for a learner with nothing recorded yet (one row)"),
    ("chapter_title", "text", "the chapter's title"),
    ("checks_passed", "int", "checks passing at the latest Check my work; empty if it never ran in the chapter"),
    ("checks_total", "int", "the chapter's checks at that time; empty if Check my work never ran"),
    ("completed", "bool", "every check passed at once, at least once"),
    ("first_passed_at", "time", "when every check first passed; empty if never"),
    ("last_error", "text", "the latest failing check (✘ name) or failed command, first line, at most 300 characters"),
    ("first_recorded_at", "time", "the chapter's first record (a Check my work or a failed command)"),
    ("last_recorded_at", "time", "the chapter's latest record"),
    ("elapsed_minutes", "minutes", "first_recorded_at to first_passed_at, or to last_recorded_at if not completed"),
)
NAMES = tuple(name for name, _, _ in COLUMNS)
_TEXT = frozenset(name for name, kind, _ in COLUMNS if kind == "text")


def rows(learners: Sequence[LearnerStatus]) -> list[dict[str, Any]]:
    """One dict per learner and chapter recorded (by learner as given, then chapter); values typed, None unknown."""
    found: list[dict[str, Any]] = []
    for learner in learners:
        if not learner.chapters:
            found.append({**dict.fromkeys(NAMES), "learner": learner.name, "completed": False})
        for chapter in sorted(learner.chapters, key=lambda c: c.chapter):
            checked = chapter.total > 0  # 0: only a failed command was recorded
            spec = CHAPTERS.get(chapter.chapter)
            end = chapter.first_passed_at or chapter.updated_at
            found.append(
                {
                    "learner": learner.name,
                    "chapter": chapter.chapter,
                    "chapter_title": spec.title if spec else None,
                    "checks_passed": chapter.passed if checked else None,
                    "checks_total": chapter.total if checked else None,
                    "completed": chapter.first_passed_at is not None,
                    "first_passed_at": chapter.first_passed_at,
                    "last_error": chapter.last_error,
                    "first_recorded_at": chapter.started_at,
                    "last_recorded_at": chapter.updated_at,
                    "elapsed_minutes": round((end - chapter.started_at).total_seconds() / 60, 1),
                }
            )
    return found


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def inert(text: str) -> str:
    """A text cell a spreadsheet shows and never runs: no control characters, no formula at its start nor after a
    `;` (a `'` before each)."""
    text = "".join(c for c in text if not unprintable(c))
    return _FORMULA_AT.sub(r"\1'", text)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _time(value)
    return inert(value) if name in _TEXT else str(value)


def to_csv(found: Sequence[dict[str, Any]]) -> str:
    """RFC 4180: a header row, commas, CRLF, double quotes where needed; no BOM."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(NAMES)
    writer.writerows([_cell(name, row[name]) for name in NAMES] for row in found)
    return out.getvalue()


def to_json(found: Sequence[dict[str, Any]], exported_at: datetime) -> str:
    """The document: its format, when, the kit's version, the columns with their meanings, the rows."""
    document = {
        "format": FORMAT,
        "exported_at": _time(exported_at),
        "kit_version": version("migration-lab"),
        "columns": [{"name": name, "type": kind, "meaning": meaning} for name, kind, meaning in COLUMNS],
        "rows": [{name: _time(v) if isinstance(v := row[name], datetime) else v for name in NAMES} for row in found],
    }
    text = json.dumps(document, ensure_ascii=False, indent=1)
    # What json.dumps leaves raw but a terminal acts on (DEL, C1, bidi marks, line separators; it escapes the C0
    # controls itself, and the newlines left are the layout's): its own \\u escape, the same text once parsed.
    return "".join(json.dumps(c)[1:-1] if ord(c) >= 0x7F and unprintable(c) else c for c in text) + "\n"


def render(learners: Sequence[LearnerStatus], form: str) -> str:
    """The room's progress as `form` ("csv" or "json")."""
    if form not in FORMATS:
        raise LabError(f"There is no export format {form!r}.", f"Formats: {', '.join(FORMATS)}.")
    found = rows(learners)
    return to_csv(found) if form == "csv" else to_json(found, datetime.now(UTC))


def save(text: str, path: Path) -> Path:
    """Write an export to `path`, readable by you only (0600), atomically: learners' names and errors stay yours."""
    path = path.absolute()
    if not path.parent.is_dir():
        raise LabError(f"There is no folder {path.parent} for {path.name}.", "Name a file in a folder that exists.")
    try:
        write_private(path, text)
    except OSError as error:
        raise LabError(f"Could not write {path}: {error.strerror}.", "Name a file you may write.") from error
    return path
