"""A console command, and a chapter's Run All, on the compose route against the embedded one.

Measured in one run, on a throw-away copy of the project: its own compose stack
(own project name and ports, taken down with `down -v` at the end) and its own
embedded PostgreSQL. The kit runs alembic in-process on both routes, so a
console button costs about the same; the guide's `docker-compose exec ai-api
alembic current` (a process in the container) is printed for reference.
Target: a console command on compose within 1.5x of embedded.

    python bench/compose_vs_embedded.py [N]      (needs a Docker engine and the images)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from throwaway import copy_project, median_ms

from migration_lab import ComposeBackend, EmbeddedBackend, Lab, Project

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.5
CHAPTER = "01-standard-workflow.ipynb"


def run_all(project: Project, env: dict[str, str]) -> float:
    """Seconds to execute the chapter's notebook top to bottom in `project`, with `env` for the kernel."""
    path = project.root / "notebooks" / CHAPTER
    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        started = time.perf_counter()
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        return time.perf_counter() - started
    finally:
        os.environ.clear()
        os.environ.update(saved)


def must(result) -> None:
    assert result.ok, result.error


def main(times: int) -> int:
    clean = {k: v for k, v in os.environ.items() if k not in ("LAB_DATABASE_URL", "LAB_BACKEND")}
    with tempfile.TemporaryDirectory() as tmp:
        compose_root, embedded_root = Path(tmp) / "compose", Path(tmp) / "embedded"
        compose_project, embedded_project = copy_project(compose_root), copy_project(embedded_root)
        compose = ComposeBackend(compose_root)
        embedded = EmbeddedBackend(embedded_root / ".lab")
        try:
            started = time.perf_counter()
            compose.start(lambda line: print(line, end="", flush=True))
            print(f"compose stack up in {time.perf_counter() - started:.1f} s ({compose.where()})")
            embedded.start()
            labs = {"compose": Lab(compose_project, compose), "embedded": Lab(embedded_project, embedded)}
            for lab in labs.values():
                must(lab.runner.run("upgrade head"))

            rows: list[tuple[str, float, float]] = []
            for name, action in (
                ("current", lambda r: must(r.current())),
                ("downgrade -1 + upgrade head", lambda r: (must(r.downgrade("-1")), must(r.upgrade("head")))),
            ):
                ms = {route: median_ms(lambda r=lab.runner, act=action: act(r), times) for route, lab in labs.items()}
                rows.append((name, ms["compose"], ms["embedded"]))
            exec_ms = median_ms(
                lambda: subprocess.run(
                    [*compose.command(), "exec", "-T", "ai-api", "alembic", "current"],
                    cwd=compose_root,
                    check=True,
                    capture_output=True,
                ),
                max(3, times // 3),
            )
            for lab in labs.values():
                lab.db.dispose()

            chapter = {
                "compose": run_all(compose_project, clean),  # no URL: the kit picks the running stack
                "embedded": run_all(embedded_project, {**clean, "LAB_DATABASE_URL": embedded.url()}),
            }

            print(f"\n{'console command':<30}{'compose ms':>12}{'embedded ms':>13}{'ratio':>8}   (median of {times})")
            worst = 0.0
            for name, compose_ms, embedded_ms in rows:
                ratio = compose_ms / embedded_ms
                worst = max(worst, ratio)
                print(f"{name:<30}{compose_ms:>12.1f}{embedded_ms:>13.1f}{ratio:>7.2f}x")
            print(f"{'(docker compose exec ... current)':<30}{exec_ms:>12.1f}{'':>13}{exec_ms / rows[0][2]:>7.1f}x")
            print(
                f"{'Run All ' + CHAPTER[:2]:<30}{chapter['compose'] * 1000:>12.0f}{chapter['embedded'] * 1000:>13.0f}"
                f"{chapter['compose'] / chapter['embedded']:>7.2f}x"
            )
        finally:
            subprocess.run(
                [*compose.command(), "down", "-v", "--remove-orphans", "--rmi", "local"],
                cwd=compose_root,
                capture_output=True,
            )
            embedded.stop()
            shutil.rmtree(embedded.pgdata, ignore_errors=True)
    verdict = "meets" if worst <= TARGET else "MISSES"
    print(f"console on compose vs embedded: {worst:.2f}x at worst; {verdict} the {TARGET}x target")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))
