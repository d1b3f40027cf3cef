"""Call the ai-api the way a client would, to see code and schema agree (or not).

On the compose route the real container answers on 127.0.0.1 (API_PORT in
`.env`); after an edit to main.py the call first waits until `uvicorn --reload`
serves the saved models (its /version reports their fingerprint). Otherwise the
app is loaded afresh from ai-service/main.py (as `uvicorn --reload` does after
an edit) and called in-process against the lab database.
"""

import os
import time
from pathlib import Path
from typing import Any

from ..database.compose import ComposeBackend
from ..lab import Lab
from ..project import Project
from ..workspace.edits import load_models

NUDGE_AFTER = 3.0  # seconds of an API serving other models before main.py's mtime is renewed


def call(lab: Lab, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    """(status code, decoded JSON body) of one request to the ai-api."""
    if isinstance(lab.backend, ComposeBackend):
        import httpx

        base = lab.backend.api_url()
        wanted = saved_models_fingerprint(lab)
        if wanted is not None:
            wait_for_reload(base, wanted, lab.project.service_dir / "main.py")
        reply = httpx.request(method, f"{base}{path}", json=json, timeout=10)
        return reply.status_code, reply.json()

    return call_in_process(lab.project, lab.backend.url(), method, path, json)


def call_in_process(project: Project, url: str, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    """(status code, decoded JSON body) of one request to the ai-api of `project`'s main.py, loaded afresh and run
    in this process against the database at `url` (a throw-away copy, say). An exception the app raises is
    raised here, as the server would log it."""
    from fastapi.testclient import TestClient

    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url  # main.py reads it per request, and its .env never wins
    models = None
    try:
        models = load_models(project)
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


def saved_models_fingerprint(lab: Lab) -> str | None:
    """The fingerprint ai-service/main.py's models have as saved; None when main.py does not import."""
    saved = os.environ.get("DATABASE_URL")
    try:
        return str(load_models(lab.project).models_fingerprint())
    except Exception:  # a learner's main.py mid-edit: a SyntaxError, an ImportError, anything
        return None
    finally:  # main.py loads its .env, which must not leak into this process
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved


def wait_for_reload(base: str, fingerprint: str, main_py: Path | None = None, timeout: float = 30) -> bool:
    """Wait until the ai-api at `base` serves these models (`uvicorn --reload` restarts it on a save).

    The fingerprint is computed from the models the running process compiled,
    so a process that imported main.py just before the last save never passes
    for the new one. uvicorn's polling reloader forgets a save made while it
    restarts the app; when the API keeps answering with other models for
    NUDGE_AFTER seconds, `main_py`'s modification time is renewed (its content
    untouched) so the reloader sees it. True once /version reports the
    fingerprint; False after `timeout` (the API then answers whatever it answers).
    """
    import httpx

    deadline = time.monotonic() + timeout
    stale_since: float | None = None
    while True:
        try:
            served = httpx.get(f"{base}/version", timeout=2).json().get("models")
        except (httpx.HTTPError, ValueError, AttributeError):
            served = None  # restarting: refused, reset, or not JSON yet
        if served == fingerprint:
            return True
        now = time.monotonic()
        if served is None:
            stale_since = None
        elif stale_since is None:
            stale_since = now
        elif main_py is not None and now - stale_since > NUDGE_AFTER:
            os.utime(main_py)
            stale_since = None
        if now > deadline:
            return False
        time.sleep(0.1)
