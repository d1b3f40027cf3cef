"""Workshop mode: one shared PostgreSQL for a room of learners, each in a database of their own.

The instructor (a superuser, or a role with CREATEROLE and CREATEDB on
PostgreSQL 16 or later) runs:

- `init`: the roles `mlab_templates`, `mlab_room`, `mlab_learners`; the
  room's progress store `mlab_workshop` (see `room`); one template database
  per distinct chapter checkpoint (see `templates`), owned by
  `mlab_templates`, `IS_TEMPLATE`, accepting no connections;
- `add`/`ensure`: per learner a login role (generated password, a connection
  limit, CREATEDB, member of `mlab_learners`) and its database `lab_<name>`,
  cloned from chapter 00's template, owned by the learner, closed to everyone
  else; the learner's URL goes to the roster, a 0600 file only the instructor
  reads;
- `reset`: the learner's database dumped with the learner's own login, then
  replaced by a clone of a chapter's template;
- `status`: per learner, every chapter `ch.check()` recorded (see `room`);
- `remove`/`drop`: everything they made, whatever the learners made too.

A learner owns their database and may shape everything in it, and may
create databases (CREATEDB: the kit rehearses every command on a clone of
their database). So the instructor's commands follow four rules:

- Never run a learner's code with the instructor's rights. No instructor
  session reads a learner's database: progress lives in `mlab_workshop`, the
  backup before a reset logs in as the learner. Every instructor session pins
  `search_path` to pg_catalog and bounds its statements and lock waits, so
  nothing a learner put in schema public or in `ALTER DATABASE ... SET`
  reaches it. `SET ROLE <learner>` is used for DDL only (create, rename, drop
  a database, end sessions, `DROP OWNED`), which runs no user code; it is no
  sandbox for reading (learner code can `RESET ROLE`).
- Trust a name only by its owner: `lab_<name>` is the learner's, `mlab_tpl_*`
  `mlab_templates'`, `mlab_workshop` `mlab_room's`. A comment is a label (a
  learner may comment on their own databases). A learner's database under a
  name the kit needs is renamed `mlab_squatted_*`, kept, and named in the
  message; another role's is never touched (the command refuses).
- No name is ever free while the kit swaps: databases are made under random
  names and renamed into place in one transaction (`templates.swap_into_place`).
- Build from `template0`: a learner may put large objects in `template1`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.names import utf8
from ..database.os_accounts import account_name
from ..database.sql import quote, run_quoted, transaction
from ..database.url import normalise
from ..errors import LabError
from ..project import Project, write_private
from ..workspace import templates
from ..workspace.progress import ROOM_DATABASE
from ..workspace.templates import owner_of
from . import dumps, folders, removal, room, setup
from .removal import LEFT
from .room import LEARNER_ROLE, LEARNERS_GROUP, LearnerStatus, database_name, printable
from .server import CREATEROLE_MINIMUM, Server, first_line

CONNECTION_LIMIT = 8  # a notebook's command, its lock, a rehearsal's copy and the maintenance db, a second notebook
MAX_ROOM = 10_000  # learners in one room, --force or not: `add --learners N` lists N names before it adds any
BUSY = 3  # connections a learner holds while a command runs: the command, the migration lock, a rehearsal's copy
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
RESERVED = re.compile(r"(pg_|mlab_|postgres$)")
# Names PostgreSQL refuses for a role (public, none) or reads as another role wherever they are not quoted (SQL's
# current_user and friends, pg_hba.conf's all, samerole, samegroup, replication): never a learner's.
KEYWORDS = frozenset(
    {
        "public",
        "none",
        "current_user",
        "session_user",
        "current_role",
        "user",
        "all",
        "samerole",
        "samegroup",
        "replication",
    }
)

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default: say nothing (the CLI passes print)."""


@dataclass(frozen=True)
class Learner:
    name: str
    database_url: str  # postgresql+psycopg2://learnerNN:PASSWORD@host:port/lab_learnerNN (what LAB_DATABASE_URL gets)


