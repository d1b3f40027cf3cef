"""The chapters: each one's number, title, starting checkpoint and module (its exercise's checks and start).

One module per chapter (`chNN_*.py`) holds what only that chapter needs; this
registry ties them to their checkpoints, and `reset` takes the lab to a
chapter's start.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LabError
from ..lab import Lab
from ..workspace import checkpoints
from ..workspace.checkpoints import BASELINE_CHECKPOINT, WITH_PHONE_NUMBER, Checkpoint, ResetReport
from . import (
    ch00_start_here,
    ch01_standard_workflow,
    ch02_autogenerate,
    ch03_rollback,
    ch04_where_am_i,
    ch05_data_migrations,
    ch06_teams,
    ch07_enums,
    ch08_troubleshooting,
    ch09_nuke,
    ch10_review,
    ch11_locks,
    ch12_expand,
    ch13_deploy,
    ch14_constraints,
    ch15_drops_and_renames,
)
from .ch14_busy_jobs import JOBS
from .checks import Check


@dataclass(frozen=True)
class ChapterSpec:
    number: str
    title: str
    checkpoint: Checkpoint
    exercise: Callable[[Lab, object], list[Check]]
    # Puts the lab where the exercise starts (a teammate's branch, a broken env.py); says what it did.
    exercise_setup: Callable[[Lab], str] | None = None
    # The exercise grades a value the learner puts in `answer` (a notebook variable), not only the lab's state.
    answer: bool = False


CHAPTERS: dict[str, ChapterSpec] = {
    spec.number: spec
    for spec in (
        ChapterSpec("00", "Start here", BASELINE_CHECKPOINT, ch00_start_here.exercise, answer=True),
        ChapterSpec("01", "The standard workflow", BASELINE_CHECKPOINT, ch01_standard_workflow.exercise),
        ChapterSpec("02", "Never trust autogenerate", WITH_PHONE_NUMBER, ch02_autogenerate.exercise),
        ChapterSpec("03", "Rollback", WITH_PHONE_NUMBER, ch03_rollback.exercise, ch03_rollback.exercise_start),
        ChapterSpec(
            "04", "Where am I", WITH_PHONE_NUMBER, ch04_where_am_i.exercise, ch04_where_am_i.exercise_start, answer=True
        ),
        ChapterSpec(
            "05",
            "Data migrations",
            WITH_PHONE_NUMBER,
            ch05_data_migrations.exercise,
            ch05_data_migrations.exercise_start,
        ),
        ChapterSpec("06", "Teams and two heads", WITH_PHONE_NUMBER, ch06_teams.exercise, ch06_teams.exercise_start),
        ChapterSpec("07", "Enums and special types", WITH_PHONE_NUMBER, ch07_enums.exercise),
        ChapterSpec(
            "08",
            "Troubleshooting",
            WITH_PHONE_NUMBER,
            ch08_troubleshooting.exercise,
            ch08_troubleshooting.exercise_start,
            answer=True,
        ),
        ChapterSpec("09", "The nuke option", WITH_PHONE_NUMBER, ch09_nuke.exercise),
        ChapterSpec("10", "Review before you apply", WITH_PHONE_NUMBER, ch10_review.exercise),
        ChapterSpec("11", "Locks and downtime", WITH_PHONE_NUMBER, ch11_locks.exercise, ch11_locks.exercise_start),
        ChapterSpec("12", "Expand and contract", WITH_PHONE_NUMBER, ch12_expand.exercise, ch12_expand.exercise_start),
        ChapterSpec(
            "13", "Migrations in production", WITH_PHONE_NUMBER, ch13_deploy.exercise, ch13_deploy.exercise_start
        ),
        ChapterSpec(
            "14",
            "Constraints and types without downtime",
            JOBS,
            ch14_constraints.exercise,
            ch14_constraints.exercise_start,
        ),
        ChapterSpec(
            "15",
            "Retries, drops and renames",
            JOBS,
            ch15_drops_and_renames.exercise,
            ch15_drops_and_renames.exercise_start,
        ),
    )
}


def spec(number: str) -> ChapterSpec:
    """A chapter by number ("1", "01" and "01-standard-workflow" all mean chapter 01)."""
    match = re.fullmatch(r"(\d{1,2})(-[\w-]+)?(\.ipynb)?", str(number).strip())
    key = match.group(1).zfill(2) if match else None
    if key is None or key not in CHAPTERS:
        raise LabError(f"There is no chapter {number!r}.", f"Chapters: {', '.join(CHAPTERS)}.")
    return CHAPTERS[key]


def reset(number: str, lab: Lab | None = None) -> ResetReport:
    """Restore ai-service/ files and the database to the start of chapter `number`: the one reset."""
    return checkpoints.reset(lab or Lab(), spec(number).checkpoint)
