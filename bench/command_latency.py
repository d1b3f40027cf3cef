"""How much faster the lab's in-process runner is than the `alembic` CLI.

Measured in one run on a throw-away embedded PostgreSQL and a copy of
ai-service/: `current`, and `downgrade -1` + `upgrade head`, N times each,
through the kit's Runner and through `alembic` as a subprocess (what a
button would otherwise do). Prints both medians and the ratio; the target is
the runner at least 10x faster.

    python bench/command_latency.py [N]
"""

import os
import subprocess
import sys
from pathlib import Path

from throwaway import median_ms, throwaway_lab

TARGET = 10.0


def main(times: int) -> int:
    with throwaway_lab() as lab:
        runner = lab.runner
        env = {**os.environ, "DATABASE_URL": lab.backend.url()}
        alembic = str(Path(sys.executable).with_name("alembic"))

        def cli(*args: str) -> None:
            subprocess.run([alembic, *args], cwd=lab.project.service_dir, env=env, check=True, capture_output=True)

        def must(result) -> None:
            assert result.ok, result.error

        must(runner.run("upgrade head"))
        rows = [
            ("current", lambda: must(runner.run("current")), lambda: cli("current")),
            (
                "downgrade -1 + upgrade head",
                lambda: (must(runner.run("downgrade -1")), must(runner.run("upgrade head"))),
                lambda: (cli("downgrade", "-1"), cli("upgrade", "head")),
            ),
        ]
        print(f"{'command':<30}{'runner ms':>11}{'CLI ms':>9}{'ratio':>8}   (median of {times})")
        worst = float("inf")
        for name, fast, slow in rows:
            fast_ms, slow_ms = median_ms(fast, times), median_ms(slow, times)
            ratio = slow_ms / fast_ms
            worst = min(worst, ratio)
            print(f"{name:<30}{fast_ms:>11.1f}{slow_ms:>9.1f}{ratio:>7.1f}x")
    verdict = "meets" if worst >= TARGET else "MISSES"
    print(f"runner vs CLI: {worst:.1f}x at worst; {verdict} the {TARGET:.0f}x target")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))