def learner_names(count: int, start: int = 1) -> list[str]:
    """learner01, learner02, ... learner100: a name never depends on how many there are, so a room can grow."""
    return [f"learner{n:02d}" for n in range(start, start + count)]


def _join_learners(conn: sa.Connection, name: str) -> None:
    """Make `name` a member of mlab_learners for its grants (CONNECT to the room, EXECUTE of its functions), never
    able to act as it (SET ROLE): a learner who could would make databases owned by the group, under a future
    learner's or a template's name, which the kit moves aside only when a learner owns them. PostgreSQL 16 has
    the SET option; before it a member may always SET ROLE, and the grant is the plain one."""
    if int(conn.scalar(sa.text("SELECT current_setting('server_version_num')::int")) or 0) < CREATEROLE_MINIMUM:
        if not conn.scalar(sa.text("SELECT pg_has_role(:r, :g, 'MEMBER')"), {"r": name, "g": LEARNERS_GROUP}):
            run_quoted(conn, f"GRANT {LEARNERS_GROUP} TO {quote(name)}")
        return
    if conn.scalar(
        sa.text("SELECT NOT pg_has_role(:r, :g, 'USAGE') OR pg_has_role(:r, :g, 'SET')"),
        {"r": name, "g": LEARNERS_GROUP},
    ):
        run_quoted(conn, f"GRANT {LEARNERS_GROUP} TO {quote(name)} WITH INHERIT TRUE, SET FALSE")


def check_name(name: str) -> str:
    """`name`, when it can be a learner's; a LabError saying what a name may be otherwise."""
    if not NAME.fullmatch(name) or RESERVED.match(name) or name in KEYWORDS:
        raise LabError(
            f"{name!r} cannot be a learner's name.",
            "Use lowercase letters, digits and _ (a letter first, at most 40), not starting with pg_ or mlab_, "
            f"and none of postgres, {', '.join(sorted(KEYWORDS))}.",
        )
    return name


def default_roster() -> Path:
    """.lab/workshop/roster.json in the checkout (git-ignored), or in the working directory outside one."""
    try:
        state = Project.find().state_dir
    except LabError:
        state = Path.cwd() / ".lab"
    return state / "workshop" / "roster.json"


