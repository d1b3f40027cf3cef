"""DATABASE_URL as this service uses it: any PostgreSQL URL a host prints, on the driver it installs.

SQLAlchemy 2.1 reads a plain `postgresql://` as "PostgreSQL through psycopg 3"
(2.0 read it as psycopg2). This service installs psycopg2 (`psycopg2-binary` in
requirements.txt), so every spelling of a PostgreSQL URL that hosts and
tutorials print (`postgresql://`, `postgres://`, `+psycopg2`, `+psycopg`: the
same libpq settings either way) is pinned to `postgresql+psycopg2`. Anything
else gets one line saying what is wrong, never the password.

migrations/env.py and main.py use it; it needs only SQLAlchemy and psycopg2 (the
driver the service installs; libpq, through it, says which ?options it knows), as
the service runs alone in its container.
"""

import re
from collections.abc import Mapping
from urllib.parse import unquote

from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DRIVER = "psycopg2"
EXAMPLE = "postgresql://user:password@host:5432/database"
# libpq's options it parses as whole numbers (port aside: SQLAlchemy checks that one itself).
WHOLE_NUMBERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


class BadDatabaseURL(ValueError):
    """A URL this service cannot use: what is wrong and what one looks like, one line, never the password."""


def normalise(url: str, name: str = "DATABASE_URL") -> str:
    """`url` on the psycopg2 driver; BadDatabaseURL for what cannot be a PostgreSQL URL.

    Also taken as a host prints them: in quotes, and Java's jdbc:postgresql://host/db?user=...&password=...
    """
    url = url.strip()
    if len(url) > 1 and url[0] == url[-1] and url[0] in "'\"":  # pasted with its quotes
        url = url[1:-1].strip()
    if url[:5].lower() == "jdbc:":
        url = url[5:]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # the value itself is never shown: it may be a password
        raise BadDatabaseURL(f"{name} is not a database URL. One looks like {EXAMPLE}.") from None
    backend, _, driver = parsed.drivername.lower().partition("+")  # a URL's scheme is case-insensitive
    if backend not in ("postgresql", "postgres"):
        raise BadDatabaseURL(f"{name} names a {backend} database, not a PostgreSQL one. One looks like {EXAMPLE}.")
    if driver not in ("", DRIVER, "psycopg"):
        raise BadDatabaseURL(
            f"{name} asks for the driver {driver}, which is not installed here ({DRIVER} is). "
            f"Write it without +{driver}: {EXAMPLE}."
        )
    if "@" in (parsed.host or ""):
        raise BadDatabaseURL(
            f"{name} has an @ in its user name or password: write it as %40 there, "
            "as in postgresql://user:p%40ssword@host:5432/database."
        )
    if parsed.port == 0:  # SQLAlchemy leaves a port of 0 out, and libpq then tries 5432: another server than this
        raise BadDatabaseURL(f"{name} has port 0, on which no server listens. One looks like {EXAMPLE}.")
    if parsed.host and unquote(parsed.host).startswith("/"):  # libpq's postgresql://%2Fvar%2Frun%2Fpostgresql/db
        parsed = parsed.set(host=None).update_query_dict({"host": unquote(parsed.host)})
    query = parsed.query  # libpq's ?user=...&password=...: into the URL, where a shown URL masks the password
    if parsed.username is None and isinstance(query.get("user"), str):
        parsed = parsed.set(username=query["user"]).difference_update_query(["user"])
    if parsed.username and parsed.password is None and isinstance(query.get("password"), str):
        parsed = parsed.set(password=query["password"]).difference_update_query(["password"])
    unknown = _not_libpq(parsed.query)
    if unknown:
        raise BadDatabaseURL(
            f"{name} has {', '.join(f'?{key}=' for key in unknown)}: not a connection option of PostgreSQL's client "
            "library (libpq), so the driver would refuse it. Hosts print some for their own tools (Prisma's schema= "
            "and pgbouncer=, node's ssl=): leave them out, as in "
            "postgresql://user:password@host:5432/database?sslmode=require (libpq's for ssl=true)."
        )
    not_numbers = _not_whole_numbers(parsed.query)
    if not_numbers:  # libpq refuses them only as it connects, in words that read like a server that is down
        raise BadDatabaseURL(
            f"{name} has {', '.join(f'?{key}=' for key in not_numbers)} that is not a whole number: libpq (the "
            f"client library) takes one there, as in {EXAMPLE}?connect_timeout=10."
        )
    pinned = parsed.set(drivername=f"postgresql+{DRIVER}")
    try:  # what SQLAlchemy itself refuses before connecting: ?port=abc, a mix of multi-host forms
        PGDialect_psycopg2().create_connect_args(pinned)
    except (ArgumentError, ValueError):  # its words may quote the URL: said in ours
        raise BadDatabaseURL(
            f"{name} has a port that is not a number, or lists several hosts in two ways at once, or with more "
            "ports than hosts (libpq takes ?host=h1,h2&port=p1,p2, one port for all or one per host, or "
            f"?host=h1:p1&host=h2:p2). One looks like {EXAMPLE}."
        ) from None
    return pinned.render_as_string(hide_password=False)


def _not_whole_numbers(query: Mapping[str, object]) -> list[str]:
    """The query's keys libpq reads as a whole number (seconds, counts) whose value is none, as libpq parses it."""
    found = []
    for key in WHOLE_NUMBERS:
        given = query.get(key, ())
        values = (given,) if isinstance(given, str) else given
        if any(not re.fullmatch(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*", value) for value in values):
            found.append(key)
    return found


def _not_libpq(query: Mapping[str, object]) -> list[str]:
    """The query's keys libpq does not know, as psycopg2 (libpq itself) parses them; nothing connects."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    unknown = []
    for key in query:
        try:
            parse_dsn(f"{key}=x")
        except ProgrammingError:
            unknown.append(key)
    return unknown
