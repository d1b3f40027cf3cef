"""What the benchmarks share: a throw-away copy of the project, a throw-away lab, a median timing."""

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from migration_lab import EmbeddedBackend, Lab

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import REPO, copy_project  # noqa: E402, F401  (the tests' own copy of the project; the checkout)


def median_ms(action: Callable[[], object], times: int) -> float:
    """The median wall time of `action`, in milliseconds, over `times` runs."""
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


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
