"""The course in a real JupyterLab, in headless Chromium, started the way `make lab` starts it.

`python -m migration_lab lab` runs without a terminal (stdin and stdout not a tty, as under
`nohup`, `| tee` or a hub) and with a login profile that resets PATH. The tests open the URL it
prints (chapter 00 of the learner's copy, no answers on screen), type the workflow's commands in
JupyterLab terminals, run chapter 01 and its console, and check that an open editor follows the
files the kit changes.

Mandatory in CI (`.ci/run` installs Debian's chromium and sets LAB_REQUIRE_BROWSER=1);
skipped, saying so, on a machine without Chromium.
"""

import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import REPO, copy_project, require
from migration_lab import EmbeddedBackend, Project

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

require(
    "LAB_REQUIRE_BROWSER",
    CHROMIUM.exists(),
    f"there is no Chromium at {CHROMIUM} for the real-browser test (apt-get install chromium, or set LAB_CHROMIUM)",
)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402

HOSTILE_PROFILE = """\
# As a login profile often does (/etc/profile on Debian, a hub's image): PATH set from scratch.
export PATH=/usr/bin:/bin
export LAB_TEST_LOGIN_PROFILE=ran
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """`python -m migration_lab lab` on a copy of the project, as started without a terminal."""

    def __init__(self, project: Project, url: str, process: subprocess.Popen[bytes], output: Path) -> None:
        self.project, self.url, self.process, self.output = project, url, process, output
        parts = urllib.parse.urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.token = urllib.parse.parse_qs(parts.query)["token"][0]
        self.runtime = Path()  # Jupyter's runtime folder (connection files, kernels' sockets)
        self.database_url = ""  # the lab database, for the kit run from a terminal

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.base}{path}?token={self.token}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def open(self, path: str) -> str:
        return f"{self.base}/{path}?token={self.token}"


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory, server: EmbeddedBackend) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("lab")
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text('CREATE DATABASE "browser_lab"'))
    database_url = make_url(server.url()).set(database="browser_lab").render_as_string(hide_password=False)
    project = copy_project(tmp / "project")
    shutil.copytree(REPO / "jupyter", project.root / "jupyter")
    home = tmp / "home"
    home.mkdir()
    (home / ".bash_profile").write_text(HOSTILE_PROFILE)
    (home / ".bashrc").write_text("export PATH=/usr/bin:/bin  # an unfriendly ~/.bashrc too\n")
    runtime = tempfile.mkdtemp(prefix="mlab-rt-")  # /tmp/mlab-rt-XXXXXXXX
    output_path = tmp / "lab.out"
    output = output_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "migration_lab", "lab", "--no-browser", "--port", str(_free_port())],
        cwd=project.root,
        env={
            **os.environ,
            "HOME": str(home),
            "LAB_DATABASE_URL": database_url,
            "JUPYTER_CONFIG_DIR": str(tmp / "jupyter"),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": runtime,  # short: kernels use Unix sockets there, as for learners
            "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
        },
        stdin=subprocess.DEVNULL,  # no terminal: JupyterLab's own default would be `bash -l`
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (found := re.search(r"^\s+(http://\S+)$", output_path.read_text(), re.M)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(output_path.read_text()[-3000:])
            time.sleep(0.2)
        lab = LabServer(project, found.group(1), process, output_path)
        lab.runtime = Path(runtime)
        lab.database_url = database_url
        yield lab
        # Ctrl-C without a terminal: JupyterLab stops, and the launcher says what happens to the database.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(30)
        assert "not yours to stop" in output_path.read_text()  # a LAB_DATABASE_URL server is left alone
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        output.close()
        with admin.connect() as conn:
            conn.execute(sa.text('DROP DATABASE IF EXISTS "browser_lab" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def page(lab_server: LabServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = request.node.name
            page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=False)
            errors = page.locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
            (ARTIFACTS / f"browser-{name}-errors.txt").write_text("\n---\n".join(errors))
            browser.close()


def _wait_for_kernel(lab: LabServer, notebook: str) -> None:
    """Until the server has started the notebook's kernel and it is idle."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions = lab.api("/api/sessions")
        assert isinstance(sessions, list)
        mine = [s for s in sessions if s["path"].endswith(notebook)]
        if mine and mine[0]["kernel"]["execution_state"] == "idle":
            return
        time.sleep(0.3)
    raise TimeoutError("the notebook's kernel did not start within 60 s")


