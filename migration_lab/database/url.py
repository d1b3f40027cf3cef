"""The url backend: any PostgreSQL named by LAB_DATABASE_URL (a workshop's shared server, CI, your own)."""

import functools
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..errors import LabError
from .backend import Backend, Progress, quiet
from .libpq import host_and_port
from .sql import pinned, said

# ai-service's own helper (its pristine copy, which the kit ships): one function reads a URL for the
# service's env.py and main.py and for the kit, and the service never imports the kit.
SERVICE_HELPER = Path(__file__).parent.parent / "checkpoints" / "baseline" / "database_url.py"
WORKSHOP_LEARNER = "migration-lab workshop learner"  # the COMMENT on a workshop learner's role (only the kit sets it)
# Names resolve in pg_catalog: the URL's database may be someone else's, with functions of theirs in public and
# `ALTER DATABASE ... SET search_path` to reach them (SQLAlchemy's first `current_schema()` included).
_PINNED = pinned("5s")
_ANSWER = """
SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = :d) AS missing,
       (SELECT pg_catalog.pg_get_userbyid(d.datdba) FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
        WHERE d.datname = :d AND r.rolname = session_user AND d.datdba <> r.oid
          AND pg_catalog.shobj_description(r.oid, 'pg_authid') = :mark) AS taken_by
"""


@functools.cache
def _service_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_migration_lab_database_url", SERVICE_HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalise(url: str, name: str = "LAB_DATABASE_URL") -> str:
    """Any PostgreSQL URL a host prints (postgresql://, postgres://, +psycopg2, +psycopg), on psycopg2.

    SQLAlchemy 2.1 reads a plain postgresql:// as psycopg 3, which the course does
    not install. What cannot work (another database, another driver, not a URL)
    is one LabError that never shows the password.
    """
    helper = _service_helper()
    try:
        return str(helper.normalise(url, name))
    except helper.BadDatabaseURL as error:
        raise LabError(str(error), f"Correct {name}, or unset it: the lab then uses its own database.") from None


class UrlBackend(Backend):
    """Any PostgreSQL named by a URL: a workshop server, a CI service, your own."""

    name = "url"

    def __init__(self, url: str, name: str = "LAB_DATABASE_URL") -> None:
        self._url = normalise(url, name)
        self._refused: str | None = None  # what the driver said the last time the server did not let us in

    def url(self) -> str:
        return self._url

    def where(self) -> str:
        """Where the server is, in words: a URL in a cell's text is a link in JupyterLab, whose colour alone
        sets it apart from the text around it (1.9:1, WCAG asks 3:1); nor can it show a password."""
        url = make_url(self._url)
        host, port = host_and_port(url)
        user = f", user {url.username}" if url.username else ""
        at = f"{host or 'the local socket'}{f':{port}' if port else ''}"
        database = url.database or "of the user's name (none given)"
        return f"the server at {at}, database {database}{user} (LAB_DATABASE_URL)"

    def _answers(self, database: str | None = None) -> sa.Row | None:
        """A row from the server when it lets us in (to `database` instead of the URL's, if given), else None."""
        url = make_url(self._url) if database is None else make_url(self._url).set(database=database)
        engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3, "options": _PINNED}
        )
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(_ANSWER), {"d": self._database(), "mark": WORKSHOP_LEARNER}).one()
        except sa.exc.OperationalError as error:
            if database is None:  # the URL's own database: what the learner has to fix (not the maintenance one)
                self._refused = said(error)  # a refused password, no socket, a port nothing listens on
            return None
        finally:
            engine.dispose()

    def _database(self) -> str | None:
        """The database the URL logs into: its own, else libpq's default, PGDATABASE or the user's name (the URL's
        or PGUSER). A URL without one (`postgresql://user:pw@host:5432`) was said as "database None does not exist",
        and so even when that database was there and refused the login for another reason. None: libpq takes the
        name of the system's user, which the kit does not guess."""
        url = make_url(self._url)
        return url.database or os.environ.get("PGDATABASE") or url.username or os.environ.get("PGUSER") or None

    def _reach(self) -> tuple[bool, str | None]:
        """(the server answers, what is wrong with the URL's database there): one look, one or two connections.

        What is wrong: the server answers, but the URL's database is not there (a workshop learner's, dropped or
        renamed), or, for a workshop learner, it is another role's (someone took the name while theirs was gone).
        """
        self._refused = None
        here = self._answers()
        database = self._database()
        if here is not None:
            if here.taken_by is None:
                return True, None
            return True, (
                f"database {database} belongs to {here.taken_by}, not to you: nothing of yours runs there. Ask your "
                "instructor (`workshop add NAME` gives you your own again)"
            )
        found = self._answers("postgres")
        if found is None or database is None or not found.missing:
            return False, None
        return True, (
            f"database {database} does not exist on the server: ask whoever gave you LAB_DATABASE_URL "
            f"(a workshop's instructor: `workshop add NAME` makes a learner's database again)"
        )

    def problem(self) -> str | None:
        return self._reach()[1]

    def is_running(self) -> bool:
        """The server answers: with the URL's database, or, when that one is missing, with its maintenance one."""
        return self._reach()[0]

    def start(self, progress: Progress = quiet) -> None:
        answers, problem = self._reach()
        if problem is not None:
            raise LabError(
                f"The server at {make_url(self._url).render_as_string(hide_password=True)} runs, but {problem}.",
                "Ask whoever gave you LAB_DATABASE_URL; in a workshop, your instructor (`workshop add NAME` "
                "makes it again).",
            )
        if not answers:
            raise LabError(f"Cannot connect to {self.where()}.", self.start_hint())

    def stop(self, progress: Progress = quiet) -> None:
        progress("The server at LAB_DATABASE_URL is not the lab's to stop; nothing done.\n")

    def nuke(self, progress: Progress = quiet) -> None:
        from .connection import LabDatabase

        progress(f"Dropping every table in schema public of {self.where()}\n")
        db = LabDatabase(self._url, where=self.where(), start_hint=self.start_hint())
        with db.lock() as conn:  # waits for a migration another process is running
            db.wipe(conn)

    def start_hint(self) -> str:
        """What to do when the server does not let us in, with what the driver said the last time it tried."""
        told = f"The driver said: {self._refused} " if self._refused else ""
        return (
            f"{told}Check that the server in LAB_DATABASE_URL runs and the URL is right "
            "(or unset it to use the embedded database)."
        )
