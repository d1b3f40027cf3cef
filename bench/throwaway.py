"""What the benchmarks share: a throw-away copy of the project, a throw-away lab, a median timing."""

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from migration_lab import EmbeddedBackend, Lab, Project
from migration_lab.workspace import BASELINE_CHECKPOINT, restore_files

REPO = Path(__file__).resolve().parent.parent


def median_ms(action: Callable[[], object], times: int) -> float:
    """The median wall time of `action`, in milliseconds, over `times` runs."""
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def copy_project(root: Path) -> Project:
    """ai-service/ (at its pristine baseline), the notebooks and the compose files, copied to `root`."""
    ignore = shutil.ignore_patterns("__pycache__", ".env", ".ipynb_checkpoints")
    shutil.copytree(REPO / "ai-service", root / "ai-service", ignore=ignore)
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=ignore)
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy(REPO / name, root / name)
    project = Project(root)
    restore_files(project, BASELINE_CHECKPOINT)
    return project


@contextmanager
def throwaway_lab() -> Iterator[Lab]:
    """A Lab on a temporary copy of the project and a fresh server, stopped and deleted afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp))
        backend = EmbeddedBackend(project.state_dir)
        print(f"starting a throw-away PostgreSQL in {backend.pgdata} ...", flush=True)
        backend.start()
        lab = Lab(project, backend)
        try:
            yield lab
        finally:
            lab.db.dispose()
            backend.stop()
