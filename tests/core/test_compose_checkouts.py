"""Two checkouts on one machine are two compose stacks: own project name, own ports, own uid in `.env`.

No Docker needed: this is what `python -m migration_lab --backend compose up` writes before it
runs `docker compose up`, and what every `docker compose ...` typed in the checkout then reads.
"""

import os
import socket
from pathlib import Path

import pytest
from dotenv import dotenv_values

from helpers import copy_project
from migration_lab import ComposeBackend

KEYS = ("COMPOSE_PROJECT_NAME", "POSTGRES_PORT", "API_PORT", "LAB_UID", "LAB_GID")


@pytest.fixture(autouse=True)
def no_compose_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


def test_two_checkouts_get_their_own_name_and_ports(tmp_path: Path) -> None:
    first, second = (ComposeBackend(copy_project(tmp_path / name).root) for name in ("a", "b"))
    for backend in (first, second):
        backend.prepare()
    one, two = dotenv_values(first.root / ".env"), dotenv_values(second.root / ".env")
    assert one["COMPOSE_PROJECT_NAME"] != two["COMPOSE_PROJECT_NAME"]
    assert str(one["COMPOSE_PROJECT_NAME"]).startswith("migration-lab-")
    assert {one["POSTGRES_PORT"], one["API_PORT"]}.isdisjoint({two["POSTGRES_PORT"], two["API_PORT"]})
    assert one["LAB_UID"] == str(os.getuid()) and one["LAB_GID"] == str(os.getgid())
    assert one["POSTGRES_USER"] == "lab"  # made from .env.example
    assert first.project_name() == one["COMPOSE_PROJECT_NAME"] and one["COMPOSE_PROJECT_NAME"] in first.where()
    assert first.url().endswith(f"@127.0.0.1:{one['POSTGRES_PORT']}/ai_service")
    assert first.api_url() == f"http://127.0.0.1:{one['API_PORT']}"
    assert (first.root / ".env").stat().st_mode & 0o077 == 0  # it holds the password


def test_the_same_checkout_keeps_its_name_and_ports(tmp_path: Path) -> None:
    backend = ComposeBackend(copy_project(tmp_path / "a").root)
    backend.prepare()
    written = (backend.root / ".env").read_text()
    backend.prepare()
    assert (backend.root / ".env").read_text() == written
    assert ComposeBackend(backend.root).checkout_settings()["COMPOSE_PROJECT_NAME"] in written


def test_the_learners_own_values_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ComposeBackend(copy_project(tmp_path / "a").root)
    (backend.root / ".env").write_text("POSTGRES_USER=me\nPOSTGRES_PASSWORD=pw\nPOSTGRES_DB=x\nPOSTGRES_PORT=6543\n")
    monkeypatch.setenv("API_PORT", "18080")
    backend.prepare()
    values = dotenv_values(backend.root / ".env")
    assert values["POSTGRES_PORT"] == "6543" and "API_PORT" not in values  # kept; the environment sets it
    assert values["COMPOSE_PROJECT_NAME"] and values["POSTGRES_USER"] == "me"
    assert backend.api_url() == "http://127.0.0.1:18080"


def test_a_taken_port_is_not_chosen(tmp_path: Path) -> None:
    backend = ComposeBackend(copy_project(tmp_path / "a").root)
    preferred = int(backend.checkout_settings()["POSTGRES_PORT"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", preferred))
        taken.listen()
        assert int(backend.checkout_settings()["POSTGRES_PORT"]) != preferred
