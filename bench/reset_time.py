"""How fast "reset to the start of chapter N" is, against starting over by hand.

In one run, on a throw-away embedded PostgreSQL and a copy of ai-service/:
`reset` to chapter 02's checkpoint (files restored, schema wiped, upgraded,
seeded) N times, against the by-hand way back to a clean database: `nuke`
(a fresh cluster) then `alembic upgrade head` as a subprocess. Prints both
medians, the ratio, and the reset time against its 1 s target.

    python bench/reset_time.py [N]
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migration_lab import EmbeddedBackend, Lab, Project
from migration_lab.chapters import spec
from migration_lab.workspace import reset

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 1.0


def median_s(action, times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(times: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "ai-service", root / "ai-service",
                        ignore=shutil.ignore_patterns("__pycache__", ".env"))
        backend = EmbeddedBackend(root / ".lab")
        print(f"starting a throw-away PostgreSQL in {backend.pgdata} ...", flush=True)
        backend.start()
        lab = Lab(Project(root), backend)
        try:
            checkpoint = spec("02").checkpoint
            fast = median_s(lambda: reset(lab, checkpoint), times)
            alembic = str(Path(sys.executable).with_name("alembic"))

            def by_hand() -> None:
                lab.runner.dispose()
                backend.nuke()
                subprocess.run([alembic, "upgrade", "head"], cwd=root / "ai-service", check=True,
                               capture_output=True, env={**os.environ, "DATABASE_URL": backend.url()})

            slow = median_s(by_hand, max(3, times // 3))
            lab.runner.dispose()
        finally:
            backend.stop()
    print(f"{'reset to chapter 02':<36}{fast * 1000:>8.0f} ms   (median of {times})")
    print(f"{'by hand: nuke + alembic upgrade head':<36}{slow * 1000:>8.0f} ms")
    print(f"ratio: reset is {slow / fast:.1f}x faster; "
          f"{'meets' if fast <= TARGET_SECONDS else 'MISSES'} the {TARGET_SECONDS:.0f} s target")
    return 0 if fast <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9))
