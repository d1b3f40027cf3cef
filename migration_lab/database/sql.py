"""SQL identifiers, quoted: the one place the kit builds a name into a statement, how such a statement runs, and
the session settings under which the kit reads a database someone else may have shaped."""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def quote(name: str) -> str:
    """`name` as a PostgreSQL identifier, always in double quotes (a `"` inside is doubled), every other
    character as it is: not SQLAlchemy's preparer, which also doubles `%` for psycopg2, so that `100%` named
    `100%%`, another object or none."""
    return '"' + name.replace('"', '""') + '"'


def run_quoted(conn: sa.Connection, statement: str) -> None:
    """Run `statement`, which holds names from `quote`, exactly as written.

    Not through `sa.text`: there a name someone else chose (a learner's
    database called `:x` or `100%`) reads as a bind parameter or has its `%`
    doubled, and the statement fails or names another object. Sent with no
    parameters at all, psycopg2 leaves every character alone.
    """
    conn.exec_driver_sql(statement, execution_options={"no_parameters": True})


# A learner's `ALTER ROLE self SET` or `ALTER DATABASE <theirs> SET` of these reaches every session that logs in as
# them or into their database: a read-only default failed the kit's DROP OWNED there, and SERIALIZABLE READ ONLY
# DEFERRABLE made the first query of a session wait, without any timeout, until every serializable read-write
# transaction on the server ended: one the learner keeps open in psql held `workshop ensure` (and the roster's
# lock, so every other login) forever. A client's options outrank both settings.
TRANSACTION_DEFAULTS = "-c default_transaction_read_only=off -c default_transaction_deferrable=off"


def pinned(statement_timeout: str, lock_timeout: str | None = None) -> str:
    """libpq `options` for a session in a database a learner may own, or with a learner's login: names resolve in
    pg_catalog only (a function of theirs in public cannot shadow a built-in), a lock or a slow view of theirs
    costs a bounded wait, and transactions are read-write and never deferred (`TRANSACTION_DEFAULTS`)."""
    locks = f" -c lock_timeout={lock_timeout}" if lock_timeout else ""
    return f"-c search_path=pg_catalog,pg_temp -c statement_timeout={statement_timeout}{locks} {TRANSACTION_DEFAULTS}"


@contextmanager
def transaction(conn: sa.Connection) -> Iterator[None]:
    """One transaction on an autocommit connection (CREATE and ALTER DATABASE need one, renames must pair): all of
    the block, or none of it."""
    conn.exec_driver_sql("BEGIN")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def create_private_database(
    conn: sa.Connection, name: str, template: str, owner: str | None = None, options: str = ""
) -> None:
    """CREATE DATABASE `name` from `template`, reachable by no other role from its first moment.

    A new database grants CONNECT and TEMPORARY to PUBLIC: between a CREATE and the REVOKE after it, any role on
    a shared server (a learner with psql, looping on pg_database) could connect and stay connected. So it is
    born closed to every session (ALLOW_CONNECTIONS false), PUBLIC's rights go, and then it opens; if either
    step fails, the database is dropped again (nothing is left half-made). `conn`: autocommit (CREATE DATABASE
    runs outside a transaction). `options`: more of CREATE DATABASE's (an ENCODING).
    """
    owned = f"OWNER {quote(owner)}" if owner else ""
    made = (f"CREATE DATABASE {quote(name)} TEMPLATE {quote(template)}", owned, options, "ALLOW_CONNECTIONS false")
    run_quoted(conn, " ".join(part for part in made if part))
    try:
        run_quoted(conn, f"REVOKE ALL ON DATABASE {quote(name)} FROM PUBLIC")
        run_quoted(conn, f"ALTER DATABASE {quote(name)} ALLOW_CONNECTIONS true")
    except BaseException:
        run_quoted(conn, f"DROP DATABASE IF EXISTS {quote(name)}")  # closed all along: nobody is connected
        raise


def said(error: sa.exc.DBAPIError) -> str:
    """The first line of what the driver (libpq, the server) said, without SQLAlchemy's statement and links."""
    lines = str(error.orig if error.orig is not None else error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
