"""Call the ai-api the way a client would, to see code and schema agree (or not).

On the compose route the real container answers on 127.0.0.1 (API_PORT in
`.env`); after an edit to main.py the call first waits until `uvicorn --reload`
serves the saved models (its /version reports their fingerprint). Otherwise the
app is loaded from ai-service/main.py and called in-process against the lab
database: afresh for a single call, and, while a busy app's clients keep it
loaded (`kept_loaded`), once per saved content of main.py, as `uvicorn --reload`
serves a file until its next save.
"""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
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
    """(status code, decoded JSON body) of one request to the ai-api of `project`'s main.py, run in this process
    against the database at `url` (a throw-away copy, say): loaded afresh, or the load `kept_loaded` keeps. An
    exception the app raises is raised here, as the server would log it."""
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url  # main.py reads it per request, and its .env never wins
    try:  # only this variable is put back: a busy app's client threads run this at once
        served = _acquire(project, url)
        try:
            response = served.client.request(method, path, json=json)
        finally:
            _release(served)
        return response.status_code, response.json()
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved


# --- the in-process app: one load of main.py per saved content while it is kept loaded --------------


@dataclass(eq=False)
class _Served:
    """One load of main.py: its models, app and engine, and a test client on one event loop."""

    main_py: Path
    source: bytes
    url: str
    models: ModuleType
    client: Any  # fastapi.testclient.TestClient, entered
    users: int = 0  # requests in flight on this load
    retired: bool = False  # main.py (or the database) changed since: close it once its last request is answered

    def close(self) -> None:
        try:
            self.client.__exit__(None, None, None)  # stops its event loop's thread
        finally:
            engine = getattr(self.models, "_engine", None)
            if engine is not None:
                engine.dispose()


_LOCK = threading.Lock()  # guards the two dicts and every load's users and retired
_SERVED: dict[Path, _Served] = {}  # main.py -> the load that serves it now
_KEPT: dict[Path, int] = {}  # main.py -> how many `kept_loaded` blocks keep its load between requests


@contextmanager
def kept_loaded(lab: Lab) -> Iterator[None]:
    """Keep the in-process app loaded between requests while the block runs (a busy app's clients).

    Loading main.py for every request made a new app, models and engine each
    time, and the garbage made the collector stop every client thread at once,
    for up to half a second: requests looked slow for no reason of the
    database's. Inside the block main.py is still read on every request, so an
    edit is served from the next request on, and the requests already running
    finish on the load they started on. On the compose route uvicorn does this.
    """
    if isinstance(lab.backend, ComposeBackend):
        yield
        return
    main_py = lab.project.service_dir / "main.py"
    with _LOCK:
        _KEPT[main_py] = _KEPT.get(main_py, 0) + 1
    try:
        yield
    finally:
        idle = None
        with _LOCK:
            _KEPT[main_py] -= 1
            if not _KEPT[main_py]:
                del _KEPT[main_py]
                current = _SERVED.get(main_py)
                if current is not None and current.users == 0:
                    idle = _SERVED.pop(main_py)
        if idle is not None:
            idle.close()


def _acquire(project: Project, url: str) -> _Served:
    """The load serving main.py's saved content and this database, loaded if need be; counted as in use.

    A main.py that does not import raises, as the app's reload would fail.
    """
    from fastapi.testclient import TestClient

    main_py = project.service_dir / "main.py"
    source = main_py.read_bytes()
    stale = None
    with _LOCK:  # one load at a time: the clients wait for it, as they wait for uvicorn's reload
        current = _SERVED.get(main_py)
        if current is not None and current.source == source and current.url == url:
            current.users += 1
            return current
        models = load_models(project)
        client = TestClient(models.app)
        client.__enter__()
        served = _Served(main_py, source, url, models, client, users=1)
        _SERVED[main_py] = served
        if current is not None:
            current.retired = True
            stale = current if current.users == 0 else None
    if stale is not None:
        stale.close()
    return served


def _release(served: _Served) -> None:
    """A request on `served` is answered: close the load if nothing needs it any more."""
    with _LOCK:
        served.users -= 1
        close = served.users == 0 and (served.retired or served.main_py not in _KEPT)
        if close and _SERVED.get(served.main_py) is served:
            del _SERVED[served.main_py]
    if close:
        served.close()


_FINGERPRINTS: dict[Path, tuple[bytes, str]] = {}  # main.py -> (content as saved, its models' fingerprint)


def saved_models_fingerprint(lab: Lab) -> str | None:
    """The fingerprint ai-service/main.py's models have as saved; None when main.py does not import.

    Every request of a busy app's clients asks (on the compose route): main.py is imported once per saved
    content, not once per request (a whole FastAPI app built each time, in four threads).
    """
    main_py = lab.project.service_dir / "main.py"
    source = _saved(main_py)
    if source is None:
        return None
    known = _FINGERPRINTS.get(main_py)
    if known is not None and known[0] == source:
        return known[1]
    try:  # load_models keeps the process environment: main.py's .env does not leak into it
        fingerprint = str(load_models(lab.project).models_fingerprint())
    except Exception:  # a learner's main.py mid-edit: a SyntaxError, an ImportError, anything
        return None
    if _saved(main_py) == source:  # not saved again while it was imported
        _FINGERPRINTS[main_py] = (source, fingerprint)
    return fingerprint


def _saved(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


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