def _restart_and_run_all(page: Page) -> None:
    """JupyterLab sequences this itself: the cells run once the fresh kernel is connected."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.get_by_role("menuitem", name="Restart Kernel and Run All Cells…").click()
    page.get_by_role("button", name="Confirm Kernel Restart").click()


def _terminal(lab: LabServer, name: str, line: str, until: str, timeout: float = 60) -> str:
    """Type `line` into terminal `name` through the terminals websocket; what it printed until `until`.

    In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _terminal_session(lab, name, line, until, timeout)).result()


async def _terminal_session(lab: LabServer, name: str, line: str, until: str, timeout: float) -> str:
    from tornado.websocket import websocket_connect

    ws_url = f"{lab.base.replace('http', 'ws', 1)}/terminals/websocket/{name}?token={lab.token}"
    socket_ = await websocket_connect(ws_url)
    try:
        if line:
            socket_.write_message(json.dumps(["stdin", line + "\r"]))
        screen = ""
        deadline = asyncio.get_running_loop().time() + timeout
        while not re.search(until, screen):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {until!r} on the terminal's screen:\n{screen}")
            message = await asyncio.wait_for(socket_.read_message(), left)
            if message is None:
                raise RuntimeError(f"the terminal closed:\n{screen}")
            kind, *content = json.loads(message)
            if kind == "stdout":
                screen += content[0]
        return screen
    finally:
        socket_.close()


def test_the_printed_url_lands_on_chapter_00_of_the_learners_copy_with_no_answers(
    lab_server: LabServer, page: Page
) -> None:
    copy = lab_server.project.root / "my-notebooks"
    assert sorted(p.name for p in copy.glob("*.ipynb")) == sorted(
        p.name for p in (lab_server.project.root / "notebooks").glob("[0-9][0-9]-*.ipynb")
    )
    assert "/lab/tree/my-notebooks/00-start-here.ipynb?token=" in lab_server.url
    page.goto(lab_server.url)
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook).to_be_visible(timeout=60_000)
    expect(page.locator(".jp-mod-current .lm-TabBar-tabLabel", has_text="00-start-here.ipynb")).to_be_visible()
    expect(notebook.locator(".jp-Cell").first).to_be_visible()
    expect(page.locator(".jp-Launcher:visible")).to_have_count(0)
    expect(page.get_by_text("Would you like to get notified")).to_have_count(0)
    # Nothing has run: no outputs at all, so no "All checks pass", no solution, no hint.
    expect(notebook.locator(".jp-OutputArea-output")).to_have_count(0)
    assert "All checks pass" not in notebook.inner_text()
    assert "solutions/" not in notebook.locator(".jp-OutputArea").all_inner_texts().__str__()
    # The committed chapters keep their outputs (nbval compares them); the copy starts without.
    committed = json.loads((lab_server.project.root / "notebooks" / "01-standard-workflow.ipynb").read_text())
    learner = json.loads((copy / "01-standard-workflow.ipynb").read_text())
    assert any(cell.get("outputs") for cell in committed["cells"])
    assert not any(cell.get("outputs") for cell in learner["cells"])


