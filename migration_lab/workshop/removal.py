"""`workshop remove` and `drop`: everything a learner (or the workshop) owns, whatever learners made of it.

A learner may own templates of their own, databases closed to everyone,
large objects in template1 or in another learner's database, privileges
another learner granted them. So removing never stops at the first error: it
closes their sessions, drops every database they own (as them, for a
non-superuser instructor), runs `DROP OWNED BY` in every database
`pg_shdepend` names (no user code runs in it), deletes their progress, drops
the role, and says what it did; what it could not do is on a line with LEFT,
and why. It can run again: a learner already gone is "removed already".
"""

from __future__ import annotations

from contextlib import nullcontext, suppress

import sqlalchemy as sa

from ..database.names import utf8
from ..database.sql import create_private_database, quote, run_quoted
from ..errors import LabError
from ..workspace import templates
from ..workspace.progress import ROOM_DATABASE, ROOM_OWNER, ROOM_SCHEMA
from ..workspace.templates import TEMPLATE_OWNER
from . import room
from .room import LEARNERS_GROUP
from .server import Server, first_line
from .setup import drop_database

LEFT = "LEFT"  # on a line of what remove or drop did: something that could not be removed, and why


def learner(server: Server, name: str) -> list[str]:
    """Remove the learner `name` (a role the kit marked: anything else is refused): the lines of what it did."""
    done: list[str] = []
    left: list[str] = []
    with server.connect() as conn:
        oid = conn.scalar(sa.text("SELECT oid FROM pg_roles WHERE rolname = :r"), {"r": name})
        if oid is None:
            return [f"{name}: no such role (removed already)"]
        server.role_mark(conn, name)  # never a role the workshop did not make
        direct = server.superuser(conn)
        closed, stopped = 0, None
        for _ in range(3):  # their sessions first: one may hold their role's row (an ALTER ROLE left uncommitted)
            closed += _close_sessions(server, conn, name, direct)
            try:
                run_quoted(conn, f"ALTER ROLE {quote(name)} NOLOGIN")  # no new session while we drop
                stopped = None
                break
            except sa.exc.DBAPIError as error:
                conn.rollback()
                stopped = first_line(error)
        if stopped is not None:
            return [
                f"{name}: closed {closed} session(s)",
                f"{name}: {LEFT} the role: its logins could not be stopped: {stopped}",
            ]
        closed += _close_sessions(server, conn, name, direct)
        done.append(f"closed {closed} session(s)")
        with nullcontext() if direct else server.as_learner(conn, name):
            owned = conn.scalars(
                sa.text("SELECT datname FROM pg_database WHERE datdba = :o ORDER BY datname"), {"o": oid}
            ).all()
            _drop_each(conn, list(filter(utf8, owned)), done, left)
        odd = [database for database in owned if not utf8(database)]
        if odd:
            _drop_named_in_bytes(server, odd, name, direct, done, left)
        for database in holding(conn, oid):
            try:
                drop_owned(server, database, name, direct)
                done.append(f"dropped what it owned or was granted in {database}")
            except LabError as error:
                left.append(f"objects or privileges in {database}: {error.what}")
        done.append(_forget_progress(server, name))
        try:
            run_quoted(conn, f"DROP ROLE {quote(name)}")
            done.append("dropped the role")
        except sa.exc.DBAPIError as error:
            left.append(f"the role, kept without login: {first_line(error)}")
    return [f"{name}: {'; '.join(done)}"] + [f"{name}: {LEFT} {what}" for what in left]


def _drop_each(conn: sa.Connection, names: list[str], done: list[str], left: list[str]) -> None:
    """Drop each database, saying what was dropped in `done` and what was left, and why, in `left`."""
    for database in names:
        try:
            drop_database(conn, database)
            done.append(f"dropped {database}")
        except sa.exc.DBAPIError as error:
            left.append(f"{database}: {first_line(error)}")


def _drop_named_in_bytes(
    server: Server, names: list[str], role: str, direct: bool, done: list[str], left: list[str]
) -> None:
    """Drop the role's databases whose names are not UTF-8 (`_drop_each`).

    A UTF-8 database (`postgres`) refuses such a name in any statement; only a session in a SQL_ASCII database
    takes it (the server checks no identifier there). So a throw-away SQL_ASCII database of the instructor's,
    closed to everyone else, dropped again at once.
    """
    scratch = templates.random_name("mlab_bytes_")
    with server.connect() as conn:
        ascii_only = "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
        create_private_database(conn, scratch, "template0", options=ascii_only)
        try:
            with server.connect(scratch) as there, nullcontext() if direct else server.as_learner(there, role):
                _drop_each(there, names, done, left)
        finally:
            run_quoted(conn, f"DROP DATABASE IF EXISTS {quote(scratch)} WITH (FORCE)")


