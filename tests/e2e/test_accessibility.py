"""Everything the kit draws passes axe-core's WCAG 2.1 A and AA rules, and the console works with the keyboard
alone: in a real JupyterLab in headless Chromium, 1400 px wide with the file browser open.

Chapters 00, 01, 11 and 12 and the instructor's room (3 learners, one stuck) are run as a learner runs them
(Restart Kernel and Run All), then the clicks that draw the rest: Check my work and Next hint, the console's
STOP question, dropped and added columns. After each, axe.run on the cells' outputs (the kit's, not
JupyterLab's own chrome) must find nothing serious or critical.

A trap: JupyterLab 4.6's <body> has height 0 and overflow hidden, so axe takes every element for clipped and
skips color-contrast everywhere, silently. The body is let overflow before scanning, and each scan proves the
contrast rule ran on the outputs (nodes checked > 0).

axe-core comes from npm (`.ci/run`: `npm install --prefix .hub-node axe-core`; LAB_AXE names another copy).
Skipped, saying so, without Chromium or axe-core; both mandatory where CI sets LAB_REQUIRE_BROWSER.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import REPO, copy_project, require, stop_jupyterlab
from migration_lab import EmbeddedBackend, Lab, UrlBackend
from migration_lab.course.registry import spec
from migration_lab.database.shared_server import local_server
from migration_lab.front.notebook import Chapter
from migration_lab.workshop.instructor import Workshop

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(os.environ.get("LAB_AXE", REPO / ".hub-node" / "node_modules" / "axe-core" / "axe.min.js"))
ARTIFACTS = REPO / ".lab" / "test-artifacts"  # git-ignored
require("LAB_REQUIRE_BROWSER", CHROMIUM.exists(), f"there is no Chromium at {CHROMIUM} (apt-get install chromium)")
require("LAB_REQUIRE_BROWSER", AXE.exists(), f"there is no axe-core at {AXE} (npm install --prefix .hub-node axe-core)")

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
OUTPUTS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"
UNCLIP = "body.jp-ThemedContainer { overflow: visible !important; }"  # the trap (see the module's docstring)
# Each outermost output area scrolled to the top of a tall viewport and scanned on its own: axe leaves out
# of color-contrast what the notebook's scrolling clips. Returns the serious and critical violations, and
# how many nodes color-contrast checked (0 means it did not run: the scan would prove nothing).
AXE_RUN = """async ([selector, tags]) => {
    const all = [...document.querySelectorAll(selector)];
    const areas = all.filter(n => !all.some(o => o !== n && o.contains(n)));
    const found = [];
    let contrastChecked = 0;
    for (const area of areas) {
        area.scrollIntoView({block: 'start'});
        await new Promise(r => setTimeout(r, 50));
        const result = await axe.run(area, {runOnly: {type: 'tag', values: tags}});
        for (const kind of ['passes', 'violations', 'incomplete'])
            for (const rule of result[kind]) if (rule.id === 'color-contrast') contrastChecked += rule.nodes.length;
        for (const rule of result.violations) for (const node of rule.nodes)
            if (['serious', 'critical'].includes(node.impact))
                found.push({rule: rule.id, impact: node.impact, html: node.html.slice(0, 160),
                            why: node.failureSummary.slice(0, 300)});
    }
    return {areas: areas.length, contrastChecked, found};
}"""
NOTEBOOKS = {
    "00": "00-start-here",
    "01": "01-standard-workflow",
    "11": "11-locks-and-downtime",
    "12": "12-expand-and-contract",
    "room": "instructor-room",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _room_of_three(workshop_url: str, shop: Workshop, tmp: Path) -> None:
    """learner01 checked chapter 01, learner02 ran a command that failed in 05, learner03 is stuck in 08."""
    shop.init()
    for name, number, command in (("learner01", "01", None), ("learner02", "05", 'upgrade "<nowhere>&"')):
        lab = Lab(copy_project(tmp / name), UrlBackend(shop.add(name).database_url))
        chapter = Chapter(spec(number), lab)
        chapter.check()
        if command:
            chapter.alembic(command)
        lab.db.dispose()
    lab = Lab(copy_project(tmp / "learner03"), UrlBackend(shop.add("learner03").database_url))
    Chapter(spec("08"), lab).check()
    lab.db.dispose()
    engine = sa.create_engine(make_url(workshop_url).set(database="mlab_workshop"), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # no check gained for 14 minutes: stuck (as tests/workshop's stuck test does)
        conn.execute(
            sa.text(
                "UPDATE room.progress SET progressed_at = now() - interval '14 minutes' WHERE learner = 'learner03'"
            )
        )
    engine.dispose()


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory, server: EmbeddedBackend) -> Iterator[str]:
    """JupyterLab on a copy of the project (LAB_DATABASE_URL: a database of its own; LAB_WORKSHOP_URL: a shared
    server with a room of three); its address with a {} for the workspace and the notebook."""
    tmp = tmp_path_factory.mktemp("a11y")
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text('CREATE DATABASE "a11y"'))
    database_url = make_url(server.url()).set(database="a11y").render_as_string(hide_password=False)
    project = copy_project(tmp / "project")
    settings = tmp / "lab-settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)  # every cell in the page, not only those in view
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = _free_port(), "a11y-test"
    jupyter = {f"JUPYTER_{name}_DIR": str(tmp / name.lower()) for name in ("CONFIG", "DATA", "RUNTIME")}
    try:
        with local_server(durable=False) as workshop_url:
            shop = Workshop(workshop_url, roster=project.state_dir / "workshop" / "roster.json", project=project)
            _room_of_three(workshop_url, shop, tmp)
            log = (tmp / "lab.out").open("w")
            lab = subprocess.Popen(
                [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--allow-root",
                 f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project.root}"],
                env={**os.environ, **jupyter, "LAB_DATABASE_URL": database_url, "LAB_WORKSHOP_URL": workshop_url,
                     "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings"),
                     "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), 1).close()
                        break
                    except OSError:
                        assert time.monotonic() < deadline and lab.poll() is None, (tmp / "lab.out").read_text()
                        time.sleep(0.5)
                yield f"http://127.0.0.1:{port}/lab/workspaces/{{}}?reset&token={token}"
            finally:
                stop_jupyterlab(lab)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text('DROP DATABASE IF EXISTS "a11y" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def _restart_and_run_all(page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.get_by_role("menuitem", name="Restart Kernel and Run All Cells…").click()
    page.get_by_role("button", name="Confirm Kernel Restart").click()


def _prompts(page: Page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
              .map(c => (c.querySelector('.jp-InputPrompt') || {}).innerText || '')"""
    )


