"""Workshop mode: one shared PostgreSQL for a room of learners, each in a database of their own.

The instructor (a superuser, or a role with CREATEROLE and CREATEDB) runs:

- `init`: one template database per distinct chapter checkpoint (see
  `templates`), owned by the NOLOGIN role `mlab_templates`, `IS_TEMPLATE`,
  accepting no connections;
- `add`/`ensure`: per learner a login role (generated password, a connection
  limit, CREATEDB) and its database `lab_<name>`, cloned from chapter 00's
  template, owned by the learner, closed to everyone else
  (`REVOKE CONNECT ... FROM PUBLIC`); the learner's URL goes to the roster, a
  0600 file only the instructor reads;
- `reset`: drop and re-clone a learner's database from a chapter's template;
- `status`: per learner, what `ch.check()` recorded (see `progress`);
- `remove`/`drop`: nothing left behind, no role, no database.

Why learners get CREATEDB: the kit rehearses every command on a clone of the
learner's database (`CREATE DATABASE ... TEMPLATE`) and runs the migration
tests in a scratch database, and a learner's own reset re-clones from the
templates. CREATEDB lets a role clone only databases it owns or templates,
never another learner's database; templates hold course data only, and only
`mlab_templates` (NOLOGIN) may change them.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database.connection import LabDatabase
from ..database.sql import quote
from ..database.url import UrlBackend, normalise
from ..errors import LabError
from ..project import Project, write_private
from ..workspace import progress, templates

TEMPLATE_OWNER = "mlab_templates"
LEARNER_ROLE = "migration-lab workshop learner"  # the COMMENT that marks a learner's role
DATABASE_PREFIX = "lab_"
CONNECTION_LIMIT = 8  # a notebook's command, its lock, a rehearsal's copy and the maintenance db, a second notebook
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
RESERVED = re.compile(r"(pg_|mlab_|postgres$)")

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default: say nothing (the CLI passes print)."""


@dataclass(frozen=True)
class Learner:
    name: str
    database_url: str  # postgresql+psycopg2://learnerNN:PASSWORD@host:port/lab_learnerNN (what LAB_DATABASE_URL gets)


@dataclass(frozen=True)
class LearnerStatus:
    """One line of the room view."""

    name: str
    chapter: str | None  # None: no check recorded yet
    passed: int
    total: int
    last_error: str | None
    minutes_since_progress: int | None
    sessions: int  # connections open to the learner's database now

    @property
    def stuck(self) -> bool:
        """An error, and no check gained for 10 minutes or more: worth a visit."""
        return bool(self.last_error) and (self.minutes_since_progress or 0) >= 10


def database_name(name: str) -> str:
    return f"{DATABASE_PREFIX}{name}"


def learner_names(count: int, start: int = 1) -> list[str]:
    """learner01, learner02, ... (three digits from 100 learners on, so they sort)."""
    width = max(2, len(str(start + count - 1)))
    return [f"learner{n:0{width}d}" for n in range(start, start + count)]


