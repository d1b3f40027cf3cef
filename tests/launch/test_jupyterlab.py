"""`make lab` / `python -m migration_lab lab` without a browser: the learner's copy of the chapters,
the terminals' shell, one server per checkout, and what stopping it does to the database."""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets.config import Config

from helpers import REPO, copy_project, write_revision
from migration_lab import LabError, Project
from migration_lab.launch import jupyterlab
from migration_lab.launch.jupyterlab import WORKBOOK, clean_notebook, config_file, jupyter_command, prepare_workbook

BIN = Path(sys.executable).parent


@pytest.fixture
def lab_project(tmp_path: Path) -> Project:
    project = copy_project(tmp_path / "project")
    shutil.copytree(REPO / "jupyter", project.root / "jupyter")
    return project


def _chapters(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("[0-9][0-9]-*.ipynb"))


def test_the_workbook_holds_every_chapter_without_outputs(lab_project: Project) -> None:
    copied = prepare_workbook(lab_project)
    workbook = lab_project.root / WORKBOOK
    assert copied == _chapters(lab_project.root / "notebooks") == _chapters(workbook)
    for name in copied:
        original = json.loads((lab_project.root / "notebooks" / name).read_text())
        copy = json.loads((workbook / name).read_text())
        assert [c["source"] for c in copy["cells"]] == [c["source"] for c in original["cells"]]
        for cell in copy["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None
        assert "widgets" not in copy["metadata"]
    # The committed chapters keep their outputs: nbval compares them.
    assert any(c.get("outputs") for c in json.loads((lab_project.root / "notebooks" / copied[1]).read_text())["cells"])


def test_a_learners_notebook_is_never_overwritten_and_a_missing_chapter_comes_back(lab_project: Project) -> None:
    prepare_workbook(lab_project)
    workbook = lab_project.root / WORKBOOK
    mine = workbook / "01-standard-workflow.ipynb"
    edited = json.loads(mine.read_text())
    edited["cells"][0]["source"] = "my own notes"
    mine.write_text(json.dumps(edited))
    (workbook / "03-rollback.ipynb").unlink()
    assert prepare_workbook(lab_project) == ["03-rollback.ipynb"]
    assert json.loads(mine.read_text())["cells"][0]["source"] == "my own notes"
    assert prepare_workbook(lab_project) == []


def test_the_workbook_is_git_ignored_and_the_kit_finds_the_project_and_solutions_from_it(lab_project: Project) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{WORKBOOK}/00-start-here.ipynb"], cwd=REPO)
    assert ignored.returncode == 0
    prepare_workbook(lab_project)
    found = Project.find(lab_project.root / WORKBOOK)  # a notebook's kernel starts in its folder
    assert found == lab_project
    assert (found.root / "notebooks" / "solutions" / "01.py").is_file()


def test_clean_notebook_leaves_markdown_alone() -> None:
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": "# Title", "metadata": {}},
            {"cell_type": "code", "source": "1", "outputs": [{"x": 1}], "execution_count": 3, "metadata": {}},
        ],
        "metadata": {"widgets": {"state": {}}, "kernelspec": {"name": "python3"}},
    }
    clean = clean_notebook(notebook)
    assert clean["cells"][0] == notebook["cells"][0]
    assert clean["cells"][1]["outputs"] == [] and clean["cells"][1]["execution_count"] is None
    assert clean["metadata"] == {"kernelspec": {"name": "python3"}}
    assert notebook["cells"][1]["outputs"] == [{"x": 1}]  # the original is untouched


def _terminal_command(project: Project) -> list[str]:
    """The shell JupyterLab's terminals run, read from the shipped server config."""
    return list(_load_config(project).ServerApp.terminado_settings["shell_command"])


@contextlib.contextmanager
def _mends_undone_afterwards() -> Iterator[None]:
    """The config mends jupyter-collaboration's classes in this process: put them back as they were."""
    from jupyter_server_ydoc.loaders import FileLoader
    from jupyter_server_ydoc.rooms import DocumentRoom
    from jupyter_server_ydoc.websocketserver import JupyterWebsocketServer

    patched = [
        (DocumentRoom, "__init__"),
        (DocumentRoom, "_on_outofband_change"),
        (FileLoader, "maybe_notify"),
        (JupyterWebsocketServer, "clean"),
    ]
    original = [(owner, name, owner.__dict__[name]) for owner, name in patched]
    try:
        yield
    finally:
        for owner, name, value in original:
            setattr(owner, name, value)