def _run_all(page: Page, timeout: float = 600) -> None:
    """Restart Kernel and Run All, until every cell has run in this kernel ([*] seen, then every prompt numbered).

    The committed notebooks carry outputs and numbers: until a cell has shown [*], what is on screen is stale.
    Under load the fresh kernel has been seen to stay "Starting" with nothing run: restarted once more then.
    """
    page.locator(".jp-Cell").first.wait_for(timeout=60_000)
    time.sleep(1)
    _restart_and_run_all(page)
    deadline, nudge, started = time.monotonic() + timeout, time.monotonic() + 90, False
    while True:
        prompts = _prompts(page)
        started = started or any("[*]" in p for p in prompts)
        if started and prompts and all(re.search(r"\[\d+\]", p) for p in prompts):
            return
        if nudge and time.monotonic() > nudge and not (started and any(re.search(r"\[\d+\]", p) for p in prompts)):
            _restart_and_run_all(page)
            nudge = 0
        assert time.monotonic() < deadline, f"the cells did not all run: {prompts}"
        time.sleep(0.5)


def _shut_kernels(address: str) -> None:
    """Every kernel of the server shut down: the next notebook's chapter resets a database nobody holds."""
    parts = urllib.parse.urlsplit(address)
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    api = f"{parts.scheme}://{parts.netloc}/api/sessions"
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=headers)) as answer:
        sessions = json.load(answer)
    for session in sessions:
        request = urllib.request.Request(f"{api}/{session['id']}", headers=headers, method="DELETE")
        urllib.request.urlopen(request).close()


def _open(browser: Browser, address: str, key: str) -> Page:
    """The notebook in a workspace of its own (only it open), 1400 px wide with the file browser open, run."""
    page = browser.new_page(viewport={"width": 1400, "height": 2400})  # tall: the console is ~1300 px
    page.goto(address.format(f"a11y-{key}/tree/notebooks/{NOTEBOOKS[key]}.ipynb"))
    _run_all(page)
    if not page.locator(".jp-FileBrowser:visible").count():
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[title^='File Browser']").first.click()
    expect(page.locator(".jp-FileBrowser")).to_be_visible()
    time.sleep(2)  # Mermaid draws after the output arrives
    page.add_script_tag(path=str(AXE))
    page.add_style_tag(content=UNCLIP)
    return page


