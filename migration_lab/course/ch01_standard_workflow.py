"""Chapter 01's exercise: a last_login column the database fills, for the rows it has too.

Whether a revision adds the column is judged by replaying the revisions on a copy (down to the chapter's
start and back), not by how the revision is written: autogenerate's op.add_column, a hand-written one with
double quotes, or plain SQL in op.execute all pass; a downgrade() that does not remove the column fails. The
rows are judged there too: after the revisions ran again over the copy's profiles, each must have a last_login
(rows filled by hand in the learner's database alone would stay empty in every other one).
"""

from dataclasses import dataclass

import sqlalchemy as sa

from ..database.connection import LabDatabase
from ..lab import Lab
from . import checks
from .checks import Check, model_line
from .round_trip import Replayed, replay

LAST_LOGIN = "last_login = Column(DateTime(timezone=True), server_default=func.now())"
START = "8b7e5d2c6a41"  # where the chapter starts: the baseline's head
FILL = 'op.execute("UPDATE user_profiles SET last_login = now() WHERE last_login IS NULL")'


def _has_last_login(db: LabDatabase) -> bool:
    with db.connect() as conn:
        return any(c["name"] == "last_login" for c in sa.inspect(conn).get_columns("user_profiles"))


LATER = "later@example.org"  # a profile the replay signs up at the chapter's start, after the rows the copy has
LATER_EMPTY = "the profile the check signed up at the chapter's start, after your rows, has no last_login"


def _sign_up_later(db: LabDatabase) -> None:
    """At the chapter's start, one more profile than the learner's database had: a revision that fills the rows
    it knew of (by id, by email) leaves the ones production has by then empty."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email) SELECT 'Later', :email "
                "WHERE NOT EXISTS (SELECT 1 FROM user_profiles WHERE email = :email)"
            ),
            {"email": LATER},
        )


def _empty_last_logins(db: LabDatabase) -> str | None:
    with db.connect() as conn:
        empty, later = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE email <> :email), count(*) FILTER (WHERE email = :email) "
                "FROM user_profiles WHERE last_login IS NULL"
            ),
            {"email": LATER},
        ).one()
    return f"{empty} profile(s) have no last_login" if empty else LATER_EMPTY if later else None


DEFAULT_NAME = "user_profiles.last_login defaults to the current time in the database"
AWARE_NAME = "user_profiles.last_login is timezone-aware (timestamp with time zone)"
ZONES = ("UTC", "Pacific/Kiritimati", "America/Adak")  # UTC, UTC+14 and UTC-10 (-9 in summer)
LAST_LOGIN_TYPE_AND_DEFAULT = sa.text(
    "SELECT format_type(a.atttypid, a.atttypmod), a.atttypid = 'timestamptz'::regtype, "
    "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = to_regclass('user_profiles') AND a.attname = 'last_login' AND NOT a.attisdropped"
)


@dataclass(frozen=True)
class LastLogin:
    """user_profiles.last_login as the database has it."""

    type: str  # as PostgreSQL names it: timestamp with time zone
    aware: bool  # timestamptz, whatever its precision
    default: str | None  # the default's SQL
    now: bool  # that default gives the current time when a row is inserted


def _last_login(db: LabDatabase) -> LastLogin | None:
    """last_login's type and default, None without the column. The default is evaluated, so now(),
    CURRENT_TIMESTAMP and clock_timestamp() all count; a literal ('now' and 'now()' become the time the column was
    added, a fixed date) does not, even within the minute it was written. It is evaluated in sessions of time zones
    far apart, as the app's and psql's may be: timezone('UTC', now()) is UTC's wall-clock time without its zone,
    which a timestamptz column reads in the inserting session's zone, so it is the current time in UTC alone."""
    with db.connect() as conn:
        row = conn.execute(LAST_LOGIN_TYPE_AND_DEFAULT).first()
        if row is None:
            return None
        type_name, aware, default = row
        if default is None or default.lstrip().startswith("'"):
            return LastLogin(type_name, bool(aware), default, False)
        try:  # the learner's own expression, with their own credentials: read-only, briefly, rolled back
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql("SET LOCAL statement_timeout = '2s'")
            offs = []
            for zone in ZONES:  # as sessions far apart insert: timezone('UTC', now()) is right in UTC alone
                conn.exec_driver_sql(f"SET LOCAL TimeZone = '{zone}'")
                offs.append(
                    conn.exec_driver_sql(f"SELECT abs(extract(epoch FROM ({default})::timestamptz - now()))").scalar()
                )
        except sa.exc.SQLAlchemyError:
            return LastLogin(type_name, bool(aware), default, False)
    return LastLogin(type_name, bool(aware), default, all(off is not None and off < 60 for off in offs))


