"""Every chapter notebook, re-run under strict nbval against a fresh database, on a copy of the project."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, copy_project
from migration_lab import Lab, UrlBackend
from migration_lab.workspace.backups import Backups

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
TEMPLATE = ("## Overview", "## Prerequisites", "## Exercise", "## Summary", "## What's next")


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_match_under_strict_nbval(notebook: Path, database_url: str, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    done = _nbval(project.root, notebook.stem, {**os.environ, "LAB_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def _nbval(project_root: Path, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            str(project_root / "notebooks" / f"{name}.ipynb"),
            "--nbval-sanitize-with",
            str(REPO / "tests" / "nbval_sanitize.cfg"),
            "--rootdir",
            str(project_root),
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_chapters_validate_under_nbval_in_any_order_on_a_used_checkout(tmp_path: Path) -> None:
    """What an instructor does to check a machine before the day (issue 17, item 12): the chapters in sequence,
    backwards and after a nuke, on one checkout with its embedded database, as `make lab` gives it. From the
    second chapter on, each reset backs up the earlier one's work and says so in the first cell; the committed
    outputs come from a fresh lab, so that line is part of what the sanitize file replaces."""
    project = copy_project(tmp_path / "project")
    lab = Lab(project, "embedded")
    lab.up(progress=lambda message: None)
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_DATABASE_URL", "DATABASE_URL")}
    env["LAB_BACKEND"] = "embedded"
    try:
        for name in ("03-rollback", "02-never-trust-autogenerate", "09-the-nuke-option", "01-standard-workflow"):
            done = _nbval(project.root, name, env)
            assert done.returncode == 0, f"{name}:\n" + done.stdout[-6000:] + done.stderr[-2000:]
        assert len(Backups(project, lab.db.url).names()) >= 3  # it was a used checkout: each start backed up
    finally:
        lab.db.dispose()
        lab.backend.destroy()


def test_notebooks_exist_for_every_chapter() -> None:
    from migration_lab.course.registry import CHAPTERS

    assert [p.name[:2] for p in NOTEBOOKS] == list(CHAPTERS)


def test_chapter_00s_map_links_every_chapter() -> None:
    """The map a learner starts from lists the whole course, each chapter a link to its notebook."""
    import re

    markdown = "\n".join("".join(c["source"]) for c in _cells(NOTEBOOKS[0]) if c["cell_type"] == "markdown")
    linked = re.findall(r"^\| (\d\d) \| \[[^]]+\]\(([^)]+\.ipynb)\) \|", markdown, re.M)
    assert [(number, name) for number, name in linked] == [(p.name[:2], p.name) for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_whats_next_links_the_next_chapter(notebook: Path) -> None:
    """A learner at the end of a chapter clicks on: the next chapter's notebook (the last chapter: the map)."""
    markdown = "\n".join("".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "markdown")
    whats_next = markdown[markdown.index("## What's next") :]
    following = NOTEBOOKS[NOTEBOOKS.index(notebook) + 1 :]
    target = following[0].name if following else NOTEBOOKS[0].name
    assert f"]({target})" in whats_next, f"What's next does not link {target}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_template(notebook: Path) -> None:
    markdown = "\n".join("".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "markdown")
    positions = [markdown.find(heading) for heading in TEMPLATE]
    assert -1 not in positions, f"missing: {[h for h, p in zip(TEMPLATE, positions, strict=True) if p == -1]}"
    assert positions == sorted(positions), "template sections out of order"
    code = ["".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "code"]
    assert any("ch.check(" in source for source in code) and any("ch.solution()" in source for source in code)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_outputs(notebook: Path) -> None:
    code = [c for c in _cells(notebook) if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "re-execute it: make notebooks"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]


def test_most_code_cells_have_their_output_compared() -> None:
    code = [c for nb in NOTEBOOKS for c in _cells(nb) if c["cell_type"] == "code"]
    ignored = [c for c in code if {"nbval-ignore-output", "nbval-skip"} & set(c.get("metadata", {}).get("tags", []))]
    compared = [c for c in code if c not in ignored and c["outputs"]]
    assert len(compared) / len(code) >= 0.6, f"{len(compared)} of {len(code)} code cells compared"


def test_chapters_run_back_to_back_on_one_lab(database_url: str, tmp_path: Path) -> None:
    """Whatever a chapter leaves behind (edited env.py, new enum types, a nuked database, deleted
    revision files), the next chapter's reset puts the lab right: all of them, in order, on one lab."""
    from notebook_runs import execute_in

    project = copy_project(tmp_path / "project")
    for notebook in NOTEBOOKS:
        execute_in(project, notebook.name, database_url)  # raises CellExecutionError on a failing cell
    lab = Lab(project, UrlBackend(database_url))
    assert lab.runner.run("check").ok, "after the last chapter, models and database should agree"
    assert len(lab.runner.script().get_heads()) == 1
    lab.db.dispose()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_run_all_twice_in_one_kernel(notebook: Path, database_url: str, tmp_path: Path) -> None:
    """A learner's Run All, then Run All again in the same kernel: every cell, solutions included, works twice."""
    import copy

    import nbformat
    from nbclient import NotebookClient

    project = copy_project(tmp_path / "project")
    path = project.root / "notebooks" / notebook.name
    nb = nbformat.read(path, as_version=4)
    nb.cells = nb.cells + copy.deepcopy(nb.cells)
    os.environ["LAB_DATABASE_URL"] = database_url  # the kernel inherits it: the url backend
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        del os.environ["LAB_DATABASE_URL"]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    last_check = [c for c in nb.cells if c.cell_type == "code" and "ch.check(" in c.source][-1]
    assert "All checks pass" in "".join(o.get("text", "") for o in last_check.outputs)