def _serious(page: Page, state: str) -> list[dict[str, Any]]:
    """axe's serious and critical violations in the cells' outputs; fails if color-contrast checked nothing."""
    result = page.evaluate(AXE_RUN, [OUTPUTS, WCAG])
    assert result["areas"] > 0, f"{state}: no output to scan"
    assert result["contrastChecked"] > 0, f"{state}: axe checked no text's contrast (clipped?)"
    return [{"state": state, **found} for found in result["found"]]


def _shot(target: Page | Locator, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / f"a11y-{name}.png"))


def _click_and_wait(button: Locator, output: Locator) -> None:
    """Click, then wait until the output says something else (what the click printed)."""
    before = output.inner_text()
    button.click()
    deadline = time.monotonic() + 60
    while output.inner_text() in (before, ""):
        assert time.monotonic() < deadline, f"{button.inner_text()!r} printed nothing new"
        time.sleep(0.2)


def _check_buttons(page: Page, key: str) -> list[dict[str, Any]]:
    """Check my work, then Next hint, of every check button on the page: what they print, scanned."""
    found = []
    for i, check in enumerate(page.locator(OUTPUTS).locator("button", has_text="Check my work").all()):
        box = check.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
        output = box.locator(".widget-output").first
        _click_and_wait(check, output)
        found += _serious(page, f"{key}: Check my work #{i}")
        _click_and_wait(box.locator("button", has_text="Next hint"), output)
        found += _serious(page, f"{key}: Next hint #{i}")
        _shot(box, f"{key}-check")
    return found


def _console(page: Page) -> Locator:
    return page.locator(".widget-vbox").filter(has=page.locator("button", has_text="upgrade head")).first


@pytest.fixture(scope="module")
def chapter_01(browser: Browser, jupyterlab: str) -> Iterator[Page]:
    page = _open(browser, jupyterlab, "01")
    yield page
    page.close()
    _shut_kernels(jupyterlab)


@pytest.mark.parametrize("key", ["00", "11", "12", "room"])
def test_a_notebook_has_nothing_serious_for_axe(browser: Browser, jupyterlab: str, key: str) -> None:
    page = _open(browser, jupyterlab, key)
    try:
        found = _serious(page, f"{key}: after Run All") + _check_buttons(page, key)
        if key == "00":
            console = _console(page)
            console.locator("button", has_text="history").click()
            expect(console.get_by_text("$ alembic history")).to_be_visible(timeout=30_000)
            found += _serious(page, "00: console after history")
            _shot(console, "00-console")
        if key == "room":
            room = page.locator(".widget-vbox", has=page.locator("button", has_text="Refresh now")).first
            expect(room.get_by_text("STUCK learner03")).to_be_visible()  # not by its red alone
            expect(room.locator("th[scope=col]", has_text="learner")).to_have_count(1)
            _shot(room, "room")
        if key == "11":
            # live it heads "waits for"; once the run is over, its summary heads "waited for"
            panel = page.locator(OUTPUTS).locator(".widget-html", has_text=re.compile("waits for|waited for")).first
            _shot(panel, "11-lock-panel")
        _shot(page, f"{key}-page")
        assert found == [], json.dumps(found, indent=1, ensure_ascii=False)
    finally:
        page.close()
        _shut_kernels(jupyterlab)


def test_chapter_01_and_every_state_of_its_console_have_nothing_serious_for_axe(chapter_01: Page) -> None:
    page = chapter_01
    found = _serious(page, "01: after Run All") + _check_buttons(page, "01")
    console = _console(page)
    console.locator("button", has_text="downgrade -1").click()
    expect(console.locator("button", has_text="Yes, run it")).to_be_visible(timeout=30_000)
    found += _serious(page, "01: the STOP question")
    _shot(console, "01-console-question")
    console.locator("button", has_text="Yes, run it").click()
    expect(console.get_by_text("Running downgrade")).to_be_visible(timeout=30_000)
    expect(console.get_by_text(re.compile(r"- column user_profiles\.\w+ \(dropped\)"))).to_be_visible()
    found += _serious(page, "01: dropped columns in the live schema")
    _shot(console, "01-console-dropped")
    time.sleep(0.6)  # past the double-click guard
    console.locator("button", has_text="upgrade head").click()
    expect(console.get_by_text("Running upgrade")).to_be_visible(timeout=30_000)
    expect(console.get_by_text(re.compile(r"\+ column user_profiles\.\w+ \(added\)"))).to_be_visible()
    expect(console.locator("td", has_text="+ added").first).to_be_visible()  # in the table too, not by colour alone
    found += _serious(page, "01: added columns in the live schema")
    _shot(console, "01-console-added")
    assert found == [], json.dumps(found, indent=1, ensure_ascii=False)


