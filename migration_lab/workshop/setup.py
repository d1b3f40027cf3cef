"""What `workshop init` makes on the server: the kit's roles, the room's store and the chapter templates.

- `mlab_templates` (NOLOGIN) owns the templates, `mlab_room` (NOLOGIN) the
  store, `mlab_learners` (NOLOGIN) is every learner's group. A non-superuser
  instructor gets the rights of the first two (INHERIT and SET): it owns their
  databases as if they were its own, and builds as them.
- The store and each template are built from `template0` (a learner may put
  large objects in template1, which would reach every clone), under a random
  name, closed to PUBLIC at once; a template is checked to hold nothing of any
  other role before it is sealed (`IS_TEMPLATE`, no connections). Then it is
  swapped into place (`templates.swap_into_place`): a learner's database found
  under that name is moved aside and named; anyone else's is left alone and
  refused.
- A template counts only when `mlab_templates` owns it: `template_for` refuses
  any other, naming its owner.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from ..database.sql import create_private_database, quote, run_quoted, transaction
from ..database.url import UrlBackend
from ..errors import LabError
from ..project import Project
from ..workspace import templates
from ..workspace.checkpoints import Checkpoint
from ..workspace.progress import ROOM_DATABASE, ROOM_OWNER
from ..workspace.templates import TEMPLATE_OWNER, close_sessions, owner_of, random_name
from . import room
from .room import LEARNERS_GROUP
from .server import Server

BUILD_PREFIX = "mlab_build_"  # a template or the room's store, until it is complete and swapped into place
INIT_LOCK = 0x4D4C_5749  # "MLWI": the session advisory lock a running `workshop init` holds on the maintenance database
TEMPLATE_LABEL = "migration-lab chapter template"
ROOM_LABEL = "migration-lab workshop progress"

Say = Callable[[str], None]


def roles(server: Server, conn: sa.Connection) -> None:
    """The kit's three NOLOGIN roles; a non-superuser instructor also gets the rights of the first two."""
    for role in (TEMPLATE_OWNER, ROOM_OWNER, LEARNERS_GROUP):
        if not conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
            run_quoted(conn, f"CREATE ROLE {quote(role)} NOLOGIN")
    if not server.superuser(conn):
        # Own the templates and the store as if they were its own (rename, drop, read progress); its
        # learners' rights it never inherits (createrole_self_grant = 'set', see Server.connect).
        run_quoted(conn, f"GRANT {TEMPLATE_OWNER}, {ROOM_OWNER} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE")


def take_init_lock(conn: sa.Connection) -> None:
    """One init at a time, held until `conn` closes (a killed init's goes with its session). Another init's lock
    is not waited for (anyone who may connect can take an advisory lock): its holder is named, and refused."""
    if not conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": INIT_LOCK}):
        holder = conn.scalar(
            sa.text(
                "SELECT format('%s (pid %s, %s)', a.usename, a.pid,"
                " coalesce(nullif(a.application_name, ''), 'no name'))"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
                " AND l.classid = 0 AND l.objid = :k AND l.granted"
            ),
            {"k": INIT_LOCK},
        )
        raise LabError(
            f"Another `workshop init` is running on this server (the session of {holder or 'another role'} holds "
            "its lock). Nothing was changed.",
            "Wait for it to finish, then run init again; if that session is no init, end it "
            "(SELECT pg_terminate_backend(<pid>)).",
        )


def sweep_builds(conn: sa.Connection, say: Say) -> None:
    """Drop the builds a killed `init` left (`mlab_build_*` of the kit's owners). Under the init lock
    (`take_init_lock`): no other init is building them meanwhile."""
    names = conn.scalars(
        sa.text(
            "SELECT datname FROM pg_database WHERE starts_with(datname, :prefix) "
            "AND pg_get_userbyid(datdba) IN (:templates, :room) ORDER BY 1"
        ),
        {"prefix": BUILD_PREFIX, "templates": TEMPLATE_OWNER, "room": ROOM_OWNER},
    ).all()
    for name in names:
        drop_database(conn, name)
        say(f"Dropped {name}: a template or store an interrupted `workshop init` left half-built.")


def store(server: Server, conn: sa.Connection, say: Say) -> None:
    """`mlab_workshop`, the room's progress store (see `room`): made from template0, or brought up to date."""
    if owner_of(conn, ROOM_DATABASE) == ROOM_OWNER:
        _fill_store(server, ROOM_DATABASE)
        return
    build = random_name(BUILD_PREFIX)
    create_private_database(conn, build, "template0", ROOM_OWNER)
    swapped = False
    try:
        run_quoted(conn, f"GRANT CONNECT ON DATABASE {quote(build)} TO {LEARNERS_GROUP}")
        run_quoted(conn, f"COMMENT ON DATABASE {quote(build)} IS '{ROOM_LABEL}'")
        _fill_store(server, build)
        swap = templates.swap_into_place(conn, build, ROOM_DATABASE, ROOM_OWNER, server.is_learner(conn))
        swapped = True
    finally:
        if not swapped:
            drop_database(conn, build)
    say_moved(say, ROOM_DATABASE, swap)
    say(f"{ROOM_DATABASE}, the room's progress, is ready.")


