"""JupyterHub for a workshop (jupyterhub/): three learners log in, each gets a database of their own.

The test starts what an instructor runs on one server: a shared PostgreSQL
(TCP on 127.0.0.1, scram), `workshop init`, and JupyterHub on 127.0.0.1 with
the repository's jupyterhub_config.py, with two changes for a test: a
DummyAuthenticator (one password for all) and three throw-away OS users, made
here (so it needs root; CI runs as root). The servers are the config's
own: LocalProcessSpawner, each learner's server a process of its own user,
started by jupyterhub/start-learner.

Each learner logs in over HTTP the way a browser does (the login form, the
OAuth redirects, cookies and the XSRF token), lands on chapter 00, then runs
chapter 01's commands in a kernel of their own server, against their own
database; one of them logs in again through Debian's Chromium. Isolation is checked from
both sides: what each server sees, and that a learner's credentials open no
other learner's database.

Needs `pip install -r jupyterhub/requirements.txt` and configurable-http-proxy
(npm; on PATH or in .hub-node/), and skips, saying which, without them;
mandatory where LAB_REQUIRE_HUB=1 (CI).
"""

import asyncio
import contextlib
import copy
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import httpx
import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from helpers import REPO, copy_project, python_for, require
from migration_lab.database.shared_server import local_server
from migration_lab.launch.jupyterlab import landing_path
from migration_lab.project import Project
from migration_lab.workshop import instructor as workshop

HUB_TOOLS = "the hub's tools are not installed: pip install -r jupyterhub/requirements.txt"

RUN = uuid.uuid4().hex[:6]  # this run's own OS users: a run killed before its teardown, or another checkout's
LEARNERS = [f"mlabhub_{name}_{RUN}" for name in ("ada", "grace", "linus")]  # run at the same time, takes no name
LEARNERS_TOO = ["mlabcfg_a", "mlabcfg_b"]  # provisioned by the spawn hook alone, no OS user
PASSWORD = "a-workshop-password"
CHAPTER_01 = """
import json, os
import sqlalchemy as sa
import migration_lab as ml

ch = ml.chapter("01")
ch.add_column("UserProfile", "phone_number = Column(String, nullable=True)")
ch.alembic('revision --autogenerate -m "Add phone number to profile"')
ch.alembic("upgrade head")
lab = ml.Lab()
with lab.db.connect() as conn:
    where = conn.execute(sa.text("SELECT current_user, current_database()")).one()
print("RESULT", json.dumps({
    "url": os.environ.get("LAB_DATABASE_URL"),
    "workshop_url_leaked": "LAB_WORKSHOP_URL" in os.environ,
    "uid": os.geteuid(),
    "cwd": os.getcwd(),
    "backend": lab.backend.name,
    "user": where[0],
    "database": where[1],
    "columns": [c["name"] for c in sa.inspect(lab.db.engine).get_columns("user_profiles")],
}))
"""


def missing(reason: str) -> NoReturn:
    """Skip, saying what is missing; fail instead where CI installed the hub's tools (LAB_REQUIRE_HUB=1)."""
    require("LAB_REQUIRE_HUB", False, reason)
    raise AssertionError("unreachable: require() skips or fails")


