"""A third round of a learner's attacks on workshop mode, with their own credentials and psql: session defaults
of theirs (`ALTER ROLE self SET`, `ALTER DATABASE <theirs> SET`) that every session logging in as them or into
their database picks up, and their own database marked as a template before a reset. The instructor is a
superuser, then a role with CREATEROLE and CREATEDB only."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from hostile import Server, sql, start_server
from migration_lab.errors import LabError
from migration_lab.workshop import dumps
from migration_lab.workshop.instructor import LEFT, Workshop


@pytest.fixture(scope="module", params=["superuser", "createrole"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from start_server(request.param)


# SERIALIZABLE READ ONLY DEFERRABLE: a transaction's first query waits until no serializable read-write
# transaction on the server is running. Deferrable first: a read-only default refuses the next ALTER ROLE.
DEFERRABLE = (
    "default_transaction_deferrable = on",
    "default_transaction_isolation = 'serializable'",
    "default_transaction_read_only = on",
)


@contextmanager
def serializable_writer(url: str) -> Iterator[None]:
    """A serializable read-write transaction of the learner's, left open (as in a psql they never close); in
    database postgres, which the reset of their own database does not close."""
    engine = sa.create_engine(sa.make_url(url).set(database="postgres"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ WRITE")
            conn.exec_driver_sql("SELECT count(*) FROM pg_catalog.pg_class")
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def within(seconds: float, call: Callable[[], object]) -> object:
    """`call()`'s result, when it ends within `seconds` (else the test fails, the call left running)."""
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["result"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            done["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in done:
        raise done["error"]  # type: ignore[misc]
    return done.get("result")


def test_a_deferrable_default_of_the_learners_never_holds_a_login(
    server: Server, shop: Workshop, learner: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ALTER ROLE self SET` SERIALIZABLE READ ONLY DEFERRABLE, and a serializable transaction left open: the
    check that their roster password still works (every `ensure`, a hub's login hook) ran SQLAlchemy's first
    query as them and waited, with no timeout, until that transaction ended: forever, holding the roster's lock,
    so every other learner's login waited too. The backup before a reset (pg_dump, as them) waited its whole
    timeout and the reset was refused."""
    monkeypatch.setattr(dumps, "DUMP_TIMEOUT", 30)
    url = learner("dee")
    for setting in DEFERRABLE:
        sql(url, f"ALTER ROLE dee SET {setting}", database="postgres")
    with serializable_writer(url):
        assert within(30, lambda: shop.ensure("dee")).database_url == url  # type: ignore[attr-defined]
        saved = within(60, lambda: shop.reset("dee", "01"))
        assert saved is not None and saved.stat().st_size > 0  # type: ignore[attr-defined]


def test_a_read_only_default_on_a_learners_database_never_stops_removing_another(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """ann granted ben a table in her database, then made it read-only by default (`ALTER DATABASE lab_ann SET`):
    the `DROP OWNED BY ben` that `remove ben` runs there failed ("read-only transaction"), ben stayed. A superuser
    instructor only: one with CREATEROLE may not connect to ann's database at all (`drop` removes ben after ann)."""
    if server.kind != "superuser":
        pytest.skip("a CREATEROLE instructor cannot enter another learner's database")
    ann, _ = learner("ann"), learner("ben")
    sql(ann, "CREATE TABLE public.shared (x int); GRANT SELECT ON public.shared TO ben")
    for setting in DEFERRABLE:
        sql(ann, f"ALTER DATABASE lab_ann SET {setting}", database="postgres")
    lines = shop.remove("ben")
    assert not any(LEFT in line for line in lines), lines
    assert sql(server.superuser_url, "SELECT 1 FROM pg_roles WHERE rolname = 'ben'") == []


def test_session_timeouts_on_a_learners_database_never_end_the_instructors_session_there(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """`ALTER DATABASE lab_amy SET idle_session_timeout = '1ms'` (and transaction_timeout): the instructor's
    session in lab_amy, for the `DROP OWNED BY bob` of `remove bob`, was closed by the server, and bob stayed."""
    if server.kind != "superuser":
        pytest.skip("a CREATEROLE instructor cannot enter another learner's database")
    amy, _ = learner("amy"), learner("bob")
    sql(amy, "CREATE TABLE public.shared (x int); GRANT SELECT ON public.shared TO bob")
    for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout", "transaction_timeout"):
        sql(amy, f"ALTER DATABASE lab_amy SET {setting} = '1ms'", database="postgres")
    lines = shop.remove("bob")
    assert not any(LEFT in line for line in lines), lines


def test_a_backup_in_a_client_encoding_of_the_learners_fails_with_a_message(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """`ALTER ROLE self SET client_encoding = 'LATIN1'` and a row policy that raises 'échec': pg_dump's message,
    in LATIN1, crashed the reset with a UnicodeDecodeError and left the half-written dump behind."""
    url = learner("enc")
    sql(url, "ALTER ROLE enc SET client_encoding = 'LATIN1'", database="postgres")
    sql(
        url,
        "CREATE FUNCTION public.boom() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN RAISE EXCEPTION 'échec'; END $f$;"
        "CREATE TABLE public.t (x int); INSERT INTO public.t VALUES (1);"
        "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t FORCE ROW LEVEL SECURITY;"
        "CREATE POLICY p ON public.t USING (public.boom())",
    )
    with pytest.raises(LabError, match="Nothing was changed") as raised:
        shop.reset("enc", "02")
    assert "The backup of lab_enc failed" in raised.value.what
    assert not list(shop.backup_dir.glob("lab_enc-*"))
    assert sql(url, "SELECT to_regclass('public.t')::text") == [("t",)]


def test_a_learner_who_made_their_database_a_template_is_reset_all_the_same(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """`ALTER DATABASE lab_tim IS_TEMPLATE true`: the reset swapped the clone in, then failed to drop the old
    database ("cannot drop a template database"), said the server refused, and left it as tim's template."""
    url = learner("tim")
    sql(url, "CREATE TABLE public.mine (x int)")
    sql(url, "ALTER DATABASE lab_tim IS_TEMPLATE true", database="postgres")
    shop.reset("tim", "01", backup=False)
    assert sql(url, "SELECT to_regclass('public.mine')::text") == [(None,)]
    assert sql(server.superuser_url, "SELECT datname FROM pg_database WHERE datdba = 'tim'::regrole") == [("lab_tim",)]


def test_a_leftover_named_in_bytes_that_are_not_utf8_never_stops_a_reset_or_a_login(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """From a SQL_ASCII database of hers, lea names a database `mlab_old_<0xff>`, like a leftover of a killed
    reset: every reset and `ensure` (her hub login) tried to drop it from `postgres`, which refuses such a name
    ("invalid byte sequence"), and failed, forever. It is left for `remove`, which drops it."""
    from test_hostile_remove import _raw_bytes

    url = learner("lea")
    sql(
        url, "CREATE DATABASE lea_ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'", "postgres"
    )
    _raw_bytes(url, b"lea_ascii", b'CREATE DATABASE "mlab_old_\xff"')
    sql(url, "CREATE TABLE public.mine (x int)")
    shop.reset("lea", "01", backup=False)
    assert sql(url, "SELECT to_regclass('public.mine')::text") == [(None,)]
    assert shop.ensure("lea").database_url == url
    lines = shop.remove("lea")
    assert not any(LEFT in line for line in lines), lines


# Names pg_dump quotes on its last line when it cannot lock the table: as pg_dump's own refused-login line, whole
# (a schema whose name starts a new line).
LIKE_A_REFUSED_LOGIN = [
    'public."password authentication failed"',
    '"s\npg_dump: error: connection to server "." failed: FATAL:  password authentication"',
]


@pytest.mark.parametrize("table", LIKE_A_REFUSED_LOGIN, ids=["table", "schema-with-a-newline"])
def test_a_table_named_like_a_refused_password_never_gets_the_learner_a_new_one(
    server: Server, shop: Workshop, learner: Callable[[str], str], monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    """kim holds her table `"password authentication failed"` (or one whose quoted name is pg_dump's own line for a
    refused login) locked: pg_dump's last line quotes its name, and the reset read that as her password refused: it
    set her a new one (her running notebook's URL dead), told you she had changed hers, and dumped again."""
    url = learner("kim")
    if "\n" in table:
        sql(url, f"CREATE SCHEMA {table.split('.')[0]}")
    sql(url, f"CREATE TABLE {table} (x int)")
    said: list[str] = []
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            monkeypatch.setattr(shop, "say", said.append)
            with pytest.raises(LabError, match="Nothing was changed"):
                shop.reset("kim", "01")
            conn.rollback()
    finally:
        engine.dispose()
    assert shop.learners()["kim"] == url
    assert not any("password" in line for line in said), said
