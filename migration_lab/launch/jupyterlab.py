"""`make lab` / `python -m migration_lab lab`: the database, the learner's notebooks, one JupyterLab.

- The learner works in `my-notebooks/` (git-ignored): copies of the chapters without their
  outputs, made on the first start; a chapter missing there is copied on a later start; a
  notebook already there is never overwritten. The committed `notebooks/` keep their outputs.
- JupyterLab runs with `jupyter/jupyter_server_config.py` (terminals with the venv, idle
  kernels culled, the editor following files the kit changes) and lands on chapter 00.
- One JupyterLab per checkout: a second start prints the running one's URL.
- When JupyterLab stops (Ctrl-C), the embedded database stops too (its data is kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import LabError
from ..project import Project

WORKBOOK = "my-notebooks"
NOTEBOOK_COPIES = "notebook-copies"  # in .lab/: the learner's notebooks a `reset NN` started over
FIRST_CHAPTER = "00-start-here.ipynb"
STATE_FILE = "jupyterlab.json"  # in .lab/: the running server's pid and URL
LOCK_FILE = "jupyterlab.lock"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 25.0


def config_file(project: Project) -> Path:
    return project.root / "jupyter" / "jupyter_server_config.py"


def workbook_dir(project: Project) -> Path:
    return project.root / WORKBOOK


def clean_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook as a learner should first see it: no outputs, no execution counts, no widget state."""
    notebook = json.loads(json.dumps(notebook))  # a deep copy
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    notebook.get("metadata", {}).pop("widgets", None)
    return notebook


def prepare_workbook(project: Project) -> list[str]:
    """Copy each chapter the learner has no copy of yet, without outputs; return the names copied.

    A notebook already in the workbook is the learner's: it is never touched.
    """
    source, target = project.root / "notebooks", workbook_dir(project)
    target.mkdir(exist_ok=True)
    copied = []
    for chapter in sorted(source.glob("[0-9][0-9]-*.ipynb")):
        destination = target / chapter.name
        if destination.exists():
            continue
        _write_clean(chapter, destination)
        copied.append(chapter.name)
    return copied


def _clean_text(chapter: Path) -> str:
    return json.dumps(clean_notebook(json.loads(chapter.read_text(encoding="utf-8"))), indent=1, ensure_ascii=False)


def _write_clean(chapter: Path, destination: Path) -> None:
    partial = destination.with_name(f".{destination.name}.part")
    partial.write_text(_clean_text(chapter) + "\n", encoding="utf-8")
    partial.replace(destination)  # never a half-written notebook, even if stopped here


def refresh_chapter_notebook(project: Project, number: str) -> str | None:
    """Give the learner chapter `number`'s notebook as it first was, keeping their copy aside.

    `python -m migration_lab reset NN` starts a chapter over: the lab and the notebook. The learner's
    copy (with their outputs and notes) goes to `.lab/notebook-copies/`; nothing is lost. Kept apart from
    `.lab/backups/`, which holds the backups of the work a reset replaces, and which `restore` picks from.
    Returns what was done, or None when there is no workbook (the learner never ran `make lab`).
    """
    target = workbook_dir(project)
    chapters = sorted((project.root / "notebooks").glob(f"{number}-*.ipynb"))
    if not target.is_dir() or not chapters:
        return None
    chapter = chapters[0]
    mine = target / chapter.name
    shown = f"{WORKBOOK}/{chapter.name}"
    if mine.exists():
        if mine.read_text(encoding="utf-8").rstrip("\n") == _clean_text(chapter):
            return f"Your notebook {shown} is already as it first was."
        copies = project.state_dir / NOTEBOOK_COPIES
        copies.mkdir(parents=True, exist_ok=True)
        stamp = f"{mine.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        kept, n = copies / f"{stamp}.ipynb", 1
        while kept.exists():  # two in the same second: never one over the other
            n += 1
            kept = copies / f"{stamp}-{n}.ipynb"
        mine.replace(kept)
        _write_clean(chapter, mine)
        return f"Your notebook {shown} is fresh again; your copy is in {kept.relative_to(project.root)}."
    _write_clean(chapter, mine)
    return f"Your notebook {shown} is fresh again."


