"""Call the ai-api the way a client would, to see code and schema agree (or not).

On the compose route the real container answers on 127.0.0.1:8000. Otherwise
the app is loaded afresh from ai-service/main.py (as `uvicorn --reload` does
after an edit) and called in-process against the lab database.
"""

import os
from typing import Any

from .lab import Lab
from .workspace import load_models


def call(lab: Lab, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    """(status code, decoded JSON body) of one request to the ai-api."""
    if lab.backend.name == "compose":
        import httpx

        reply = httpx.request(method, f"http://127.0.0.1:8000{path}", json=json, timeout=10)
        return reply.status_code, reply.json()

    from fastapi.testclient import TestClient

    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = lab.backend.url()  # main.py reads it per request, and its .env never wins
    models = None
    try:
        models = load_models(lab.project)
        with TestClient(models.app) as client:
            response = client.request(method, path, json=json)
        return response.status_code, response.json()
    finally:
        if models is not None and models._engine is not None:
            models._engine.dispose()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
