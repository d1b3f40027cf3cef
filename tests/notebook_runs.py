"""Run the chapters' notebooks on a throw-away copy of the project and database.

Used by tests/course/test_notebooks.py (nbval) and, as a script, by `make notebooks`,
which re-executes every notebook and writes its outputs back into notebooks/:

    python tests/notebook_runs.py [notebooks/01-standard-workflow.ipynb ...]
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import sqlalchemy as sa
from nbclient import NotebookClient
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
sys.path.insert(0, str(REPO / "tests"))

from helpers import copy_project  # noqa: E402
from migration_lab import EmbeddedBackend  # noqa: E402


def fresh_database(server: EmbeddedBackend, name: str) -> str:
    """An empty database on `server`; returns its URL."""
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server.url()).set(database=name).render_as_string(hide_password=False)


def execute(notebook: Path, workdir: Path, database_url: str) -> nbformat.NotebookNode:
    """Execute a copy of `notebook` in a fresh project copy under `workdir`; return it with outputs."""
    return execute_in(copy_project(workdir / notebook.stem), notebook.name, database_url)


def execute_in(project, name: str, database_url: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name> of an existing project copy, as it is; raise if a cell fails."""
    copy = project.root / "notebooks" / name
    nb = nbformat.read(copy, as_version=4)
    os.environ["LAB_DATABASE_URL"] = database_url  # the kernel inherits it: the url backend
    try:
        NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(copy.parent)}},
        ).execute()
    finally:
        del os.environ["LAB_DATABASE_URL"]
    return nb


def main(paths: list[str]) -> None:
    notebooks = [Path(p).resolve() for p in paths] or NOTEBOOKS
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedBackend(Path(tmp) / "server", database="postgres")
        server.start()
        try:
            for number, notebook in enumerate(notebooks):
                print(f"executing {notebook.relative_to(REPO)} ...", flush=True)
                nb = execute(notebook, Path(tmp), fresh_database(server, f"notebook_{number}"))
                nbformat.write(nb, notebook)
        finally:
            server.stop()
            shutil.rmtree(Path(tmp) / "server", ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