def test_alembic_current_typed_in_a_jupyterlab_terminal(lab_server: LabServer, page: Page) -> None:
    """The server has no tty and the login profile resets PATH: the terminal still has the venv."""
    page.goto(lab_server.url)
    expect(page.locator(".jp-NotebookPanel:visible")).to_be_visible(timeout=60_000)
    _wait_for_kernel(lab_server, "my-notebooks/00-start-here.ipynb")  # the layout is restored by then
    page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="New").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="Terminal").first.click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text="Terminal").last
    expect(tab).to_be_visible(timeout=30_000)
    terminal = page.locator(".jp-Terminal:visible")
    deadline = time.monotonic() + 60
    while True:  # a late layout restore can bring the notebook's tab back to the front: show the terminal again
        tab.click()
        try:
            expect(terminal.locator(".xterm-screen")).to_be_visible(timeout=10_000)
            time.sleep(1)  # the shell's prompt
            terminal.click(timeout=5_000)
            break
        except (AssertionError, PlaywrightTimeoutError):
            assert time.monotonic() < deadline, "the terminal's tab never stayed in front"
    page.keyboard.type("cd ai-service && alembic current && echo ALEMBIC-$((40 + 2))\n")
    names = [t["name"] for t in lab_server.api("/api/terminals")]  # type: ignore[union-attr]
    rows = terminal.locator(".xterm-rows")
    if rows.count():  # xterm's DOM renderer: the screen is in the page
        expect(rows).to_contain_text("ALEMBIC-42", timeout=60_000)
        screen = rows.inner_text()
    else:  # a canvas renderer: read the same screen from the terminal's websocket (its buffer)
        screen = _terminal(lab_server, names[-1], "", r"ALEMBIC-42")
    assert "command not found" not in screen
    assert "Context impl PostgresqlImpl" in screen


def test_a_login_shell_terminal_still_has_alembic_and_the_kit(lab_server: LabServer) -> None:
    """JupyterLab's terminals API, as a hub's terminal uses it: the login profile ran, and the venv is first."""
    name = lab_server.api("/api/terminals", method="POST")["name"]  # type: ignore[index]
    screen = _terminal(
        lab_server,
        name,
        'echo "profile=$LAB_TEST_LOGIN_PROFILE"; command -v alembic; '
        "python -m migration_lab reset 03 && cd ai-service && alembic current; echo EXIT=$((1000 + $?))",
        r"EXIT=1\d\d\d",
        timeout=90,
    )
    assert "profile=ran" in screen  # a login shell's profile was read...
    assert f"{Path(sys.executable).parent}/alembic" in screen  # ...and the venv still comes first
    assert "EXIT=1000" in screen, screen
    assert "(head)" in screen or re.search(r"\b[0-9a-f]{12}\b", screen), screen


def _editor_text(page: Page) -> str:
    """The whole document in the visible CodeMirror editor (it renders only the lines in view)."""
    return str(
        page.evaluate(
            """() => {
                const content = [...document.querySelectorAll('.jp-FileEditor .cm-content')]
                    .find(el => el.offsetParent !== null);
                const view = content && content.cmView && content.cmView.view;
                return view ? view.state.doc.toString() : (content ? content.innerText : '');
            }"""
        )
    )


def _expect_editor_shows_the_file(page: Page, path: Path, timeout: float = 20) -> str:
    """Until the open editor holds exactly what is on disk."""
    deadline = time.monotonic() + timeout
    while True:
        text, on_disk = _editor_text(page), path.read_text()
        if text.rstrip("\n") == on_disk.rstrip("\n"):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"the editor shows:\n{text}\n--- but the file holds:\n{on_disk}")
        time.sleep(0.3)


def _show_tab(page: Page, label: str) -> None:
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text=label).first.click()


