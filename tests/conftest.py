"""Shared fixtures: a real PostgreSQL for the whole session, a fresh database and
a temporary copy of ai-service/ for each test, so the tracked tree is never touched.

Helpers that tests import (and the benchmarks too) are in helpers.py."""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import copy_project
from migration_lab import EmbeddedBackend, Lab, Project, UrlBackend

_numbers = itertools.count()


@pytest.fixture(autouse=True)
def no_ipython_left_behind() -> Iterator[None]:
    """Each test starts outside IPython, as a script does.

    A widget's Output.append_display_data creates IPython's InteractiveShell singleton even in a plain process;
    left behind, it makes every later test look like a notebook kernel (its namespace, its input history), and a
    chapter graded on `answer` then says "`answer` is not defined yet" instead of judging the answer given.
    """
    yield
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """One embedded PostgreSQL for the session, stopped and deleted at the end whatever happens.

    Deleted, not just stopped: as root its data lives outside the temporary folder.
    """
    backend = EmbeddedBackend(tmp_path_factory.mktemp("server"), database="postgres")
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
        assert not backend.is_running(), f"the test server in {backend.pgdata} is still running"
        backend.destroy()


@pytest.fixture
def database_url(server: EmbeddedBackend) -> Iterator[str]:
    """A new, empty database of this test's own on the session's server."""
    name = f"test_{next(_numbers)}"
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(server.url()).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return copy_project(tmp_path / "project")


@pytest.fixture
def lab(project: Project, database_url: str) -> Iterator[Lab]:
    """The kit on a copy of ai-service/, against this test's own database."""
    lab = Lab(project, UrlBackend(database_url))
    yield lab
    lab.db.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests in tests/e2e/ (a real browser, a Docker engine, a JupyterHub) are marked e2e:
    `pytest -m "not e2e"` runs everything else."""
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if item.path.is_relative_to(e2e):
            item.add_marker(pytest.mark.e2e)
