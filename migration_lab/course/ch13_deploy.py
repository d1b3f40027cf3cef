"""Migrations in production (chapter 13): who runs `upgrade head`, and what CI checks before it does.

The calls chapter 13's cells make: the release it deploys (a model change and
its revision, a slow backfill included), the service's naive entrypoint, the
race of two replicas (`ch13_race`), what `alembic check` cannot see
(`ch13_drift`), and the exercise's checks.
"""

from __future__ import annotations

import inspect

from ..deploy import DEPLOY_LOCK_KEY, upgrade_head
from ..lab import Lab
from ..workspace.backups import save_work
from ..workspace.baseline import bring_revision
from ..workspace.edits import add_column, apply_edit, model_attributes
from . import checks
from .ch13_drift import drift
from .ch13_race import CLI, race
from .checks import Check

__all__ = [
    "CLI",
    "drift",
    "exercise",
    "exercise_start",
    "race",
    "show_file",
    "show_guarded_entrypoint",
    "show_post_write_hooks",
]

# The release: two revisions, each with a slow backfill, and the model lines they go with.
RELEASE_REVISION = "e5a9c2d7b3f1"
RELEASE_FILE = f"{RELEASE_REVISION}_add_plan_to_profile.py"
RELEASE_FILES = (RELEASE_FILE, "f6b8d4a2c9e7_add_plan_changed_at_to_profile.py")
PLAN_COLUMN = 'plan = Column(String(20), nullable=False, server_default="free")'
PLAN_CHANGED_AT = "plan_changed_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())"

# What a service's container runs before the app starts, as teams first write it: no guard.
ENTRYPOINT = "migrate.py"
UNGUARDED_ENTRYPOINT = '''"""Bring the database to head before the app starts (`python migrate.py && uvicorn ...`)."""

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from dotenv import load_dotenv
from sqlalchemy import create_engine, pool, text

HERE = Path(__file__).resolve().parent


def main() -> None:
    load_dotenv(HERE / ".env")  # as env.py does: DATABASE_URL from the container, else from ai-service/.env
    config = Config(HERE / "alembic.ini")
    engine = create_engine(os.environ["DATABASE_URL"], poolclass=pool.NullPool)
    with engine.connect() as connection:
        config.attributes["connection"] = connection  # env.py runs the migrations on this connection
        command.upgrade(config, "head")


if __name__ == "__main__":
    main()
'''


# --- the release and the entrypoint --------------------------------------------------------


def exercise_start(lab: Lab) -> str:
    """The chapter's exercise start: a release to deploy (model + revision) and the service's naive entrypoint.

    A migrate.py the learner changed is backed up first, with the rest of their work, and the backup named.
    """
    service = lab.project.service_dir
    for name, line in (("plan", PLAN_COLUMN), ("plan_changed_at", PLAN_CHANGED_AT)):
        if name not in model_attributes((service / "main.py").read_text(), "UserProfile"):  # run again: once
            apply_edit(service / "main.py", add_column("UserProfile", line), lab.project.root)
    kept_files = [f for f in RELEASE_FILES if not bring_revision(lab.project.versions_dir, f)]  # yours stay
    entrypoint = service / ENTRYPOINT
    kept = ""
    if entrypoint.is_file() and entrypoint.read_text() != UNGUARDED_ENTRYPOINT:
        backup = save_work(lab)
        if backup is not None:
            kept = f" Your earlier migrate.py is in .lab/backups/{backup.name}/ai-service/migrate.py."
    entrypoint.write_text(UNGUARDED_ENTRYPOINT)
    return (
        "The release to deploy: UserProfile.plan and .plan_changed_at in main.py, and their two revisions in "
        f"ai-service/migrations/versions/, {' and '.join(RELEASE_FILES)} (not applied yet). The service's "
        f"entrypoint, ai-service/{ENTRYPOINT}, runs `upgrade head` before the app starts.{kept}"
        + (f" Your changed {' and '.join(kept_files)} are kept as they are." if kept_files else "")
    )


def show_file(lab: Lab, path: str) -> None:
    """A file of ai-service/, highlighted, as the editor shows it."""
    from IPython.display import Markdown, display

    text = (lab.project.service_dir / path).read_text().rstrip()
    display(Markdown(f"`ai-service/{path}`:\n\n```python\n{text}\n```"))


def show_guarded_entrypoint() -> None:
    """The kit's guarded `upgrade head`, as its source says (`python -m migration_lab.deploy` runs it)."""
    from IPython.display import Markdown, display

    source = inspect.getsource(upgrade_head)
    display(Markdown(f"`migration_lab/deploy.py` (`DEPLOY_LOCK_KEY = {DEPLOY_LOCK_KEY}`):\n\n```python\n{source}```"))


