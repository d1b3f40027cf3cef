"""The kit's guarded deploy entrypoint: `upgrade head` under a session advisory lock, so replicas take turns.

    python -m migration_lab.deploy            # the guarded entrypoint: lock, upgrade head, unlock
    python -m migration_lab.deploy --no-lock  # the same without the lock (what a naive entrypoint does)

Run in a service's folder (ai-service/) with DATABASE_URL set. Chapter 13
races two replicas of it (course/ch13_race.py); it imports nothing of the kit,
so a replica starts fast.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

# The key the kit's guarded entrypoint locks: any bigint every replica agrees on.
DEPLOY_LOCK_KEY = 13_2026


def upgrade_head(service_dir: Path, url: str, lock: bool = True) -> None:
    """`alembic upgrade head` for a service, guarded by a session advisory lock unless lock=False.

    The lock is taken on the very connection alembic migrates on: a session
    lock survives the transactions alembic commits (one per revision) and goes
    with the session if the process dies, so a crashed replica never leaves
    the others waiting. The replica that gets it second finds head: nothing to do.
    """
    config = Config(service_dir / "alembic.ini")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if lock:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": DEPLOY_LOCK_KEY})
                connection.commit()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            if lock:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": DEPLOY_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m migration_lab.deploy",
        description="Bring the database in $DATABASE_URL to head, for the service in the current folder.",
    )
    parser.add_argument("--no-lock", action="store_true", help="skip the advisory lock (two replicas then collide)")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set: run `python -m migration_lab up`, then `python -m migration_lab url`.")
        return 2
    upgrade_head(Path.cwd(), url, lock=not args.no_lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
