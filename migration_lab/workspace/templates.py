"""Chapter templates on a shared server: a checkpoint's database, cloned in tens of milliseconds.

A workshop keeps one template database per distinct chapter checkpoint
(`workshop init`). A reset of a learner's database is then a
`CREATE DATABASE ... TEMPLATE` and a rename, not a wipe, an upgrade and a
reseed on a CPU thirty learners share.

Three rules make a clone safe and usable at once by whoever owns it:

- A template's name is its checkpoint's fingerprint (`mlab_tpl_<hash>` of the
  models, revision files, target and seed rows): a kit whose checkpoints
  differ (an older or newer course version) finds no template of its own and
  resets the ordinary way, never from a template that does not match.
- A template counts only when `mlab_templates` owns it. Any learner may
  create a database of that name and mark it `IS_TEMPLATE`; nobody but the
  instructor may make one that `mlab_templates` owns.
- Inside a template every table, sequence, type and schema public belongs to
  `pg_database_owner`, PostgreSQL's role that stands for the owner of the
  database at hand. In a clone owned by a learner, the learner owns them: no
  `REASSIGN OWNED` after each clone, and nobody but the database's owner may
  ALTER them.

A clone replaces a database without a moment when its name is free: it is
made under a random name, and the two renames (the old database out of the
way, the clone into place) commit in one transaction (`swap_into_place`).
Another role that loops `CREATE DATABASE lab_bob` meanwhile waits on that
transaction and then fails; it never gets the name.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.connection import LabDatabase
from ..database.names import CLIENT_ENCODING
from ..database.sql import create_private_database, pinned, quote, run_quoted, transaction
from ..errors import LabError

TEMPLATE_PREFIX = "mlab_tpl_"
TEMPLATE_OWNER = "mlab_templates"  # NOLOGIN; owns every template the kit made, and nothing else
# A label on a learner's database; only its owner says whose it is (a learner may comment on their own databases).
LEARNER_DATABASE = "migration-lab learner database"
CLONE_PREFIX = "mlab_clone_"  # a clone, until it replaces the database
OLD_PREFIX = "mlab_old_"  # the database a clone replaced, until it is dropped
SQUATTED_PREFIX = "mlab_squatted_"  # another role's database found under a name the kit needs: moved, kept
# Every session the kit opens on a server's maintenance database: names resolve in pg_catalog (whatever anyone put
# in schema public or in ALTER DATABASE/ROLE ... SET: a client's options outrank both), and nothing waits forever.
PINNED = pinned("60s", "5s")
SWAP_TRIES = 50

_GIVE_TO_DATABASE_OWNER = """
DO $$
DECLARE item record;
BEGIN
    -- The schema first: a table may only be given to a role that may create in its schema.
    ALTER SCHEMA public OWNER TO pg_database_owner;
    FOR item IN
        SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (  -- a serial's or identity's sequence follows its table
              SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO pg_database_owner', item.name);
    END LOOP;
    FOR item IN
        SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_class c ON c.oid = t.typrelid
        WHERE n.nspname = 'public'  -- enums and domains; composite types of their own, not a table's row type
          AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND c.relkind = 'c'))
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO pg_database_owner', item.name);
    END LOOP;
