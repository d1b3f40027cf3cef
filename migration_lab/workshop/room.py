"""The room's progress store: what every learner checked, kept where no learner can shape it.

`mlab_workshop` is a database owned by the NOLOGIN role `mlab_room`, made by
`workshop init` from `template0` and closed to everyone but `mlab_learners`
(every learner is a member), who may connect and call two functions and do
nothing else there: no table, schema or temporary object of theirs, no lock
on the progress table. The functions are `SECURITY DEFINER` with SQL-standard
bodies (parsed once, at `init`; nothing is looked up by name when a learner
calls them) and write the row of the caller's login role (`session_user`, which
`SET ROLE` does not change), after replacing control characters.

So the instructor's `status` is one read of the catalogs and `room.progress`,
and runs no code a learner wrote: before, progress lived in each learner's
own database, where a view over a function of theirs ran with the
instructor's rights. A learner cannot lock, slow or retype what `status`
reads. `LearnerStatus` is one learner's line, with every chapter they
recorded (`ChapterProgress`), for the room view and for exports.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ..course.registry import CHAPTERS
from ..database.url import WORKSHOP_LEARNER
from ..errors import LabError
from ..workspace.progress import ROOM_DATABASE, ROOM_OWNER, ROOM_SCHEMA

LEARNERS_GROUP = "mlab_learners"  # NOLOGIN; every learner is a member: CONNECT to the room and EXECUTE
LEARNER_ROLE = WORKSHOP_LEARNER  # the COMMENT on a learner's role (a learner cannot set it)
DATABASE_PREFIX = "lab_"
MANY_DATABASES = 5  # a learner's own database and a rehearsal's copy or two; more is worth a look (disk)
# Control characters (C0 with ESC, CR and LF, DEL, C1 with CSI), line and paragraph separators, invisible and
# bidirectional formatting marks: stored as '?' by the store's functions (this class), shown escaped by
# `printable` (every character of Unicode's categories Cc, Cf, Zl, Zp, Cs, Co, which holds all of these).
_CONTROL_CLASS = (
    r"[\x01-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    r"\U000e0000-\U000e007f]"
)
_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co"}

# Only the course's chapters are recorded, never more checks passed than the total sent with them: what a learner
# sends with psql is theirs to choose (progress is self-reported: a total of their own too), but a chapter 99 or
# 999 passed of 3 never reaches the room view or the gradebook. Anything
# else becomes a NULL the NOT NULL columns refuse: the call fails, as a value out of the CHECKs' bounds does.
_COURSE_CHAPTER = (
    "CASE WHEN chapter = ANY (ARRAY[" + ", ".join(f"'{number}'" for number in CHAPTERS) + "]) THEN chapter END"
)

# Run in mlab_workshop as mlab_room (the connection's `-c role=mlab_room`), at every `init`: idempotent.
STORE = f"""
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS {ROOM_SCHEMA};
REVOKE ALL ON SCHEMA {ROOM_SCHEMA} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {ROOM_SCHEMA}.progress (
    learner name NOT NULL,
    chapter text NOT NULL CHECK (chapter ~ '^[0-9]{{2}}$'),
    passed integer NOT NULL DEFAULT 0 CHECK (passed BETWEEN 0 AND 1000),
    total integer NOT NULL DEFAULT 0 CHECK (total BETWEEN 0 AND 1000),
    last_error text CHECK (length(last_error) <= 300),
    started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    progressed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    first_passed_at timestamptz,
    PRIMARY KEY (learner, chapter)
);
REVOKE ALL ON {ROOM_SCHEMA}.progress FROM PUBLIC;
CREATE OR REPLACE FUNCTION {ROOM_SCHEMA}.record_check(chapter text, passed integer, total integer, error text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO {ROOM_SCHEMA}.progress AS p (learner, chapter, passed, total, last_error, first_passed_at)
    VALUES (session_user, {_COURSE_CHAPTER}, CASE WHEN passed <= total THEN passed END, total,
            left(regexp_replace(error, '{_CONTROL_CLASS}', '?', 'g'), 300),
            CASE WHEN total > 0 AND passed >= total THEN now() END)
    ON CONFLICT (learner, chapter) DO UPDATE SET
        passed = excluded.passed, total = excluded.total, last_error = excluded.last_error, updated_at = now(),
        progressed_at = CASE WHEN excluded.passed > p.passed THEN now() ELSE p.progressed_at END,
        first_passed_at = coalesce(p.first_passed_at, excluded.first_passed_at);
END;
CREATE OR REPLACE FUNCTION {ROOM_SCHEMA}.record_error(chapter text, error text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO {ROOM_SCHEMA}.progress AS p (learner, chapter, last_error)
    VALUES (session_user, {_COURSE_CHAPTER}, left(regexp_replace(error, '{_CONTROL_CLASS}', '?', 'g'), 300))
    ON CONFLICT (learner, chapter) DO UPDATE SET last_error = excluded.last_error, updated_at = now();
END;
REVOKE ALL ON FUNCTION {ROOM_SCHEMA}.record_check(text, integer, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION {ROOM_SCHEMA}.record_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {ROOM_SCHEMA}.record_check(text, integer, integer, text) TO {LEARNERS_GROUP};
GRANT EXECUTE ON FUNCTION {ROOM_SCHEMA}.record_error(text, text) TO {LEARNERS_GROUP};
GRANT USAGE ON SCHEMA {ROOM_SCHEMA} TO {LEARNERS_GROUP};
"""

_LEARNERS = f"""
SELECT r.rolname AS name, pg_get_userbyid(d.datdba) AS database_owner,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.usename = r.rolname) AS sessions,
       (SELECT count(*) FROM pg_database o WHERE o.datdba = r.oid) AS databases,
       now() AS now
FROM pg_roles r LEFT JOIN pg_database d ON d.datname = '{DATABASE_PREFIX}' || r.rolname
WHERE shobj_description(r.oid, 'pg_authid') = :mark
"""
_OURS = """
SELECT d.datdba = r.oid AND c.relkind = 'r' AND c.relowner = r.oid AND n.nspowner = r.oid
FROM pg_roles r, pg_database d, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rolname = :owner AND d.datname = current_database() AND n.nspname = :schema AND c.relname = 'progress'
"""
_PROGRESS = f"""
SELECT learner, chapter, passed, total, last_error, started_at, updated_at, progressed_at, first_passed_at
FROM {ROOM_SCHEMA}.progress ORDER BY learner, chapter
"""


@dataclass(frozen=True)
class ChapterProgress:
    """One learner's record for one chapter, as "Check my work" and failed commands left it."""

    chapter: str  # "01" ... "13"
    passed: int  # checks passing at the last check
    total: int  # checks in the chapter's exercise (0: only a failed command recorded)
    last_error: str | None  # the first failing check (✘ name) or a failed command's first line, control chars as ?
    started_at: datetime  # the first record in this chapter
    updated_at: datetime  # the last record
    progressed_at: datetime  # the last time more checks passed than before
    first_passed_at: datetime | None  # the first time every check passed; None: not yet


@dataclass(frozen=True)
class LearnerStatus:
    """One learner in the room: every chapter they recorded, and what the server says about them."""

    name: str
    chapters: tuple[ChapterProgress, ...]  # by chapter number; empty before their first check
    sessions: int  # connections the learner holds now (0: not working right now)
    databases: int  # databases the learner owns (their own, rehearsal copies, any they made)
    problem: str | None  # their database missing or not theirs, or too many databases; None: fine
    now: datetime  # the server's clock when read, so durations never mix two clocks

    @property
    def latest(self) -> ChapterProgress | None:
        """The chapter recorded last: the one they work on."""
        return max(self.chapters, key=lambda c: c.updated_at, default=None)

    @property
    def chapter(self) -> str | None:
        return None if self.latest is None else self.latest.chapter

    @property
    def passed(self) -> int:
        return 0 if self.latest is None else self.latest.passed

    @property
    def total(self) -> int:
        return 0 if self.latest is None else self.latest.total

    @property
    def last_error(self) -> str | None:
        return None if self.latest is None else self.latest.last_error

    @property
    def minutes_since_progress(self) -> int | None:
        if self.latest is None:
            return None
        return int((self.now - self.latest.progressed_at).total_seconds() // 60)

    @property
    def stuck(self) -> bool:
        """An error, and no check gained for 10 minutes or more: worth a visit."""
        return bool(self.last_error) and (self.minutes_since_progress or 0) >= 10


def printable(text: str) -> str:
    """`text` with control characters and bidirectional overrides as visible escapes (\\x1b, \\u202e): what a
    learner wrote (an error, the name of a database they made) can neither drive a terminal nor forge a line."""
    return "".join(_escaped(c) if unprintable(c) else c for c in text)


def unprintable(character: str) -> bool:
    """A character a terminal, a viewer or a spreadsheet may act on rather than show (see _UNPRINTABLE)."""
    return unicodedata.category(character) in _UNPRINTABLE


def _escaped(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept as a surrogate (database.names)
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def database_name(name: str) -> str:
    return f"{DATABASE_PREFIX}{name}"


def natural(name: str) -> tuple[object, ...]:
    """Sort key: learner9 before learner10 (digits compare as numbers)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _problem(name: str, owner: str | None, databases: int) -> str | None:
    database = database_name(name)
    if owner is None:
        return f"database {database} is missing"
    if owner != name:
        return f"{database} belongs to {owner}"
    if databases > MANY_DATABASES:
        return f"owns {databases} databases"
    return None


def ours(conn: sa.Connection) -> bool:
    """Whether `conn`'s database is the workshop's store: the database, schema room and room.progress all
    `mlab_room`'s. Anyone else's (a learner made `mlab_workshop` while the store was gone) may hold their code in
    a view, a trigger, a rule or a policy: never read, never written."""
    return bool(conn.scalar(sa.text(_OURS), {"owner": ROOM_OWNER, "schema": ROOM_SCHEMA}))


def read(conn: sa.Connection, where: str) -> list[LearnerStatus]:
    """Every learner, from `conn` on mlab_workshop (a pinned instructor session): catalogs and the store only.

    Only a store `mlab_room` owns (the database, schema room, the table
    room.progress) is read: a learner who made a database of that name first
    could have put a view over their own code there.
    """
    if not ours(conn):
        raise LabError(
            f"{ROOM_DATABASE} on {where} is not the workshop's (not {ROOM_OWNER}'s): it was not read.",
            "Run `python -m migration_lab workshop init`: it moves it aside and makes the real one.",
        )
    chapters: dict[str, list[ChapterProgress]] = {}
    for learner, *row in conn.execute(sa.text(_PROGRESS)).all():
        chapters.setdefault(learner, []).append(ChapterProgress(*row))
    found = [
        LearnerStatus(
            row.name,
            tuple(chapters.get(row.name, ())),
            int(row.sessions),
            int(row.databases),
            _problem(row.name, row.database_owner, int(row.databases)),
            row.now,
        )
        for row in conn.execute(sa.text(_LEARNERS), {"mark": LEARNER_ROLE}).all()
    ]
    return sorted(found, key=lambda s: natural(s.name))
