"""Any PostgreSQL URL a host prints reaches the lab database, in the kit and in the terminal's `alembic`;
what cannot work is one clear message that never shows the password.

SQLAlchemy 2.1 reads a plain postgresql:// as psycopg 3, which the course does not install: every
spelling below failed with "No module named 'psycopg'" (or a NoSuchModuleError) before
ai-service/database_url.py pinned them to psycopg2.
"""

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL, make_url

from helpers import write_revision
from migration_lab import EmbeddedBackend, Lab, LabError, Project, UrlBackend, choose_backend
from migration_lab.course.registry import reset
from migration_lab.workshop.instructor import Workshop
from migration_lab.workspace.backups import restore
from migration_lab.workspace.edits import load_models

ALEMBIC = str(Path(sys.executable).with_name("alembic"))
SECRET = "s3cret-pw"


def spellings(url: str) -> dict[str, str]:
    """The same database (the tests' server: a Unix socket, a password) as hosts and tutorials write it."""
    u = make_url(url)
    socket, password = str(u.query["host"]), str(u.password)
    plain = u.set(drivername="postgresql").render_as_string(hide_password=False)
    return {
        "postgresql": plain,
        "postgres": plain.replace("postgresql://", "postgres://", 1),
        "psycopg2": u.render_as_string(hide_password=False),
        "psycopg": plain.replace("postgresql://", "postgresql+psycopg://", 1),
        "socket as host": f"postgresql://{u.username}:{quote(password, safe='')}@{quote(socket, safe='')}/{u.database}",
        "password in query": f"postgresql:///{u.database}?host={socket}&user={u.username}&password={password}",
        "spaces around": f"  {plain}\n",
        "scheme in capitals": plain.replace("postgresql://", "PostgreSQL://", 1),
        "libpq options": f"{plain}&sslmode=disable&application_name=migration-lab&connect_timeout=5",
        "pasted with its quotes": f"'{plain}'",
        "jdbc": f"jdbc:postgresql:///{u.database}?host={socket}&user={u.username}&password={password}",
    }


HOSTILE = {
    "garbage": ("garbage", "is not a database URL"),
    "half a URL": (f"postgresql//lab:{SECRET}@db.example/lab", "is not a database URL"),
    "mysql": (f"mysql://lab:{SECRET}@db.example/lab", "names a mysql database"),
    "sqlite": ("sqlite:///lab.db", "names a sqlite database"),
    "asyncpg": (f"postgresql+asyncpg://lab:{SECRET}@db.example/lab", "Write it without +asyncpg"),
    "unescaped @": (f"postgresql://lab:{SECRET}@x@db.example/lab", "write it as %40"),
    "two hosts": (f"postgresql://lab:{SECRET}@h1:5432,h2:5432/lab", "is not a database URL"),
    # options hosts print for their own tools, which libpq (and so psycopg2) refuses: "invalid dsn" tracebacks
    "prisma's schema": (f"postgresql://lab:{SECRET}@db.example/lab?schema=public", "?schema=: not a connection"),
    "pgbouncer flags": (
        f"postgresql://lab:{SECRET}@db.example/lab?pgbouncer=true&connection_limit=1",
        "?pgbouncer=, ?connection_limit=",
    ),
    "node's ssl": (f"postgres://lab:{SECRET}@db.example/lab?ssl=true", "?sslmode=require (libpq's for ssl=true)"),
    "quotes that do not match": (f"'postgresql://lab:{SECRET}@db.example/lab\"", "is not a database URL"),
    "jdbc with java's ssl": (f"jdbc:postgresql://db.example/lab?user=lab&password={SECRET}&ssl=true", "?ssl="),
    # what SQLAlchemy refuses only as it connects: an ArgumentError traceback in status, up, reset and alembic
    "a port that is no number": (f"postgres://lab:{SECRET}@db.example:5432/lab?port=abc", "a port that is not a"),
    "a host's port that is no number": (f"postgresql://lab:{SECRET}@/lab?host=h1:5432&host=h2:x", "a port that"),
    # libpq refuses it only as it connects: `status` said running (the kit sets its own timeout) while `alembic`
    # said the server could not be reached
    # SQLAlchemy leaves a port of 0 out of what it gives libpq, which then connects to 5432: another server than
    # the URL's, where a local PostgreSQL may well answer (libpq itself refuses port 0)
    "port zero": (f"postgresql://lab:{SECRET}@db.example:0/lab", "has port 0"),
    "a timeout that is no number": (
        f"postgresql://lab:{SECRET}@db.example/lab?connect_timeout=abc",
        "?connect_timeout= that is not a whole number",
    ),
}