def _load_config(project: Project) -> Config:
    """The shipped server config, run as the server runs it; its mends of jupyter-collaboration undone after."""
    saved = dict(os.environ)
    config = Config()
    try:
        with _mends_undone_afterwards():
            path = config_file(project)
            exec(compile(path.read_text(), str(path), "exec"), {"c": config, "__file__": str(path)})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config


@pytest.fixture
def mended(lab_project: Project) -> Iterator[Config]:
    """jupyter-collaboration as the lab's server runs it (the config's mends applied), for one test."""
    with _mends_undone_afterwards():
        path = config_file(lab_project)
        config = Config()
        saved = dict(os.environ)
        try:
            exec(compile(path.read_text(), str(path), "exec"), {"c": config, "__file__": str(path)})
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield config


def test_the_editor_sync_mend_still_fits_the_pinned_jupyter_collaboration(lab_project: Project) -> None:
    """jupyter/jupyter_server_config.py replaces two internals of jupyter-collaboration and reaches into others
    (issue 340: the reload keeps the old hash; the watcher's race; deleted files). A version whose internals
    moved must fail here, not silently bring back the "File Changed" dialog, a stale save over the kit's edit
    or a deleted revision saved back."""
    import inspect

    from jupyter_server_ydoc.loaders import FileLoader
    from jupyter_server_ydoc.rooms import DocumentRoom
    from jupyter_server_ydoc.websocketserver import JupyterWebsocketServer
    from jupyter_ydoc import YFile

    room_init = inspect.getsource(DocumentRoom.__init__)
    for attribute in ("self._file", "self._update_lock", "self._saving_document", "self._file_format"):
        assert attribute in room_init
    loader_init = inspect.getsource(FileLoader.__init__)
    for attribute in ("self._lock", "self._contents_manager", "self._subscriptions", "self._current_path"):
        assert attribute in loader_init
    assert "self._filepath_subscriptions" in loader_init
    assert "self.last_modified" in inspect.getsource(FileLoader.maybe_save_content)  # what a save compares
    assert "except asyncio.CancelledError" in inspect.getsource(DocumentRoom._maybe_save_document)
    assert inspect.iscoroutinefunction(DocumentRoom._on_outofband_change)
    assert inspect.iscoroutinefunction(FileLoader.maybe_notify)
    assert inspect.getattr_static(YFile, "hash").fset is not None  # the document takes a new hash
    with _mends_undone_afterwards():
        config = Config()
        path = config_file(lab_project)
        exec(compile(path.read_text(), str(path), "exec"), {"c": config, "__file__": str(path)})
        assert DocumentRoom._on_outofband_change.__name__ == "reload_under_the_files_lock"
        assert FileLoader.maybe_notify.__name__ == "notify_when_the_room_has_read_it"
        assert JupyterWebsocketServer.clean.__name__ == "clean_quietly"
        assert config.ServerApp.contents_manager_class.__name__ == "LabContents"


class _FileIds:
    """The file id manager's one answer a loader asks for: the path of an id (None once the file is gone)."""

    def __init__(self, paths: dict[str, str | None]) -> None:
        self.paths = paths

    def get_path(self, file_id: str) -> str | None:
        return self.paths[file_id]