class Workshop:
    """A workshop on one PostgreSQL server, driven with the instructor's URL."""

    def __init__(
        self,
        server_url: str,
        roster: Path | None = None,
        connection_limit: int = CONNECTION_LIMIT,
        say: Say = _quiet,
        project: Project | None = None,
        backup_dir: Path | None = None,
    ) -> None:
        if not isinstance(connection_limit, int) or connection_limit < 1:
            raise LabError(
                f"A connection limit of {connection_limit} would let a learner in with no connection (0) or "
                "with no limit at all (-1).",
                f"Give --connection-limit 1 or more (default {CONNECTION_LIMIT}); the server's capacity is the most.",
            )
        self.url = _server(server_url)
        self.server = Server(self.url)
        self.roster = Path(roster) if roster else default_roster()
        if self.roster.is_dir():
            raise LabError(
                f"The roster {self.roster} is a directory.",
                "Give --roster a file's path (default .lab/workshop/roster.json); it is made if missing.",
            )
        self.backup_dir = Path(backup_dir) if backup_dir else self.roster.parent / "backups"
        self.connection_limit = connection_limit
        self.say = say
        self._project = project

    @property
    def where(self) -> str:
        return self.server.where

    def _tell(self, message: str) -> None:
        """Say `message`, escaped: it may hold names learners chose (their databases) and PostgreSQL's errors."""
        self.say(printable(message))

    def _learner_url(self, name: str, password: str) -> str:
        return self.url.set(username=name, password=password, database=database_name(name)).render_as_string(
            hide_password=False
        )

    # --- the roster: the learners' URLs, for the instructor only --------------------

    @contextmanager
    def _roster_locked(self) -> Iterator[dict[str, str]]:
        """The roster's learners, to change in place; written back 0600 after. One writer at a time (a hub's
        spawn hooks may provision several learners at once)."""
        folders.private_folder(self.roster.parent, "the roster's folder")
        try:
            lock = os.fdopen(folders.open_own(self.roster.with_name(self.roster.name + ".lock")), "a")
        except OSError as error:
            raise LabError(
                f"Cannot use the roster {self.roster}: {error.strerror}.", "Give --roster a file you may write."
            ) from error
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            learners = self.learners()
            yield learners
            document = {"server": self.url.render_as_string(hide_password=True), "learners": learners}
            write_private(self.roster, json.dumps(document, indent=2) + "\n")

    def learners(self) -> dict[str, str]:
        """{name: LAB_DATABASE_URL} from the roster (empty when there is none yet)."""
        try:
            with os.fdopen(os.open(self.roster, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)) as file:
                info = os.fstat(file.fileno())
                if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode):
                    raise LabError(
                        f"The roster {self.roster} is not a file of yours (owner {account_name(info.st_uid)}, "
                        f"{'a file' if stat.S_ISREG(info.st_mode) else 'not a regular file'}): nothing read or "
                        "written.",
                        "Give --roster a file of yours (the default, .lab/workshop/roster.json in your checkout).",
                    )
                learners = dict(json.loads(file.read())["learners"])
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise LabError(
                f"Cannot read the roster {self.roster}: {error.strerror}.", "Give --roster a file you may read."
            ) from error
        except (ValueError, KeyError, TypeError) as error:
            raise LabError(
                f"The roster {self.roster} is not a workshop roster ({error}).",
                "Move it away and run `workshop add NAME` again for each learner: it gives a learner whose role "
                "exists a new password.",
            ) from error
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in learners.items()):
            raise LabError(
                f"The roster {self.roster} is not a workshop roster (names and URLs are not all text).",
                "Move it away and run `workshop add NAME` again for each learner.",
            )
        return learners

    # --- the server ------------------------------------------------------------------

    def capacity(self) -> int:
        """Connections the server gives ordinary roles: max_connections less those reserved."""
        with self.server.connect() as conn:
            return self.server.capacity(conn)

    def connection_warning(self, learners: int, capacity: int | None = None) -> str | None:
        """A warning when the learners' connection limits add up to more than the server gives."""
        capacity = self.capacity() if capacity is None else capacity
        need = learners * self.connection_limit
        if need <= capacity:
            return None
        return (
            f"Warning: {learners} learners × {self.connection_limit} connections each = {need}, but the server "
            f"gives ordinary roles {capacity}. A notebook holds 2-3 connections while a command runs: with "
            "everyone busy some would get 'too many connections'. Raise max_connections "
            f"(ALTER SYSTEM SET max_connections = {need + 20}; then restart the server), or give fewer "
            "connections per learner (--connection-limit)."
        )

    def room_problem(self, learners: int, capacity: int | None = None, force: bool = False) -> LabError | None:
        """Why a room of `learners` cannot work on this server (asked before anything is made), or None.

        A connection limit above what the server gives all ordinary roles is
        always refused; a room where everyone running one command at once
        (BUSY connections each) would not fit, only without `force`.
        """
        if learners > MAX_ROOM:
            return LabError(
                f"A room of {learners} learners is more than the workshop makes ({MAX_ROOM} at most, --force or "
                "not). Nothing was added.",
                f"Add at most {MAX_ROOM} learners (about {BUSY} connections each while they run a command).",
            )
        capacity = self.capacity() if capacity is None else capacity
        if self.connection_limit > capacity:
            return LabError(
                f"--connection-limit {self.connection_limit} is more than the server gives all ordinary roles "
                f"together ({capacity}). Nothing was added.",
                f"Give --connection-limit 1 to {capacity} (default {CONNECTION_LIMIT}).",
            )
        need = learners * min(BUSY, self.connection_limit)
        if need > capacity and not force:
            return LabError(
                f"A room of {learners} learners needs about {need} connections when each runs a command "
                f"({min(BUSY, self.connection_limit)} each: the command, the migration lock, a rehearsal's copy), "
                f"but the server gives ordinary roles {capacity}. Nothing was added.",
                f"Raise max_connections (ALTER SYSTEM SET max_connections = {need + 20}; restart) or add fewer "
                "learners; --force adds them anyway.",
            )
        return None

    # --- init --------------------------------------------------------------------------

    def init(self) -> None:
        """The roles, the room's store, one template per distinct chapter checkpoint; idempotent (see `setup`).

        Current templates are kept, stale ones dropped, half-built ones a killed
        init left dropped; a learner's database under a name the kit needs is
        moved aside and named. One init at a time: a second is refused.
        """
        from ..course.registry import CHAPTERS

        wanted = {templates.template_name(c.checkpoint.fingerprint()): c for c in CHAPTERS.values()}
        with self.server.connect() as conn:
            self.server.check(conn)
            setup.take_init_lock(conn)
            setup.roles(self.server, conn)
            setup.sweep_builds(conn, self._tell)
            setup.store(self.server, conn, self._tell)
            present = {
                row.datname: row
                for row in conn.execute(
                    sa.text(
                        "SELECT datname, pg_get_userbyid(datdba) AS owner, datistemplate FROM pg_database "
                        "WHERE starts_with(datname, :p)"
                    ),
                    {"p": templates.TEMPLATE_PREFIX},
                ).all()
            }
            for name in sorted(set(present) - set(wanted)):
                if present[name].owner == templates.TEMPLATE_OWNER:
                    setup.drop_database(conn, name)
                    self._tell(f"Dropped {name}: a template of another version of the course.")
                else:
                    self._tell(f"{name} is not the workshop's (owner {present[name].owner}): left alone, never used.")
            for name, chapter in wanted.items():
                chapters = ", ".join(n for n, c in CHAPTERS.items() if c.checkpoint is chapter.checkpoint)
                found = present.get(name)
                if found is not None and found.owner == templates.TEMPLATE_OWNER and found.datistemplate:
                    self._tell(f"Template {name} (chapters {chapters}) is there already.")
                    continue
                project = self._project or Project.find()
                setup.build_template(self.server, conn, name, chapter.checkpoint, project, self._tell)
                self._tell(f"Template {name} (chapters {chapters}) is ready.")
            learners = len(self.server.learner_roles(conn))
            warning = self.connection_warning(learners, self.server.capacity(conn))
        if warning:
            self._tell(warning)

    # --- learners ----------------------------------------------------------------------

    def add(self, name: str) -> Learner:
        """A new learner: role, database cloned from chapter 00's template, URL in the roster.

        A learner an interrupted `add` left half-made (a role without its
        database or its URL) is finished, and one whose roster password no
        longer works gets a new one. Raises LabError if the learner exists
        already, whole (`ensure` returns it), or if a role of that name is not a
        learner's.
        """
        check_name(name)
        with self._roster_locked() as roster, self.server.connect() as conn:
            mark = self.server.role_mark(conn, name)
            if mark is None:
                learner = self._provision(conn, name)
            elif name in roster and owner_of(conn, database_name(name)) == name and _login_works(roster[name]):
                raise LabError(
                    f"The learner {name} exists already on {self.where}.",
                    f"Pick another name, or `workshop remove {name}` first (that drops its database).",
                )
            else:
                learner = self._complete(conn, roster, name)
                self._tell(f"{name}: finished adding (an earlier add stopped half-way).")
            roster[name] = learner.database_url
        return learner

    def ensure(self, name: str) -> Learner:
        """The learner, added if missing, repaired if not whole: what a hub's spawn hook calls at every login.

        A learner whose role exists but whose URL the roster lacks, or whose
        password no longer works (a learner may change their own), gets a new
        password; a missing database, or one another role took, is replaced by
        a clone of chapter 00's template. All of it under the roster's lock:
        two logins at once provision once.
        """
        check_name(name)
        with self._roster_locked() as roster, self.server.connect() as conn:
            if self.server.role_mark(conn, name) is None:
                learner = self._provision(conn, name)
            else:
                learner = self._complete(conn, roster, name)
            roster[name] = learner.database_url
        return learner

    def _provision(self, conn: sa.Connection, name: str) -> Learner:
        """The role (a generated password, CREATEDB, the connection limit, the learners' group) and its database.

        Role, mark and membership in one transaction: an interrupted add never
        leaves a role that is not marked as the kit's (and so cannot be finished).
        """
        template = setup.template_for(self.server, conn, "00")
        problem = self.room_problem(0, self.server.capacity(conn), force=True)  # a limit the server cannot give
        if problem is not None:
            raise problem
        templates.check_name_free(conn, database_name(name), name, self.server.is_learner(conn))  # before the role
        password = secrets.token_urlsafe(18)
        with transaction(conn):
            conn.execute(
                sa.text(
                    f"CREATE ROLE {quote(name)} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                    f"CONNECTION LIMIT {int(self.connection_limit)} PASSWORD :password"
                ),
                {"password": password},
            )
            run_quoted(conn, f"COMMENT ON ROLE {quote(name)} IS '{LEARNER_ROLE}'")
            _join_learners(conn, name)
        self._give_database(conn, name, template)
        return Learner(name, self._learner_url(name, password))

    def _complete(self, conn: sa.Connection, roster: dict[str, str], name: str) -> Learner:
        """A learner's role exists: make the rest whole (password, membership, database), saying what it did."""
        url = roster.get(name)
        if url is None or not _login_works(url):
            url = self._new_password(conn, name)
            self._tell(f"{name}: the roster had no working password for them: set a new one.")
        _join_learners(conn, name)  # a learner an older kit added may still act as the group: not any more
        self._drop_leftovers(conn, name)
        owner = owner_of(conn, database_name(name))
        if owner != name:
            self._give_database(conn, name, setup.template_for(self.server, conn, "00"))
            if owner is None:
                self._tell(f"{name} had no database: cloned it from chapter 00's template.")
        return Learner(name, url)

    def _new_password(self, conn: sa.Connection, name: str) -> str:
        password = secrets.token_urlsafe(18)
        conn.execute(sa.text(f"ALTER ROLE {quote(name)} PASSWORD :password"), {"password": password})
        return self._learner_url(name, password)

    def _give_database(self, conn: sa.Connection, name: str, template: str) -> templates.Swap:
        """`lab_<name>`, a clone of `template`, made and swapped in as the learner (their rights, their database)."""
        with self.server.as_learner(conn, name):
            swap = templates.clone(conn, database_name(name), template, self.server.is_learner(conn))
        setup.say_moved(self._tell, database_name(name), swap)
        return swap

    def _drop_leftovers(self, conn: sa.Connection, name: str) -> None:
        """The learner's clones and replaced databases an interrupted swap left (random names, their own). Never
        one named in bytes that are not UTF-8, which the kit never makes (a learner can, from a SQL_ASCII database
        of theirs): a session in `postgres` refuses that name in any statement, and every later reset and
        `ensure` (their hub login) failed on it. `remove` drops it (`removal`)."""
        leftovers = conn.scalars(
            sa.text(
                "SELECT datname FROM pg_database d WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = :r) "
                "AND (starts_with(datname, :clone) OR starts_with(datname, :old)) "
                "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)"
            ),
            {"r": name, "clone": templates.CLONE_PREFIX, "old": templates.OLD_PREFIX},
        ).all()
        leftovers = [database for database in leftovers if utf8(database)]
        if leftovers:
            with self.server.as_learner(conn, name):
                for database in leftovers:  # a learner may have made one a template of theirs: no longer
                    setup.drop_database(conn, database)

    def known(self, name: str) -> str:
        """`name`, when it is a learner of this workshop; a LabError otherwise."""
        check_name(name)
        with self.server.connect() as conn:
            learners = self.server.learner_roles(conn)
        if name not in learners:
            raise LabError(
                f"{name} is not a learner of the workshop on {self.where}.",
                "`python -m migration_lab workshop status` lists them.",
            )
        return name

    def reset(self, name: str, chapter: str, backup: bool = True) -> Path | None:
        """Replace the learner's database by a clone of the chapter's template; returns the backup's path.

        With `backup` (the default) the database is dumped first, with the
        learner's own login, into `backup_dir` (see `dumps`); a failed backup
        stops the reset, nothing changed. Their open sessions are closed. Their
        files (ai-service/ in their own checkout) are theirs to reset: the
        chapter's first cell does, or `workshop reset --files`.
        """
        from ..course.registry import spec

        number = spec(chapter).number
        self.known(name)
        database = database_name(name)
        with self.server.connect() as conn:
            template = setup.template_for(self.server, conn, number)
            saved = self._backup(conn, name) if backup and owner_of(conn, database) == name else None
            self._drop_leftovers(conn, name)  # what a reset killed half-way left: undone by the next
            swap = self._give_database(conn, name, template)
        done = [f"backed up {database} to {saved}"] if saved else []
        if swap.closed:
            done.append(f"closed {swap.closed} open session(s)")
        done.append(f"cloned {database} from chapter {number}'s template")
        self._tell(f"{name}: {', '.join(done)}.")
        return saved

    def _backup(self, conn: sa.Connection, name: str) -> Path:
        """The learner's database, dumped with their own login; a new password first when theirs fails."""
        with self._roster_locked() as roster:
            url = roster.get(name)
            if url is None:
                url = roster[name] = self._new_password(conn, name)
                self._tell(f"{name} had no URL in {self.roster}: set a new password.")
        try:
            try:
                return dumps.dump(url, self.backup_dir)
            except LabError:
                # Whether their password still works, asked of the server by a login of its own: pg_dump's
                # message quotes names of the learner's (a table "password authentication failed", a schema whose
                # name starts a new line that reads as pg_dump's own), and read as a refused login it got them a
                # new password (their open notebook's URL dead) and told you they had changed theirs.
                if _login_works(url):
                    raise
            with self._roster_locked() as roster:
                url = roster[name] = self._new_password(conn, name)
            self._tell(f"{name}'s password in the roster no longer worked (changed by them?): set a new one.")
            return dumps.dump(url, self.backup_dir)
        except LabError as error:
            raise LabError(
                f"{error.what} Nothing was changed.",
                f"Fix what it says, or reset without a backup: `workshop reset {name} CHAPTER --no-backup` "
                "(Python: reset(..., backup=False)).",
            ) from error

    def status(self) -> list[LearnerStatus]:
        """Per learner: every chapter recorded, sessions, databases, and a problem if there is one (see `room`)."""
        with self.server.connect(ROOM_DATABASE) as conn:
            return room.read(conn, self.where)

    # --- removing ----------------------------------------------------------------------

    def remove(self, name: str) -> list[str]:
        """The learner's role, every database they own, what they own elsewhere, their progress, their roster line.

        Never stops at the first error: says (and returns) what it removed, and
        on lines with LEFT what it could not, and why (see `removal`). Run it
        again after fixing that; a learner already gone is "removed already".
        """
        check_name(name)
        lines = self._remove_one(name)
        if not any(LEFT in line for line in lines):
            with self._roster_locked() as roster:
                roster.pop(name, None)
        for line in lines:
            self._tell(line)
        return lines

    def _remove_one(self, name: str, others: bool = False) -> list[str]:
        """`removal.learner`, whatever a learner did to their role or sessions: the server's refusal is a LEFT line
        of theirs, so that the others are still removed. `others` (drop): a LabError too (a role this instructor
        may not act as), which `remove` of one name raises (a role that is no learner's)."""
        try:
            return removal.learner(self.server, name)
        except sa.exc.DBAPIError as error:
            return [f"{name}: {LEFT} {first_line(error)}"]
        except LabError as error:
            if not others:
                raise
            return [f"{name}: {LEFT} {error.what}"]

    def drop(self) -> list[str]:
        """Everything the workshop made on the server: learners, their databases, templates, the store, the roles.

        Never stops at the first error; returns what it did, with LEFT lines
        for what it could not (and why). The roster goes when nothing is left.
        """
        with self.server.connect() as conn:
            names = self.server.learner_roles(conn)
        removed = {name: self._remove_one(name, others=True) for name in names}
        for name in [n for n, said in removed.items() if any(LEFT in line for line in said)]:
            removed[name] = self._remove_one(name, others=True)  # another learner's database held them: gone now
        lines = [line for said in removed.values() for line in said]
        lines += removal.kit(self.server)
        if not any(LEFT in line for line in lines):
            lines += self._forget_roster()
        for line in lines:
            self._tell(line)
        return lines

    def _forget_roster(self) -> list[str]:
        """The roster and its lock deleted, once nothing of the workshop is left on the server. Only through a folder
        no other account could swap for a symlink meanwhile (the check every write of the roster passes): else
        kept, with a LEFT line that says why."""
        if self.roster.parent.is_dir():
            try:
                folders.private_folder(self.roster.parent, "the roster's folder", "The roster is kept.")
            except LabError as error:
                return [f"the roster {self.roster}: {LEFT} {error.what} {error.next_step}"]
            self.roster.unlink(missing_ok=True)
            self.roster.with_name(self.roster.name + ".lock").unlink(missing_ok=True)
        return [f"Dropped the workshop on {self.where}: every learner, the templates, the roles, the roster."]


