"""Chapter 01 in a real JupyterLab, in headless Chromium: run all cells, then use the console.

Mandatory in CI (`.ci/run` installs Debian's chromium and sets LAB_REQUIRE_BROWSER=1);
skipped, saying so, on a machine without Chromium.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, copy_project

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / ".lab" / "test-artifacts"  # git-ignored
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

if not CHROMIUM.exists():
    if os.environ.get("LAB_REQUIRE_BROWSER"):
        pytest.fail(f"LAB_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}", pytrace=False)
    pytest.skip(
        f"SKIPPED the real-browser test: no Chromium at {CHROMIUM} (apt-get install chromium, or set LAB_CHROMIUM)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the project; yields (base URL, token)."""
    project = copy_project(tmp_path / "project")
    port, token = _free_port(), secrets.token_hex(16)
    log = (tmp_path / "jupyter.log").open("w")  # closed when the server is gone
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={project.root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env={
            **os.environ,
            "LAB_DATABASE_URL": database_url,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        },
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "jupyter.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        yield base, token
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _wait_for_kernel(base: str, token: str) -> None:
    """Until the server has started the notebook's kernel and it is idle."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions = json.load(urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5))
        if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
            return
        time.sleep(0.3)
    raise TimeoutError("the notebook's kernel did not start within 60 s")


def _restart_and_run_all(page: Page) -> None:
    """JupyterLab sequences this itself: the cells run once the fresh kernel is connected."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.get_by_role("menuitem", name="Restart Kernel and Run All Cells…").click()
    page.get_by_role("button", name="Confirm Kernel Restart").click()


def test_chapter_01_runs_and_the_console_works_in_a_browser(jupyterlab: tuple[str, str]) -> None:
    base, token = jupyterlab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/notebooks/01-standard-workflow.ipynb?token={token}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            _wait_for_kernel(base, token)
            _restart_and_run_all(page)
            # The last cell checks the exercise after the solution: all cells ran.
            expect(page.get_by_text("All checks pass. Well done!")).to_be_visible(timeout=120_000)

            console = page.locator(".widget-vbox").filter(has=page.locator("button", has_text="upgrade head")).first
            console.scroll_into_view_if_needed()
            console.locator("button", has_text="downgrade -1").click()
            expect(console.locator("span", has_text="would destroy data")).to_be_visible(timeout=30_000)
            console.locator("button", has_text="Yes, run it").click()
            expect(console.get_by_text("Running downgrade")).to_be_visible(timeout=30_000)

            console.locator("button", has_text="upgrade head").click()
            expect(console.get_by_text("Running upgrade")).to_be_visible(timeout=30_000)
            expect(console.get_by_text("docker-compose exec ai-api alembic upgrade head")).to_be_visible()
            schema_view = console.locator(".widget-html", has_text="Live schema")
            expect(schema_view.locator("code", has_text="phone_number")).to_be_visible()
            expect(schema_view.get_by_text("+ column user_profiles.last_login")).to_be_visible()
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser-chapter-01.png"), full_page=False)
            errors = page.locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
            (ARTIFACTS / "browser-chapter-01-errors.txt").write_text("\n---\n".join(errors))
            browser.close()
