"""A learner's checkout, reset by the instructor (`workshop reset NAME CHAPTER --files CHECKOUT`).

The kit's own reset of that checkout (ai-service/ and the database, the
learner's work backed up in their `.lab/backups/` first), run only when the
checkout belongs to the learner's OS account, the account with the learner's
name (on a hub, the hub user is the learner). And never as root in someone
else's folder: as root it runs as that account (its uid, its group, no other
group, its HOME), with the learner's URL from the roster, so every file it
writes is theirs and nothing it reads can be one only root may read. As
anyone else, only one's own checkout.
"""

from __future__ import annotations

import os
import pwd
import selectors
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from ..database.os_accounts import account_name, run_as
from ..errors import LabError
from .room import printable

RESET_TIMEOUT = 600
OUTPUT_LIMIT = 1 << 20  # what is kept of a reset's output: its end, where an error is
DRAIN = 1.0  # seconds spent reading what is left in the pipes once the reset's own process has ended


def account(name: str, checkout: Path) -> pwd.struct_passwd:
    """The OS account of learner `name`, when `checkout` (and its ai-service/) is theirs; a LabError otherwise."""
    try:
        found = pwd.getpwnam(name)
    except KeyError:
        raise LabError(
            f"There is no OS account {name}: --files resets the checkout of the learner's own account. "
            "Nothing was written.",
            f"Reset the database alone (without --files); {name} resets their files with the chapter's first cell.",
        ) from None
    if found.pw_uid == 0:
        raise LabError(
            f"The OS account {name} is root's (uid 0): --files never runs a learner's reset as root. "
            "Nothing was written.",
            f"Reset the database alone (without --files); {name} resets their files with the chapter's first cell.",
        )
    for path in (checkout, checkout / "ai-service"):
        try:
            info = os.lstat(path)
        except OSError as error:
            raise LabError(f"{path}: {error.strerror}. Nothing was written.", "Give the learner's checkout.") from None
        if info.st_uid != found.pw_uid or not Path(path).is_dir() or Path(path).is_symlink():
            raise LabError(
                f"{path} belongs to {account_name(info.st_uid)}, not to {name}"
                f"{'' if Path(path).is_dir() and not Path(path).is_symlink() else ' (or is not a folder)'}: "
                "nothing was written.",
                f"Give {name}'s own checkout (e.g. ~{name}/migration-lab).",
            )
    if os.geteuid() not in (0, found.pw_uid):
        raise LabError(
            f"Only {name} (or root) may reset {name}'s checkout; you are {account_name(os.geteuid())}. "
            "Nothing was written.",
            f"Run it as them: sudo -u {name} env LAB_DATABASE_URL=... python -m migration_lab reset CHAPTER",
        )
    return found


def reset(name: str, chapter: str, checkout: Path, database_url: str) -> list[str]:
    """The kit's own reset of `checkout` to `chapter`, as the learner's account; the lines it printed, escaped.

    What it prints is the learner's to shape (their own python in .venv/, their migrations' output, names they
    chose): every control character comes back as an escape, so it can neither drive the instructor's terminal
    nor forge a line.
    """
    learner = account(name, checkout)
    if os.geteuid() != 0:
        from ..course import registry
        from ..database.url import UrlBackend
        from ..lab import Lab
        from ..project import Project

        return _lines(str(registry.reset(chapter, Lab(Project(checkout), UrlBackend(database_url)))))
    venv = checkout / ".venv" / "bin" / "python"  # their own install: runs as them anyway
    python = str(venv) if venv.exists() else sys.executable
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": learner.pw_dir,
        "USER": name,
        "LOGNAME": name,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "LAB_DATABASE_URL": database_url,
    }
    try:
        process = subprocess.Popen(
            [python, "-m", "migration_lab", "reset", chapter, "--keep-notebook"],
            cwd=checkout,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # A session of its own, without the instructor's terminal: through /dev/tty a program of theirs would
            # write past the escaping below, read what the instructor types, and (TIOCSTI) type into root's shell.
            start_new_session=True,
            **run_as(learner),
        )
    except OSError as error:
        raise LabError(f"The reset as {name} did not run: {error}", _as_them(name)) from error
    with process:
        try:
            stdout, stderr = _output(process, time.monotonic() + RESET_TIMEOUT)
        except BaseException as error:  # the timeout, or Ctrl-C: the reset, running as them, goes with its group
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its group is alive: the reset's own process still is
            if isinstance(error, subprocess.TimeoutExpired):
                raise LabError(
                    f"The reset as {name} did not end within {RESET_TIMEOUT} s and was stopped.", _as_them(name)
                ) from None
            raise
    if process.returncode != 0:
        raise LabError(f"The reset as {name} failed:\n{(stdout + stderr).strip()}", _as_them(name))
    return _lines(stdout)


def _output(process: subprocess.Popen[bytes], deadline: float) -> tuple[str, str]:
    """What the reset printed on stdout and stderr: the last OUTPUT_LIMIT bytes of each, as text whatever bytes the
    learner's program wrote.

    Read until the reset's own process ends, then only what is already written (for at most DRAIN s), not until
    every copy of the pipes is closed: a program of theirs left running in the background (a daemon their env.py
    starts) holds them open, and the instructor would wait for its end. Pipes, not files: nothing of theirs can
    fill the instructor's disk, and a writer that goes on after the reset gets SIGPIPE once they are closed.
    TimeoutExpired when the reset itself runs past `deadline`.
    """
    out, err = (stream.fileno() for stream in (process.stdout, process.stderr) if stream is not None)  # both pipes
    kept = {out: bytearray(), err: bytearray()}
    ended: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if ended is None and process.poll() is not None:
                ended = now
            if ended is None and now > deadline:
                raise subprocess.TimeoutExpired(process.args, RESET_TIMEOUT)
            ready = selector.select(timeout=0.1)
            if ended is not None and (not ready or now - ended > DRAIN):
                break
            for key, _events in ready:
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:  # every writer closed it
                    selector.unregister(key.fd)
                    continue
                buffer = kept[key.fd]
                buffer += chunk
                del buffer[:-OUTPUT_LIMIT]
    process.wait(max(0.0, deadline - time.monotonic()))  # it closed both pipes (exec >&-) and may still run
    return kept[out].decode("utf-8", errors="replace"), kept[err].decode("utf-8", errors="replace")


def _lines(output: str) -> list[str]:
    return [printable(line) for line in output.strip().splitlines()]


def _as_them(name: str) -> str:
    return (
        f"Run it as {name}, from their checkout: sudo -u {name} env LAB_DATABASE_URL=<their URL from the roster> "
        f".venv/bin/python -m migration_lab reset CHAPTER"
    )