END $$
"""

_OWNER = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"
# Sessions this session's role may end: its own role's, or those of roles whose privileges it has; waiting (5 s at
# most) until each is gone: a session still exiting made the next DROP ... WITH (FORCE), as a role that may not end
# it, fail ("permission denied to terminate process").
_TERMINATE = """
SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
WHERE datname = :d AND pid <> pg_backend_pid() AND usesysid IS NOT NULL AND pg_has_role(usesysid, 'USAGE')
"""
_OTHERS = """
SELECT DISTINCT usename FROM pg_stat_activity
WHERE datname = :d AND pid <> pg_backend_pid() AND usesysid IS NOT NULL AND NOT pg_has_role(usesysid, 'USAGE')
"""
_RETRY = {
    "55006",  # object_in_use: a session came (back) on a database to rename
    "42P04",  # duplicate_database: another role took the free name between our look and our rename
    "23505",  # unique_violation: the same, when their CREATE committed while our rename waited on it
    "3D000",  # invalid_catalog_name: the database we saw was renamed or dropped by its owner meanwhile
    "55P03",  # lock_not_available
}


@dataclass(frozen=True)
class Swap:
    """What a swap did to the database that had the name."""

    closed: int  # sessions closed on it
    replaced: bool  # it was the owner's own, replaced and dropped
    moved_aside: tuple[str, str] | None  # (its owner, its new name): another role's, renamed and kept


def template_name(fingerprint: str) -> str:
    """The template of the checkpoint with this fingerprint (`Checkpoint.fingerprint()`)."""
    return f"{TEMPLATE_PREFIX}{fingerprint}"


def random_name(prefix: str) -> str:
    """A database name nobody can guess ahead, so nobody can take it first."""
    return f"{prefix}{secrets.token_hex(8)}"


def admin_engine(url: str, database: str = "postgres", options: str = "") -> sa.Engine:
    """Autocommit on the server's maintenance database (CREATE, ALTER and DROP DATABASE run there), pinned;
    `options` adds startup options (`-c role=...`)."""
    return sa.create_engine(
        make_url(url).set(database=database),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        hide_parameters=True,  # a failed CREATE/ALTER ROLE ... PASSWORD never shows the password in its error
        connect_args={
            "connect_timeout": 5,
            "options": f"{PINNED} {options}".strip(),
            "client_encoding": CLIENT_ENCODING,  # it lists databases: any role's names, as they are
        },
    )


def give_to_database_owner(conn: sa.Connection) -> None:
    """Every table, sequence, type and schema public of this database to `pg_database_owner` (see the module)."""
    conn.execute(sa.text(_GIVE_TO_DATABASE_OWNER))


def owner_of(conn: sa.Connection, database: str) -> str | None:
    """The role that owns `database`, or None when there is no such database."""
    return conn.scalar(sa.text(_OWNER), {"d": database})


def close_sessions(conn: sa.Connection, database: str) -> int:
    """End every other session on `database` that this session may end; returns how many.

    Its own role's and those it has the privileges of at once; then, for a
    non-superuser (an instructor with CREATEROLE), as each other role it may
    become (SET ROLE: the learners it made). `SET ROLE` only ends sessions here:
    it runs no code of theirs.
    """
    closed = int(conn.scalar(sa.text(_TERMINATE), {"d": database}) or 0)
    for role in conn.scalars(sa.text(_OTHERS), {"d": database}).all():
        with acting_as(conn, role) as became:
            if became:
                closed += int(conn.scalar(sa.text(_TERMINATE), {"d": database}) or 0)
    return closed


@contextmanager
def acting_as(conn: sa.Connection, role: str) -> Iterator[bool]:
    """`SET ROLE role` for the block, then back to the role before it; yields False when refused (not a member)."""
    before = str(conn.scalar(sa.text("SELECT current_user")))
    if before == role:
        yield True
        return
    try:
        run_quoted(conn, f"SET ROLE {quote(role)}")
    except sa.exc.DBAPIError as error:
        if getattr(error.orig, "pgcode", None) != "42501":  # insufficient_privilege
            raise
        yield False
        return
    try:
        yield True
    finally:
        run_quoted(conn, f"SET ROLE {quote(before)}")


def _never(owner: str) -> bool:
    return False


def check_name_free(conn: sa.Connection, name: str, owner: str, may_move: Callable[[str], bool] = _never) -> str | None:
    """The owner of the database `name` (None: no such database), when a swap may take that name; else LabError."""
    found = owner_of(conn, name)
    if found is not None and found != owner and not may_move(found):
        raise LabError(
            f"A database {name} exists, owned by {found}: the workshop did not make it, and never moves or "
            "drops a database of a role that is not one of its learners. Nothing was changed.",
            f"Pick another name, or have {found} (or a superuser) rename or drop {name}.",
        )
    return found


def swap_into_place(
    conn: sa.Connection, fresh: str, name: str, owner: str, may_move: Callable[[str], bool] = _never
) -> Swap:
    """Rename the database `fresh` to `name` with no moment when `name` is free.

    `conn`: autocommit, on a maintenance database. In one transaction, the
    database called `name` (if any) is renamed out of the way and `fresh` takes
    the name. That database, when `owner`'s, is replaced (dropped afterwards).
    When another role's for which `may_move(role)` (a learner squatting a name
    the kit needs), it is closed to new connections, renamed `mlab_squatted_*`
    and kept: not the kit's to drop; this session acts as its owner when it
    lacks the owner's privileges (it may become its learners). Any other owner's database is
    never touched: a LabError names the owner. Sessions are closed first (a
    rename needs the database idle), and again on every retry.
    """
    closed = 0
    for attempt in range(SWAP_TRIES):
        found = check_name_free(conn, name, owner, may_move)
        if found is not None and found != owner:  # a squatter's: closed to new sessions first, so it empties
            with acting_as(conn, found) as became:
                if became:
                    run_quoted(conn, f"ALTER DATABASE {quote(name)} WITH ALLOW_CONNECTIONS false")
        if found is not None:
            closed += close_sessions(conn, name)
        old = aside = None
        try:
            with transaction(conn):  # both renames or none
                if found == owner:
                    old = random_name(OLD_PREFIX)
                    run_quoted(conn, f"ALTER DATABASE {quote(name)} RENAME TO {quote(old)}")
                elif found is not None:
                    aside = random_name(SQUATTED_PREFIX)
                    me = conn.scalar(sa.text("SELECT current_user"))
                    become = not conn.scalar(sa.text("SELECT pg_has_role(:r, 'USAGE')"), {"r": found})
                    if become:
                        run_quoted(conn, f"SET LOCAL ROLE {quote(found)}")
                    run_quoted(conn, f"ALTER DATABASE {quote(name)} RENAME TO {quote(aside)}")
                    if become:
                        run_quoted(conn, f"SET LOCAL ROLE {quote(str(me))}")
                run_quoted(conn, f"ALTER DATABASE {quote(fresh)} RENAME TO {quote(name)}")
        except sa.exc.DBAPIError as error:
            code = getattr(error.orig, "pgcode", None)
            if code == "42501" and aside is not None:
                raise LabError(
                    f"The database {name} belongs to {found}, and this role may not act as {found} to move it "
                    f"out of the way. Nothing was changed.",
                    f"A superuser renames it (ALTER DATABASE {quote(name)} RENAME TO ...) or drops it; or drop "
                    f"{found} with `workshop remove {found}` if that is a learner.",
                ) from error
            if code not in _RETRY or attempt == SWAP_TRIES - 1:
                raise LabError(
                    f"Could not put {fresh} in place as {name}: {str(error.orig).strip().splitlines()[0]}",
                    f"Try again; if {found or 'someone'} keeps a session on {name}, close it.",
                ) from error
            time.sleep(0.01 * (attempt + 1))
            continue
        break
    if old is not None:
        drop_replaced(conn, old)
    if owner_of(conn, name) != owner:  # cannot happen while the rules above hold; a name is never handed over
        raise LabError(f"{name} does not belong to {owner} after the swap.", "Run the command again.")
    return Swap(closed, old is not None, None if aside is None else (str(found), aside))


def drop_replaced(conn: sa.Connection, name: str) -> None:
    """Drop `name`, a database the swap replaced (or a clone it did not use): its owner may have marked it
    `IS_TEMPLATE` (a learner's own database, before an instructor's reset), which a plain DROP refuses: the reset
    said it failed after it had replaced the database, and kept the old one. Gone already (its owner renamed or
    dropped it meanwhile): nothing to do."""
    try:
        run_quoted(conn, f"ALTER DATABASE {quote(name)} WITH IS_TEMPLATE false")
    except sa.exc.DBAPIError as error:
        if getattr(error.orig, "pgcode", None) != "3D000":  # invalid_catalog_name: no such database
            raise
        return
    run_quoted(conn, f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)")


def clone(conn: sa.Connection, database: str, template: str, may_move: Callable[[str], bool] = _never) -> Swap:
    """Replace `database` by a clone of `template`, owned by this session's current role; see `swap_into_place`.

    The clone is made under a random name first: when it fails (no such
    template, a full disk) the database is still there, unchanged. It is
    private to its owner (no CONNECT for PUBLIC) and labelled as a learner's.
    An instructor calls this after `SET ROLE <learner>`, so the clone is the
    learner's and only the learner's rights are used.
    """
    fresh = random_name(CLONE_PREFIX)
    try:
        create_private_database(conn, fresh, template)
    except sa.exc.DBAPIError as error:
        raise LabError(
            f"Could not clone {template} for {database} (which is unchanged): {str(error.orig).strip()}",
            "Ask the instructor to run `python -m migration_lab workshop init` (templates of this course "
            "version), then reset again.",
        ) from error
    swapped = False
    try:
        run_quoted(conn, f"COMMENT ON DATABASE {quote(fresh)} IS '{LEARNER_DATABASE}'")
        me = str(conn.scalar(sa.text("SELECT current_user")))
        swap = swap_into_place(conn, fresh, database, me, may_move)
        swapped = True
        return swap
    finally:
        if not swapped:  # once swapped, the name is free again: anyone's, never ours to drop
            drop_replaced(conn, fresh)


_CAN_RECLONE = """
SELECT t.datistemplate
   AND t.datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :owner)
   AND d.datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
   AND (SELECT rolcreatedb OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
FROM pg_catalog.pg_database d, pg_catalog.pg_database t
WHERE d.datname = pg_catalog.current_database() AND t.datname = :template
"""


def reclone_source(conn: sa.Connection, fingerprint: str) -> str | None:
    """The template this database may be re-cloned from for the checkpoint with `fingerprint`, or None.

    Only a database this role owns, when the role may create databases and the
    checkpoint's template exists and is the kit's (owned by `mlab_templates`).
    Anything else (a laptop, a CI database, an instructor's templates from
    another course version, a template a learner made under that name) resets
    the ordinary way.
    """
    template = template_name(fingerprint)
    ok = conn.scalar(sa.text(_CAN_RECLONE), {"owner": TEMPLATE_OWNER, "template": template})
    conn.rollback()
    return template if ok else None


def reclone(db: LabDatabase, conn: sa.Connection, template: str) -> None:
    """Re-clone the learner's database `db` from `template`, as the learner: the fast reset on a shared server.

    `conn` holds the lab's migration lock; the swap closes every session on
    the database, that one too, right before the renames, so the lock is held
    until the database is replaced.
    """
    database = db.name
    db.dispose()
    admin = admin_engine(db.url)
    try:
        with admin.connect() as admin_conn:
            clone(admin_conn, database, template)
    finally:
        admin.dispose()