def _replayed(lab: Lab) -> Replayed | None:
    """The revisions since the chapter's start, down and up again on a copy: they must add last_login, and fill
    it for the rows there are (a database that runs them, CI or production, gets only what they do)."""
    return replay(
        lab,
        START,
        at_head=lambda db: None if _has_last_login(db) else "no revision adds user_profiles.last_login yet",
        downgraded=lambda db: (
            "user_profiles still has last_login: no downgrade() removes it" if _has_last_login(db) else None
        ),
        below=_sign_up_later,
        upgraded_again=_empty_last_logins,
    )


def _revision_hints(replayed: Replayed | None) -> checks.Hints:
    if replayed is None or replayed.step == "at head":
        return (
            "The model changed, the database did not: Alembic needs a revision file that says how.",
            "Autogenerate compares the models with the database and writes it: "
            "ch.alembic('revision --autogenerate -m \"...\"'). Read it with ch.show_revision().",
            "ch.alembic('revision --autogenerate -m \"add last login\"')",
        )
    if replayed.step == "upgrade":
        return (
            f"Replayed on a copy of your database, {replayed}. The revision's upgrade() must run.",
            "Read the error, fix upgrade() in the revision file, and try `alembic upgrade head` again.",
            "ch.reset(), then the solution's three steps: ch.solution() shows them",
        )
    if LATER_EMPTY in replayed.problem:
        return (
            f"Replayed on a copy of your database (down to {START} and back), {replayed}: your revision does not "
            "fill every row, only (at most) the ones your database had. Production has other profiles than yours by "
            "the time it runs.",
            "Fill by what is missing, not by which rows you have: UPDATE ... WHERE last_login IS NULL (or add the "
            "column with its server_default in one step: the database fills every row then).",
            "ch.reset(), then the solution's steps (one add_column with its server_default): ch.solution() shows them",
        )
    return (
        f"Replayed on a copy of your database (down to {START} and back), {replayed}. A downgrade() undoes its "
        "upgrade(), so the history can go back and forth.",
        "Open the revision file: downgrade() drops exactly what upgrade() added: "
        "op.drop_column('user_profiles', 'last_login').",
        "ch.rewrite_revision(downgrade=\"op.drop_column('user_profiles', 'last_login')\")",
    )