def landing_path() -> str:
    """JupyterLab's path of chapter 00 in the workbook."""
    return f"lab/tree/{WORKBOOK}/{FIRST_CHAPTER}"


def landing_url(server: dict[str, Any]) -> str:
    """The URL that opens chapter 00 of the workbook, token included, from a server's runtime info."""
    base = server["url"] if server["url"].endswith("/") else server["url"] + "/"
    query = f"?{urllib.parse.urlencode({'token': server['token']})}" if server.get("token") else ""
    return f"{base}{landing_path()}{query}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(server: dict[str, Any]) -> bool:
    query = f"?{urllib.parse.urlencode({'token': server['token']})}" if server.get("token") else ""
    base = server["url"] if server["url"].endswith("/") else server["url"] + "/"
    try:
        with urllib.request.urlopen(f"{base}api/status{query}", timeout=2):
            return True
    except OSError:
        return False


def _runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def running_servers(project: Project) -> list[dict[str, Any]]:
    """Jupyter servers serving this checkout that answer (what `jupyter server list` knows, filtered)."""
    found = []
    with contextlib.suppress(OSError):
        for path in _runtime_dir().glob("jpserver-*.json"):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            root = info.get("root_dir") or info.get("notebook_dir") or ""
            same = False
            with contextlib.suppress(OSError):
                same = Path(root).resolve() == project.root
            if same and _alive(int(info.get("pid", 0))) and _answers(info):
                found.append(info)
    return found


@contextlib.contextmanager
def _single_instance(project: Project) -> Iterator[bool]:
    """True while this process holds the checkout's JupyterLab lock; False if another process does."""
    project.state_dir.mkdir(exist_ok=True)
    handle = (project.state_dir / LOCK_FILE).open("a+")
    try:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows without WSL: no lock; the runtime files still catch a running server
            pass
        except OSError:
            yield False
            return
        yield True
    finally:
        handle.close()  # releases the lock


def _wait_for_other(project: Project, timeout: float = START_TIMEOUT) -> str | None:
    """The URL of the JupyterLab another `make lab` is starting or running for this checkout."""
    state = project.state_dir / STATE_FILE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(state.read_text())
            if _alive(int(info["pid"])):
                return str(info["landing_url"])
        time.sleep(0.2)
    return None


def jupyter_command(project: Project, port: int | None, open_browser: bool, extra: list[str]) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--config={config_file(project)}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={project.root}",
        f"--ServerApp.default_url=/{landing_path()}",
        f"--LabApp.default_url=/{landing_path()}",  # the URL JupyterLab prints, and opens in a browser
    ]
    if port is not None:
        command += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command + extra


