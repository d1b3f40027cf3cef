"""A throw-away lab for benchmarks: a copy of ai-service/ and its own embedded PostgreSQL."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migration_lab import EmbeddedBackend, Lab, Project

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def throwaway_lab() -> Iterator[Lab]:
    """A Lab on a temporary copy of the project and a fresh server, stopped and deleted afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "ai-service", root / "ai-service", ignore=shutil.ignore_patterns("__pycache__", ".env"))
        backend = EmbeddedBackend(root / ".lab")
        print(f"starting a throw-away PostgreSQL in {backend.pgdata} ...", flush=True)
        backend.start()
        lab = Lab(Project(root), backend)
        try:
            yield lab
        finally:
            lab.db.dispose()
            backend.stop()