def exercise(lab: Lab, answer: object) -> list[Check]:
    line = model_line(lab, "UserProfile", "last_login") or ""
    values = checks.column_values(lab, "user_profiles", "last_login")
    empty = sum(v is None for v in values) if values is not None else None
    mapped = checks.model_column(lab, "UserProfile", "last_login")  # as loaded: Column or Mapped, one line or more
    server_default = mapped is not None and mapped.server_default is not None
    python_default = mapped is not None and mapped.default is not None and not server_default
    replayed = _replayed(lab)
    found = _last_login(lab.db)
    # filled in this database only (the rows the check adds on the copy aside: a fill by id misses those)
    by_hand = replayed is not None and replayed.step == "upgraded again" and LATER_EMPTY not in replayed.problem
    if empty == 0 and by_hand:
        filled_hints: checks.Hints = (
            f"Your database's profiles all have a last_login, but replayed on a copy, {replayed}: the rows were "
            "filled by hand, not by a revision, and every other database (CI, production) runs only the revisions.",
            "Fill the old rows in a data migration: a revision whose upgrade() runs "
            'op.execute("UPDATE ..."), or add the column with its server_default in one step (ch.reset() first).',
            "ch.alembic('revision -m \"fill last login\"'); "
            f"ch.rewrite_revision(upgrade='{FILL}'); "
            'ch.alembic("upgrade head")',
        )
    elif empty is None:
        filled_hints = "The column is not in the database yet: generate the revision and upgrade first."
    else:
        filled_hints = (
            f"{empty} profile(s) have no last_login. A default only fills rows inserted after it exists: a "
            "`default=` is applied by Python when the app inserts, and a server_default added to a column "
            "that is already there applies to new rows only.",
            "Either add the column with its server_default in one step (the database fills every existing row "
            "then: ch.reset() and start again), or fill the old rows in a data migration: an empty revision whose "
            'upgrade() runs op.execute("UPDATE ...").',
            "ch.alembic('revision -m \"fill last login\"'); "
            f"ch.rewrite_revision(upgrade='{FILL}'); "
            'ch.alembic("upgrade head")',
        )
    return [
        checks.model_maps(
            lab,
            "UserProfile",
            "last_login",
            (
                "Every schema change starts in the model: class UserProfile in ai-service/main.py needs a "
                "last_login column, a timestamp the database fills in.",
                'ch.add_column("UserProfile", "last_login = Column(...)"): a DateTime(timezone=True) with '
                "server_default=func.now() (DateTime and func are imported already).",
                f'ch.add_column("UserProfile", "{LAST_LOGIN}")',
            ),
        ),
        Check(
            "a revision adds user_profiles.last_login, and its downgrade removes it (replayed on a copy)",
            replayed is None or by_hand,
            _revision_hints(replayed),
        ),
        checks.column_exists(
            lab,
            "user_profiles",
            "last_login",
            (
                "The revision is written but the database does not have the column yet: apply it.",
                "Upgrade the database to the newest revision (head).",
                'ch.alembic("upgrade head")',
            ),
        ),
        Check(
            AWARE_NAME,
            found is not None and found.aware,
            (
                f"The database's last_login is {found.type if found else 'not there yet'}: a timestamp without time "
                "zone keeps the wall-clock time and forgets which zone it was, so a login from Tokyo and one "
                "from London cannot be compared.",
                "DateTime(timezone=True) in the model is PostgreSQL's timestamptz. Fix main.py, then autogenerate "
                "(it writes the ALTER COLUMN ... TYPE) and upgrade, or ch.reset() and add the column again.",
                f"ch.edit_model({line!r}, {LAST_LOGIN!r})" if line else f'ch.add_column("UserProfile", "{LAST_LOGIN}")',
            ),
        ),
        Check(
            DEFAULT_NAME,
            found is not None and found.now,
            (
                "The database has no default for last_login, although main.py has server_default=: the revision "
                "that added the column was written without it, so every new profile gets NULL.",
                "Generate a revision for the difference (autogenerate sees the missing default and writes the "
                "ALTER COLUMN ... SET DEFAULT), then upgrade.",
                'ch.alembic(\'revision --autogenerate -m "last login default"\'); ch.alembic("upgrade head")',
            )
            if found is not None and not found.default and server_default
            else (
                "main.py says `default=`: that value is applied by Python when the app inserts a row; the database "
                "never sees it, so existing rows (and rows inserted by psql) get NULL."
                if python_default
                else f"The database's default for last_login is {found.default}: that is not the current time (a "
                "quoted 'now' is the time the column was added, fixed for good; timezone('UTC', now()) is UTC's "
                "wall-clock time, which a timestamptz reads in the inserting session's time zone)."
                if found and found.default
                else "The database has no default for last_login, so the rows it has (and new ones) get NULL.",
                "server_default=func.now() in the model is a default the database keeps (DEFAULT now()). Fix "
                "main.py and generate a new revision: it only sets the default, which fills new rows, not the "
                f"ones already there; add {FILL} to that revision's upgrade(), then upgrade. Or ch.reset() and "
                "add the column with its server_default in one step: the database then fills every row.",
                f"ch.edit_model({line!r}, {LAST_LOGIN!r}), then autogenerate and upgrade head"
                if line
                else f'ch.add_column("UserProfile", "{LAST_LOGIN}")',
            ),
        ),
        Check("every existing profile has a last_login", empty == 0 and not by_hand, filled_hints),
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ.",
                "Generate a revision for the difference, read it, and upgrade.",
                'ch.alembic(\'revision --autogenerate -m "..."\'); ch.alembic("upgrade head")',
            ),
        ),
    ]
