"""The offline bundle without the network: what install.py reads from an unpacked bundle's manifest, and the
`bundle` command's checks before it downloads anything. tests/e2e/test_offline_bundle.py makes a real bundle
and installs from it in a network namespace."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from migration_lab.launch import bundle
from migration_lab.launch.install import REEXEC_MARK, install

BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"


def _unpacked(root: Path, **manifest: object) -> Path:
    """A checkout with a bundle's wheels/MANIFEST.json (no wheels: nothing here gets that far)."""
    (root / "wheels").mkdir(parents=True)
    (root / "requirements.txt").write_text((REPO / "requirements.txt").read_text())
    made_for = {
        "kit": "0.1.0",
        "platforms": [bundle.this_platform()],
        "pythons": [bundle.this_python()],
        "requirements_sha256": bundle.sha256(REPO / "requirements.txt"),
        "wheels": {},
        **manifest,
    }
    (root / "wheels" / "MANIFEST.json").write_text(json.dumps(made_for))
    return root


def test_a_checkout_without_a_bundle_installs_from_the_index(tmp_path: Path) -> None:
    assert bundle.offline_wheels(tmp_path) is None
    (tmp_path / "wheels").mkdir()  # a wheels/ folder that is not a bundle's
    assert bundle.offline_wheels(tmp_path) is None


def test_a_bundle_for_this_machine_is_used(tmp_path: Path) -> None:
    assert bundle.offline_wheels(_unpacked(tmp_path)) == tmp_path / "wheels"


def test_a_bundle_for_another_platform_says_which_to_make_before_pip_runs(tmp_path: Path) -> None:
    root = _unpacked(tmp_path, platforms=["macos-arm64"])
    with pytest.raises(SystemExit) as stopped:
        install(root, ".venv", uv=None)
    said = str(stopped.value)
    assert said.startswith(f"This bundle's wheels are for Python {bundle.this_python()} on macos-arm64; this is")
    assert f"bundle --platform {bundle.this_platform()} --python {bundle.this_python()}`" in said
    assert not (root / ".venv").exists()


def test_a_changed_requirements_file_is_named(tmp_path: Path) -> None:
    root = _unpacked(tmp_path)
    with (root / "requirements.txt").open("a") as f:
        f.write("rich==14.0.0\n")
    with pytest.raises(SystemExit, match="requirements.txt changed since the bundle was made"):
        bundle.offline_wheels(root)


def test_a_damaged_manifest_says_so(tmp_path: Path) -> None:
    root = _unpacked(tmp_path)
    (root / "wheels" / "MANIFEST.json").write_text("{not json")
    with pytest.raises(SystemExit, match="MANIFEST.json is damaged"):
        bundle.offline_wheels(root)


def test_the_bundle_takes_requirements_as_pip_reads_them(tmp_path: Path) -> None:
    specs = bundle.requirements(REPO)
    assert "alembic==1.20.1" in specs and not [s for s in specs if s.startswith(("-", "#")) or " " in s]
    assert bundle.build_requires(REPO) == ["setuptools>=68"]
    (tmp_path / "requirements.txt").write_text("-r other.txt\n")
    with pytest.raises(SystemExit, match="an option the bundle does not handle: -r other.txt"):
        bundle.requirements(tmp_path)


def test_the_linux_tags_reach_down_to_manylinux2014() -> None:
    """pip does not widen a manylinux_2_28 tag: psycopg2-binary's x86_64 wheel is manylinux_2_17 only."""
    floor, newest = bundle.PLATFORMS["linux-x86_64"]
    assert floor[0] == "manylinux_2_28_x86_64" and newest[0] == "manylinux_2_39_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(floor)


def test_a_bare_python_reaches_bundle_without_a_venv(tmp_path: Path) -> None:
    """`python3 -m migration_lab bundle` runs before the venv check, on the standard library: in a checkout with
    no venv, by a Python that may not make one (the re-run mark set), bad input is refused by bundle itself."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "migration_lab", checkout / "migration_lab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(REPO / name, checkout / name)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    done = subprocess.run(
        [str(BASE_PYTHON), "-m", "migration_lab", "bundle", "--python", "2.7", "--out", str(tmp_path / "out")],
        cwd=checkout,
        env={**clean, REEXEC_MARK: str(BASE_PYTHON)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'2.7': a Python version such as 3.12 (3.11 or newer)" in done.stderr
    assert not (checkout / ".venv").exists() and not (tmp_path / "out").exists()


def test_the_cli_lists_bundle(capsys) -> None:
    from migration_lab.front.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bundle" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bundle", "--platform", "windows-x86_64"])
    assert "invalid choice: 'windows-x86_64'" in capsys.readouterr().err