def _fill_store(server: Server, database: str) -> None:
    """The store's schema, table and functions, made (or brought up to date) as their owner `mlab_room`."""
    with server.connect(database, role=ROOM_OWNER) as conn, transaction(conn):
        conn.exec_driver_sql(room.STORE)


def build_template(
    server: Server, conn: sa.Connection, name: str, checkpoint: Checkpoint, project: Project, say: Say
) -> None:
    """Build `name` through the kit's own reset, as `mlab_templates`, under a random name; seal it; swap it in."""
    from ..lab import Lab
    from ..workspace import checkpoints

    build = random_name(BUILD_PREFIX)
    create_private_database(conn, build, "template0", TEMPLATE_OWNER)
    swapped = False
    try:
        url = server.url.set(database=build).update_query_dict({"options": f"-c role={TEMPLATE_OWNER}"})
        with tempfile.TemporaryDirectory(prefix="mlab-template-") as tmp:
            scratch = Project(Path(tmp))
            (scratch.service_dir / "migrations").mkdir(parents=True)
            shutil.copy(project.service_dir / "alembic.ini", scratch.service_dir)
            checkpoints.restore_files(scratch, checkpoint)
            lab = Lab(scratch, UrlBackend(url.render_as_string(hide_password=False)))
            try:
                checkpoints.reset(lab, checkpoint)
                with lab.db.connect() as template, template.begin():
                    templates.give_to_database_owner(template)
            finally:
                lab.db.dispose()
        intruders = conn.scalar(
            sa.text(
                "SELECT string_agg(DISTINCT pg_get_userbyid(s.refobjid), ', ') FROM pg_shdepend s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = :d "
                "AND s.refclassid = 'pg_authid'::regclass AND pg_get_userbyid(s.refobjid) <> :owner"
            ),
            {"d": build, "owner": TEMPLATE_OWNER},
        )
        if intruders:
            raise LabError(
                f"While {name} was being built, {intruders} put something in it: it was not kept.",
                "Run `workshop init` again.",
            )
        run_quoted(conn, f"COMMENT ON DATABASE {quote(build)} IS '{TEMPLATE_LABEL}'")
        run_quoted(conn, f"ALTER DATABASE {quote(build)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
        swap = templates.swap_into_place(conn, build, name, TEMPLATE_OWNER, server.is_learner(conn))
        swapped = True
    finally:
        if not swapped:
            drop_database(conn, build)
    say_moved(say, name, swap)


def template_for(server: Server, conn: sa.Connection, chapter: str) -> str:
    """The chapter's template, when the kit made it (owned by mlab_templates); a LabError otherwise."""
    from ..course.registry import spec

    number = spec(chapter).number
    name = templates.template_name(spec(chapter).checkpoint.fingerprint())
    row = conn.execute(
        sa.text("SELECT pg_get_userbyid(datdba) AS owner, datistemplate FROM pg_database WHERE datname = :d"),
        {"d": name},
    ).first()
    if row is None or (row.owner == TEMPLATE_OWNER and not row.datistemplate):
        raise LabError(
            f"The workshop server {server.where} has no template for chapter {number}.",
            "Run `python -m migration_lab workshop init` first (again after a course update).",
        )
    if row.owner != TEMPLATE_OWNER:
        raise LabError(
            f"The template for chapter {number}, {name}, belongs to {row.owner}, not to {TEMPLATE_OWNER}: "
            "the workshop never clones it.",
            "Run `python -m migration_lab workshop init`: it moves that database aside and builds the real one.",
        )
    return name


def drop_database(conn: sa.Connection, name: str) -> None:
    """Drop a database this session may drop (its own, the kit's, as a learner theirs), templates too, its
    sessions closed first; one gone meanwhile is nothing to do (`templates.drop_replaced`)."""
    close_sessions(conn, name)
    templates.drop_replaced(conn, name)


def say_moved(say: Say, name: str, swap: templates.Swap) -> None:
    """Name the learner whose database had to be moved out of `name`'s way, and where it went."""
    if swap.moved_aside is not None:
        owner, aside = swap.moved_aside
        say(
            f"{name} was {owner}'s, not the workshop's: moved it to {aside} (kept: not the workshop's to drop; "
            f"`workshop remove {owner}` drops it with the rest of {owner}'s databases)."
        )
