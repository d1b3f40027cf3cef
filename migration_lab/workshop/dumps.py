"""A learner's database, dumped before an instructor's reset replaces it, with the learner's own login.

The dump logs in as the learner (their URL from the roster), never as the
instructor: whatever reading the database could run (a view, a policy, a
domain check of theirs) runs with the learner's rights only. It is
PostgreSQL's custom format (`pg_dump -Fc`), written to a new 0600 file in a
0700 folder of the instructor's (see `folders`), and named in the message.

Restore it with the learner's login too (`pg_restore -d <their URL>`):
restoring as a superuser would run their domain checks and defaults with a
superuser's rights.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from ..database.libpq import conninfo, environment
from ..database.programs import program
from ..database.sql import TRANSACTION_DEFAULTS
from ..errors import LabError
from . import folders

DUMP_TIMEOUT = 120  # pg_dump sets its own statement_timeout to 0: this bounds a learner who slows it down
LOCK_WAIT = "5s"  # a table the learner holds locked: pg_dump gives up instead of waiting forever


def dump(url: str, folder: Path) -> Path:
    """The database of `url` (a learner's) as `<folder>/<database>-<time>-<random>.dump`; LabError if it fails."""
    u = make_url(url)
    folders.private_folder(folder, "the backups' folder")
    path = folder / f"{u.database}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.dump"
    try:
        output = folders.open_new(path)
    except OSError as error:
        raise LabError(f"The backup of {u.database} could not be made: {path}: {error.strerror}", "") from error
    command = [
        program("pg_dump"),
        "--format=custom",  # to the file opened here: pg_dump never opens a path by name (a symlink put there)
        "--enable-row-security",  # a table with forced row security: its policies run, as the learner
        f"--lock-wait-timeout={LOCK_WAIT}",
        "--no-password",
        f"--dbname={conninfo(u)}",
    ]
    # The learner's `ALTER ROLE ... SET` reaches pg_dump's session: a deferrable serializable default held its
    # first query until the timeout (TRANSACTION_DEFAULTS), and a client_encoding of theirs (LATIN1) wrote its
    # messages, their own words quoted, in bytes that are not UTF-8: read as bytes, shown replaced.
    env = {**environment(url), "PGOPTIONS": TRANSACTION_DEFAULTS}
    try:
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.PIPE, timeout=DUMP_TIMEOUT
        )
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        problem = (said[-1] if said else f"pg_dump exited with {done.returncode}") if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    finally:
        os.close(output)
    if problem:
        path.unlink(missing_ok=True)
        raise LabError(f"The backup of {u.database} failed: {problem}", "")
    return path