# What alembic.ini needs to format every revision it writes with ruff (`python -m ruff`, alembic's own Python).
POST_WRITE_HOOKS = """[post_write_hooks]
hooks = ruff_format
ruff_format.type = module
ruff_format.module = ruff
ruff_format.options = format REVISION_SCRIPT_FILENAME
"""


def show_post_write_hooks() -> None:
    """The [post_write_hooks] section, for a project whose venv has ruff (the course's venv does not)."""
    from IPython.display import Markdown, display

    display(Markdown(f"`alembic.ini`:\n\n```ini\n{POST_WRITE_HOOKS}```"))


# --- the exercise ---------------------------------------------------------------------------------

ENV_PY = "migrations/env.py"
RACES = 2  # a guard that lets go too early does not fail every race: each check races twice
# The answer the hints lead to: env.py's run_migrations() with a session lock, committed before configure().
GUARDED_RUN_MIGRATIONS = """def run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(13)"))  # a session lock: it outlives each revision's commit
    connection.commit()  # ... and commit, so that alembic owns the transactions it runs the revisions in
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
    connection.execute(text("SELECT pg_advisory_unlock(13)"))
    connection.commit()
"""


def exercise(lab: Lab, answer: object = None) -> list[Check]:
    """Make `alembic upgrade head` itself safe for two replicas (an init container runs it), then deploy.

    Raced for real, twice, on a copy of the database one release behind: the release has two revisions, so a
    guard that lets go after the first one (pg_advisory_xact_lock, with transaction_per_migration) fails too.
    """
    races = []
    for _ in range(RACES):
        races.append(race(lab, CLI))
        if races[-1].failures or not races[-1].one_migrated_one_waited:
            break
    raced = races[-1]
    failed = raced.failures
    if failed and all(replica.error is None for replica in failed):  # every upgrade ran, and none stayed
        went_wrong = (
            f"Each replica ran the release, and none of it stayed ({failed[0].problem}). A statement before "
            "configure() (your lock) opens a transaction on the connection; alembic runs the revisions in it, "
            "takes it for yours and never commits it: the upgrade is rolled back as the connection closes. "
            f"Commit right after taking the lock. The init container runs `{CLI}`, and with it {ENV_PY}."
        )
    elif (
        failed
        and len(failed) == len(raced.replicas)
        and len({r.problem for r in failed}) == 1
        and not any(r.applied for r in raced.replicas)
    ):
        went_wrong = (  # not a race: env.py (or a revision) fails for each one alone
            f"Neither replica got as far as a revision: each failed the same way on its own ({failed[0].problem}). "
            f"That is {ENV_PY} (or a revision) failing for any single `{CLI}`, before there is anything to take "
            f"turns over. Run `{CLI}` once in a terminal in ai-service/ to read it, fix it, then guard the race."
        )
    else:
        went_wrong = (
            "Both replicas read the database one release behind and start the same revisions; one of them ends "
            f"badly ({failed[0].problem if failed else ''}). Make them take turns: the second must wait until "
            "the first has finished the whole release, then find nothing to do. The init container runs "
            f"`{CLI}`, not migrate.py: the one file of yours it runs is {ENV_PY}."
        )
    return [
        Check(
            f"two replicas of `{CLI}` started at once: neither fails",
            not failed,
            (
                went_wrong,
                "A PostgreSQL advisory lock in env.py's run_migrations(), on the connection alembic migrates on: "
                "pg_advisory_lock(<key>), a session lock (a transaction lock, pg_advisory_xact_lock, goes with the "
                "first revision's commit: this project's env.py commits each revision). Mind chapter 11's trap: a "
                "statement before configure() opens a transaction alembic then takes for yours and never commits; "
                "commit after taking the lock. Release it after context.run_migrations().",
                f"In ai-service/{ENV_PY}, import text from sqlalchemy and make run_migrations():\n"
                f"{GUARDED_RUN_MIGRATIONS}",
            ),
        ),
        Check(
            "exactly one replica upgrades; the other waits and finds the database at head",
            raced.one_migrated_one_waited,
            (
                f"What the race saw:\n{raced}\nThe second replica must wait (not skip, not fail) until the "
                "database is at head: an app that starts before then serves the old schema.",
                "pg_advisory_lock waits; pg_try_advisory_lock returns false at once. Wait, then run the upgrade: "
                "alembic finds head and does nothing.",
                f"run_migrations() in ai-service/{ENV_PY}:\n{GUARDED_RUN_MIGRATIONS}",
            ),
        ),
        Check(
            "the release is deployed: your database is at head",
            bool(lab.db.heads()) and not checks.pending(lab),
            (
                f"`{CLI}` is safe now: deploy the release to your own database with it.",
                f"In a terminal, `cd ai-service` and `{CLI}` (Docker: `docker compose exec ai-api {CLI}`); or the "
                "console's upgrade head button.",
                'ch.alembic("upgrade head")',
            ),
        ),
    ]