def _close_sessions(server: Server, conn: sa.Connection, name: str, direct: bool) -> int:
    """End the role's sessions (waiting up to 5 s for each): how many there were."""
    with nullcontext() if direct else server.as_learner(conn, name):
        closed = conn.scalar(
            sa.text("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE usename = :r"),
            {"r": name},
        )
    conn.commit()
    return int(closed or 0)


def holding(conn: sa.Connection, oid: int) -> list[str]:
    """Databases where the role still owns something or holds a privilege (pg_shdepend says which)."""
    return list(
        conn.scalars(
            sa.text(
                "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid "
                "WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = :o ORDER BY 1"
            ),
            {"o": oid},
        )
    )


def drop_owned(server: Server, database: str, role: str, direct: bool) -> None:
    """`DROP OWNED BY role` in `database` (large objects, grants, objects): no user code runs in it.

    `direct`: as the instructor (a superuser; or for the kit's own roles, whose rights it has), else as `role`.
    """
    if not utf8(database):  # libpq takes it, psycopg2 builds its connection string as text and cannot
        raise LabError(
            "its name is not UTF-8 (its owner made it from a SQL_ASCII database), so the kit cannot connect to it: "
            "removing its owner drops it, then run this again",
            "",
        )
    try:
        with server.connect(database) as conn, nullcontext() if direct else server.as_learner(conn, role):
            run_quoted(conn, f"DROP OWNED BY {quote(role)}")
    except LabError as error:  # cannot connect: not accepting connections, no CONNECT
        raise LabError(error.what.split("FATAL:")[-1].strip(), error.next_step) from error
    except sa.exc.DBAPIError as error:
        raise LabError(first_line(error), "") from error


def _forget_progress(server: Server, name: str) -> str:
    try:
        with server.connect(ROOM_DATABASE) as conn:
            if not room.ours(conn):  # a learner's database of that name: a DELETE there would run their triggers
                return f"no progress store to clean ({ROOM_DATABASE} is not the workshop's: left alone)"
            count = conn.execute(
                sa.text(f"DELETE FROM {ROOM_SCHEMA}.progress WHERE learner = :r"), {"r": name}
            ).rowcount
        return f"deleted {count} progress row(s)"
    except (LabError, sa.exc.DBAPIError):
        return "no progress store to clean"


def kit(server: Server) -> list[str]:
    """The templates, the store and the kit's roles, once the learners are gone: the lines of what it did."""
    said: list[str] = []
    with server.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database "
                "WHERE datdba IN (SELECT oid FROM pg_roles WHERE rolname IN (:templates, :room)) "
                "OR starts_with(datname, :tpl) OR datname = :store ORDER BY datname"
            ),
            {"templates": TEMPLATE_OWNER, "room": ROOM_OWNER, "tpl": templates.TEMPLATE_PREFIX, "store": ROOM_DATABASE},
        ).all()
        for database, owner in found:
            if owner not in (TEMPLATE_OWNER, ROOM_OWNER):
                said.append(f"{database}: not the workshop's (owner {owner}): left alone")
                continue
            try:
                drop_database(conn, database)
                said.append(f"dropped {database}")
            except sa.exc.DBAPIError as error:
                said.append(f"{LEFT} {database}: {first_line(error)}")
        for role in (LEARNERS_GROUP, ROOM_OWNER, TEMPLATE_OWNER):
            oid = conn.scalar(sa.text("SELECT oid FROM pg_roles WHERE rolname = :r"), {"r": role})
            if oid is None:
                continue
            for database in holding(conn, oid):
                with suppress(LabError):  # DROP ROLE below says what still holds it
                    drop_owned(server, database, role, direct=True)  # the instructor has these roles' rights
            try:
                run_quoted(conn, f"DROP ROLE {quote(role)}")
                said.append(f"dropped the role {role}")
            except sa.exc.DBAPIError as error:
                said.append(f"{LEFT} the role {role}: {first_line(error)}")
    return said
