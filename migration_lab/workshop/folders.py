"""The instructor's own folders: the roster's and the backups', which hold every learner's password and work.

An instructor often runs as root, and may be given a path in a folder another
account prepared (`--roster /tmp/room/roster.json`). There a symlink of theirs
would make root create or overwrite a file of their choosing (the roster's
lock, a dump that pg_dump opens by name), and a folder of theirs would let
them swap the roster for one with URLs of their own. So the kit writes only
into a real folder of the account it runs as, that nobody else may write, below
folders nobody else may swap (a folder of theirs higher up would let them rename
the one the kit checked and put a symlink in its place), and never follows a
symlink for the last step.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from ..database.os_accounts import account_name
from ..errors import LabError


def private_folder(path: Path, what: str, unchanged: str = "Nothing was written.") -> Path:
    """`path`, made 0700 when missing; a LabError, before anything is written (or deleted: `unchanged` says what
    stays as it was), unless it is a real folder (not a symlink) of this account that no other account may write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as error:
        raise LabError(f"Cannot use {path}, {what}: {error.strerror}. {unchanged}", _HINT) from error
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
        problem = _swappable_above(path)
        if not problem:
            return path
    raise LabError(
        f"{path}, {what}, is not a folder only {account_name(me)} may write ({problem}). {unchanged}",
        _HINT,
    )


def _swappable_above(path: Path) -> str:
    """Why another account could swap a folder above `path` for one of theirs while the kit writes (a rename of
    `room/` and a symlink in its place, between the check and the write); "" when nobody could.

    Every folder on the way, as written and as it resolves, and every symlink on it, must be root's or this
    account's; a folder others may write must be sticky (`/tmp`), where they can rename only what is theirs.
    """
    me = os.geteuid()
    for way in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for above in way.parents:
            info = os.lstat(above)
            if info.st_uid not in (0, me):
                return f"{above} above it is owned by {account_name(info.st_uid)}"
            if stat.S_ISLNK(info.st_mode) or info.st_mode & stat.S_ISVTX:
                continue
            if info.st_mode & 0o002 or (info.st_mode & 0o020 and not _group_of_one(info.st_gid, me)):
                return f"others may write in {above} above it, mode {stat.S_IMODE(info.st_mode):o}"
    return ""


def _group_of_one(gid: int, me: int) -> bool:
    """Nobody but this account (or root) is in group `gid`: a user-private group, as Debian, Ubuntu and Fedora
    give every account (with umask 002 its folders are group-writable, and still nobody else's to write)."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return False
    others = {entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == gid} | members
    return others <= {account_name(me), "root"}


def open_new(path: Path, flags: int = 0) -> int:
    """A file descriptor on `path`, which must not exist yet (nor be a symlink): 0600, this account's."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | flags, 0o600)


def open_own(path: Path) -> int:
    """A file descriptor on `path` to append to, made 0600 if missing; never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)


_HINT = (
    "Give --roster a path in a folder of yours, below folders only you (or root) may change: the default, "
    ".lab/workshop/ in your checkout, is one when the checkout is yours (as root, not one in another account's "
    "home). Or look at that folder (`ls -ld`): if you did not make it, someone else may have prepared it."
)