def test_chapter_01_runs_the_console_works_and_the_editor_follows_the_kit(lab_server: LabServer, page: Page) -> None:
    main_py = lab_server.project.service_dir / "main.py"
    page.goto(lab_server.open("lab/tree/ai-service/main.py"))
    expect(page.locator(".jp-FileEditor:visible")).to_be_visible(timeout=60_000)
    _expect_editor_shows_the_file(page, main_py)
    # The learner types a note in main.py; it reaches the disk without a save.
    page.locator(".jp-FileEditor:visible .cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# my own note\n")
    deadline = time.monotonic() + 20
    while "# my own note" not in main_py.read_text():
        assert time.monotonic() < deadline, "the editor's text never reached the disk"
        time.sleep(0.3)

    # Chapter 01 from the learner's copy: its first cell resets ai-service/, later cells edit main.py.
    page.goto(lab_server.open("lab/tree/my-notebooks/01-standard-workflow.ipynb"))
    expect(page.locator(".jp-NotebookPanel:visible")).to_be_visible(timeout=60_000)
    _wait_for_kernel(lab_server, "my-notebooks/01-standard-workflow.ipynb")
    connections = list(lab_server.runtime.glob("kernel-*.json"))
    assert connections and all(json.loads(c.read_text())["transport"] == "ipc" for c in connections)  # no TCP
    _restart_and_run_all(page)
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
    expect(schema_view).to_contain_text("+ column user_profiles.last_login")

    # The open editor shows what the kit wrote: the reset dropped the note, the chapter edited the models.
    _show_tab(page, "main.py")
    written_by_the_chapter = main_py.read_text()
    assert "# my own note" not in written_by_the_chapter and "last_login" in written_by_the_chapter
    _expect_editor_shows_the_file(page, main_py)
    # Saving brings no "File Changed" dialog, and what is saved is the kit's text plus the edit.
    page.locator(".jp-FileEditor:visible .cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("# after the chapter\n")
    page.keyboard.press("Control+s")
    time.sleep(2)
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    saved = main_py.read_text()
    assert "# after the chapter" in saved and "last_login" in saved

    # `ch.reset()` from a notebook cell: the editor follows again.
    _show_tab(page, "01-standard-workflow.ipynb")
    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.locator(".jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type("ch.reset()")
    page.keyboard.press("Shift+Enter")
    deadline = time.monotonic() + 60
    while "last_login" in main_py.read_text():
        assert time.monotonic() < deadline, "ch.reset() did not reset main.py"
        time.sleep(0.3)
    _show_tab(page, "main.py")
    _expect_editor_shows_the_file(page, main_py)
    assert "# after the chapter" not in _editor_text(page)
    page.locator(".jp-FileEditor:visible .cm-content").click()
    page.keyboard.press("Control+s")
    time.sleep(2)
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    assert "last_login" not in main_py.read_text()


def test_an_editor_tab_of_a_revision_a_reset_deleted_is_told_and_cannot_save_it_back(
    lab_server: LabServer, page: Page
) -> None:
    """Issue 17, item 2: a reset deleted a revision open in an editor tab; the tab stayed, with no sign, and
    typing + Ctrl-S brought the file back, with a parent that no longer exists."""
    from helpers import write_revision

    project = lab_server.project
    revision = write_revision(project, "77aa00000003", "a1c4e7f20b13", "pass")  # as the learner generated it
    tracebacks_before = lab_server.output.read_text().count("Traceback")
    page.goto(lab_server.open(f"lab/tree/ai-service/migrations/versions/{revision.name}"))
    expect(page.locator(".jp-FileEditor:visible")).to_be_visible(timeout=60_000)
    _expect_editor_shows_the_file(page, revision)

    reset = subprocess.run(
        [sys.executable, "-m", "migration_lab", "reset", "02", "--keep-notebook"],
        cwd=project.root,
        env={**os.environ, "LAB_DATABASE_URL": lab_server.database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reset.returncode == 0, reset.stderr
    assert not revision.exists()
    # The tab is told at once, and says what to do.
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("The lab deleted this file (a reset). Close this tab.", timeout=20_000)
    dialog.locator("button").last.click()
    # The learner types in it anyway, and saves: the file stays deleted, and the save says why.
    page.locator(".jp-FileEditor:visible .cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# typed after the reset\n")
    time.sleep(2)  # an autosave, if any, would have written it by now
    page.keyboard.press("Control+s")
    expect(page.locator(".jp-Dialog")).to_contain_text("was deleted by a reset of the lab", timeout=20_000)
    time.sleep(2)
    assert not revision.exists(), "a save brought back the revision the reset deleted"
    assert lab_server.output.read_text().count("Traceback") == tracebacks_before
    page.locator(".jp-Dialog button").last.click()
