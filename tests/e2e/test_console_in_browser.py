"""The console's revision graph and buttons as JupyterLab draws them, in headless Chromium.

Mermaid shrinks a diagram to the box it sits in unless told otherwise: the graph must come out at
least 300 px wide with text of at least 11 px, and no button label may be cut. Skipped, saying so,
without Chromium (tests/test_browser.py says when it is mandatory).
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import nbformat

from helpers import copy_project, require, stop_jupyterlab

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
require("LAB_REQUIRE_BROWSER", CHROMIUM.exists(), f"there is no Chromium at {CHROMIUM}")

from playwright.sync_api import sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_graph_is_readable_and_no_label_is_cut(database_url: str, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('import migration_lab as ml\nch = ml.chapter("06")\nch.start_exercise()'),
        nbformat.v4.new_code_cell("ch.console()"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, project.root / "notebooks" / "console.ipynb")
    port, token = _free_port(), "console-test"
    jupyter = {f"JUPYTER_{name}_DIR": str(tmp_path / name.lower()) for name in ("CONFIG", "DATA", "RUNTIME")}
    log = (tmp_path / "lab.out").open("w")
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--allow-root",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project.root}"],
        env={**os.environ, **jupyter, "LAB_DATABASE_URL": database_url,
             "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")},
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and lab.poll() is None, (tmp_path / "lab.out").read_text()
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            query = urllib.parse.urlencode({"token": token})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/console.ipynb?{query}")
            page.locator(".jp-Cell").first.wait_for(timeout=60_000)
            # As tests/test_browser.py does: JupyterLab runs the cells once the fresh kernel is connected.
            page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
            page.get_by_role("menuitem", name="Restart Kernel and Run All Cells…").click()
            page.get_by_role("button", name="Confirm Kernel Restart").click()
            graph = page.locator(".jp-RenderedMermaid img").first
            graph.wait_for(timeout=60_000)
            graph.scroll_into_view_if_needed()
            box = graph.bounding_box()
            assert box is not None and box["width"] >= 300, box
            natural = graph.evaluate("i => i.naturalWidth")
            source = urllib.parse.unquote(graph.get_attribute("src") or "")
            sizes = [float(s) for s in re.findall(r"font-size:\s*([0-9.]+)px", source)]
            assert sizes and min(sizes) * box["width"] / natural >= 11, (sizes, box, natural)  # as drawn
            buttons = page.locator(".widget-button:visible")
            assert buttons.count() >= 8
            for i in range(buttons.count()):
                label, cut = buttons.nth(i).evaluate("b => [b.innerText, b.scrollWidth > b.clientWidth + 1]")
                assert not cut, f"the label {label!r} is cut"
            assert page.get_by_text("After a kernel restart this console is disconnected").is_visible()
            browser.close()
    finally:
        stop_jupyterlab(lab)
