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

import hashlib
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from . import progress
from .errors import LabError

if TYPE_CHECKING:
    from .lab import Lab
    from .workspace import Checkpoint

TEMPLATE_PREFIX = "mlab_tpl_"
# On a learner's database: the kit may drop it and clone it again from a template (see reclone).
LEARNER_DATABASE = "migration-lab learner database"

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


def quote(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def fingerprint(checkpoint: Checkpoint) -> str:
    """12 hex digits that change whenever what the checkpoint puts in the database changes."""
    from .workspace import BASELINE, REVISIONS

    digest = hashlib.sha256()
    main = (BASELINE / "main.py").read_text()
    for edit in checkpoint.edits:
        main = edit(main)
    digest.update(main.encode())
    files = sorted(BASELINE.glob("versions/*.py")) + [REVISIONS / name for name in sorted(checkpoint.revisions)]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(checkpoint.target.encode())
    for sql in checkpoint.seed:
        digest.update(sql.encode())
    return digest.hexdigest()[:12]


def template_name(checkpoint: Checkpoint) -> str:
    return f"{TEMPLATE_PREFIX}{fingerprint(checkpoint)}"


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
    """Drop `database` (closing its sessions) and clone it from `template`; returns how many sessions were closed.

    The clone is private to its owner (no CONNECT for PUBLIC) and marked as a
    learner's database, so the learner's own kit may re-clone it later.
    """
    closed = admin.scalar(
        sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
        {"db": database},
    )
    admin.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(database)} WITH (FORCE)"))
    owned_by = f" OWNER {quote(owner)}" if owner else ""
    try:
        admin.execute(sa.text(f"CREATE DATABASE {quote(database)} TEMPLATE {quote(template)}{owned_by}"))
    except sa.exc.DBAPIError as error:
        raise LabError(
            f"Could not clone {database} from the template {template}: {str(error.orig).strip()}",
            "Ask the instructor to run `python -m migration_lab workshop reset <you> <chapter>`.",
        ) from error
    admin.execute(sa.text(f"REVOKE CONNECT, TEMPORARY ON DATABASE {quote(database)} FROM PUBLIC"))
    admin.execute(sa.text(f"COMMENT ON DATABASE {quote(database)} IS '{LEARNER_DATABASE}'"))
    return int(closed or 0)


_CAN_RECLONE = """
SELECT t.datistemplate
   AND shobj_description(d.oid, 'pg_database') = :mark
   AND pg_has_role(current_user, d.datdba, 'USAGE')
   AND (r.rolcreatedb OR r.rolsuper)
FROM pg_database d, pg_database t, pg_roles r
WHERE d.datname = current_database() AND t.datname = :template AND r.rolname = current_user
"""


def reclone_source(conn: sa.Connection, checkpoint: Checkpoint) -> str | None:
    """The template this database may be re-cloned from for `checkpoint`, or None.

    Only a workshop learner's database (marked by `clone`), owned by this role,
    when the role may create databases and the checkpoint's template exists.
    Anything else (a laptop, a CI database, an instructor's templates from
    another course version) resets the ordinary way.
    """
    template = template_name(checkpoint)
    ok = conn.scalar(sa.text(_CAN_RECLONE), {"mark": LEARNER_DATABASE, "template": template})
    conn.rollback()
    return template if ok else None


def reclone(lab: Lab, conn: sa.Connection, template: str) -> None:
    """Re-clone the lab's database from `template`, as the learner: the fast reset on a shared server.

    `conn` holds the lab's migration lock; dropping the database ends that
    session too, so the lock is held until the old database is gone. The
    learner's progress records (for the room view) are carried over.
    """
    saved = progress.saved(conn)
    database = lab.db.name
    lab.db.dispose()
    admin = admin_engine(lab.db.url)
    try:
        with admin.connect() as admin_conn:
            clone(admin_conn, database, template)
    finally:
        admin.dispose()
    progress.restore(lab.db, saved)