class _Tab:
    """A browser tab's collaborative session, as a room holds it: what the server closes it with."""

    def __init__(self) -> None:
        self.closed: list[tuple[int, str]] = []

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def _room(root: Path, path: str, delay: float = 0.0, ids: _FileIds | None = None):
    """A real jupyter-collaboration room on a real contents manager whose answers take `delay` seconds
    (a busy machine), for file `path` of `root`; no watcher task: the test calls maybe_notify itself."""
    import logging

    from jupyter_events import EventLogger
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupyter_server_ydoc.loaders import FileLoader
    from jupyter_server_ydoc.rooms import DocumentRoom
    from jupyter_server_ydoc.utils import EVENTS_SCHEMA_PATH

    class SlowContents(AsyncLargeFileManager):
        async def get(self, *args, **kwargs):
            await asyncio.sleep(delay)
            return await super().get(*args, **kwargs)

    events = EventLogger()
    events.register_event_schema(EVENTS_SCHEMA_PATH)
    contents = SlowContents(root_dir=str(root))
    loader = FileLoader("f1", ids or _FileIds({"f1": path}), contents, poll_interval=None)
    log = logging.getLogger("test-room")
    room = DocumentRoom("text:file:f1", "text", "file", loader, events, None, log, save_delay=None)
    return room, loader


def _written_by_the_kit(file: Path, text: str) -> None:
    file.write_text(text)
    later = file.stat().st_mtime + 2  # a clearly newer file, however coarse the clock
    os.utime(file, (later, later))


@pytest.mark.parametrize("who_reloads", ["the watcher", "the room"])
def test_a_save_waiting_with_older_text_never_overwrites_the_kits_edit(
    mended: Config, lab_project: Project, who_reloads: str
) -> None:
    """Issue 17, item 8: the editor wrote its stale text back over the kit's edit of main.py. A save that holds
    the document's text from before the kit's write waits for the file's lock while the watcher (or the room's
    reload) holds it: upstream let it through and it wrote the old text over the new."""
    main = lab_project.service_dir / "main.py"
    before = main.read_text()

    async def race() -> tuple[str, str]:
        room, loader = _room(lab_project.root, "ai-service/main.py", delay=0.2)
        await room.initialize()
        _written_by_the_kit(main, before + "# the kit's edit\n")
        if who_reloads == "the watcher":
            reload = asyncio.create_task(loader.maybe_notify())
        else:
            reload = asyncio.create_task(room._on_outofband_change())
        await asyncio.sleep(0.05)  # it holds the file's lock, asking the slow disk
        room._saving_document = asyncio.create_task(room._maybe_save_document(None, save_now=True))
        await asyncio.sleep(0.05)  # the save has taken the document's (old) text and waits for the lock
        await asyncio.gather(reload, room._saving_document, return_exceptions=True)  # a save may be cancelled
        await loader.maybe_notify()
        return main.read_text(), await room._document.aget()

    on_disk, in_the_editor = asyncio.run(race())
    assert on_disk == in_the_editor == before + "# the kit's edit\n"


def test_a_file_the_kit_deleted_cannot_be_saved_back_and_its_tabs_are_told_once(
    mended: Config, lab_project: Project
) -> None:
    """Issue 17, item 2: a reset deleted a revision open in the editor; typing and Ctrl-S brought it back."""
    from tornado.web import HTTPError

    from migration_lab.workspace import deletions

    revision = write_revision(lab_project, "77aa00000001", "a1c4e7f20b13", "pass")
    path = str(revision.relative_to(lab_project.root))
    contents = mended.ServerApp.contents_manager_class(root_dir=str(lab_project.root), config=mended)

    async def scenario() -> tuple[list[tuple[int, str]], str]:
        room, loader = _room(lab_project.root, path)
        await room.initialize()
        tab = _Tab()
        room.clients.add(tab)
        deletions.delete(lab_project, [revision], "a reset of the lab (your copy is in .lab/backups/X/)")
        for _ in range(3):  # the watcher polls every half second: the tab is told once, nothing is raised
            await loader.maybe_notify()
        with pytest.raises(HTTPError) as refused:
            await contents.save({"type": "file", "format": "text", "content": "revision = 'x'\n"}, path)
        assert refused.value.status_code == 409
        return tab.closed, refused.value.log_message

    closed, message = asyncio.run(scenario())
    assert len(closed) == 1 and closed[0][0] == 1003
    assert json.loads(closed[0][1]) == {
        "reason": "initialization_error",
        "errorReason": "The lab deleted this file (a reset). Close this tab.",
    }
    assert len(closed[0][1].encode()) <= 123  # a close frame's reason
    assert "was deleted by a reset of the lab (your copy is in .lab/backups/X/)" in message
    assert not revision.exists()
    # A file the learner writes back (git checkout) is theirs again: saved as usual.
    revision.write_text("# back\n")
    asyncio.run(contents.save({"type": "file", "format": "text", "content": "# mine\n"}, path))
    assert revision.read_text() == "# mine\n"


