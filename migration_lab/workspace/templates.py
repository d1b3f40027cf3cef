"""Chapter templates on a shared server: a checkpoint's database, cloned in tens of milliseconds.

A workshop keeps one template database per distinct chapter checkpoint
(`workshop init`). A reset of a learner's database is then a drop and a
`CREATE DATABASE ... TEMPLATE`, not a wipe, an upgrade and a reseed on a CPU
thirty learners share.

Two rules make a clone usable at once by whoever owns it:

- A template's name is its checkpoint's fingerprint (`mlab_tpl_<hash>` of the
  models, revision files, target and seed rows): a kit whose checkpoints
  differ (an older or newer course version) finds no template of its own and
  resets the ordinary way, never from a template that does not match.
- Inside a template every table, sequence, type and schema public belongs to
  `pg_database_owner`, PostgreSQL's role that stands for the owner of the
  database at hand. In a clone owned by a learner, the learner owns them: no
  `REASSIGN OWNED` after each clone, and nobody but the database's owner may
  ALTER them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.connection import LabDatabase
from ..database.sql import quote
from ..errors import LabError
from . import progress

TEMPLATE_PREFIX = "mlab_tpl_"
# On a learner's database: the kit may drop it and clone it again from a template (see reclone).
LEARNER_DATABASE = "migration-lab learner database"
CLONE_SUFFIX = "_mlab_clone"  # a clone's name until it replaces the database

_GIVE_TO_DATABASE_OWNER = """
DO $$
DECLARE item record;
BEGIN
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
    ALTER SCHEMA public OWNER TO pg_database_owner;
END $$
"""


def template_name(fingerprint: str) -> str:
    """The template of the checkpoint with this fingerprint (`Checkpoint.fingerprint()`)."""
    return f"{TEMPLATE_PREFIX}{fingerprint}"


def admin_engine(url: str) -> sa.Engine:
    """Autocommit on the server's maintenance database: CREATE and DROP DATABASE run there."""
    return sa.create_engine(
        make_url(url).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5},
    )


def give_to_database_owner(conn: sa.Connection) -> None:
    """Every table, sequence, type and schema public of this database to `pg_database_owner` (see the module)."""
    conn.execute(sa.text(_GIVE_TO_DATABASE_OWNER))


def clone(admin: sa.Connection, database: str, template: str, owner: str | None = None) -> int:
    """Replace `database` (closing its sessions) by a clone of `template`; returns how many sessions were closed.

    The clone is made under a name of its own first and renamed once the old
    database is gone: when the clone fails (no such template, a full disk),
    the learner's database is still there. It is private to its owner (no
    CONNECT for PUBLIC) and marked as a learner's, so the learner's own kit
    may re-clone it later.
    """
    fresh = f"{database}{CLONE_SUFFIX}"
    owned_by = f" OWNER {quote(owner)}" if owner else ""
    admin.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(fresh)} WITH (FORCE)"))  # an interrupted clone's
    try:
        admin.execute(sa.text(f"CREATE DATABASE {quote(fresh)} TEMPLATE {quote(template)}{owned_by}"))
    except sa.exc.DBAPIError as error:
        raise LabError(
            f"Could not clone {template} for {database} (which is unchanged): {str(error.orig).strip()}",
            "Ask the instructor to run `python -m migration_lab workshop init` (templates of this course "
            "version), then reset again.",
        ) from error
    admin.execute(sa.text(f"REVOKE CONNECT, TEMPORARY ON DATABASE {quote(fresh)} FROM PUBLIC"))
    admin.execute(sa.text(f"COMMENT ON DATABASE {quote(fresh)} IS '{LEARNER_DATABASE}'"))
    closed = admin.scalar(
        sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
        {"db": database},
    )
    admin.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(database)} WITH (FORCE)"))
    admin.execute(sa.text(f"ALTER DATABASE {quote(fresh)} RENAME TO {quote(database)}"))
    return int(closed or 0)


_CAN_RECLONE = """
SELECT t.datistemplate
   AND shobj_description(d.oid, 'pg_database') = :mark
   AND pg_has_role(current_user, d.datdba, 'USAGE')
   AND (r.rolcreatedb OR r.rolsuper)
FROM pg_database d, pg_database t, pg_roles r
WHERE d.datname = current_database() AND t.datname = :template AND r.rolname = current_user
"""


def reclone_source(conn: sa.Connection, fingerprint: str) -> str | None:
    """The template this database may be re-cloned from for the checkpoint with `fingerprint`, or None.

    Only a workshop learner's database (marked by `clone`), owned by this role,
    when the role may create databases and the checkpoint's template exists.
    Anything else (a laptop, a CI database, an instructor's templates from
    another course version) resets the ordinary way.
    """
    template = template_name(fingerprint)
    ok = conn.scalar(sa.text(_CAN_RECLONE), {"mark": LEARNER_DATABASE, "template": template})
    conn.rollback()
    return template if ok else None


def reclone(db: LabDatabase, conn: sa.Connection, template: str) -> None:
    """Re-clone the learner's database `db` from `template`, as the learner: the fast reset on a shared server.

    `conn` holds the lab's migration lock; dropping the database ends that
    session too, so the lock is held until the old database is gone. The
    learner's progress records (for the room view) are carried over.
    """
    saved = progress.saved(conn)
    database = db.name
    db.dispose()
    admin = admin_engine(db.url)
    try:
        with admin.connect() as admin_conn:
            clone(admin_conn, database, template)
    finally:
        admin.dispose()
    progress.restore(db, saved)
