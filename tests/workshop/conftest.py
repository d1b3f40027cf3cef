"""Fixtures of the workshop tests: a throw-away shared server per module (its instructor a superuser unless the
module parametrizes `server`), the workshop on it, learners made for one test and removed after it."""

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import REPO
from hostile import Server, start_server
from migration_lab import Project
from migration_lab.workshop.instructor import Workshop


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One server per module, its instructor a superuser (modules parametrize `server` for both kinds)."""
    yield from start_server("superuser")


@pytest.fixture(scope="module")
def server_url(server: Server) -> str:
    return server.superuser_url


@pytest.fixture(scope="module")
def shop(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Workshop:
    workshop = Workshop(
        server.instructor_url, roster=tmp_path_factory.mktemp("roster") / "roster.json", project=Project(REPO)
    )
    workshop.init()
    return workshop


@pytest.fixture
def learner(shop: Workshop) -> Iterator[Callable[[str], str]]:
    """learner(name) -> their URL: a learner added for this test, removed after it (whatever they made)."""
    made: list[str] = []

    def add(name: str) -> str:
        made.append(name)
        return shop.add(name).database_url

    yield add
    for name in made:
        shop.remove(name)


@pytest.fixture
def marker() -> Iterator[Path]:
    """A path a trap run as a superuser would write (COPY ... TO PROGRAM, as the server's OS user)."""
    path = Path(f"/tmp/mlab-trap-{secrets.token_hex(6)}")
    yield path
    path.unlink(missing_ok=True)