def test_a_file_whose_id_lost_its_path_stops_its_watcher_quietly(mended: Config, lab_project: Project) -> None:
    """A file deleted through JupyterLab: its file id has no path any more. Upstream's watcher raised at every
    poll, its error handler raised again, and the dead task printed "Task exception was never retrieved" at
    shutdown."""
    ids = _FileIds({"f1": "ai-service/main.py"})

    async def scenario() -> None:
        room, loader = _room(lab_project.root, "ai-service/main.py", ids=ids)
        await room.initialize()
        ids.paths["f1"] = None
        await loader.maybe_notify()

    asyncio.run(scenario())


def test_a_terminal_has_the_venv_first_even_after_a_login_profile_that_resets_path(
    lab_project: Project, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_profile").write_text("export PATH=/usr/bin:/bin\nexport LOGIN_PROFILE=ran\n")
    (home / ".bashrc").write_text("export PATH=/usr/bin:/bin\n")
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "TERM": "dumb",
        "MIGRATION_LAB_BIN": str(BIN),
        "MIGRATION_LAB_ROOT": str(lab_project.root),
    }
    done = subprocess.run(
        _terminal_command(lab_project),
        input='echo "profile=$LOGIN_PROFILE"; command -v alembic python; pwd; exit\n',
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    lines = done.stdout.splitlines()
    assert "profile=ran" in lines
    assert f"{BIN}/alembic" in lines and f"{BIN}/python" in lines
    assert str(lab_project.root) in lines  # the guide's `cd ai-service` starts from here


def test_jupyterlab_starts_with_the_shipped_config_and_lands_on_chapter_00(lab_project: Project) -> None:
    command = jupyter_command(lab_project, 9999, open_browser=False, extra=["--debug"])
    assert f"--config={lab_project.root / 'jupyter' / 'jupyter_server_config.py'}" in command
    assert f"--LabApp.default_url=/lab/tree/{WORKBOOK}/00-start-here.ipynb" in command
    assert "--ServerApp.ip=127.0.0.1" in command and "--no-browser" in command and command[-1] == "--debug"
    config = _load_config(lab_project)
    assert config.MappingKernelManager.cull_idle_timeout > 0  # kernels of closed tabs go
    assert config.MappingKernelManager.cull_connected is False  # an open notebook's kernel stays


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(
    project: Project, tmp_path: Path, name: str, port: int, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    output = tmp_path / f"{name}.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "migration_lab", "lab", "--no-browser", "--port", str(port)],
        cwd=project.root,
        env={
            **os.environ,
            **(env or {"LAB_BACKEND": "embedded"}),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        },
        stdin=subprocess.DEVNULL,
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, output


def _url(process: subprocess.Popen[bytes], output: Path, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while not (found := re.search(r"^\s+(http://\S+/lab/tree/\S+)$", output.read_text(), re.M)):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(output.read_text()[-3000:])
        time.sleep(0.2)
    return found.group(1)


@pytest.fixture
def stopped_afterwards(lab_project: Project) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    from migration_lab import Lab

    lab = Lab(lab_project, "embedded")
    if lab.backend.is_running():
        lab.down()


def test_make_lab_twice_prints_the_running_url_and_ctrl_c_stops_the_database(
    lab_project: Project, tmp_path: Path, stopped_afterwards: list[subprocess.Popen[bytes]]
) -> None:
    from migration_lab import Lab

    first, first_output = _start(lab_project, tmp_path, "first", _free_port())
    stopped_afterwards.append(first)
    url = _url(first, first_output)
    assert f"/lab/tree/{WORKBOOK}/00-start-here.ipynb?token=" in url
    assert Lab(lab_project, "embedded").backend.is_running()

    second, second_output = _start(lab_project, tmp_path, "second", _free_port())
    stopped_afterwards.append(second)
    assert second.wait(60) == 0
    said = second_output.read_text()
    assert "already running" in said and url in said
    assert "Lab database is up" not in said  # it started nothing

    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C, as a script or a hub sends it
    first.wait(60)
    said = first_output.read_text()
    assert "Lab database is stopped" in said and "its data is kept" in said
    assert not Lab(lab_project, "embedded").backend.is_running()
    assert not (lab_project.state_dir / "jupyterlab.json").exists()


def _refused(project: Project, tmp_path: Path, port: int, started: list[subprocess.Popen[bytes]]) -> str:
    """`lab --port port`: what it said when it exited 1, having started nothing (no URL, no database)."""
    process, output = _start(project, tmp_path, "refused", port)
    started.append(process)
    try:
        assert process.wait(60) == 1
    except subprocess.TimeoutExpired:
        raise AssertionError(output.read_text()[-3000:]) from None
    said = output.read_text()
    assert "http://" not in said and not (project.state_dir / "pgdata").exists()  # nothing was started
    return said


@pytest.mark.parametrize("port", [99999, 0, -1])
def test_a_port_that_is_not_one_is_refused_before_anything_starts(
    port: int, lab_project: Project, tmp_path: Path, stopped_afterwards: list[subprocess.Popen[bytes]]
) -> None:
    """Jupyter took 99999 modulo 65536 (it listened on 34463) and printed a URL on 99999."""
    said = _refused(lab_project, tmp_path, port, stopped_afterwards)
    assert said.startswith(f"--port {port} is not a TCP port.\nWhat to do: Give one from 1 to 65535"), said


@pytest.mark.parametrize(
    ("passed_on", "said"),
    [
        (["--ServerApp.port=99999"], "is not a TCP port"),  # printed :99999, listened on another
        (["--port", "0"], "is not a TCP port"),
        (["--ServerApp.port=abc"], "is not a TCP port"),
        (["--ServerApp.ip=0.0.0.0"], "listens on this machine only"),
        (["--ip", "192.168.1.5"], "listens on this machine only"),
    ],
)
def test_a_port_or_an_address_passed_on_to_jupyterlab_is_checked_like_port(
    passed_on: list[str], said: str, lab_project: Project
) -> None:
    with pytest.raises(LabError, match=said):
        jupyterlab.run(lab_project, port=None, open_browser=False, extra=passed_on)
    assert not (lab_project.state_dir / "pgdata").exists()  # nothing was started


def test_a_port_passed_on_is_the_port_the_lab_uses_and_prints() -> None:
    passed_on = ["--ServerApp.port=8899", "--ServerApp.ip=127.0.0.1", "--debug"]
    assert jupyterlab._passed_on(passed_on) == (8899, ["--debug"])


def test_a_port_another_program_listens_on_is_refused_before_anything_starts(
    lab_project: Project, tmp_path: Path, stopped_afterwards: list[subprocess.Popen[bytes]]
) -> None:
    """JupyterLab started, logged "port N is not available" among its lines and exited; the database had started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = _refused(lab_project, tmp_path, port, stopped_afterwards)
    assert said.startswith(f"--port {port} is taken: another program listens on it.\nWhat to do: Give another"), said


def test_a_jupyter_server_started_by_hand_in_the_checkout_is_reused_not_doubled(
    lab_project: Project, tmp_path: Path, stopped_afterwards: list[subprocess.Popen[bytes]]
) -> None:
    runtime = tmp_path / "jupyter-runtime"  # the same as _start's: where servers announce themselves
    port = _free_port()
    by_hand = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}"]
        + [f"--ServerApp.root_dir={lab_project.root}", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stopped_afterwards.append(by_hand)
    deadline = time.monotonic() + 60
    while not list(runtime.glob("jpserver-*.json")):
        assert by_hand.poll() is None and time.monotonic() < deadline, "the hand-started server did not start"
        time.sleep(0.2)
    launcher, output = _start(lab_project, tmp_path, "launcher", _free_port())
    stopped_afterwards.append(launcher)
    assert launcher.wait(60) == 0
    said = output.read_text()
    assert f"http://127.0.0.1:{port}/lab/tree/{WORKBOOK}/00-start-here.ipynb?token=" in said
    assert "not started by `make lab`" in said and "Lab database is up" not in said
    assert (lab_project.root / WORKBOOK / "00-start-here.ipynb").is_file()  # the URL leads somewhere


class _Room:
    """A collaborative editor session on one file, as a browser tab holds it (its websocket), in a thread."""

    def __init__(self, base: str, token: str, path: str) -> None:
        import urllib.request

        request = urllib.request.Request(
            f"{base}/api/collaboration/session/{path}?token={token}",
            data=json.dumps({"format": "text", "type": "file"}).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            session = json.load(response)
        self.url = (
            f"{base.replace('http', 'ws', 1)}/api/collaboration/room/text:file:{session['fileId']}"
            f"?sessionId={session['sessionId']}&token={token}"
        )
        self.done = threading.Event()
        self.joined = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._hold(),), daemon=True)
        self.thread.start()
        assert self.joined.wait(30), "the room did not open"

    async def _hold(self) -> None:
        from tornado.websocket import websocket_connect

        socket_ = await websocket_connect(self.url)
        await socket_.read_message()  # the room's first sync message: it has loaded the file
        self.joined.set()
        while not self.done.is_set():
            await asyncio.sleep(0.1)
        socket_.close()


def test_a_day_in_the_lab_leaves_nothing_in_the_checkout_and_stops_without_a_traceback(
    lab_project: Project, tmp_path: Path, database_url: str
) -> None:
    """Issue 17, item 13: `?? .jupyter/` (the collaboration's session record), .ipynb_checkpoints/ inside
    migrations/versions/, and "Task exception was never retrieved ... No path found for file ID" at Ctrl-C
    after a revision open in the editor was deleted through JupyterLab."""
    import urllib.request

    git = ["git", "-c", "user.email=lab@example.org", "-c", "user.name=lab", "-c", "commit.gpgsign=false"]
    shutil.copy(REPO / ".gitignore", lab_project.root / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=lab_project.root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=lab_project.root, check=True)
    subprocess.run([*git, "commit", "-qm", "the course"], cwd=lab_project.root, check=True)
    revision = write_revision(lab_project, "77aa00000002", "8b7e5d2c6a41", "pass")
    process, output = _start(lab_project, tmp_path, "lab", _free_port(), {"LAB_DATABASE_URL": database_url})
    rooms: list[_Room] = []
    try:
        url = _url(process, output)
        parts = re.match(r"(http://[^/]+)/.*token=(\w+)", url)
        assert parts is not None
        base, token = parts.groups()

        def api(path: str, method: str = "GET", body: object = None) -> None:
            request = urllib.request.Request(
                f"{base}/api/contents/{path}?token={token}",
                data=json.dumps(body).encode() if body is not None else None,
                method=method,
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=30).close()

        versions = "ai-service/migrations/versions"
        for path in ("ai-service/main.py", f"{versions}/{revision.name}"):
            rooms.append(_Room(base, token, path))  # opened in the editor
            api(f"{path}/checkpoints", "POST")  # what the editor's first save makes
        api(f"{WORKBOOK}/01-standard-workflow.ipynb/checkpoints", "POST")
        api(f"{versions}/{revision.name}", "DELETE")  # the learner deletes it in JupyterLab's file browser
        time.sleep(2)  # the open file's watcher polls every half second
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        process.wait(60)
        for room in rooms:
            room.done.set()
    said = output.read_text()
    assert "Traceback" not in said and "Task exception was never retrieved" not in said, said[-3000:]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=lab_project.root, capture_output=True, text=True)
    assert status.stdout == "", status.stdout
    found = [str(p.relative_to(lab_project.root)) for p in lab_project.root.rglob(".ipynb_checkpoints")]
    assert found == [] and not (lab_project.root / ".jupyter").exists()
    kept = lab_project.state_dir / "checkpoints"
    assert (kept / "ai-service" / "main-checkpoint.py").is_file()
    assert (kept / WORKBOOK / "01-standard-workflow-checkpoint.ipynb").is_file()
    assert (lab_project.state_dir / "collaboration_sessions.json").is_file()


def test_a_lab_stopped_while_jupyterlab_starts_is_stopped_as_asked_not_a_failure(
    lab_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill -INT` (or a hub's stop, or Ctrl-C from a script) in the seconds before JupyterLab is ready: the lab
    stopped, and said "JupyterLab stopped before it was ready (exit code -15). Read the lines above for why; `make lab`
    again once that is fixed", and exited 1, for a stop it was asked for."""
    import io
    from types import SimpleNamespace

    starting = [sys.executable, "-c", "import time; time.sleep(60)"]  # a JupyterLab that is not ready yet
    monkeypatch.setattr(jupyterlab, "jupyter_command", lambda *args: starting)
    monkeypatch.setattr(jupyterlab, "_runtime_dir", lambda: tmp_path)
    lab = SimpleNamespace(backend=SimpleNamespace(name="url", where=lambda: "a server of someone else's"))
    out = io.StringIO()
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        assert jupyterlab._serve(lab_project, lab, None, False, [], out) == 0
    finally:
        timer.cancel()
    assert "before it was ready" not in out.getvalue() and "not yours to stop" in out.getvalue()


def test_a_jupyterlab_that_fails_of_its_own_while_asked_to_stop_is_still_said_to_have_failed(
    lab_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop asked while JupyterLab starts is a stop (exit 0) only if JupyterLab stopped cleanly: one that ended
    with an error of its own then (a broken extension, a port taken meanwhile) was said to be a clean stop."""
    import io
    from types import SimpleNamespace

    failing = [
        sys.executable,
        "-c",
        "import signal, sys, time; signal.signal(15, lambda *a: sys.exit(3)); time.sleep(60)",
    ]
    monkeypatch.setattr(jupyterlab, "jupyter_command", lambda *args: failing)
    monkeypatch.setattr(jupyterlab, "_runtime_dir", lambda: tmp_path)
    lab = SimpleNamespace(backend=SimpleNamespace(name="url", where=lambda: "a server of someone else's"))
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(LabError, match="exit code 3"):
            jupyterlab._serve(lab_project, lab, None, False, [], io.StringIO())
    finally:
        timer.cancel()


@pytest.mark.parametrize("loading", ["migration_lab.front.cli", "migration_lab.workshop.export"])
def test_ctrl_c_while_the_kit_loads_is_one_line_not_a_traceback(
    lab_project: Project, tmp_path: Path, loading: str
) -> None:
    """`make lab` then Ctrl-C (or `kill -INT`) in its first second, while Python loads the kit (SQLAlchemy, pygments,
    the chapters; the commands' parser imports some): a KeyboardInterrupt traceback of 20 frames. Nothing has started
    then. The signal is sent as `loading` is imported, by a sitecustomize on PYTHONPATH: the same moment every run."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal, sys\n\n\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {loading!r}:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n\n\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "migration_lab", "lab", "--no-browser"],
        cwd=lab_project.root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]), "LAB_BACKEND": "embedded"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("Interrupted before"), done.stderr
    assert not (lab_project.state_dir / "pgdata").exists()  # nothing started


def test_ctrl_c_after_the_database_started_and_before_jupyterlab_stops_the_database(
    lab_project: Project, monkeypatch: pytest.MonkeyPatch, stopped_afterwards: list[subprocess.Popen[bytes]]
) -> None:
    """`kill -INT` (Ctrl-C) as `make lab` wrote .env or the learner's notebooks, the database up and JupyterLab not
    yet started: "Interrupted: `lab` stopped half-way", and the lab database ran on, though Ctrl-C stops both."""
    import io

    from migration_lab import Lab

    def interrupted(project: Project) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(jupyterlab, "prepare_workbook", interrupted)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        jupyterlab.run(lab_project, backend="embedded", port=_free_port(), open_browser=False, out=out)
    assert "Lab database is up" in out.getvalue() and "Lab database is stopped" in out.getvalue()
    assert not Lab(lab_project, "embedded").backend.is_running()