@pytest.mark.parametrize("spelling", list(spellings("postgresql://u:p@/d?host=/s")))
def test_every_spelling_reaches_the_lab_database_through_the_kit(
    spelling: str, project: Project, database_url: str
) -> None:
    url = spellings(database_url)[spelling]
    lab = Lab(project, choose_backend(project, env={"LAB_DATABASE_URL": url}))
    try:
        assert lab.backend.url().startswith("postgresql+psycopg2://")
        assert lab.runner.run("upgrade head").ok
        assert lab.db.heads() == ("8b7e5d2c6a41",)
        assert str(make_url(database_url).password) not in lab.backend.where() + lab.status()
    finally:
        lab.db.dispose()


@pytest.mark.parametrize("spelling", ["socket as host", "password in query", "libpq options"])
def test_every_spelling_backs_up_resets_and_restores(spelling: str, project: Project, database_url: str) -> None:
    """pg_dump and psql reach the database the kit's sessions reach: with the socket folder as the URL's host,
    percent-encoded as libpq writes it (`@%2Ftmp%2F...`), they were sent to a host named "%2Ftmp..." and every
    reset and restore was refused."""
    lab = Lab(project, choose_backend(project, env={"LAB_DATABASE_URL": spellings(database_url)[spelling]}))
    try:
        reset("03", lab)
        write_revision(project, "f00d00000001", "a1c4e7f20b13", 'op.execute("SELECT 1")')
        assert lab.runner.run("upgrade head").ok
        report = reset("03", lab)
        assert report.backup is not None and report.backup.database
        assert restore(lab, report.backup.name).endswith("and the database.")
        assert lab.db.heads() == ("f00d00000001",)
    finally:
        lab.db.dispose()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_url_that_cannot_work_is_one_clear_error(case: str, project: Project) -> None:
    value, says = HOSTILE[case]
    with pytest.raises(LabError) as raised:
        choose_backend(project, env={"LAB_DATABASE_URL": value})
    error = raised.value
    assert says in error.what and error.what.startswith("LAB_DATABASE_URL ")
    assert "postgresql://" in str(error) and "LAB_DATABASE_URL" in error.next_step
    assert SECRET not in str(error) and "\n" not in error.what


def service_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    return {**env, "DATABASE_URL": url}


@pytest.mark.parametrize("spelling", ["postgresql", "postgres", "socket as host", "password in query"])
def test_every_spelling_works_for_alembic_in_a_terminal(spelling: str, project: Project, database_url: str) -> None:
    """ai-service's env.py reads DATABASE_URL through the same function, without the kit."""
    url = spellings(database_url)[spelling]
    for command in (["upgrade", "head"], ["current"]):
        done = subprocess.run(
            [ALEMBIC, *command], cwd=project.service_dir, env=service_env(url), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert "8b7e5d2c6a41 (head)" in done.stdout


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "mysql",
        "asyncpg",
        "unescaped @",
        "prisma's schema",
        "node's ssl",
        "a timeout that is no number",
        "port zero",
    ],
)
def test_a_url_that_cannot_work_is_one_line_in_a_terminal(case: str, project: Project) -> None:
    value, says = HOSTILE[case]
    done = subprocess.run(
        [ALEMBIC, "current"], cwd=project.service_dir, env=service_env(value), capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("DATABASE_URL ") and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stderr


def test_a_database_that_does_not_answer_is_one_line_in_a_terminal(project: Project, tmp_path: Path) -> None:
    """The lab stopped, a wrong port, a socket folder with no server: 40 frames of OperationalError before."""
    with socket.socket() as probe:  # a port nothing listens on, found free here and closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url in (
        f"postgresql://lab:{SECRET}@127.0.0.1:{port}/lab",
        f"postgresql://lab:{SECRET}@/lab?host={tmp_path}",
    ):
        done = subprocess.run(
            [ALEMBIC, "current"], cwd=project.service_dir, env=service_env(url), capture_output=True, text=True
        )
        assert done.returncode == 1
        said = done.stderr.strip()
        assert said.startswith("Cannot connect to the database: ") and "migration_lab up" in said, said
        assert "Traceback" not in said and SECRET not in said and len(said.splitlines()) == 1


