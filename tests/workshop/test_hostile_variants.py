"""Other variants of issue 16's findings, played by a learner with their own credentials (and psql): names the
kit's SQL must carry as they are, output of a learner's own programs, inputs too large to list, folders another
account prepared, and windows while a database is born."""

from collections.abc import Callable

import sqlalchemy as sa

from hostile import Server, sql
from migration_lab.workshop.instructor import LEFT, Workshop


def raw(url: str, statement: str, database: str = "postgres") -> None:
    """A statement sent as psql would: no client-side parameter syntax (`:name`, `%s`) in the way."""
    engine = sa.create_engine(sa.make_url(url).set(database=database), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
    finally:
        engine.dispose()


ODD_NAMES = (":x", "a :b", "a%sb", "%(y)s", "100%", "mlab_clone_:z", "mlab_old_%s")


def test_database_names_with_colons_and_percents_never_stop_remove(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """`:x` reads as a bind parameter and `%` is doubled when a name goes into SQLAlchemy's text(): a learner's
    database named so made `ensure` and `remove` fail, and the learner could never be removed."""
    url = learner("percy")
    for name in ODD_NAMES:
        raw(url, f'CREATE DATABASE "{name}"')
    shop.ensure("percy")  # its leftovers' clean-up meets mlab_clone_:z and mlab_old_%s
    said = shop.remove("percy")
    assert not [line for line in said if LEFT in line], said
    left = sql(server.superuser_url, "SELECT datname FROM pg_database WHERE datname = ANY(:n)", n=list(ODD_NAMES))
    assert left == [], left
    assert sql(server.superuser_url, "SELECT 1 FROM pg_roles WHERE rolname = 'percy'") == []
