"""pytest-alembic's built-in checks on the lab's own migrations, as a team's CI runs them.

They run in a scratch database next to the lab's (they upgrade and downgrade
freely), through a throw-away conftest that points pytest-alembic at
ai-service/alembic.ini.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.connection import COPY_PREFIX, hold_as_copy, maintenance_engine
from ..database.sql import create_private_database, quote
from ..errors import LabError
from ..lab import Lab

BUILT_IN = ("test_single_head_revision", "test_upgrade", "test_model_definitions_match_ddl", "test_up_down_consistency")

CONFTEST = """
import pytest
import sqlalchemy as sa
from alembic.config import Config


@pytest.fixture
def alembic_config():
    config = Config({ini!r})
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture
def alembic_engine():
    engine = sa.create_engine({url!r})
    yield engine
    engine.dispose()
"""


def _owner(url: str) -> tuple[sa.Engine, sa.Connection]:
    """An autocommit session that makes, holds and drops the scratch database: on the maintenance database, where
    the copies' sweeps look for their owners' locks; on the lab's own database where the server refuses that one
    (`REVOKE CONNECT ON DATABASE postgres`, a pooler that lists only the lab's): the tests run there too, and no
    sweep can look there either."""
    maintenance = maintenance_engine(url)
    try:
        return maintenance, maintenance.connect()
    except sa.exc.OperationalError:
        maintenance.dispose()
    own = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    return own, own.connect()


def run(lab: Lab, tests: tuple[str, ...] = BUILT_IN) -> tuple[bool, str]:
    """(all passed, pytest's report) for the chosen built-in checks."""
    import pytest_alembic.tests  # what it has, asked of it (imported here: it loads pytest)

    unknown = [name for name in tests if not name.startswith("test_") or not hasattr(pytest_alembic.tests, name)]
    if unknown:
        raise LabError(
            f"pytest-alembic has no check named {', '.join(unknown)}.",
            f"Its checks: {', '.join(n for n in dir(pytest_alembic.tests) if n.startswith('test_'))}.",
        )
    admin_url = make_url(lab.backend.url())
    # Not in the lab_ namespace a workshop gives its learners' databases, and from template0: on a shared server
    # anyone may put large objects in template1. A copy's name, held as one by `owner` while it exists: a kernel
    # killed during the tests leaves it to the next command's sweep.
    scratch = f"{COPY_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        admin, owner = _owner(lab.backend.url())
    except sa.exc.DBAPIError as error:
        raise LabError(
            f"Cannot reach the server for the migration tests: {error.orig}",
            "`python -m migration_lab status` says what is wrong with the lab database.",
        ) from error
    try:
        try:
            hold_as_copy(owner, scratch)
            # On a shared server, the scratch database is the learner's alone while it exists.
            create_private_database(owner, scratch, "template0")
        except sa.exc.DBAPIError as error:
            raise LabError(
                f"Cannot create a scratch database for the migration tests: {error.orig}",
                "Use the embedded database, or a server where you may CREATE DATABASE.",
            ) from error
        done = _pytest(lab, admin_url.set(database=scratch).render_as_string(hide_password=False), tests)
    finally:  # on every way out (Ctrl-C too): nothing left open that holds the scratch database from a sweep
        # A session the server closed meanwhile cannot drop it: the next command's sweep does.
        with contextlib.suppress(sa.exc.DBAPIError):
            owner.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(scratch)} WITH (FORCE)"))
        owner.close()
        admin.dispose()
    report = _report(done.stdout)
    if not report:  # pytest ran no check at all: say why, not an empty report and "Some migration tests FAIL"
        said = [line.strip(" =!") for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR")]
        said = said or [line.strip(" =!") for line in (done.stdout + done.stderr).splitlines() if line.strip(" =!")]
        raise LabError(
            f"pytest-alembic ran none of the checks (pytest's exit code {done.returncode}): " + " / ".join(said[-3:]),
            f"The checks it has: {', '.join(BUILT_IN)}. `ch.run_migration_tests()` runs them all.",
        )
    return done.returncode == 0, report


def _without_pytest_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without what configures pytest itself (options, plugins to load)."""
    return {name: value for name, value in environ.items() if name not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}


def _pytest(lab: Lab, url: str, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """pytest-alembic's `tests` on the database at `url`, in a throw-away folder."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST.format(ini=str(lab.project.service_dir / "alembic.ini"), url=url))
        (folder / "test_migrations.py").write_text(
            f"from pytest_alembic.tests import {', '.join(tests)}  # noqa: F401\n"
        )
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-v",
                "--tb=no",
                "-rfE",  # failures and errors: why a check failed, or could not run
                "--color=no",
                "-p",
                "no:cacheprovider",
                "-p",
                "pytest_alembic.plugin",
                "--rootdir",
                tmp,
                "--no-header",
                str(folder),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
            # Only pytest-alembic: the other plugins installed (nbval's Jupyter stack) take seconds to load; and not
            # the shell's pytest settings (PYTEST_ADDOPTS naming a team's tests made this run collect nothing).
            env={**_without_pytest_settings(os.environ), "COLUMNS": "400", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )


def _report(stdout: str) -> str:
    """One line per check (PASSED/FAILED), then why each failure failed."""
    lines = []
    for line in stdout.splitlines():
        if "::" in line and (" PASSED" in line or " FAILED" in line):
            name, verdict = line.split("::", 1)[1].split()[:2]
            lines.append(f"{verdict:<7}{name}")
        elif line.startswith("FAILED ") and " - " in line:
            name = line.split("::", 1)[1].split(" - ", 1)[0]
            lines.append(f"  {name}: {line.split(' - ', 1)[1]}")
    return "\n".join(lines)
