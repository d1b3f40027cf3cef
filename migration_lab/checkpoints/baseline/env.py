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

# A program that runs Alembic in-process (pytest-alembic, the lab's runner)
# sets configure_logger to False and routes Alembic's log lines itself.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """DATABASE_URL from the environment, else from a .env beside alembic.ini."""
    load_dotenv(SERVICE_DIR / ".env")
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "DATABASE_URL is not set. In Docker it comes from docker-compose.yml; "
            "locally, run `python -m migration_lab up`, which writes ai-service/.env."
        )
    return url


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
    else:
        with connectable.connect() as connection:
            run_migrations(connection)


def run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
