"""How fast "reset to the start of chapter N" is, against starting over by hand.

In one run, on a throw-away embedded PostgreSQL and a copy of ai-service/:
`reset` to chapter 02's checkpoint (files restored, schema wiped, upgraded,
seeded) N times, against the by-hand way back to a clean database: `nuke`
(a fresh cluster) then `alembic upgrade head` as a subprocess. Prints both
medians, the ratio, and the reset time against its 1 s target.

    python bench/reset_time.py [N]
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from throwaway import throwaway_lab

from migration_lab.course.registry import spec
from migration_lab.workspace import checkpoints

TARGET_SECONDS = 1.0


def median_s(action, times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(times: int) -> int:
    with throwaway_lab() as lab:
        checkpoint = spec("02").checkpoint
        fast = median_s(lambda: checkpoints.reset(lab, checkpoint), times)
        alembic = str(Path(sys.executable).with_name("alembic"))

        def by_hand() -> None:
            lab.db.dispose()
            lab.backend.nuke()
            subprocess.run(
                [alembic, "upgrade", "head"],
                cwd=lab.project.service_dir,
                check=True,
                capture_output=True,
                env={**os.environ, "DATABASE_URL": lab.backend.url()},
            )

        slow = median_s(by_hand, max(3, times // 3))
    print(f"{'reset to chapter 02':<36}{fast * 1000:>8.0f} ms   (median of {times})")
    print(f"{'by hand: nuke + alembic upgrade head':<36}{slow * 1000:>8.0f} ms")
    print(
        f"ratio: reset is {slow / fast:.1f}x faster; "
        f"{'meets' if fast <= TARGET_SECONDS else 'MISSES'} the {TARGET_SECONDS:.0f} s target"
    )
    return 0 if fast <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9))
