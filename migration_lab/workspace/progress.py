"""Progress for the instructor's room view, kept in the learner's own database.

On a workshop's shared server (the url backend) "Check my work" and a failed
command write one row per chapter into `lab_progress.chapters`: how many
checks pass, the last error, when the learner last got further. The
instructor's `workshop status` reads it with the instructor's role; nothing
leaves the learner's database.

Schema `lab_progress`, not public: Alembic's autogenerate compares only the
default schema (ai-service's env.py does not set include_schemas), the kit's
wipe and backups touch public only, so the learner's migrations, checks and
`alembic check` never see it.

Recording never breaks what the learner asked for: any failure is one log
line, and the check or command goes on as if nothing happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..database.sql import quote

if TYPE_CHECKING:
    from ..database.connection import LabDatabase
    from ..lab import Lab

SCHEMA = "lab_progress"
log = logging.getLogger(__name__)

_CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.chapters (
    chapter text PRIMARY KEY,
    passed integer NOT NULL DEFAULT 0,
    total integer NOT NULL DEFAULT 0,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    progressed_at timestamptz NOT NULL DEFAULT now()
)
"""
# progressed_at moves when the learner gets further: more checks pass than before.
_RECORD_CHECK = f"""
INSERT INTO {SCHEMA}.chapters AS p (chapter, passed, total, last_error) VALUES (:chapter, :passed, :total, :error)
ON CONFLICT (chapter) DO UPDATE SET
    passed = EXCLUDED.passed, total = EXCLUDED.total, last_error = EXCLUDED.last_error, updated_at = now(),
    progressed_at = CASE WHEN EXCLUDED.passed > p.passed THEN now() ELSE p.progressed_at END
"""
_RECORD_ERROR = f"""
INSERT INTO {SCHEMA}.chapters AS p (chapter, last_error) VALUES (:chapter, :error)
ON CONFLICT (chapter) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()
"""
COLUMNS = ("chapter", "passed", "total", "last_error", "updated_at", "progressed_at")


@dataclass(frozen=True)
class ChapterProgress:
    """A learner's latest row: the chapter worked on last."""

    chapter: str
    passed: int
    total: int
    last_error: str | None
    updated_at: datetime
    progressed_at: datetime
    now: datetime  # the server's clock when read, so minutes never mix two clocks

    @property
    def minutes_since_progress(self) -> int:
        return int((self.now - self.progressed_at).total_seconds() // 60)


def _write(lab: Lab, sql: str, values: dict[str, Any]) -> None:
    """Run one recording statement in the learner's database; never raises (see the module)."""
    if lab.backend.name != "url":
        return  # only a shared server has an instructor to read it
    try:
        with lab.db.connect() as conn, conn.begin():
            conn.execute(sa.text("SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '3s'"))
            conn.execute(sa.text(_CREATE))
            conn.execute(sa.text(sql), values)
    except Exception as error:  # noqa: BLE001 - whatever it is, the learner's check must go on
        log.warning("Progress for the instructor's room view was not recorded (%s); your work is unaffected.", error)


def record_check(lab: Lab, chapter: str, passed: int, total: int, first_failing: str | None) -> None:
    """What "Check my work" found: checks passed of total, and the name of the first failing one as the last error."""
    values = {
        "chapter": chapter,
        "passed": passed,
        "total": total,
        "error": None if first_failing is None else f"✘ {first_failing}",
    }
    _write(lab, _RECORD_CHECK, values)


def record_error(lab: Lab, chapter: str, error: str) -> None:
    """A command that failed (its first line): what the learner is stuck on, if they are."""
    _write(lab, _RECORD_ERROR, {"chapter": chapter, "error": error.strip().splitlines()[0][:300]})


def latest(conn: sa.Connection) -> ChapterProgress | None:
    """The chapter this database's learner worked on last, or None before their first check."""
    if conn.scalar(sa.text(f"SELECT to_regclass('{SCHEMA}.chapters')")) is None:
        return None
    row = conn.execute(
        sa.text(f"SELECT {', '.join(COLUMNS)}, now() FROM {SCHEMA}.chapters ORDER BY updated_at DESC LIMIT 1")
    ).first()
    return None if row is None else ChapterProgress(*row)


def saved(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every row, to carry over a re-clone (which starts from a template without them)."""
    if conn.scalar(sa.text(f"SELECT to_regclass('{SCHEMA}.chapters')")) is None:
        conn.rollback()
        return []
    rows = [dict(row._mapping) for row in conn.execute(sa.text(f"SELECT {', '.join(COLUMNS)} FROM {SCHEMA}.chapters"))]
    conn.rollback()
    return rows


def restore(db: LabDatabase, rows: list[dict[str, Any]], role: str | None = None) -> None:
    """Put `saved` rows back; `role` (an instructor's SET ROLE) makes them the learner's, not the superuser's."""
    if not rows:
        return
    with db.connect() as conn, conn.begin():
        if role:
            conn.execute(sa.text(f"SET LOCAL ROLE {quote(role)}"))
        conn.execute(sa.text(_CREATE))
        conn.execute(
            sa.text(
                f"INSERT INTO {SCHEMA}.chapters ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in COLUMNS)}) ON CONFLICT (chapter) DO NOTHING"
            ),
            rows,
        )
