"""`remove` and `drop` always finish, can be run again and say what they did, whatever learners made (issue 16,
finding 8): their own templates, databases closed to everyone, large objects in template1 and elsewhere,
sessions left open, privileges granted to one another. With a superuser and with a CREATEROLE instructor."""

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import copy_project
from hostile import Server, at, learner_role_count, sql, start_server
from migration_lab import Lab, UrlBackend
from migration_lab.database.programs import program
from migration_lab.front.cli import main
from migration_lab.workshop.instructor import LEFT, Workshop
from migration_lab.workspace import progress

LARGE_OBJECTS_IN = ("template1", "postgres", "mlab_workshop")


@pytest.fixture(scope="module", params=["superuser", "createrole"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from start_server(request.param)


def databases(server: Server) -> set[str]:
    rows = sql(server.superuser_url, "SELECT datname FROM pg_database")
    return {row[0] for row in rows or []}


def test_remove_finishes_whatever_the_learner_made(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path
) -> None:
    ada, ben = learner("ada"), learner("ben")
    sql(ada, "CREATE DATABASE ada_tpl", database="postgres")
    sql(ada, "ALTER DATABASE ada_tpl IS_TEMPLATE true", database="postgres")  # a template of her own
    sql(ada, "CREATE DATABASE ada_closed", database="postgres")
    sql(ada, "REVOKE ALL ON DATABASE ada_closed FROM PUBLIC", database="postgres")
    sql(ada, "ALTER DATABASE ada_closed ALLOW_CONNECTIONS false", database="postgres")
    sql(ada, "CREATE DATABASE ada_open", database="postgres")  # PUBLIC may connect: ben sits in it
    for database in LARGE_OBJECTS_IN:
        sql(ada, "SELECT lo_create(0)", database=database)
    lab = Lab(copy_project(tmp_path / "project"), UrlBackend(ada))
    progress.record_check(lab, "01", 1, 2, "a check")  # a progress row, through her own kit
    lab.db.dispose()
    sql(ada, "GRANT ALL ON SCHEMA public TO ben")  # a grant to ben inside ada's database
    sql(ben, "CREATE DATABASE ben_scratch", database="postgres")  # from template1: holds ada's large object
    held = [
        sa.create_engine(ada, poolclass=sa.pool.NullPool).connect(),  # ada stays connected
        sa.create_engine(at(ben, "ada_open"), poolclass=sa.pool.NullPool).connect(),  # and so does ben, in hers
    ]
    said = shop.remove("ada")
    for conn in held:
        conn.invalidate()
    assert not [line for line in said if LEFT in line], said
    for database in ("lab_ada", "ada_tpl", "ada_closed", "ada_open"):
        assert f"dropped {database}" in said[0]
    for database in (*LARGE_OBJECTS_IN, "ben_scratch"):
        assert f"in {database}" in said[0]
    assert "deleted 1 progress row(s)" in said[0] and said[0].endswith("dropped the role")
    assert not databases(server) & {"lab_ada", "ada_tpl", "ada_closed", "ada_open"}
    for database in (*LARGE_OBJECTS_IN, "ben_scratch"):
        assert sql(server.superuser_url, "SELECT count(*) FROM pg_largeobject_metadata", database=database) == [(0,)]
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'ada'") == [(0,)]
    assert "ada" not in shop.learners()
    assert shop.remove("ada") == ["ada: no such role (removed already)"]  # again: finishes, says so


def test_remove_finishes_while_the_learner_holds_their_own_role_in_an_open_transaction(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """`BEGIN; ALTER ROLE self PASSWORD ...` left open holds the role's row: remove waited for it and died with a
    traceback (drop stopped at that learner, every later one left). Their sessions are closed first now."""
    dan = learner("dan")
    holder = sa.create_engine(at(dan, "postgres"), poolclass=sa.pool.NullPool).connect()
    holder.exec_driver_sql("ALTER ROLE dan PASSWORD 'mine-now'")  # in a transaction never committed
    try:
        said = shop.remove("dan")
    finally:
        holder.invalidate()
    assert not [line for line in said if LEFT in line], said
    assert said[0].startswith("dan: closed 1 session(s)") and said[0].endswith("dropped the role")
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'dan'") == [(0,)]


def test_remove_refuses_a_role_the_workshop_did_not_make(server: Server, shop: Workshop) -> None:
    sql(server.superuser_url, "CREATE ROLE carl LOGIN")
    try:
        with pytest.raises(Exception, match="not a workshop learner's"):
            shop.remove("carl")
        assert sql(server.superuser_url, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'carl'") == [(True,)]
    finally:
        sql(server.superuser_url, "DROP ROLE carl")


# Last: it drops the workshop the tests above share.
def test_drop_finishes_whatever_the_learners_made(
    server: Server, shop: Workshop, learner: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Learners with templates of their own, large objects everywhere, a privilege one granted another in a
    database closed to the instructor (removing the grantee waits for the grantor's database to go): one
    `drop --yes` leaves the server as it was before the workshop."""
    amy, zed = learner("amy"), learner("zed")
    sql(zed, "CREATE TABLE notes (x int); GRANT SELECT ON notes TO amy")  # in lab_zed: amy holds a privilege there
    for who in (amy, zed):
        sql(who, "SELECT lo_create(0)", database="template1")
    sql(zed, "CREATE DATABASE zed_tpl", database="postgres")
    sql(zed, "ALTER DATABASE zed_tpl IS_TEMPLATE true", database="postgres")
    sql(amy, "CREATE DATABASE amy_copy TEMPLATE zed_tpl", database="postgres")  # anyone may clone a template
    args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster), "drop", "--yes"]
    assert main(args) == 0, capsys.readouterr().err
    assert databases(server) == {"postgres", "template0", "template1"}
    assert learner_role_count(server.superuser_url) == 0
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mlab_%'") == [(0,)]
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_largeobject_metadata", database="template1") == [(0,)]
    assert not shop.roster.exists()
    assert main(args) == 0  # again: nothing left to drop, and it says so


def _raw_bytes(url: str, database: bytes, *statements: bytes) -> None:
    """Statements sent as bytes by psql, in `database` (named in bytes), with client encoding SQL_ASCII: in a
    SQL_ASCII database the server checks no identifier's encoding, and pg_database, where such a name lands, is
    shared by all. (psql, as the attack did: psycopg2 builds its connection string as text.)"""
    given = make_url(url)
    env = {
        b"PATH": os.environb.get(b"PATH", b""),
        b"PGHOST": str(given.host).encode(),
        b"PGPORT": str(given.port).encode(),
        b"PGUSER": str(given.username).encode(),
        b"PGPASSWORD": str(given.password).encode(),
        b"PGDATABASE": database,
        b"PGCLIENTENCODING": b"SQL_ASCII",
    }
    for statement in statements:
        done = subprocess.run(
            [program("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-c", statement], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr


def test_database_names_that_are_not_utf8_never_stop_init_remove_or_drop(
    server: Server, shop: Workshop, learner: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A learner made a SQL_ASCII database and, from it, databases named with bytes that are not UTF-8, one like
    the kit's templates: `init`, `remove` and `drop` stopped on a UnicodeDecodeError traceback, every time (drop
    after the first learner: nobody else was removed). A name that is not UTF-8 is never one of the kit's; what
    cannot be removed is a LEFT line, escaped, and removed once its owner is. Both instructor kinds."""
    shop.init()  # a test above dropped the room
    url = learner("bytes")
    learner("bystander")
    sql(
        at(url, "postgres"),
        "CREATE DATABASE sqlasc TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    _raw_bytes(url, b"sqlasc", b'CREATE DATABASE "mlab_tpl_\xff\xfe"', b'CREATE DATABASE "evil\xc3"')
    _raw_bytes(url, b"evil\xc3", b"CREATE TABLE t (x int)", b"GRANT SELECT ON t TO bystander")  # theirs, in there
    shop.init()  # the templates are there, the learner's odd names left alone
    args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]
    assert main([*args, "remove", "bystander"]) == 1  # their privileges in evil\xc3: that name cannot be connected to
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bystander: LEFT objects or privileges in evil\\xc3: its name is not UTF-8" in err
    assert main([*args, "remove", "bytes"]) == 0
    assert main([*args, "remove", "bystander"]) == 0  # its owner gone, evil\xc3 went with them
    err = capsys.readouterr().err
    assert "Traceback" not in err and "LEFT" not in err, err
    assert "dropped evil\\xc3" in err and "dropped mlab_tpl_\\xff\\xfe" in err, err  # shown as the bytes they are
    assert sql(server.superuser_url, "SELECT rolname FROM pg_roles WHERE rolname IN ('bystander', 'bytes')") == []
    held = sql(server.superuser_url, "SELECT count(*) FROM pg_database WHERE datname ~ '^mlab_bytes_'")
    assert held == [(0,)]  # the SQL_ASCII database the removal used is gone too
