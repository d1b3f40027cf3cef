"""Replicas of a service's migration entrypoint, for `deploy.race`: a warm process that forks them.

    python migration_lab/replica.py     # reads one race per line on stdin, until stdin closes

Each line is JSON: {"service_dir", "database_url", "results", "barrier_key",
"target", "numbers"}, where target is ["migrate.py"], ["-m", "migration_lab.deploy", ...] or
["-m", "alembic", "upgrade", "head"] (the command line itself), and numbers the replicas this
process runs (both, [0, 1], when not given; the race gives each of its two warm processes one,
so that the replicas do not share a hash seed, as two containers do not).
For each, it forks one process per replica, each with its own database session, that
wait at the barrier (a shared advisory lock on barrier_key that the race
holds) and run the entrypoint in the service's folder the moment the race lets
go. Each writes <results>/replica<N>.json: the upgrade steps alembic applied
(as its `on_version_apply` callback saw them), its error, and the database's
revision as it exited.

Why warm processes that fork: a replica's cold start (SQLAlchemy, alembic,
the service's main.py with FastAPI) takes most of a second, twice per race, on
two cores that the notebook's kernel shares. Imported once here (in each of the
race's two warm processes), every race costs only what it measures: the
migrations. The processes raced are still two real processes with two database
sessions, and two hash seeds: forks of one process would share one, and a lock
keyed on hash("name") would be one lock in the race and two in production.

Run by path, so that the kit's package (and IPython with it) is not imported;
this file's folder is taken off sys.path, where its neighbours would shadow
top-level modules. It exits when stdin closes, i.e. with the kernel that started it.
"""

import hashlib
import json
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.pop(0)

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext

APPLIED: list[tuple[str, str]] = []  # the upgrade steps this process applied (each forked replica has its own)


def describe(error: BaseException) -> str:
    """The database's own error class and message when there is one (DuplicateColumn: ...)."""
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {str(error.orig).strip().splitlines()[0]}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def record_applied_steps() -> None:
    """Add a callback to whatever env.py passes to configure(): alembic calls it for every step it applies."""
    configure = EnvironmentContext.configure

    def record(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        if step.is_upgrade and not step.is_stamp:
            APPLIED.append((",".join(step.down_revision_ids), step.up_revision_id))

    def configure_and_record(self: EnvironmentContext, *args: Any, **kwargs: Any) -> None:
        callbacks = kwargs.get("on_version_apply") or ()
        kwargs["on_version_apply"] = [*(callbacks if isinstance(callbacks, Sequence) else [callbacks]), record]
        configure(self, *args, **kwargs)

    EnvironmentContext.configure = configure_and_record  # type: ignore[method-assign]


def run(target: list[str]) -> str | None:
    """Run the entrypoint as `python <target>` would; its error, or None."""
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exit_:
        return None if exit_.code in (None, 0) else f"exited with {exit_.code}"
    except Exception as exception:  # the replica's crash is the result being measured
        return describe(exception)
    return None


def replica(race: dict[str, Any], number: int) -> None:
    """One replica, in a forked process: wait at the barrier, run the entrypoint, write what happened."""
    result: dict[str, Any] = {"applied": [], "error": None, "at_exit": []}
    try:
        os.chdir(race["service_dir"])
        os.environ["DATABASE_URL"] = race["database_url"]
        engine = sa.create_engine(race["database_url"], poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock_shared(:key)"), {"key": race["barrier_key"]})
        result["error"] = run(race["target"])
        result["applied"] = APPLIED
        with engine.connect() as conn:
            result["at_exit"] = MigrationContext.configure(conn).get_current_heads()
        engine.dispose()
    except BaseException as error:  # whatever happens, the race gets an answer
        result["error"] = result["error"] or describe(error)
    path = Path(race["results"]) / f"replica{number}.json"
    path.with_suffix(".tmp").write_text(json.dumps(result))
    os.replace(path.with_suffix(".tmp"), path)


def load_service(service_dir: str, loaded: dict[str, str]) -> None:
    """The service's main.py, imported before the fork (again when it changed), as env.py will import it."""
    source = Path(service_dir, "main.py").read_bytes()
    fingerprint = hashlib.sha256(source).hexdigest()
    if loaded.get("main") != f"{service_dir}:{fingerprint}":
        sys.modules.pop("main", None)
        sys.path[:] = [service_dir, *(p for p in sys.path if p != loaded.get("dir"))]
        import main  # noqa: F401

        loaded.update(main=f"{service_dir}:{fingerprint}", dir=service_dir)


def serve() -> None:
    record_applied_steps()
    loaded: dict[str, str] = {}
    for line in sys.stdin:
        race = json.loads(line)
        load_service(race["service_dir"], loaded)
        if race["target"][0] == "-m":
            __import__(race["target"][1])  # the entrypoint's module and its package, loaded before the fork too
        APPLIED.clear()
        children = []
        for number in race.get("numbers", (0, 1)):
            child = os.fork()
            if child == 0:
                try:
                    replica(race, number)
                finally:
                    os._exit(0)  # never back into the loop, nor through the parent's exit handlers
            children.append(child)
        for child in children:
            os.waitpid(child, 0)


if __name__ == "__main__":
    serve()