def proxy_command() -> str:
    found = shutil.which("configurable-http-proxy")
    local = REPO / ".hub-node" / "node_modules" / ".bin" / "configurable-http-proxy"
    if found:
        return found
    if local.exists():
        return str(local)
    missing("configurable-http-proxy is not installed: npm install --prefix .hub-node configurable-http-proxy@5.3.0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A folder the learners' users can enter (pytest's own are 0700 as root)."""
    folder = Path(tempfile.mkdtemp(prefix="mlab-hub-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def learners(base: Path) -> Iterator[list[pwd.struct_passwd]]:
    """Three OS users with homes of their own (0700), deleted afterwards with their homes."""
    if os.geteuid() != 0:
        missing("making the learners' OS users needs root; CI runs as root")
    for stale in pwd.getpwall():  # a killed run's users: their home went with its folder, which nobody uses now
        if stale.pw_name.startswith("mlabhub_") and not Path(stale.pw_dir).exists():
            remove_user(stale.pw_name)
    made = []
    try:
        for name in LEARNERS:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                pytest.fail(f"the OS user {name} exists already, with this run's own suffix: `userdel -r {name}`")
            home = base / "home" / name
            home.parent.mkdir(exist_ok=True, mode=0o755)
            subprocess.run(
                ["useradd", "--user-group", "--create-home", "--home-dir", home, "--shell", "/bin/bash", name],
                check=True,
            )
            home.chmod(0o700)
            made.append(pwd.getpwnam(name))
        yield made
    finally:
        left = [name for name in (account.pw_name for account in made) if not remove_user(name)]
        assert not left, f"could not remove the OS users {left}: `userdel -r` each"


def remove_user(name: str) -> bool:
    """Kill the user's processes, wait until they are gone, then `userdel --remove`: userdel refuses a user
    who still runs a process (the learner's server, its kernels), and a killed process is not gone at once."""
    uid = pwd.getpwnam(name).pw_uid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        processes = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(processes, timeout=5)
        if subprocess.run(["userdel", "--remove", name], check=False, capture_output=True).returncode == 0:
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def course(base: Path) -> Path:
    """The instructor's checkout the hub serves from: readable by the learners, never written by them."""
    checkout = base / "course"
    copy_project(checkout)
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("jupyter", "jupyterhub"):
        shutil.copytree(REPO / folder, checkout / folder, ignore=ignore)
    return checkout


@pytest.fixture(scope="module")
def server_url(course: Path) -> Iterator[str]:
    """The shared server, with the workshop's templates (the instructor's `workshop init`)."""
    with local_server() as url:
        workshop.Workshop(url, roster=course / ".lab" / "workshop" / "roster.json", project=Project(course)).init()
        yield url


@pytest.fixture(scope="module")
def proxy() -> str:
    """The hub's tools, checked before anything is started: configurable-http-proxy's path."""
    for package in ("jupyterhub", "jupyterhub_idle_culler"):
        if importlib.util.find_spec(package) is None:
            missing(HUB_TOOLS)
    return proxy_command()


@pytest.fixture(scope="module")
def hub(proxy: str, base: Path, course: Path, server_url: str, learners: list[pwd.struct_passwd]) -> Iterator[str]:
    """JupyterHub on 127.0.0.1 with the repository's config; stopped at the end, its servers with it."""
    python_bin = python_for(learners[0], base / "learner-python")  # a `python` the learners can run
    folder = base / "hub"
    folder.mkdir()
    port = free_port()
    config = folder / "jupyterhub_config.py"
    config.write_text(
        "c = get_config()  # noqa\n"
        "c.JupyterHub.authenticator_class = 'dummy'\n"
        f"c.DummyAuthenticator.password = {PASSWORD!r}\n"
        f"c.Authenticator.allowed_users = {set(LEARNERS)!r}\n"
        f"load_subconfig({str(course / 'jupyterhub' / 'jupyterhub_config.py')!r})  # noqa\n"
        f"c.JupyterHub.bind_url = 'http://127.0.0.1:{port}'\n"
        f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{free_port()}'\n"
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'\n"
        f"c.ConfigurableHTTPProxy.command = [{proxy!r}]\n"
        "c.Spawner.start_timeout = 120\n"
        "c.Spawner.http_timeout = 120\n"
    )
    env = {
        "PATH": f"{python_bin}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LAB_WORKSHOP_URL": server_url,
        **{key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ},  # the kit this test imports
    }
    log = (folder / "hub.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"JupyterHub stopped:\n{(folder / 'hub.log').read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/hub/health", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, (
                f"JupyterHub did not answer:\n{(folder / 'hub.log').read_text()[-3000:]}"
            )
            time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # the hub stops the learners' servers and its proxy
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def log_in(hub: str, name: str) -> httpx.Client:
    """Log in with the form and follow the hub to the learner's server, as a browser does."""
    client = httpx.Client(base_url=hub, follow_redirects=True, timeout=120)
    client.get("/hub/login")
    response = client.post(
        "/hub/login", data={"username": name, "password": PASSWORD, "_xsrf": client.cookies.get("_xsrf", "")}
    )
    assert response.status_code == 200, response.text[-2000:]
    deadline = time.monotonic() + 120
    while f"/user/{name}/" not in str(response.url):  # the spawn-pending page, until the server is up
        assert time.monotonic() < deadline, f"{name}'s server did not start: {response.url}"
        time.sleep(1)
        response = client.get(f"/user/{name}/")
    return client


async def run_in_kernel(hub: str, client: httpx.Client, name: str, code: str) -> str:
    """Start a kernel on the learner's server, run the code, return its output (stdout and errors)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    xsrf = client.cookies.get("_xsrf", path=f"/user/{name}/") or ""
    created = client.post(f"/user/{name}/api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf})
    assert created.status_code == 201, created.text
    kernel = created.json()["id"]
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)
    request = HTTPRequest(
        f"{hub.replace('http', 'ws', 1)}/user/{name}/api/kernels/{kernel}/channels",
        headers={"Cookie": cookies, "Origin": hub, "X-XSRFToken": xsrf},
    )
    socket_ = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    socket_.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": uuid.uuid4().hex,
                    "username": name,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
                "channel": "shell",
            }
        )
    )
    output = []
    while True:
        message = await asyncio.wait_for(socket_.read_message(), timeout=180)
        assert message is not None, "the kernel's websocket closed"
        reply = json.loads(message)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = reply["msg_type"], reply["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "error":
            output.append("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    socket_.close()
    client.delete(f"/user/{name}/api/kernels/{kernel}", headers={"X-XSRFToken": xsrf})
    return "".join(output)


def result(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


def test_three_learners_each_run_chapter_01_on_their_own_database(
    hub: str, server_url: str, learners: list[pwd.struct_passwd]
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for account in learners:
        name = account.pw_name
        client = log_in(hub, name)
        landing = client.get(f"/user/{name}/")
        assert landing.url.path == f"/user/{name}/{landing_path()}", "the learner lands on chapter 00"
        seen[name] = result(asyncio.run(run_in_kernel(hub, client, name, CHAPTER_01)))
        client.close()

    urls = {name: make_url(s["url"]) for name, s in seen.items()}
    assert len(set(map(str, urls.values()))) == len(learners)
    for account in learners:
        name, server = account.pw_name, seen[account.pw_name]
        assert server["uid"] == account.pw_uid, "each learner's server runs as their own OS user"
        assert server["cwd"] == f"{account.pw_dir}/migration-lab", "in their own copy of the course"
        assert not server["workshop_url_leaked"], "the instructor's URL stays in the hub"
        assert server["backend"] == "url"
        assert (server["user"], server["database"]) == (name, workshop.database_name(name))
        assert "phone_number" in server["columns"], "chapter 01's upgrade reached their database"
        copy = Path(account.pw_dir) / "migration-lab"
        assert copy.stat().st_uid == account.pw_uid and (copy / "my-notebooks" / "00-start-here.ipynb").is_file()
        assert "phone_number" in (copy / "ai-service" / "main.py").read_text()
        assert stat.S_IMODE(copy.stat().st_mode) == 0o700, "nobody else reads a learner's copy"
        env_file = copy / "ai-service" / ".env"  # a plain `alembic` in the learner's terminal finds their database
        assert f"DATABASE_URL={server['url']}\n" in env_file.read_text()
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and env_file.stat().st_uid == account.pw_uid

    # A learner's credentials open their database and no one else's.
    for name, url in urls.items():
        for other in LEARNERS:
            engine = sa.create_engine(url.set(database=workshop.database_name(other)), poolclass=sa.pool.NullPool)
            try:
                if other == name:
                    with engine.connect() as conn:
                        assert conn.scalar(sa.text("SELECT current_user")) == name
                else:
                    with pytest.raises(sa.exc.OperationalError, match="permission denied"), engine.connect():
                        pass
            finally:
                engine.dispose()


LEARNER_WORK = """
import json, os
import sqlalchemy as sa
import migration_lab as ml
if WRITE:
    with open("my-notebooks/notes.md", "w") as notes:
        notes.write("my notes")
    with ml.Lab().db.connect() as conn:
        conn.execute(sa.text("CREATE TABLE my_work (id int)"))
        conn.commit()
with ml.Lab().db.connect() as conn:
    tables = sa.inspect(conn).get_table_names()
notes = open("my-notebooks/notes.md").read() if os.path.exists("my-notebooks/notes.md") else None
print("RESULT", json.dumps({"url": os.environ["LAB_DATABASE_URL"], "my_work": "my_work" in tables, "notes": notes}))
"""


def test_a_learner_logging_in_again_finds_their_work(hub: str, learners: list[pwd.struct_passwd]) -> None:
    """After their server stopped (culled, or the hub restarted it), the same database and files, not new ones."""
    name = learners[0].pw_name
    client = log_in(hub, name)
    before = result(asyncio.run(run_in_kernel(hub, client, name, "WRITE = True\n" + LEARNER_WORK)))
    assert before["my_work"] and before["notes"] == "my notes"
    as_hub_page = {"X-XSRFToken": client.cookies.get("_xsrf", path="/hub/") or ""}  # the hub's API, by cookie
    stopped = client.delete(f"/hub/api/users/{name}/server", headers=as_hub_page)
    assert stopped.status_code in (202, 204), stopped.text
    deadline = time.monotonic() + 60
    while client.get(f"/hub/api/users/{name}", headers=as_hub_page).json()["servers"]:
        assert time.monotonic() < deadline, f"{name}'s server did not stop"
        time.sleep(0.5)
    client.close()

    client = log_in(hub, name)  # spawns again: the hook runs again, start-learner runs again
    after = result(asyncio.run(run_in_kernel(hub, client, name, "WRITE = False\n" + LEARNER_WORK)))
    client.close()
    assert after == before


def test_a_learner_logs_in_with_chromium_and_lands_on_chapter_00(hub: str, learners: list[pwd.struct_passwd]) -> None:
    """The room's way in: the hub's login page in a real browser, then JupyterLab open on the learner's chapter 00
    (their copy, without outputs). Debian's Chromium (CI installs it); skipped, saying so, where it is missing."""
    chromium = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
    require(
        "LAB_REQUIRE_BROWSER",
        chromium.exists(),
        f"no Chromium at {chromium} (apt-get install chromium, or set LAB_CHROMIUM)",
    )
    from playwright.sync_api import expect, sync_playwright

    name = learners[-1].pw_name
    artifacts = REPO / ".lab" / "test-artifacts"  # git-ignored
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{hub}/hub/login")
            page.fill("#username_input", name)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(f"**/user/{name}/{landing_path()}", timeout=180_000)
            notebook = page.locator(".jp-NotebookPanel:visible")
            expect(notebook).to_be_visible(timeout=120_000)
            expect(notebook.get_by_role("heading", name="00 · Start here").first).to_be_visible(timeout=60_000)
            assert notebook.locator(".jp-OutputArea-output").count() == 0, "answers on screen before anything ran"
        finally:
            artifacts.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(artifacts / "hub-chromium-login.png"))
            browser.close()


def test_the_idle_culler_runs_as_a_hub_service(hub: str) -> None:
    hubs = [p for p in psutil.process_iter(["cmdline"]) if "jupyterhub_idle_culler" in (p.info["cmdline"] or [])]
    assert hubs, "no jupyterhub-idle-culler process: the config's service is missing"
    assert any(arg.startswith("--timeout=") for arg in hubs[0].info["cmdline"])


def load_config(tmp_path: Path, preset: str = "", name: str = "jupyterhub_config.py") -> Config:
    """A config file of jupyterhub/ as JupyterHub loads it: `load_subconfig` after a deployment's own settings."""
    wrapper = tmp_path / "wrapper_config.py"
    config = REPO / "jupyterhub" / name
    wrapper.write_text(f"c = get_config()  # noqa\n{preset}\nload_subconfig({str(config)!r})  # noqa\n")
    return PyFileConfigLoader(wrapper.name, path=str(tmp_path)).load_config()


def test_config_on_its_own_listens_on_localhost_and_culls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_WORKSHOP_URL", "postgresql://instructor:secret@127.0.0.1:5432/postgres")
    c = load_config(tmp_path)
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert c.JupyterHub.spawner_class == "localprocess"
    assert c.LocalAuthenticator.allowed_groups == {"mlab-learners"}
    assert c.Spawner.default_url == f"/{landing_path()}"
    assert Path(c.Spawner.cmd[0]) == REPO / "jupyterhub" / "start-learner"
    assert c.Spawner.pre_spawn_hook is not None
    [culler] = c.JupyterHub.services
    assert "jupyterhub_idle_culler" in culler["command"] and "--timeout=3600" in culler["command"]
    assert [role["services"] for role in c.JupyterHub.load_roles] == [["idle-culler"]]


def test_course_config_keeps_what_the_littlest_jupyterhub_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaded from TLJH's jupyterhub_config.d/ (merged over TLJH's settings), it leaves the hub's own alone."""
    monkeypatch.setenv("LAB_WORKSHOP_URL", "postgresql://instructor:secret@127.0.0.1:5432/postgres")
    tljh = (
        "c.JupyterHub.spawner_class = 'systemdspawner.SystemdSpawner'\n"
        "c.JupyterHub.authenticator_class = 'firstuseauthenticator.FirstUseAuthenticator'\n"
        "c.JupyterHub.port = 15001\n"
        "c.JupyterHub.services = [{'name': 'cull-idle', 'command': ['cull']}]\n"
    )
    c = load_config(tmp_path, tljh, name="course_config.py")
    assert c.JupyterHub.spawner_class == "systemdspawner.SystemdSpawner"
    assert c.JupyterHub.authenticator_class == "firstuseauthenticator.FirstUseAuthenticator"
    assert "bind_url" not in c.JupyterHub and c.JupyterHub.port == 15001
    assert [service["name"] for service in c.JupyterHub.services] == ["cull-idle"]
    assert c.Spawner.pre_spawn_hook is not None and c.Spawner.default_url == f"/{landing_path()}"


def test_config_needs_the_workshop_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without LAB_WORKSHOP_URL the hub does not start, and the error says how to give it."""
    monkeypatch.delenv("LAB_WORKSHOP_URL", raising=False)
    with pytest.raises(Exception, match="LAB_WORKSHOP_URL"):
        load_config(tmp_path)


def test_spawn_hook_gives_each_learner_their_own_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_url: str
) -> None:
    """Two spawners sharing one configured environment dict: each gets its own URL, the shared dict none."""
    monkeypatch.setenv("LAB_WORKSHOP_URL", server_url)
    monkeypatch.setenv("LAB_WORKSHOP_ROSTER", str(tmp_path / "roster.json"))  # not the checkout's .lab/
    provision = load_config(tmp_path).Spawner.pre_spawn_hook
    shared = {"LANG": "C.UTF-8"}
    first, second = (
        SimpleNamespace(user=SimpleNamespace(name=n), environment=shared) for n in ("mlabcfg_a", "mlabcfg_b")
    )
    asyncio.run(provision(first))
    asyncio.run(provision(second))
    assert shared == {"LANG": "C.UTF-8"}
    for spawner in (first, second):
        url = make_url(spawner.environment["LAB_DATABASE_URL"])
        assert (url.username, url.database) == (spawner.user.name, workshop.database_name(spawner.user.name))
        assert spawner.environment["LANG"] == "C.UTF-8"
    again = SimpleNamespace(user=SimpleNamespace(name="mlabcfg_a"), environment=copy.copy(shared))
    asyncio.run(provision(again))  # a second login: the same learner, the same URL
    assert again.environment["LAB_DATABASE_URL"] == first.environment["LAB_DATABASE_URL"]


def test_kubernetes_values_match_the_one_server_config() -> None:
    """The Zero to JupyterHub values (not deployed here) land where the hub does and run the same hook."""
    yaml = pytest.importorskip("yaml")
    values = yaml.safe_load((REPO / "jupyterhub" / "z2jh-values.yaml").read_text())
    singleuser = values["singleuser"]
    assert singleuser["defaultUrl"] == f"/{landing_path()}"
    assert singleuser["cmd"][0].endswith("/jupyterhub/start-learner")
    hook = values["hub"]["extraConfig"]["migration-lab"]
    compile(hook, "extraConfig", "exec")
    assert "workshop.ensure" in hook and '"LAB_DATABASE_URL"' in hook
    assert values["hub"]["extraEnv"]["LAB_WORKSHOP_URL"]["valueFrom"]["secretKeyRef"]
    assert values["cull"]["enabled"] is True
