"""Migrations in production (chapter 13): who runs `upgrade head`, and what CI checks before it does.

The calls chapter 13's cells make: the release it deploys (a model change and
its revision, a slow backfill included), the service's naive entrypoint, the
race of two replicas (`ch13_race`), what `alembic check` cannot see
(`ch13_drift`), and the exercise's checks.
"""

from __future__ import annotations

import inspect
import shutil

from ..deploy import DEPLOY_LOCK_KEY, upgrade_head
from ..lab import Lab
from ..workspace.baseline import REVISIONS
from ..workspace.edits import add_column, apply_edit, model_attributes
from .ch13_drift import drift
from .ch13_race import race
from .checks import Check

__all__ = [
    "drift",
    "exercise",
    "exercise_start",
    "race",
    "show_file",
    "show_guarded_entrypoint",
    "show_post_write_hooks",
]

RELEASE_REVISION = "e5a9c2d7b3f1"
RELEASE_FILE = f"{RELEASE_REVISION}_add_plan_to_profile.py"
PLAN_COLUMN = 'plan = Column(String(20), nullable=False, server_default="free")'

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
GUARD_LOCK = '        connection.execute(text("SELECT pg_advisory_lock(13)"))\n        connection.commit()\n'
GUARD_UNLOCK = '        connection.execute(text("SELECT pg_advisory_unlock(13)"))\n        connection.commit()\n'


# --- the release and the entrypoint --------------------------------------------------------


def exercise_start(lab: Lab) -> str:
    """The chapter's exercise start: a release to deploy (model + revision) and the service's naive entrypoint.

    A migrate.py the learner changed is kept as migrate.py.bak (resets save main.py and revisions only).
    """
    service = lab.project.service_dir
    if "plan" not in model_attributes((service / "main.py").read_text(), "UserProfile"):  # run again: once
        apply_edit(service / "main.py", add_column("UserProfile", PLAN_COLUMN), lab.project.root)
    shutil.copy(REVISIONS / RELEASE_FILE, lab.project.versions_dir / RELEASE_FILE)
    entrypoint = service / ENTRYPOINT
    kept = ""
    if entrypoint.is_file() and entrypoint.read_text() != UNGUARDED_ENTRYPOINT:
        entrypoint.with_name(ENTRYPOINT + ".bak").write_text(entrypoint.read_text())
        kept = " Your earlier migrate.py is kept as ai-service/migrate.py.bak."
    entrypoint.write_text(UNGUARDED_ENTRYPOINT)
    return (
        "The release to deploy: UserProfile.plan in main.py and its revision "
        f"ai-service/migrations/versions/{RELEASE_FILE} (not applied yet). The service's entrypoint, "
        f"ai-service/{ENTRYPOINT}, runs `upgrade head` before the app starts.{kept}"
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


def exercise(lab: Lab, answer: object = None) -> list[Check]:
    """Make the service's migrate.py safe for two replicas, then deploy the release."""
    entrypoint = lab.project.service_dir / ENTRYPOINT
    if not entrypoint.is_file():
        return [
            Check(
                f"ai-service/{ENTRYPOINT} exists",
                False,
                (
                    "The service's entrypoint is gone: the exercise needs it to race two replicas.",
                    "Reset the chapter's exercise: ch.start_exercise() writes it again (your files are kept).",
                ),
            )
        ]
    raced = race(lab, entrypoint)
    failed = raced.failures
    return [
        Check(
            f"two replicas of {ENTRYPOINT} started at once: neither fails",
            not failed,
            (
                "Both replicas read the database one release behind and start the same revision; one of them ends "
                f"badly ({failed[0].problem if failed else ''}). Make them take turns: the second must wait until "
                "the first has finished, then find nothing to do.",
                "PostgreSQL's advisory locks: `SELECT pg_advisory_lock(<key>)` waits until no other session holds "
                "that key. Take it on the connection alembic migrates on, before command.upgrade(), and release it "
                "with pg_advisory_unlock(<key>) after; commit after taking it (env.py starts its own transactions).",
                "In main() of ai-service/migrate.py, inside `with engine.connect() as connection:` and before "
                f'`command.upgrade`:\n{GUARD_LOCK}and after `command.upgrade(config, "head")`:\n{GUARD_UNLOCK}',
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
                f"Take the lock with\n{GUARD_LOCK}before command.upgrade, and release it after.",
            ),
        ),
        Check(
            "the release is deployed: your database is at head",
            lab.db.heads() == tuple(lab.runner.script().get_heads()),
            (
                "Your migrate.py is safe now: deploy the release to your own database with it.",
                "In a terminal, `cd ai-service` and `python migrate.py` (it runs upgrade head); or the "
                "console's upgrade head button.",
                'ch.alembic("upgrade head")',
            ),
        ),
    ]
