"""Time from `make lab` to the JupyterLab URL it prints: on a fresh clone (install included), then again.

    python bench/lab_time_to_url.py            # pip, or uv when it is on PATH
    python bench/lab_time_to_url.py --uv PATH  # force uv from PATH (`make ... UV=PATH`)

Clones the checkout's HEAD into a temporary folder (the tracked tree is never touched), runs
`make lab` there with stdin closed, stops it (as Ctrl-C would) once the URL is printed, and
runs it once more on the same clone. Prints both times, their ratio, and the venv's size.
"""

import argparse
import contextlib
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
URL = re.compile(r"^\s+(http://\S+/lab/tree/\S+)$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_lab(clone: Path, make_args: list[str], log: Path, timeout: float) -> float:
    """Seconds until `make lab` printed the URL; then stops it and waits until the database is down."""
    env = {
        **os.environ,
        "LAB_BACKEND": "embedded",
        "JUPYTER_RUNTIME_DIR": str(clone / ".lab" / "jupyter-runtime"),
        "JUPYTER_CONFIG_DIR": str(clone / ".lab" / "jupyter-config"),
    }
    env.pop("VIRTUAL_ENV", None)
    args = ["make", "lab", f"ARGS=--no-browser --port {free_port()}", *make_args]
    with log.open("w") as out:
        start = time.monotonic()
        make = subprocess.Popen(
            args, cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            while not URL.search(log.read_text()):
                if make.poll() is not None or time.monotonic() - start > timeout:
                    raise SystemExit(f"`make lab` printed no URL:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            elapsed = time.monotonic() - start
            state = clone / ".lab" / "jupyterlab.json"  # written with the launcher's own URL line
            while not state.exists() and time.monotonic() - start < timeout:
                time.sleep(0.05)
            launcher = json.loads(state.read_text())["pid"]
            os.kill(launcher, signal.SIGINT)  # what Ctrl-C does where there is no terminal
            make.wait(60)
        finally:
            if make.poll() is None:  # never leave a server behind
                with contextlib.suppress(OSError, ValueError, KeyError):
                    os.kill(json.loads((clone / ".lab" / "jupyterlab.json").read_text())["pid"], signal.SIGINT)
                    time.sleep(5)
                make.kill()
    if "Lab database is stopped" not in log.read_text():
        raise SystemExit(f"`make lab` did not stop the database:\n{log.read_text()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", help="path of the uv to install with (default: uv on PATH, else pip)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()
    make_args = [f"UV={args.uv}"] if args.uv else []
    workdir = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    clone = workdir / "migration-lab"
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        cold = make_lab(clone, make_args, workdir / "first.log", timeout=900)
        size = subprocess.run(["du", "-sh", str(clone / ".venv")], capture_output=True, text=True).stdout.split()[0]
        warm = make_lab(clone, make_args, workdir / "second.log", timeout=120)
        installer = "uv" if args.uv or shutil.which("uv") else "pip"
        print(f"installer: {installer}; venv after the first `make lab`: {size}")
        print(f"fresh clone, `make lab` to URL (install included): {cold:6.1f} s")
        print(f"second `make lab` to URL:                          {warm:6.1f} s")
        print(f"ratio: the first start takes {cold / warm:.1f}x the second")
    finally:
        if args.keep:
            print(f"clone kept in {clone}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
