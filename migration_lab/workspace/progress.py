"""Progress for the instructor's room view, sent to the room's store on a workshop's shared server.

On a workshop server (the url backend) "Check my work" and a failed command
record, per learner and chapter, how many checks pass and the last error. The
record goes to `mlab_workshop`, a database the instructor's `workshop init`
made, through two functions the learner may only call:
`room.record_check(chapter, passed, total, error)` and
`room.record_error(chapter, error)`. They write the caller's own row (keyed
on the login role), so a learner writes nothing but their own progress, and
the instructor reads it without ever touching what a learner built (see
`migration_lab.workshop.room`).

Before calling, the kit checks the function is the workshop's: `SECURITY
DEFINER`, owned by `mlab_room`, a role no learner can act as. A learner who
created a database called `mlab_workshop` first, with a `room.record_check`
of their own, would otherwise run their code as every learner whose kit
calls it (and a learner may change their own password).

Recording never breaks what the learner asked for: any failure is one log
line, and the check or command goes on as if nothing happened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.sql import pinned

if TYPE_CHECKING:
    from ..lab import Lab

ROOM_DATABASE = "mlab_workshop"
ROOM_SCHEMA = "room"
ROOM_OWNER = "mlab_room"  # NOLOGIN; owns the progress table and the two functions, nothing else
# The learner's own session: names in pg_catalog only, and a record never waits long.
_PINNED = pinned("3s", "1s")
_THE_WORKSHOPS = """
SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = :schema AND p.proname = :function AND p.prosecdef
  AND p.proowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :owner)
  AND n.nspowner = p.proowner
"""
_RECORD_CHECK = (
    "SELECT room.record_check(CAST(:chapter AS text), CAST(:passed AS integer), CAST(:total AS integer), "
    "CAST(:error AS text))"
)
_RECORD_ERROR = "SELECT room.record_error(CAST(:chapter AS text), CAST(:error AS text))"
log = logging.getLogger(__name__)


def _write(lab: Lab, function: str, sql: str, values: dict[str, Any]) -> None:
    """Call one of the room's functions as the learner; never raises (see the module)."""
    if lab.backend.name != "url":
        return  # only a shared server has an instructor to read it
    engine = sa.create_engine(
        make_url(lab.backend.url()).set(database=ROOM_DATABASE),
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 3, "options": _PINNED},
    )
    try:
        with engine.begin() as conn:
            found = conn.scalar(
                sa.text(_THE_WORKSHOPS), {"schema": ROOM_SCHEMA, "function": function, "owner": ROOM_OWNER}
            )
            if found != 1:
                log.warning(
                    "%s on this server is not the workshop's (no %s.%s of %s): progress not recorded; "
                    "your work is unaffected.",
                    ROOM_DATABASE,
                    ROOM_SCHEMA,
                    function,
                    ROOM_OWNER,
                )
                return
            conn.execute(sa.text(sql), values)
    except sa.exc.OperationalError as error:
        if f'"{ROOM_DATABASE}" does not exist' in str(error.orig):
            return  # a server without a workshop (CI, your own): nobody to tell
        log.warning("Progress for the instructor's room view was not recorded (%s); your work is unaffected.", error)
    except Exception as error:  # noqa: BLE001 - whatever it is, the learner's check must go on
        log.warning("Progress for the instructor's room view was not recorded (%s); your work is unaffected.", error)
    finally:
        engine.dispose()


def record_check(lab: Lab, chapter: str, passed: int, total: int, first_failing: str | None) -> None:
    """What "Check my work" found: checks passed of total, and the name of the first failing one as the last error."""
    values = {
        "chapter": chapter,
        "passed": passed,
        "total": total,
        "error": None if first_failing is None else f"✘ {first_failing}",
    }
    _write(lab, "record_check", _RECORD_CHECK, values)


def record_error(lab: Lab, chapter: str, error: str) -> None:
    """A command that failed (its first line): what the learner is stuck on, if they are."""
    lines = error.strip().splitlines()
    _write(lab, "record_error", _RECORD_ERROR, {"chapter": chapter, "error": (lines[0] if lines else "")[:300]})
