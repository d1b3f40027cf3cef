"""Call the ai-api the way a client would, to see code and schema agree (or not).

On the compose route the real container answers on 127.0.0.1:8000. Otherwise
the app is loaded afresh from ai-service/main.py (as `uvicorn --reload` does
after an edit) and called in-process against the lab database.
"""

import importlib.util
import os
import sys
from typing import Any

from .lab import Lab


def call(lab: Lab, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    """(status code, decoded JSON body) of one request to the ai-api."""
    if lab.backend.name == "compose":
        import httpx

        response = httpx.request(method, f"http://127.0.0.1:8000{path}", json=json, timeout=10)
        return response.status_code, response.json()

    from fastapi.testclient import TestClient

    name = "_migration_lab_ai_api"
    spec = importlib.util.spec_from_file_location(name, lab.project.service_dir / "main.py")
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = lab.backend.url()
    try:
        spec.loader.exec_module(module)
        with TestClient(module.app) as client:
            response = client.request(method, path, json=json)
        return response.status_code, response.json()
    finally:
        if module.__dict__.get("_engine") is not None:
            module._engine.dispose()
        sys.modules.pop(name, None)
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
