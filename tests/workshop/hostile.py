"""What the hostile workshop tests share: a throw-away shared server, driven by a superuser or by a role with
CREATEROLE and CREATEDB only; statements run with anyone's credentials; traps a learner plants, and how to tell
whether one ran as someone else."""

import os
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from migration_lab.database.shared_server import local_server
from migration_lab.workshop.room import LEARNER_ROLE

TEACHER = "teacher"  # the CREATEROLE + CREATEDB instructor


def sql(url: str, statement: str, database: str | None = None, **values: object) -> list[tuple] | None:
    """One autocommit statement with the given credentials: its rows, or None."""
    target = make_url(url) if database is None else make_url(url).set(database=database)
    engine = sa.create_engine(target, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(statement), values)
            return [tuple(row) for row in result.all()] if result.returns_rows else None
    finally:
        engine.dispose()


def owner(server_url: str, database: str) -> str | None:
    rows = sql(server_url, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d", d=database)
    return rows[0][0] if rows else None


def at(url: str, database: str) -> str:
    """The same credentials, another database."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Server:
    superuser_url: str  # to look from outside and to stage what no learner could
    instructor_url: str  # what the Workshop is driven with
    kind: str  # "superuser" or "createrole"


def start_server(kind: str) -> Iterator[Server]:
    with local_server(durable=False) as url:
        if kind == "createrole":
            password = secrets.token_urlsafe(12)
            sql(url, f"CREATE ROLE {TEACHER} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'")
            teacher = make_url(url).set(username=TEACHER, password=password)
            yield Server(url, teacher.render_as_string(hide_password=False), kind)
        else:
            yield Server(url, url, kind)


# Harmless when the learner runs it; run by anyone else (the instructor, after a `RESET ROLE` too) it leaves
# marks seen from outside: the learner's role comment (which needs ADMIN on the role: the instructor has it, the
# learner has not) and, for a superuser, a file the server writes.
TRAP_FUNCTIONS = """
CREATE OR REPLACE FUNCTION public.trap(label text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
  IF session_user::text <> '{learner}' OR current_user::text <> '{learner}' THEN
    BEGIN
      EXECUTE format('COMMENT ON ROLE %I IS %L', '{learner}', 'pwned by ' || current_user || ' via ' || label);
    EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN
      EXECUTE format('COPY (SELECT %L) TO PROGRAM %L', label, 'cat >> {marker}');
    EXCEPTION WHEN OTHERS THEN NULL; END;
  END IF;
  RETURN true;
END $f$;
GRANT EXECUTE ON FUNCTION public.trap(text) TO PUBLIC;
CREATE OR REPLACE FUNCTION public.escape() RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN RESET ROLE; RETURN public.trap('reset role'); END $f$;
"""

# Every place in a database a learner may hang code on (TRAP_FUNCTIONS first).
TRAPS = """
CREATE SCHEMA IF NOT EXISTS lab_progress;
CREATE OR REPLACE VIEW lab_progress.chapters AS
  SELECT '01'::text AS chapter, 1 AS passed, 2 AS total, 'x'::text AS last_error, now() AS updated_at,
         now() AS progressed_at FROM (SELECT public.trap('view') AND public.escape()) t;
CREATE OR REPLACE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
  AS $f$ SELECT CASE WHEN public.trap('now()') THEN pg_catalog.now() END $f$;
CREATE OR REPLACE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE sql
  AS $f$ SELECT CASE WHEN public.trap('to_regclass') THEN NULL::regclass END $f$;
CREATE OR REPLACE FUNCTION public.current_database() RETURNS name LANGUAGE sql
  AS $f$ SELECT CASE WHEN public.trap('current_database') THEN pg_catalog.current_database() END $f$;
CREATE OR REPLACE FUNCTION public.oideq(oid, oid) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT public.trap('=') AND $1::int8 = $2::int8 $f$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.oideq);
CREATE OR REPLACE FUNCTION public.texteq(name, text) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT public.trap('name = text') AND $1::text OPERATOR(pg_catalog.=) $2 $f$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.texteq);
CREATE TABLE IF NOT EXISTS public.rls_t(x int);
INSERT INTO public.rls_t VALUES (1);
ALTER TABLE public.rls_t ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.rls_t FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON public.rls_t USING (public.trap('policy'));
CREATE DOMAIN public.trapdom AS int CHECK (public.trap('domain'));
CREATE TABLE IF NOT EXISTS public.dom_t(x public.trapdom DEFAULT 1 CHECK (public.trap('check')));
INSERT INTO public.dom_t VALUES (1);
CREATE TABLE IF NOT EXISTS public.default_t(x boolean DEFAULT public.trap('default'));
CREATE MATERIALIZED VIEW IF NOT EXISTS public.mv AS SELECT public.trap('matview') AS t;
CREATE OR REPLACE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql
  AS $f$ BEGIN PERFORM public.trap('trigger'); RETURN NULL; END $f$;
CREATE TRIGGER t AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.rls_t
  FOR EACH STATEMENT EXECUTE FUNCTION public.trg();
CREATE OR REPLACE RULE r AS ON UPDATE TO public.dom_t DO ALSO SELECT public.trap('rule');
"""


def plant(url: str, name: str, marker: Path, database: str | None = None) -> None:
    """Every trap in the learner's database (or `database`, one of theirs), and a search_path that finds them
    before pg_catalog in every session on it, the instructor's included unless it pins its own."""
    target = database or make_url(url).database
    sql(url, TRAP_FUNCTIONS.format(learner=name, marker=marker) + TRAPS, database=target)
    sql(url, f'ALTER DATABASE "{target}" SET search_path = public, pg_catalog', database="postgres")


def assert_not_pwned(server_url: str, name: str, marker: Path) -> None:
    """No trap of `name`'s ran as anyone but `name`."""
    comment = sql(server_url, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = :r", r=name)
    assert comment in ([(LEARNER_ROLE,)], []), comment
    assert not marker.exists(), marker.read_text()


def learner_role_count(server_url: str) -> int:
    rows = sql(
        server_url, "SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = :m", m=LEARNER_ROLE
    )
    assert rows is not None
    return int(rows[0][0])


@contextmanager
def os_account(name: str) -> Iterator[pwd.struct_passwd]:
    """An OS account `name` (as a hub gives each learner), made for the test and removed after it when it made it;
    the test is skipped where it cannot make one (not root)."""
    if os.geteuid() != 0:
        pytest.skip("makes an OS account: root only")
    created = False
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        useradd = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        subprocess.run(useradd, check=True)
        created = True
        account = pwd.getpwnam(name)
    try:
        yield account
    finally:
        if created:
            subprocess.run(["userdel", name], check=False)
