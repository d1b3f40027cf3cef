"""The instructor's own folders: the roster's and the backups', which hold every learner's password and work.

An instructor often runs as root, and may be given a path in a folder another
account prepared (`--roster /tmp/room/roster.json`). There a symlink of theirs
would make root create or overwrite a file of their choosing (the roster's
lock, a dump that pg_dump opens by name), and a folder of theirs would let
them swap the roster for one with URLs of their own. So the kit writes only
into a real folder of the account it runs as, that nobody else may write, and
never follows a symlink for the last step.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..database.os_accounts import account_name
from ..errors import LabError


def private_folder(path: Path, what: str) -> Path:
    """`path`, made 0700 when missing; a LabError, before anything is written, unless it is a real folder (not a
    symlink) of this account that no other account may write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as error:
        raise LabError(f"Cannot use {path}, {what}: {error.strerror}. Nothing was written.", _HINT) from error
    me = os.geteuid()
    if stat.S_ISLNK(info.st_mode):
        problem = "a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "not a folder"
    elif info.st_uid != me:
        problem = f"owned by {account_name(info.st_uid)}"
    elif info.st_mode & 0o022:
        problem = f"others may write in it, mode {stat.S_IMODE(info.st_mode):o}"
    else:
        return path
    raise LabError(
        f"{path}, {what}, is not a folder only {account_name(me)} may write ({problem}). Nothing was written.",
        _HINT,
    )


def open_new(path: Path, flags: int = 0) -> int:
    """A file descriptor on `path`, which must not exist yet (nor be a symlink): 0600, this account's."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | flags, 0o600)


def open_own(path: Path) -> int:
    """A file descriptor on `path` to append to, made 0600 if missing; never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)


_HINT = (
    "Give --roster a path in a folder of yours (the default, .lab/workshop/ in your checkout, is one), or look at "
    "that folder (`ls -ld`): if you did not make it, someone else may have prepared it."
)
