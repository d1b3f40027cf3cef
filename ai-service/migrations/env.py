"""Alembic's environment for the ai-service: where the models and the database come from."""

import os
import sys
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from dotenv import load_dotenv
from sqlalchemy import Connection, create_engine, pool

# The models live in ai-service/main.py, one folder above this file. Put that
# folder first on sys.path so `from main import ...` works from any working
# directory: the container's /app, a host shell in ai-service/, or a notebook.
SERVICE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SERVICE_DIR))

from main import Base  # noqa: E402  (needs the sys.path line above)

config = context.config

# This service's own helper, beside main.py: DATABASE_URL on the driver it installs.
from database_url import BadDatabaseURL, normalise  # noqa: E402

# A program that runs Alembic in-process (pytest-alembic, the lab's runner)
# sets configure_logger to False and routes Alembic's log lines itself.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """DATABASE_URL from the environment, else from a .env beside alembic.ini; any PostgreSQL spelling of it.

    Set in the environment (as docker-compose does), it wins and .env is not even
    read: in a container, .env may belong to another user.
    """
    if "DATABASE_URL" not in os.environ:
        load_dotenv(SERVICE_DIR / ".env")
    url = os.environ.get("DATABASE_URL")
    if url is not None and not url.strip():  # `export DATABASE_URL=` in this shell: .env is not read then
        raise SystemExit(
            "DATABASE_URL is set, but empty, in this shell, so ai-service/.env is not read. "
            "`unset DATABASE_URL` (or set it to the database's URL), then run the command again."
        )
    if not url:
        raise SystemExit(
            "DATABASE_URL is not set. In Docker it comes from docker-compose.yml; "
            "locally, run `python -m migration_lab up`, which writes ai-service/.env."
        )
    try:
        return normalise(url)
    except BadDatabaseURL as error:
        raise SystemExit(str(error)) from None


def revision_files(versions: Path) -> list[Path]:
    """The .py files alembic reads as revisions: not an editor's lock file (Emacs' `.#name.py`, a link to nowhere)
    nor `__init__.py`, which alembic skips too (loading one here turned the message into a traceback)."""
    return [p for p in sorted(versions.glob("*.py")) if not p.name.startswith((".#", "__init__"))]


def check_history() -> None:
    """A revision file whose parent's file is gone: say which, and the two ways out, not a bare KeyError.

    A file deleted while it is open in an editor comes back, alone, on the editor's next save.
    """
    import warnings

    from alembic.script.revision import RevisionError
    from alembic.util import load_python_file

    script = context.script
    # A filter, not catch_warnings() (not thread-safe): alembic first warns "Revision ... is not present".
    warnings.filterwarnings("ignore", r"Revision \S+ referenced from .+ is not present", UserWarning)
    versions = Path(script.versions)
    try:
        script.revision_map.heads  # alembic reads every revision file into its map here
        return
    except KeyError as error:
        missing, broken = error.args[0], error
    except RevisionError as error:  # a loop: a down_revision that names its own revision, or one after it
        named = [
            f"migrations/versions/{path.name}"
            for path in revision_files(versions)
            if str(getattr(load_python_file(versions, path.name), "revision", "?")) in str(error)
        ]
        raise SystemExit(
            f"alembic cannot read the history: {error} ({', '.join(named) or 'a revision file'}). Fix the "
            "down_revision there: it must name the revision this one follows."
        ) from None
    except Exception as error:  # a file that does not import: one line naming it, not 50 frames
        import traceback

        where = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).parent == versions]
        name = Path(getattr(error, "filename", None) or (where[-1].filename if where else "")).name
        if not name.endswith(".py"):
            raise
        line = getattr(error, "lineno", None) or (where[-1].lineno if where else "?")
        raise SystemExit(
            f"migrations/versions/{name} cannot be read (line {line}: {type(error).__name__}: {error}): alembic "
            f"cannot read the history. Fix that file, or delete it if the database has not applied it."
        ) from None
    parents, needs = {}, {}  # each file's revision: the revisions it revises; those its depends_on names
    for path in revision_files(versions):
        module = load_python_file(versions, path.name)
        down, depends = getattr(module, "down_revision", None), getattr(module, "depends_on", None)
        downs = (down,) if isinstance(down, str) else tuple(down or ())
        parents[path] = (str(getattr(module, "revision", "")), downs)
        needs[path] = (depends,) if isinstance(depends, str) else tuple(depends or ())
    for path, (revision, downs) in parents.items():
        if missing in downs or missing in needs[path]:
            way_back = "(`git checkout -- migrations/versions/`, or `python -m migration_lab restore`)"
            at = applied_at_or_after(revision, list(parents.values()))
            how = "revises" if missing in downs else "depends on"
            raise SystemExit(  # the words of the lab's kit too (migration_lab/running/history.py)
                f"migrations/versions/{path.name} {how} {missing}, and no revision file is {missing}: "
                "alembic cannot read the history.\n"
                + (
                    f"The database is at {at}, which is {path.name} or comes after it: keep {path.name}, and "
                    f"bring {missing}'s file back {way_back}."
                    if at
                    else f"Bring {missing}'s file back {way_back}; or, if the database never applied {path.name} "
                    "(the database could not be asked here), delete it."
                    if at is None
                    else f"Either delete {path.name} (its parent is gone for good: a reset removed it, say, while "
                    f"{path.name} was open in an editor), or bring {missing}'s file back {way_back}."
                )
            )
    raise broken  # not a missing parent: alembic's own error


def applied_at_or_after(revision: str, files: list) -> str | None:
    """The revision the database is at that is `revision` or comes after it in `files` ((revision, parents) of
    each); "" when it is at none of them; None when it cannot be asked (offline, down, no URL, or a program that
    runs Alembic in-process: it says this itself)."""
    after, grew = {revision}, True
    while grew:
        grew = False
        for child, downs in files:
            if child not in after and after.intersection(downs):
                after.add(child)
                grew = True
    if context.is_offline_mode() or config.attributes.get("connection") is not None:
        return None
    from sqlalchemy import text

    try:
        engine = create_engine(database_url(), poolclass=pool.NullPool, connect_args={"connect_timeout": 5})
        with engine.connect() as connection:
            at = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
        engine.dispose()
    except (Exception, SystemExit):  # no database to ask: the general way out is said
        return None
    return min(at & after, default="")


def configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        # Compare column types (compare_type=True has been alembic's default since 1.12; said here so it is seen)
        # and server defaults (compare_server_default: the one that is opt-in).
        compare_type=True,
        compare_server_default=True,
        # Each revision commits with its alembic_version entry: see run_migrations_online().
        transaction_per_migration=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """`alembic upgrade A:B --sql`: print the SQL instead of running it.

    Only the dialect matters here. A program running Alembic in-process may
    set sqlalchemy.url; otherwise DATABASE_URL, as online.
    """
    url = config.get_main_option("sqlalchemy.url") or database_url()
    configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database, each revision in a transaction of its own.

    PostgreSQL runs DDL inside transactions, so a revision that fails half-way
    is rolled back, its alembic_version entry included; the revisions before it
    stay applied and recorded. One transaction per revision keeps alembic_version
    true even when a revision commits part of its work itself (autocommit_block):
    its effects are never committed together with an earlier revision's entry.

    A program running Alembic in-process (the lab's runner, pytest-alembic)
    may hand over its own Connection or Engine as the "connection" attribute.
    """
    connectable = config.attributes.get("connection") or create_engine(
        database_url(), poolclass=pool.NullPool
    )
    if isinstance(connectable, Connection):
        run_migrations(connectable)
        return
    from sqlalchemy.exc import OperationalError

    try:
        connection = connectable.connect()
    except OperationalError as error:  # one line, as the lab's kit says it: not 40 frames of SQLAlchemy
        said = str(error.orig).strip().splitlines()
        raise SystemExit(
            f"Cannot connect to the database: {said[0] if said else error}. Is it running? Locally: "
            "`python -m migration_lab up` (or `make lab`); with Docker: `docker-compose up -d`."
        ) from None
    with connection:
        run_migrations(connection)


def run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


check_history()
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
