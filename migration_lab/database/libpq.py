"""How pg_dump and psql reach the database a SQLAlchemy URL names: one libpq connection string, one environment.

The kit's own sessions (psycopg2) read the URL's host and port also from its
query (`?host=/socket/folder&port=5433`, several hosts) and pass on its other
parameters (sslmode, ...). The programs must reach the same server: taking only
`url.host` sent a dump of a `?host=` URL, and its password, to localhost:5432,
whatever server runs there. And no PG* variable of the caller's shell
(PGHOST, PGSERVICE, PGOPTIONS) may redirect or reconfigure them.
"""

from __future__ import annotations

import os

from psycopg2.extensions import make_dsn
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine import URL, make_url

KEPT = ("PATH", "LANG", "LC_ALL", "TZ")  # what the programs may see of the caller's environment


def _connect_args(url: str | URL) -> dict[str, str]:
    """What the kit's own sessions hand libpq for `url`, as SQLAlchemy's psycopg2 dialect builds it: its parts
    percent-decoded (a socket folder `%2Ftmp%2F...`, a password's `%40`), the query's host and port taking the
    place of the URL's, several hosts as libpq's comma-separated lists."""
    _, params = PGDialect_psycopg2().create_connect_args(make_url(url))
    return {key: str(value) for key, value in params.items()}


def host_and_port(url: str | URL) -> tuple[str | None, str | None]:
    """The host (a name, an address, or a Unix socket's folder) and port libpq goes to for `url`, also when given
    as `?host=...&port=...`; several, comma-separated. None where the URL gives none (libpq's default)."""
    params = _connect_args(url)
    return params.get("host"), params.get("port")


def conninfo(url: str | URL) -> str:
    """libpq's connection string for what the kit's own sessions reach with `url`; the password is left out
    (it goes through `environment`, never on a command line another user's `ps` shows)."""
    params = _connect_args(url)
    params.pop("password", None)
    return str(make_dsn(**params))


def environment(url: str | URL) -> dict[str, str]:
    """The programs' environment: the password of `url`, a connect timeout, and only KEPT of the caller's."""
    env = {key: value for key, value in os.environ.items() if key in KEPT}
    env.update(PGPASSWORD=make_url(url).password or "", PGCONNECT_TIMEOUT="5")
    return env
