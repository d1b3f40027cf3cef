"""The ai-api: fails visibly while code and schema disagree, works after `upgrade head`."""

from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from helpers import add_phone_number
from migration_lab import Lab
from migration_lab.workspace.edits import load_models


def load_main(lab: Lab) -> ModuleType:
    """Import the copy's main.py afresh, as uvicorn --reload does after an edit."""
    return load_models(lab.project)


def test_api_follows_the_schema(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", lab.backend.url())
    with TestClient(load_main(lab).app) as api:
        assert api.get("/health").json() == {"status": "ok"}
        missing = api.get("/profiles")
        assert missing.status_code == 503 and "Run `alembic upgrade head`" in missing.json()["detail"]

    assert lab.runner.run("upgrade head").ok
    with TestClient(load_main(lab).app) as api:
        created = api.post("/profiles", json={"name": "Ada", "email": "ada@example.org"})
        assert created.status_code == 201
        assert api.post("/profiles", json={"name": "Ada", "email": "ada@example.org"}).status_code == 409
        assert [p["name"] for p in api.get("/profiles").json()] == ["Ada"]

    add_phone_number(lab.project)  # code ahead of the schema
    with TestClient(load_main(lab).app) as api:
        behind = api.get("/profiles")
        assert behind.status_code == 503
        assert "phone_number" in behind.json()["detail"] and "alembic upgrade head" in behind.json()["detail"]

    assert lab.runner.run(["revision", "--autogenerate", "-m", "Add phone number to profile"]).ok
    assert lab.runner.run("upgrade head").ok
    with TestClient(load_main(lab).app) as api:
        [profile] = api.get("/profiles").json()
        assert profile["phone_number"] is None and profile["email"] == "ada@example.org"