def _check_name(name: str) -> str:
    if not NAME.fullmatch(name) or RESERVED.match(name):
        raise LabError(
            f"{name!r} cannot be a learner's name.",
            "Use lowercase letters, digits and _ (a letter first, at most 40), not starting with pg_ or mlab_.",
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
    ) -> None:
        self.url = make_url(normalise(server_url, "The workshop server's URL (--server or LAB_WORKSHOP_URL)"))
        self.roster = Path(roster) if roster else default_roster()
        self.connection_limit = connection_limit
        self.say = say
        self._project = project

    @property
    def where(self) -> str:
        return f"{self.url.host or 'localhost'}:{self.url.port or 5432}"

    # --- connections -----------------------------------------------------------------

    @contextmanager
    def _admin(self) -> Iterator[sa.Connection]:
        engine = templates.admin_engine(self.url.render_as_string(hide_password=False))
        try:
            try:
                conn = engine.connect()
            except sa.exc.OperationalError as error:
                raise LabError(
                    f"Cannot reach the workshop server {self.where}: {str(error.orig).strip()}",
                    "Check the server URL (--server or LAB_WORKSHOP_URL): a superuser's, or a role's with "
                    "CREATEROLE and CREATEDB.",
                ) from error
            with conn:
                yield conn
        finally:
            engine.dispose()

    def _database(self, database: str) -> LabDatabase:
        return LabDatabase(self.url.set(database=database).render_as_string(hide_password=False))

    def _learner_url(self, name: str, password: str) -> str:
        return self.url.set(username=name, password=password, database=database_name(name)).render_as_string(
            hide_password=False
        )

    # --- the roster: the learners' URLs, for the instructor only --------------------

    @contextmanager
    def _roster_locked(self) -> Iterator[dict[str, str]]:
        """The roster's learners, to change in place; written back 0600 after. One writer at a time (a hub's
        spawn hooks may provision several learners at once)."""
        self.roster.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.roster.with_name(self.roster.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            learners = self.learners()
            yield learners
            document = {"server": self.url.render_as_string(hide_password=True), "learners": learners}
            write_private(self.roster, json.dumps(document, indent=2) + "\n")

    def learners(self) -> dict[str, str]:
        """{name: LAB_DATABASE_URL} from the roster (empty when there is none yet)."""
        try:
            return dict(json.loads(self.roster.read_text())["learners"])
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as error:
            raise LabError(
                f"The roster {self.roster} is not a workshop roster ({error}).",
                "Move it away; `workshop ensure NAME` sets a new password for a learner missing from it.",
            ) from error

    # --- init --------------------------------------------------------------------------

    def init(self) -> None:
        """One template per distinct chapter checkpoint; idempotent (current ones are kept, stale ones dropped)."""
        from ..course.registry import CHAPTERS

        wanted = {templates.template_name(c.checkpoint.fingerprint()): c for c in CHAPTERS.values()}
        with self._admin() as conn:
            if not conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": TEMPLATE_OWNER}):
                conn.execute(sa.text(f"CREATE ROLE {TEMPLATE_OWNER} NOLOGIN"))
            present: dict[str, bool] = dict(
                conn.execute(
                    sa.text("SELECT datname, datistemplate FROM pg_database WHERE datname LIKE :p"),
                    {"p": templates.TEMPLATE_PREFIX + "%"},
                ).all()
            )
            for name in sorted(set(present) - set(wanted)):
                self._drop_template(conn, name)
                self.say(f"Dropped {name}: a template of another version of the course.")
            for name, chapter in wanted.items():
                chapters = ", ".join(n for n, c in CHAPTERS.items() if c.checkpoint is chapter.checkpoint)
                if present.get(name):
                    self.say(f"Template {name} (chapters {chapters}) is there already.")
                    continue
                self._build_template(conn, name, chapter.checkpoint)
                self.say(f"Template {name} (chapters {chapters}) is ready.")
        warning = self.connection_warning(len(self._learner_roles()))
        if warning:
            self.say(warning)

    def _project_for_templates(self) -> Project:
        return self._project or Project.find()

    def _build_template(self, conn: sa.Connection, name: str, checkpoint: object) -> None:
        """Build through the kit's own reset, in a throw-away copy of ai-service/, then seal it."""
        from ..lab import Lab
        from ..workspace import checkpoints
        from ..workspace.checkpoints import Checkpoint, restore_files

        assert isinstance(checkpoint, Checkpoint)
        if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": name}):
            self._drop_template(conn, name)  # half-built by an interrupted init
        conn.execute(sa.text(f"CREATE DATABASE {quote(name)} OWNER {TEMPLATE_OWNER}"))
        with tempfile.TemporaryDirectory(prefix="mlab-template-") as tmp:
            project = Project(Path(tmp))
            (project.service_dir / "migrations").mkdir(parents=True)
            shutil.copy(self._project_for_templates().service_dir / "alembic.ini", project.service_dir)
            restore_files(project, checkpoint)
            lab = Lab(project, UrlBackend(self.url.set(database=name).render_as_string(hide_password=False)))
            try:
                checkpoints.reset(lab, checkpoint)
                with lab.db.connect() as template, template.begin():
                    templates.give_to_database_owner(template)
            finally:
                lab.db.dispose()
        conn.execute(sa.text(f"REVOKE CONNECT, TEMPORARY ON DATABASE {quote(name)} FROM PUBLIC"))
        conn.execute(sa.text(f"ALTER DATABASE {quote(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"))

    def _drop_template(self, conn: sa.Connection, name: str) -> None:
        conn.execute(sa.text(f"ALTER DATABASE {quote(name)} WITH IS_TEMPLATE false"))
        conn.execute(sa.text(f"DROP DATABASE {quote(name)} WITH (FORCE)"))

    def _template(self, conn: sa.Connection, chapter: str) -> str:
        from ..course.registry import spec

        name = templates.template_name(spec(chapter).checkpoint.fingerprint())
        if not conn.scalar(sa.text("SELECT datistemplate FROM pg_database WHERE datname = :d"), {"d": name}):
            raise LabError(
                f"The workshop server {self.where} has no template for chapter {spec(chapter).number}.",
                "Run `python -m migration_lab workshop init` first (again after a course update).",
            )
        return name

    def connection_warning(self, learners: int) -> str | None:
        """A warning when the learners' connection limits add up to more than the server allows."""
        with self._admin() as conn:
            limit = int(conn.scalar(sa.text("SHOW max_connections")) or 0)
            reserved = int(conn.scalar(sa.text("SHOW superuser_reserved_connections")) or 0)
        need = learners * self.connection_limit
        if need <= limit - reserved:
            return None
        return (
            f"Warning: {learners} learners × {self.connection_limit} connections each = {need}, but the server "
            f"allows {limit} ({reserved} of them reserved for superusers). A notebook holds 2-3 connections while "
            f"a command runs: with everyone busy some would get 'too many connections'. Raise max_connections "
            f"(ALTER SYSTEM SET max_connections = {need + reserved + 10}; then restart the server), or give "
            "fewer connections per learner (--connection-limit)."
        )

    # --- learners ----------------------------------------------------------------------

    def _learner_roles(self) -> list[str]:
        with self._admin() as conn:
            return list(
                conn.scalars(
                    sa.text(
                        "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = :mark ORDER BY 1"
                    ),
                    {"mark": LEARNER_ROLE},
                )
            )

    def add(self, name: str) -> Learner:
        """A new learner: role, database cloned from chapter 00's template, URL in the roster.

        Raises LabError if the role exists already (`ensure` takes it as it is).
        """
        _check_name(name)
        with self._roster_locked() as roster, self._admin() as conn:
            if conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": name}):
                raise LabError(
                    f"The role {name} exists already on {self.where}.",
                    f"Pick another name, or `workshop remove {name}` first (that drops its database).",
                )
            learner = self._provision(conn, name)
            roster[name] = learner.database_url
        return learner

    def _provision(self, conn: sa.Connection, name: str) -> Learner:
        """The role (a generated password, CREATEDB, the connection limit) and its database."""
        template = self._template(conn, "00")
        self._refuse_foreign_database(conn, name)
        password = secrets.token_urlsafe(18)
        conn.execute(
            sa.text(
                f"CREATE ROLE {quote(name)} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE "
                f"CONNECTION LIMIT {int(self.connection_limit)} PASSWORD :password"
            ),
            {"password": password},
        )
        conn.execute(sa.text(f"COMMENT ON ROLE {quote(name)} IS '{LEARNER_ROLE}'"))
        templates.clone(conn, database_name(name), template, owner=name)
        return Learner(name, self._learner_url(name, password))

    def _refuse_foreign_database(self, conn: sa.Connection, name: str) -> None:
        """A database `lab_<name>` the workshop did not make is never dropped to make room for a learner."""
        mark = conn.execute(
            sa.text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :d"),
            {"d": database_name(name)},
        ).first()
        if mark is not None and mark[0] != templates.LEARNER_DATABASE:
            raise LabError(
                f"A database {database_name(name)} exists on {self.where}, and the workshop did not make it.",
                "Pick another name for this learner: the workshop never drops a database it did not make.",
            )

    def ensure(self, name: str) -> Learner:
        """The learner, added if missing: what a hub's spawn hook calls at every login.

        A learner whose role exists but whose URL the roster lacks (a lost
        roster) gets a new password; a missing database is cloned again. All of
        it under the roster's lock: two logins at once provision once.
        """
        _check_name(name)
        with self._roster_locked() as roster, self._admin() as conn:
            found = conn.execute(
                sa.text("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = :r"), {"r": name}
            ).first()
            if found is None:
                learner = self._provision(conn, name)
                roster[name] = learner.database_url
                return learner
            if found[0] != LEARNER_ROLE:
                raise LabError(
                    f"The role {name} on {self.where} is not a workshop learner's.",
                    "Pick another name: the workshop never takes over a role it did not make.",
                )
            url = roster.get(name)
            if url is None:
                password = secrets.token_urlsafe(18)
                conn.execute(sa.text(f"ALTER ROLE {quote(name)} PASSWORD :password"), {"password": password})
                url = roster[name] = self._learner_url(name, password)
                self.say(f"{name} had no URL in {self.roster}: set a new password.")
            if not conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database_name(name)}):
                templates.clone(conn, database_name(name), self._template(conn, "00"), owner=name)
                self.say(f"{name} had no database: cloned it from chapter 00's template.")
        return Learner(name, url)

    def reset(self, name: str, chapter: str) -> None:
        """Drop the learner's database (closing their sessions) and clone it from the chapter's template.

        The learner's progress records are kept. Their files (ai-service/ in
        their own checkout) are theirs to reset: the chapter's first cell does.
        """
        from ..course.registry import spec

        number = spec(chapter).number
        database = database_name(self._known(name))
        saved = self._saved_progress(database)
        with self._admin() as conn:
            closed = templates.clone(conn, database, self._template(conn, number), owner=name)
        learner_db = self._database(database)
        try:
            progress.restore(learner_db, saved, role=name)
        finally:
            learner_db.dispose()
        sessions = f"closed {closed} open session(s), " if closed else ""
        self.say(f"{name}: {sessions}dropped {database} and cloned it from chapter {number}'s template.")

    def _known(self, name: str) -> str:
        _check_name(name)
        if name not in self._learner_roles():
            raise LabError(
                f"{name} is not a learner of the workshop on {self.where}.",
                "`python -m migration_lab workshop status` lists them.",
            )
        return name

    def _saved_progress(self, database: str) -> list[dict]:
        db = self._database(database)
        try:
            with db.connect() as conn:
                return progress.saved(conn)
        except LabError:
            return []  # no database to carry anything from
        finally:
            db.dispose()

    def status(self) -> list[LearnerStatus]:
        """Per learner: the chapter last checked, checks passed, last error, minutes since they got further."""
        names = self._learner_roles()
        with self._admin() as conn:
            sessions: dict[str, int] = dict(
                conn.execute(
                    sa.text("SELECT usename, count(*) FROM pg_stat_activity WHERE usename = ANY(:n) GROUP BY 1"),
                    {"n": names},
                ).all()
            )
        found = []
        for name in names:
            db = self._database(database_name(name))
            try:
                with db.connect() as conn:
                    latest = progress.latest(conn)
            except (LabError, sa.exc.DBAPIError):
                latest = None
            finally:
                db.dispose()
            if latest is None:
                found.append(LearnerStatus(name, None, 0, 0, None, None, int(sessions.get(name, 0))))
            else:
                found.append(
                    LearnerStatus(
                        name,
                        latest.chapter,
                        latest.passed,
                        latest.total,
                        latest.last_error,
                        latest.minutes_since_progress,
                        int(sessions.get(name, 0)),
                    )
                )
        return found

    def remove(self, name: str) -> None:
        """The learner's role, its databases (its own, scratch and rehearsal copies) and its roster line."""
        self._known(name)
        with self._admin() as conn:
            owned = list(
                conn.scalars(
                    sa.text(
                        "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = :r)"
                    ),
                    {"r": name},
                )
            )
            conn.execute(sa.text(f"ALTER ROLE {quote(name)} NOLOGIN"))  # no new session while we drop
            for database in owned:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(database)} WITH (FORCE)"))
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": name}
            )
            conn.execute(sa.text(f"DROP OWNED BY {quote(name)}"))  # grants and objects in the maintenance database
            try:
                conn.execute(sa.text(f"DROP ROLE {quote(name)}"))
            except sa.exc.DBAPIError as error:
                raise LabError(
                    f"Could not drop the role {name}: {str(error.orig).strip()}",
                    f"Drop what it still owns in the databases named above (DROP OWNED BY {name} there), then "
                    f"`workshop remove {name}` again.",
                ) from error
        with self._roster_locked() as roster:
            roster.pop(name, None)
        self.say(f"Removed {name}: its role and {len(owned)} database(s) ({', '.join(owned) or 'none'}).")

    def drop(self) -> None:
        """Everything the workshop made on the server: learners, their databases, the templates, the roster."""
        for name in self._learner_roles():
            self.remove(name)
        with self._admin() as conn:
            names = list(
                conn.scalars(
                    sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                    {"p": templates.TEMPLATE_PREFIX + "%"},
                )
            )
            for name in names:
                self._drop_template(conn, name)
            if conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": TEMPLATE_OWNER}):
                conn.execute(sa.text(f"DROP ROLE {TEMPLATE_OWNER}"))
        self.roster.unlink(missing_ok=True)
        self.roster.with_name(self.roster.name + ".lock").unlink(missing_ok=True)
        self.say(f"Dropped the workshop on {self.where}: {len(names)} template(s), every learner, the roster.")


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
