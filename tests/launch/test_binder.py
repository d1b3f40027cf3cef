"""Binder's files (binder/), tested as far as this machine allows.

A repo2docker build cannot run here (no base images), so these tests check what
the build would read (runtime.txt, requirements.txt) and run what the container
would run: `binder/postBuild` once, then `binder/start <the server's command>`,
as an ordinary user whose home is the repository, as on mybinder.org (jovyan,
uid 1000, REPO_DIR = HOME). Run as root (CI), they make a throw-away user.
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from packaging.specifiers import SpecifierSet

from helpers import REPO, copy_project, python_for
from migration_lab.launch.jupyterlab import WORKBOOK, landing_path

BINDER = REPO / "binder"
ROOT = os.geteuid() == 0
LEARNER = "mlab-binder"


def test_runtime_pins_a_python_the_kit_supports() -> None:
    """repo2docker's default Python is older than the kit's minimum: runtime.txt must name one it supports."""
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert match, f"runtime.txt must be one line, python-3.X (repo2docker's format), not {runtime!r}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert match[1] in SpecifierSet(pyproject["project"]["requires-python"])
    # The version the kit is type-checked for, which is also the oldest it supports.
    assert match[1] == pyproject["tool"]["mypy"]["python_version"]


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def test_requirements_are_the_learners_only() -> None:
    """binder/requirements.txt is the learner's requirements.txt itself: nothing to keep in sync, no test tools."""
    lines = requirement_lines(BINDER / "requirements.txt")
    assert lines == ["-r ../requirements.txt"]
    # pip reads -r relative to the file holding it, and runs in the repository's root, where `-e .` is the kit.
    assert (BINDER / "../requirements.txt").resolve() == REPO / "requirements.txt"
    assert "-e ." in requirement_lines(REPO / "requirements.txt")


def test_readme_links_binder_to_chapter_00() -> None:
    """The launch link opens the learner's copy of chapter 00, the page `make lab` lands on."""
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/gh/[^\s)\]]+", readme)
    assert links, "README.md has no mybinder.org launch link"
    for link in links:
        assert link.endswith(f"?urlpath={landing_path()}"), link


@dataclass
class Learner:
    """The OS user Binder's container runs as, and a Python that user can run with the kit's packages."""

    account: pwd.struct_passwd | None  # None: this (non-root) user
    python_bin: Path

    def process(self, cwd: Path) -> dict[str, Any]:
        """subprocess arguments: as this user, in cwd, which is also HOME (as on Binder), nothing inherited."""
        env = {"PATH": f"{self.python_bin}:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
        process: dict[str, Any] = {"cwd": cwd, "env": env, "stdin": subprocess.DEVNULL}
        if self.account:
            process.update(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[])
        return process

    def run(self, command: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=180, **self.process(cwd))

    def own(self, path: Path) -> None:
        if self.account:
            for folder in (path, *path.rglob("*")):
                os.lchown(folder, self.account.pw_uid, self.account.pw_gid)


@pytest.fixture(scope="module")
def learner() -> Iterator[Learner]:
    """As root: a throw-away system user (deleted afterwards); otherwise ourselves, already not root."""
    base = Path(tempfile.mkdtemp(prefix="mlab-binder-py-", dir="/tmp"))
    base.chmod(0o755)
    created = False
    try:
        account = None
        if ROOT:
            try:
                account = pwd.getpwnam(LEARNER)
            except KeyError:
                useradd = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
                subprocess.run([*useradd, LEARNER], check=True)
                created = True
                account = pwd.getpwnam(LEARNER)
        yield Learner(account, python_for(account, base / "venv"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if created:
            subprocess.run(["userdel", LEARNER], check=False)


@pytest.fixture
def binder_repo(learner: Learner) -> Iterator[Path]:
    """The repository as repo2docker leaves it: the learner's home, owned by the learner, postBuild run.

    Its embedded server is stopped at the end, and checked gone.
    """
    base = Path(tempfile.mkdtemp(prefix="mlab-binder-", dir="/tmp"))  # not pytest's 0700 tmp: the user enters it
    base.chmod(0o755)
    home = base / "home"
    copy_project(home)
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("binder", "migration_lab", "jupyter"):
        shutil.copytree(REPO / folder, home / folder, ignore=ignore)
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(REPO / name, home / name)
    learner.own(home)
    try:
        yield home
    finally:
        learner.run([str(learner.python_bin / "python"), "-m", "migration_lab", "down"], cwd=home)
        left = [p for p in _postmasters() if str(home) in " ".join(p.info["cmdline"] or [])]
        shutil.rmtree(base, ignore_errors=True)
        assert left == [], "binder/start left a PostgreSQL server running"


def _postmasters() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "postgres"]


CHECK_AFTER_START = """
import json, os, sqlalchemy as sa
from jupyter_core.paths import jupyter_config_path
from migration_lab import Lab
lab = Lab()
with lab.db.connect() as conn:
    user = conn.scalar(sa.text("SELECT current_user"))
print(json.dumps({"pid": os.getpid(), "backend": lab.backend.name, "user": user,
                  "config_path": jupyter_config_path()[0], "whoami": os.geteuid()}))
"""


def test_start_runs_the_database_then_becomes_the_server(learner: Learner, binder_repo: Path) -> None:
    """`binder/start CMD`: the lab database is up and reachable through the kit, then CMD *is* the process."""
    start = binder_repo / "binder" / "start"
    assert learner.run([str(start), "true"], cwd=binder_repo).returncode == 0

    process = subprocess.Popen(
        [str(start), "python", "-c", CHECK_AFTER_START],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **learner.process(binder_repo),
    )
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    seen: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert seen["pid"] == process.pid, "start must `exec` the server's command, not run it as a child"
    assert seen["backend"] == "embedded" and seen["user"] == "postgres"
    assert seen["whoami"] == (learner.account.pw_uid if learner.account else os.geteuid())
    # The Jupyter server started this way reads the course's settings first.
    assert Path(seen["config_path"]) == binder_repo / "jupyter"
    assert (binder_repo / "ai-service" / ".env").stat().st_uid == seen["whoami"]


def test_start_lets_the_learner_in_when_the_database_cannot_start(learner: Learner, binder_repo: Path) -> None:
    """A database that fails to start is reported, and the server starts anyway (chapter 00 says what is wrong)."""
    state = binder_repo / ".lab"
    state.mkdir()
    learner.own(state)
    state.chmod(0o555)  # the kit cannot make its lock file there: `up` fails (with a LabError)
    done = learner.run([str(binder_repo / "binder" / "start"), "echo", "server started"], cwd=binder_repo)
    assert done.returncode == 0 and done.stdout.strip().endswith("server started"), done
    assert "the lab database did not start" in done.stderr
    assert "Traceback" not in done.stderr


def test_postbuild_makes_the_learners_notebooks(learner: Learner, binder_repo: Path) -> None:
    """At build time: my-notebooks/, every chapter without outputs, the page the launch link opens."""
    done = learner.run([str(binder_repo / "binder" / "postBuild")], cwd=binder_repo)
    assert done.returncode == 0, done.stderr
    chapters = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    workbook = binder_repo / WORKBOOK
    assert sorted(p.name for p in workbook.glob("*.ipynb")) == chapters
    assert (binder_repo / landing_path().removeprefix("lab/tree/")).is_file()
    first = json.loads((workbook / chapters[0]).read_text())
    assert all(cell.get("outputs", []) == [] for cell in first["cells"])
