"""The instructor's sessions on a workshop's server, and what they may do there.

Every session is autocommit and pinned (`templates.PINNED`: search_path to
pg_catalog, statement and lock waits bounded), so nothing a learner put in a
database or in `ALTER DATABASE/ROLE ... SET` reaches it; in a database other than `postgres`, whose owner may be
a learner, the session timeouts are off too (`_ending_pinned`). A non-superuser
instructor (CREATEROLE and CREATEDB, PostgreSQL 16+) gets SET, not INHERIT, on
the learners it creates (`createrole_self_grant = 'set'`): it may act as a
learner, for DDL on what that learner owns (`as_learner`), and never has
their privileges otherwise. SET ROLE is no sandbox for reading (learner code
may `RESET ROLE`); it is only used for statements that run no user code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from ..database.libpq import host_and_port
from ..errors import LabError
from ..workspace import templates
from ..workspace.progress import ROOM_DATABASE
from .room import LEARNER_ROLE, natural

SERVER_MINIMUM = 140000  # SQL-standard function bodies (BEGIN ATOMIC)
CREATEROLE_MINIMUM = 160000  # createrole_self_grant, and CREATEROLE that no longer makes its holder a member


def first_line(error: sa.exc.DBAPIError) -> str:
    """PostgreSQL's message (and DETAIL) on one line."""
    return " ".join(str(error.orig).split())


class Server:
    """The shared server as the instructor's role (its URL) reaches it."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self._version: int | None = None

    def _ending_pinned(self, database: str) -> str:
        """Options that keep the owner of `database` from ending the instructor's session there: a learner's
        `ALTER DATABASE <theirs> SET idle_session_timeout = '1ms'` (or transaction_timeout, PostgreSQL 17+) closed
        it between two statements of `remove`'s DROP OWNED. Only the maintenance database `postgres` needs none
        (a superuser's to alter), and is where the server's version is learnt."""
        if database == "postgres":
            return ""
        if self._version is None:
            with self.connect() as conn:
                self._version = int(conn.scalar(sa.text("SELECT current_setting('server_version_num')::int")) or 0)
        pins = ["-c idle_in_transaction_session_timeout=0"]
        if self._version >= 140000:
            pins.append("-c idle_session_timeout=0")
        if self._version >= 170000:
            pins.append("-c transaction_timeout=0")
        return " ".join(pins)

    @property
    def where(self) -> str:
        """host:port, also from libpq's `?host=...&port=...` form (a socket's folder, say)."""
        host, port = host_and_port(self.url)
        return f"{host or 'localhost'}:{port or 5432}"

    @contextmanager
    def connect(self, database: str = "postgres", role: str | None = None) -> Iterator[sa.Connection]:
        """A pinned autocommit session on `database`; with `role`, acting as that role from the start."""
        url = self.url.render_as_string(hide_password=False)
        options = " ".join(part for part in (self._ending_pinned(database), f"-c role={role}" if role else "") if part)
        engine = templates.admin_engine(url, database, options)
        try:
            try:
                conn = engine.connect()
            except sa.exc.OperationalError as error:
                if f'"{database}" does not exist' in str(error.orig) and database == ROOM_DATABASE:
                    raise LabError(
                        f"The workshop server {self.where} has no {ROOM_DATABASE} (the room's progress).",
                        "Run `python -m migration_lab workshop init` first.",
                    ) from error
                raise LabError(
                    f"Cannot reach the workshop server {self.where} ({database}): {str(error.orig).strip()}",
                    "Check the server URL (--server or LAB_WORKSHOP_URL): a superuser's, or a role's with "
                    "CREATEROLE and CREATEDB.",
                ) from error
            with conn:
                if conn.scalar(sa.text("SELECT current_setting('server_version_num')::int")) >= CREATEROLE_MINIMUM:
                    # The roles this session creates: it may SET ROLE to them (no INHERIT: not their privileges).
                    conn.execute(sa.text("SET createrole_self_grant = 'set'"))
                yield conn
        finally:
            engine.dispose()

    @staticmethod
    def superuser(conn: sa.Connection) -> bool:
        return bool(conn.scalar(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")))

    @contextmanager
    def as_learner(self, conn: sa.Connection, name: str) -> Iterator[None]:
        """Act with the learner's rights (SET ROLE) for DDL on what they own; a LabError if this role may not."""
        with templates.acting_as(conn, name) as became:
            if not became:
                raise LabError(
                    f"The instructor's role may not act as {name} on {self.where} (SET ROLE {name}).",
                    f"Run it with a superuser's URL, or with the role that added {name} (it may SET ROLE to the "
                    "learners it made).",
                )
            yield

    def check(self, conn: sa.Connection) -> None:
        """A LabError unless the server and the instructor's role can run a workshop."""
        version = int(conn.scalar(sa.text("SELECT current_setting('server_version_num')::int")))
        role = conn.execute(
            sa.text("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        ).one()
        if version < SERVER_MINIMUM:
            raise LabError(
                f"The workshop server {self.where} runs PostgreSQL {version // 10000}: workshop mode needs 14 or "
                "later (SQL-standard function bodies).",
                "Use a newer server.",
            )
        if role.rolsuper:
            return
        if not (role.rolcreaterole and role.rolcreatedb):
            raise LabError(
                f"The role in the server URL is neither a superuser nor has CREATEROLE and CREATEDB on {self.where}.",
                "Give the URL of a role with both (ALTER ROLE ... CREATEROLE CREATEDB), or a superuser's.",
            )
        if version < CREATEROLE_MINIMUM:
            raise LabError(
                f"A role with CREATEROLE and CREATEDB runs a workshop on PostgreSQL 16 or later; {self.where} "
                f"runs {version // 10000}.",
                "Give a superuser's URL, or use a newer server.",
            )

    @staticmethod
    def capacity(conn: sa.Connection) -> int:
        """Connections the server gives ordinary roles: max_connections less those reserved."""
        return int(
            conn.scalar(
                sa.text(
                    "SELECT current_setting('max_connections')::int "
                    "- current_setting('superuser_reserved_connections')::int "
                    "- coalesce(current_setting('reserved_connections', true)::int, 0)"
                )
            )
        )

    @staticmethod
    def learner_roles(conn: sa.Connection) -> list[str]:
        """The workshop's learners (roles marked by the kit: a learner cannot comment on a role), learner9 first."""
        names = conn.scalars(
            sa.text("SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = :mark"),
            {"mark": LEARNER_ROLE},
        ).all()
        return sorted(names, key=natural)

    @staticmethod
    def is_learner(conn: sa.Connection) -> Callable[[str], bool]:
        """Whether a role is one of the workshop's learners: the kit moves only their databases out of the way."""

        def is_learner(role: str) -> bool:
            mark = conn.scalar(
                sa.text("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = :r"), {"r": role}
            )
            return bool(mark == LEARNER_ROLE)

        return is_learner

    def role_mark(self, conn: sa.Connection, name: str) -> str | None:
        """None when there is no such role; the learner's mark when it is a learner's; LabError otherwise."""
        row = conn.execute(
            sa.text("SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = :r"),
            {"r": name},
        ).first()
        if row is None:
            return None
        if row[0] != LEARNER_ROLE:
            raise LabError(
                f"The role {name} on {self.where} is not a workshop learner's.",
                "Pick another name: the workshop never takes over a role it did not make.",
            )
        return str(row[0])