def test_the_stop_questions_buttons_are_whole_with_the_file_browser_open(chapter_01: Page) -> None:
    page = chapter_01
    assert page.viewport_size == {"width": 1400, "height": 2400}
    expect(page.locator(".jp-FileBrowser")).to_be_visible()
    console = _console(page)
    time.sleep(0.6)
    console.locator("button", has_text="downgrade -1").click()
    expect(console.locator("button", has_text="Cancel")).to_be_visible(timeout=30_000)
    cut = page.evaluate(
        f"""() => [...document.querySelectorAll('{OUTPUTS} button')].filter(b => b.offsetParent !== null)
               .filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.innerText)"""
    )
    assert cut == [], f"labels cut: {cut}"
    console.locator("button", has_text="Cancel").click()
    expect(console.locator("button", has_text="Cancel")).to_be_hidden()


def test_the_graph_says_its_revisions_in_words(chapter_01: Page) -> None:
    graph = _console(chapter_01).locator(".jp-RenderedMermaid").first
    alt = graph.locator("img").get_attribute("alt") or ""
    assert re.fullmatch(r"Revision graph: \d+ revisions, the database at [0-9a-f]{12}", alt), alt
    caption = graph.locator("figcaption").inner_text()
    assert re.search(r"Oldest first: [0-9a-f]{12} .+ \(after base\); [0-9a-f]{12} .+ \(after [0-9a-f]{12}", caption)


def test_the_console_works_with_the_keyboard_alone(chapter_01: Page) -> None:
    """Tab reaches every button in order with a focus ring of 2 px; Enter and Space run them; the STOP question
    takes the focus on its safe answer, and gives it back to the button that asked once answered."""
    page = chapter_01
    console = _console(page)
    # The one step that is not a key: into the console. Tab, Shift+Tab make it a keyboard focus (:focus-visible).
    console.locator("button", has_text="current").first.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    labels = ["current", "history", "heads", "upgrade head", "downgrade -1", "downgrade base", "stamp head"]
    reached = []
    for _ in range(len(labels) + 2):
        reached.append(
            page.evaluate(
                """() => { const e = document.activeElement, s = getComputedStyle(e);
                   return [e.tagName, (e.innerText || e.placeholder || '').trim(), e.matches(':focus-visible'),
                           s.outlineStyle, parseFloat(s.outlineWidth)]; }"""
            )
        )
        page.keyboard.press("Tab")
    assert [label for _, label, *_ in reached[: len(labels)]] == labels, reached
    assert reached[len(labels)][0] == "INPUT" and reached[len(labels) + 1][1] == "autogenerate", reached
    for _, label, visible, style, width in reached:
        assert visible and style != "none" and width >= 2, f"no visible focus ring on {label}: {style} {width}px"
    _shot(console, "01-keyboard-focus")

    output = console.locator(".widget-output").first

    def press(label: str, key: str, expected: str) -> None:
        time.sleep(0.6)  # past the double-click guard
        console.locator("button", has_text=label).first.focus()
        page.keyboard.press(key)
        expect(output.get_by_text(re.compile(expected)).first).to_be_visible(timeout=30_000)

    press("current", "Enter", r"\$ alembic current")
    press("heads", " ", r"\$ alembic heads")
    press("downgrade -1", "Enter", "Waiting for your answer")
    expect(console.locator("button", has_text="Cancel")).to_be_focused(timeout=10_000)  # the safe answer
    page.keyboard.press("Shift+Tab")
    expect(console.locator("button", has_text="Yes, run it")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press(" ")
    expect(output.get_by_text("Cancelled")).to_be_visible(timeout=10_000)
    expect(console.locator("button", has_text="downgrade -1")).to_be_focused(timeout=10_000)  # back where it was
    # Enter on a widget's button left JupyterLab in command mode, on the same cell.
    assert "jp-mod-commandMode" in (page.locator(".jp-Notebook").first.get_attribute("class") or "")
