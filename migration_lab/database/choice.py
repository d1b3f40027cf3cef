"""Which database the lab uses: an explicit URL, else a running compose stack, else embedded.

LAB_BACKEND (or `--backend`) forces the choice.
"""

import os
from collections.abc import Mapping

from ..errors import LabError
from ..project import Project
from .backend import Backend
from .compose import ComposeBackend
from .embedded import EmbeddedBackend
from .url import UrlBackend

BACKENDS = ("embedded", "compose", "url")


def choose_backend(project: Project, force: str | None = None, env: Mapping[str, str] = os.environ) -> Backend:
    """The backend to use: forced (argument or LAB_BACKEND), else URL > compose > embedded."""
    choice = force or env.get("LAB_BACKEND") or None
    if choice is not None and choice not in BACKENDS:
        raise LabError(f"Unknown backend {choice!r}.", f"Use one of: {', '.join(BACKENDS)}.")
    url = env.get("LAB_DATABASE_URL")
    if choice == "url" or (choice is None and url):
        if not url:
            raise LabError(
                "The url backend needs LAB_DATABASE_URL.",
                "Set LAB_DATABASE_URL=postgresql://user:password@host:5432/database",
            )
        return UrlBackend(url)
    compose = ComposeBackend(project.root)
    if choice == "compose" or (choice is None and compose.is_running()):
        return compose
    return EmbeddedBackend(project.state_dir)