def _server_info(pid: int, child: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The runtime file the server writes once it listens (URL and token)."""
    path = _runtime_dir() / f"jpserver-{pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise LabError(
                f"JupyterLab stopped before it was ready (exit code {child.returncode}).",
                "Read the lines above for why; `make lab` again once that is fixed.",
            )
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(path.read_text())
            if info.get("url"):
                return dict(info)
        time.sleep(0.1)
    raise LabError(f"JupyterLab did not start within {timeout:.0f} s.", "Read the lines above for why.")


def _say(message: str, out: IO[str], end: str = "\n") -> None:
    """Print, unless nobody reads any more (`make lab | tee`, and Ctrl-C stopped tee): carry on regardless."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=out, end=end, flush=True)


def run(
    project: Project | None = None,
    backend: str | None = None,
    port: int | None = None,
    open_browser: bool = True,
    extra: list[str] | None = None,
    out: IO[str] = sys.stdout,
) -> int:
    """Start the lab database and JupyterLab, wait until JupyterLab stops, then stop the database."""
    from ..lab import Lab

    given, extra = _passed_on(extra or [])
    if given is not None and port is not None and given != port:
        raise LabError(f"Two ports: --port {port} and {given} passed on to JupyterLab.", "Give one, with --port.")
    port = given if given is not None else port
    if port is not None and not 1 <= port <= 65535:  # Jupyter would take it modulo 65536 and print it as given
        raise LabError(f"--port {port} is not a TCP port.", "Give one from 1 to 65535, e.g. --port 8899.")
    if port is not None:
        _refuse_unusable(port)
    project = project or Project.find()
    with _single_instance(project) as mine:
        if not mine:
            url = _wait_for_other(project)
            if url:
                _say(f"JupyterLab is already running for this checkout; open:\n\n    {url}\n", out)
                return 0
            raise LabError(
                "Another `make lab` holds this checkout's lock but shows no JupyterLab.",
                f"Stop it (Ctrl-C in its terminal), or delete {project.state_dir / LOCK_FILE} if it is gone.",
            )
        for other in running_servers(project):  # one started by hand, without the course's settings
            prepare_workbook(project)
            _say(
                f"A Jupyter server is already running for this checkout (pid {other['pid']}); open:\n\n"
                f"    {landing_url(other)}\n\n"
                "It was not started by `make lab`: its terminals may lack the venv. Stop it, then `make lab`.",
                out,
            )
            return 0
        lab = Lab(project, backend)
        try:
            _say(lab.up(), out)
            copied = prepare_workbook(project)
        except KeyboardInterrupt:  # Ctrl-C stops JupyterLab and the database: here the database alone has started
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut this stop short
            try:
                _say(_after_stop(lab, out), out)
            finally:
                signal.signal(signal.SIGINT, previous)
            raise
        if copied:
            _say(f"Your notebooks: {WORKBOOK}/ ({len(copied)} chapter(s) copied, without outputs)", out)
        else:
            _say(f"Your notebooks: {WORKBOOK}/ (yours, as you left them)", out)
        return _serve(project, lab, port, open_browser, extra or [], out)


PORT_OPTIONS = ("--port", "--ServerApp.port", "--NotebookApp.port")
ADDRESS_OPTIONS = ("--ip", "--ServerApp.ip", "--NotebookApp.ip")
LOCALHOST = ("127.0.0.1", "localhost", "::1")


def _passed_on(extra: list[str]) -> tuple[int | None, list[str]]:
    """The options passed on to JupyterLab (`make lab ARGS="... -- ..."`), with its port and address taken out: a
    port there is the --port the kit checks and prints (JupyterLab printed the one given and listened on
    another); an address other than this machine's is refused (its terminals run as you: localhost only)."""
    port, rest = None, []
    words = iter(extra)
    for word in words:
        key, has_value, value = word.partition("=")
        if key not in PORT_OPTIONS + ADDRESS_OPTIONS:
            rest.append(word)
            continue
        if not has_value:  # `--ServerApp.port 9999`
            value = next(words, "")
        if key in PORT_OPTIONS:
            if not value.strip().isdigit():
                raise LabError(f"{key} {value!r} is not a TCP port.", "Give one from 1 to 65535, e.g. --port 8899.")
            port = int(value)
        elif value not in LOCALHOST:
            raise LabError(
                f"{key}={value}: the lab's JupyterLab listens on this machine only (127.0.0.1): its terminals run "
                "as you, and anyone who reached it could run anything.",
                "From another machine, use an SSH tunnel: `ssh -L 8899:127.0.0.1:8899 you@this-machine`, and "
                '`make lab ARGS="--no-browser --port 8899"` here.',
            )
    return port, rest


def _refuse_unusable(port: int) -> None:
    """A port JupyterLab could not listen on is said before the database starts, in one line of ours.

    JupyterLab would start, log "port N is not available" among its own lines and exit. A port given
    with --port is never exchanged for another (the learner may have opened it in a tunnel or a firewall).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))  # where JupyterLab listens: localhost only
        except PermissionError:
            raise LabError(
                f"--port {port} needs administrator rights here (ports below 1024 do).",
                "Give one from 1024 to 65535, e.g. --port 8899, or leave --port out.",
            ) from None
        except OSError:
            raise LabError(
                f"--port {port} is taken: another program listens on it.",
                "Give another, e.g. --port 8899, or leave --port out: JupyterLab then picks a free one.",
            ) from None


def _serve(project: Project, lab: Any, port: int | None, open_browser: bool, extra: list[str], out: IO[str]) -> int:
    state = project.state_dir / STATE_FILE
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[float] = []
    asked: list[int] = []  # the signals that asked the lab to stop, whether or not they were forwarded
    # In a terminal JupyterLab shares it (and its Ctrl-C prompt); with output to a pipe or a file
    # (`| tee`, `nohup`, a hub) it gets a process group of its own and one SIGTERM from here.
    interactive = all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout))

    def forward(signum: int, _frame: object) -> None:
        # In a terminal, Ctrl-C reaches JupyterLab directly (it asks, or stops at a second Ctrl-C).
        # Otherwise (a hub, `kill`, a script) JupyterLab is in a process group of its own and gets
        # exactly one SIGTERM, its clean stop, whatever this process got.
        asked.append(signum)
        if children and children[0].poll() is None and (signum != signal.SIGINT or not interactive):
            stopping.append(time.monotonic())
            children[0].send_signal(signal.SIGTERM)

    # Handlers first: JupyterLab then starts with SIGINT's default action even where this process
    # was started with SIGINT ignored (`cmd &` in a script).
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(
            jupyter_command(project, port, open_browser, extra), process_group=None if interactive else 0
        )
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    children.append(child)
    try:
        try:
            info = _server_info(child.pid, child, START_TIMEOUT)
        except LabError:
            stopped = child.poll() in (0, -signal.SIGINT, -signal.SIGTERM)  # a clean stop, not a failure of its own
            if asked and stopped:  # stopped while it started (`kill -INT`, a hub): as asked
                return 0
            raise
        url = landing_url(info)
        with os.fdopen(os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:  # the token
            file.write(json.dumps({"pid": os.getpid(), "server_pid": child.pid, "landing_url": url}))
        how = "Ctrl-C, then y (or Ctrl-C twice)," if interactive else f"Ctrl-C or `kill -INT {os.getpid()}`"
        _say(f"\nJupyterLab is ready; open chapter 00:\n\n    {url}\n", out)
        _say(f"{how} stops JupyterLab and the lab database.\n", out)
        while child.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(1)
            if stopping and time.monotonic() - stopping[0] > STOP_TIMEOUT:
                child.kill()  # JupyterLab did not stop in time; its kernels notice and exit
        stopped = child.returncode in (0, 1, -signal.SIGINT, -signal.SIGTERM)  # Jupyter: 1 after an interrupt
        return 0 if stopped or stopping else child.returncode
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        with contextlib.suppress(OSError):
            state.unlink()
        _say(_after_stop(lab, out), out)  # still shielded: a second Ctrl-C does not cut the database's stop
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _after_stop(lab: Any, out: IO[str]) -> str:
    """Stop the embedded database with JupyterLab; for the others, say what keeps running and how to stop it."""
    name = lab.backend.name
    if name == "embedded":
        try:
            return str(lab.down(lambda message: _say(message, out, end="")))
        except LabError as error:
            return f"{error}\nStop it with `python -m migration_lab down`."
    if name == "compose":
        return "The docker compose stack keeps running: `python -m migration_lab down` stops it (its data is kept)."
    return f"The lab database ({lab.backend.where()}) is not yours to stop; it keeps running."
