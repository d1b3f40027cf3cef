"""`make lab` / `python -m migration_lab lab` without a browser: the learner's copy of the chapters,
the terminals' shell, one server per checkout, and what stopping it does to the database."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets.config import Config

from helpers import REPO, copy_project
from migration_lab import Project
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
    saved = dict(os.environ)
    config = Config()
    try:
        path = config_file(project)
        exec(compile(path.read_text(), str(path), "exec"), {"c": config, "__file__": str(path)})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return list(config.ServerApp.terminado_settings["shell_command"])


def test_the_editor_sync_mend_still_fits_the_pinned_jupyter_collaboration(lab_project: Project) -> None:
    """jupyter/jupyter_server_config.py wraps two internals of jupyter-collaboration (issue 340: the reload
    keeps the old hash). A version whose internals moved must fail here, not silently bring back
    JupyterLab's "File Changed: Overwrite or Revert?" dialog after every reset (the browser test sees that)."""
    import inspect

    from jupyter_server_ydoc.loaders import FileLoader
    from jupyter_server_ydoc.rooms import DocumentRoom
    from jupyter_server_ydoc.websocketserver import JupyterWebsocketServer
    from jupyter_ydoc import YFile

    original = DocumentRoom._on_outofband_change, JupyterWebsocketServer.clean
    _terminal_command(lab_project)  # loads the config, which mends
    try:
        assert DocumentRoom._on_outofband_change.__name__ == "reload_and_rehash"
        assert JupyterWebsocketServer.clean.__name__ == "clean_quietly"
        # What reload_and_rehash reaches for: the room's file, its contents manager, the document's hash.
        assert "self._file" in inspect.getsource(DocumentRoom.__init__)
        assert "self._contents_manager" in inspect.getsource(FileLoader.__init__)
        assert inspect.getattr_static(YFile, "hash").fset is not None  # the document takes a new hash
        assert inspect.iscoroutinefunction(original[0]) and inspect.iscoroutinefunction(original[1])
    finally:
        DocumentRoom._on_outofband_change, JupyterWebsocketServer.clean = original


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
    config = Config()
    path = config_file(lab_project)
    saved = dict(os.environ)
    try:
        exec(compile(path.read_text(), str(path), "exec"), {"c": config, "__file__": str(path)})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert config.MappingKernelManager.cull_idle_timeout > 0  # kernels of closed tabs go
    assert config.MappingKernelManager.cull_connected is False  # an open notebook's kernel stays


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(project: Project, tmp_path: Path, name: str, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    output = tmp_path / f"{name}.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "migration_lab", "lab", "--no-browser", "--port", str(port)],
        cwd=project.root,
        env={
            **os.environ,
            "LAB_BACKEND": "embedded",
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


@pytest.mark.parametrize("port", [99999, 0, -1])
def test_a_port_that_is_not_one_is_refused_before_anything_starts(
    port: int, lab_project: Project, tmp_path: Path, stopped_afterwards: list[subprocess.Popen[bytes]]
) -> None:
    """Jupyter took 99999 modulo 65536 (it listened on 34463) and printed a URL on 99999."""
    process, output = _start(lab_project, tmp_path, "refused", port)
    stopped_afterwards.append(process)
    try:
        assert process.wait(60) == 1
    except subprocess.TimeoutExpired:
        raise AssertionError(output.read_text()[-3000:]) from None
    said = output.read_text()
    assert said.startswith(f"--port {port} is not a TCP port.\nWhat to do: Give one from 1 to 65535"), said
    assert "http://" not in said and not (lab_project.state_dir / "pgdata").exists()  # nothing was started


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
