"""How long each chapter's Run All takes, and its slowest cells, against the 10 s target.

Each notebook runs top to bottom with nbclient (as "Run All" does in
JupyterLab), on a throw-away copy of the project and a fresh database of a
throw-away embedded PostgreSQL, exactly as tests/notebook_runs.py runs them.
The time is the wall time of the cells (kernel start excluded, measured
apart), the ratio is against the target.

The kernel runs as a learner's does: Python keeps its bytecode cache. The
installer leaves the venv without .pyc files (smaller), and a machine that sets
PYTHONDONTWRITEBYTECODE (this one does) would make every Run All compile the
kit, FastAPI and SQLAlchemy again, about 0.5 s a chapter that a learner pays
once; the variable is dropped and one warm-up import fills the cache first.

    python bench/chapter_times.py [-v] [notebooks/05-data-migrations.ipynb ...]

-v lists every cell that took half a second or more.
"""

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from helpers import copy_project  # noqa: E402
from migration_lab import EmbeddedBackend  # noqa: E402
from notebook_runs import NOTEBOOKS, fresh_database  # noqa: E402

TARGET_SECONDS = 10.0


def _seconds(cell: dict) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))).total_seconds()


def run_all(notebook: Path, workdir: Path, database_url: str) -> nbformat.NotebookNode:
    """Run All on a copy of `notebook` in a fresh project copy, with each cell's timing recorded."""
    project = copy_project(workdir / notebook.stem)
    copy = project.root / "notebooks" / notebook.name
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", record_timing=True, resources={"metadata": {"path": str(copy.parent)}}
    )
    env = {"LAB_DATABASE_URL": database_url}
    os.environ.update(env)  # the kernel inherits it: the url backend
    try:
        client.execute()
    finally:
        del os.environ["LAB_DATABASE_URL"]
    return nb


# Every module of the kit (the chapters' with them) and what they import: the bytecode cache a learner's first
# chapter leaves behind.
WARM_UP = (
    "import importlib, pkgutil, migration_lab, fastapi, ipywidgets; "
    "[importlib.import_module(m.name) for m in pkgutil.walk_packages(migration_lab.__path__, 'migration_lab.') "
    "if '.checkpoints' not in m.name and not m.name.endswith('__main__')]"
)


def main(paths: list[str]) -> int:
    verbose = "-v" in paths
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # the kernel inherits it: cache bytecode as a learner's Python does
    subprocess.run([sys.executable, "-c", WARM_UP], check=True)
    notebooks = [Path(p).resolve() for p in paths if p != "-v"] or NOTEBOOKS
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedBackend(Path(tmp) / "server", database="postgres")
        server.start()
        try:
            for number, notebook in enumerate(notebooks):
                url = fresh_database(server, f"bench_{number}")
                started = time.perf_counter()
                nb = run_all(notebook, Path(tmp), url)
                wall = time.perf_counter() - started
                cells = [c for c in nb.cells if c.cell_type == "code"]
                total = sum(_seconds(c) for c in cells)
                slowest = sorted(((_seconds(c), i) for i, c in enumerate(nb.cells) if c.cell_type == "code"))[-2:]
                worst = max(worst, total)
                slow = ", ".join(f"cell {i} {s:.1f} s" for s, i in reversed(slowest))
                verdict = "ok" if total <= TARGET_SECONDS else "SLOW"
                if verbose:
                    for i, c in enumerate(nb.cells):
                        if c.cell_type == "code" and _seconds(c) >= 0.5:
                            print(f"    cell {i:>2} {_seconds(c):5.1f} s  {c.source.splitlines()[0][:70]}")
                print(
                    f"{notebook.stem:<32} Run All {total:5.1f} s ({total / TARGET_SECONDS:4.2f} of the target, "
                    f"{wall:4.1f} s with the kernel's start)  {verdict}   slowest: {slow}",
                    flush=True,
                )
        finally:
            server.stop()
    print(f"slowest chapter: {worst:.1f} s; target {TARGET_SECONDS:.0f} s")
    return 0 if worst <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