def test_the_ai_api_takes_every_spelling(project: Project, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for url in (spellings(database_url)["postgres"], spellings(database_url)["socket as host"]):
        monkeypatch.setenv("DATABASE_URL", url)
        app = load_models(project)
        with TestClient(app.app) as api:
            assert api.get("/health").json() == {"status": "ok"}
        app._engine.dispose()
    monkeypatch.setenv("DATABASE_URL", HOSTILE["mysql"][0])
    with TestClient(load_models(project).app) as api:
        reply = api.get("/health")
    assert reply.status_code == 503 and "names a mysql database" in reply.json()["detail"]
    assert SECRET not in reply.text


def test_the_workshop_server_url_is_read_the_same_way() -> None:
    shop = Workshop(f"postgres://admin:{SECRET}@db.example:6543/postgres")
    assert shop.url.drivername == "postgresql+psycopg2" and shop.url.port == 6543
    with pytest.raises(LabError, match="mysql is not PostgreSQL") as raised:
        Workshop(f"mysql://admin:{SECRET}@db.example/postgres")
    assert SECRET not in str(raised.value)


def test_a_refused_password_is_said_as_the_server_says_it(project: Project, database_url: str) -> None:
    """ "Cannot reach the lab database" alone, with "start it", for a server that answered and refused the password."""
    wrong = make_url(database_url).set(password="not-the-password").render_as_string(hide_password=False)
    lab = Lab(project, UrlBackend(wrong))
    try:
        result = lab.runner.run("current")
        assert result.refused == "unreachable"
        assert "password authentication failed" in result.error, result.error
        assert "not-the-password" not in result.error + (result.hint or "")
        with pytest.raises(LabError, match="password authentication failed"):
            lab.db.connect()
    finally:
        lab.db.dispose()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda u: u.update_query_dict({"port": "1"}), "The driver said: connection to server on socket"),
        (lambda u: u._replace(database=None), "database of the user's name (none given)"),
    ],
    ids=["nothing listens there", "no database"],
)
def test_status_and_up_say_what_the_driver_said_when_the_server_does_not_let_the_kit_in(
    project: Project, database_url: str, change: Callable[[URL], URL], says: str
) -> None:
    """`up` and `status` said only "check that the server runs" (and "database None"): what libpq said (a refused
    password, no socket, a port nothing listens on) is the way to the fix."""
    url = change(make_url(database_url)).render_as_string(hide_password=False)  # no server there: libpq says so
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_") and k != "DATABASE_URL"}
    for command in ("status", "up"):
        done = subprocess.run(
            [sys.executable, "-m", "migration_lab", command],
            env={**env, "LAB_DATABASE_URL": url, "LAB_PROJECT_DIR": str(project.root)},
            cwd=project.root,
            capture_output=True,
            text=True,
        )
        said = done.stdout + done.stderr
        assert says in said and "Traceback" not in said, (command, said)
        assert str(make_url(database_url).password) not in said


def test_an_empty_database_url_in_the_shell_is_said_as_such_by_alembic(project: Project, database_url: str) -> None:
    """`export DATABASE_URL=` left in a shell: .env is not read, and env.py said "not set ... run up, which writes
    ai-service/.env" although .env was there."""
    (project.service_dir / ".env").write_text(f"DATABASE_URL={database_url}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "current"],
        cwd=project.service_dir,
        env={**env, "DATABASE_URL": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "set, but empty, in this shell" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_url_without_a_database_is_judged_by_the_database_libpq_picks(
    server: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No database in the URL (`postgresql://user:pw@host:5432`, or a trailing `/`): libpq logs into the one of the
    user's name. `status` and `up` said "database None does not exist" ("database  " for the `/`), and said it too
    when that database was there and refused the login for another reason (CONNECT revoked from PUBLIC)."""
    for name in ("PGDATABASE", "PGUSER"):  # libpq's defaults, which the kit follows too: none of the shell's here
        monkeypatch.delenv(name, raising=False)
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    role = "no_database_given"
    url = make_url(server.url()).set(username=role, password=SECRET)._replace(database=None)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'"))
        for spelling in (
            url.render_as_string(hide_password=False),
            url.set(database="").render_as_string(hide_password=False),
        ):
            backend = UrlBackend(spelling)
            assert backend.problem() == (
                f"database {role} does not exist on the server: ask whoever gave you LAB_DATABASE_URL (a workshop's "
                "instructor: `workshop add NAME` makes a learner's database again)"
            ), spelling
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {role}"))
            conn.execute(sa.text(f"REVOKE CONNECT ON DATABASE {role} FROM PUBLIC"))
        backend = UrlBackend(url.render_as_string(hide_password=False))
        assert backend.problem() is None and not backend.is_running()
        with pytest.raises(LabError, match=f'permission denied for database "{role}"'):
            backend.start()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()