def _login_works(url: str) -> bool:
    """Whether the learner's URL still logs in (a learner may change their own password); only a refused
    password counts as not working, not a full server or a missing database. Pinned (`templates.PINNED`): the
    session runs SQLAlchemy's first queries under the learner's `ALTER ROLE ... SET`, which could make them wait
    forever (a deferrable serializable default) while `add` or `ensure` holds the roster's lock."""
    engine = sa.create_engine(
        make_url(url).set(database="postgres"),
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5, "options": templates.PINNED},
    )
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError as error:
        return "password authentication failed" not in str(error.orig)
    finally:
        engine.dispose()


def _server(given: str) -> sa.URL:
    """The instructor's URL, on psycopg2; one LabError, never showing a password, for anything else."""
    try:
        return make_url(normalise(given, "The workshop server's URL (--server or LAB_WORKSHOP_URL)"))
    except LabError as error:
        what = error.what  # the driver is not the one installed: it says which to write
        try:
            parsed = make_url(given)
            if parsed.get_backend_name() != "postgresql":
                what = f"{parsed.get_backend_name()} is not PostgreSQL ({parsed.render_as_string(hide_password=True)})."
        except (sa.exc.ArgumentError, ValueError):
            what = f"{given!r} is not a database URL." if "@" not in given else "The URL given is not a database URL."
        raise LabError(
            f"{what} The workshop needs the URL of a PostgreSQL server.",
            "Give --server postgresql://USER:PASSWORD@HOST:PORT/postgres (a superuser's, or a role's with "
            "CREATEROLE and CREATEDB), or set LAB_WORKSHOP_URL.",
        ) from None


def server_url(given: str | None) -> str:
    """--server, else LAB_WORKSHOP_URL; a LabError saying how to give one otherwise."""
    url = given or os.environ.get("LAB_WORKSHOP_URL")
    if not url:
        raise LabError(
            "No workshop server given.",
            "Pass --server postgresql://USER:PASSWORD@HOST:PORT/postgres (a superuser, or a role with CREATEROLE "
            "and CREATEDB), or set LAB_WORKSHOP_URL.",
        )
    return url
