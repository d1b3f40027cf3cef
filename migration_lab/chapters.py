"""The chapters: each one's title, starting checkpoint, and exercise checks."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import checks, deploy
from .checks import Check
from .errors import LabError
from .lab import Lab
from .workspace import (
    BASELINE_CHECKPOINT,
    WITH_PHONE_NUMBER,
    Checkpoint,
    ResetReport,
    load_models,
    restore_checkpoint,
    teammate_arrives,
)

SEED_NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]


@dataclass(frozen=True)
class ChapterSpec:
    number: str
    title: str
    checkpoint: Checkpoint
    exercise: Callable[[Lab, object], list[Check]]
    # Puts the lab where the exercise starts (a teammate's branch, a broken env.py); says what it did.
    exercise_setup: Callable[[Lab], str] | None = None


def _mixed_case_sign_up(lab: Lab) -> str:
    with lab.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email) VALUES ('Edsger Dijkstra', 'Edsger.Dijkstra@Example.ORG') "
                "ON CONFLICT (email) DO NOTHING"
            )
        )
    return "A new sign-up, typed with capitals: Edsger.Dijkstra@Example.ORG. Logins compare lowercase emails."


def _carol_arrives(lab: Lab) -> str:
    """Carol's branch, from a1c4e7f20b13, next to work of yours that also starts there: two heads."""
    said = ""
    if lab.runner.script().get_heads() == ["a1c4e7f20b13"]:
        # Straight from the chapter's checkpoint (ch.solution() starts there): no revision of yours on top of
        # a1c4e7f20b13 yet, so Bob's (merged into your branch already) plays that part.
        revision, _ = teammate_arrives(lab.project, "bob")
        said = f"Your branch has Bob's revision ai-service/migrations/versions/{revision} (UserSettings.language). "
    revision, _ = teammate_arrives(lab.project, "carol")
    return (
        f"{said}Carol's branch arrived: her model change (UserSettings.timezone) and "
        f"ai-service/migrations/versions/{revision}. Her branch started from a1c4e7f20b13."
    )


BROKEN_ENV_IMPORT = "from main import Base, JobQueue  # noqa: E402  (needs the sys.path line above)"


def _break_the_lab(lab: Lab) -> str:
    """A colleague's "quick fix": env.py imports a model that does not exist, tables made by create_all."""
    env = lab.project.service_dir / "migrations" / "env.py"
    with lab.runner.exclusive() as conn:  # the database first: if it is down, no file changes
        env.write_text(re.sub(r"(?m)^from main import .*$", BROKEN_ENV_IMPORT, env.read_text(), count=1))
        lab.db.wipe(conn)
        load_models(lab.project).Base.metadata.create_all(conn)
        conn.commit()
    return (
        "A colleague's quick fix: migrations/env.py now imports a model `JobQueue`, and the database was "
        "rebuilt with Base.metadata.create_all() (no alembic_version). Make `alembic upgrade head` work."
    )


def _revision_with_message(lab: Lab, message: str) -> str | None:
    for script in lab.runner.script().walk_revisions():
        if (script.doc or "").strip() == message:
            return script.revision
    return None


def _revision_texts(lab: Lab) -> dict[str, str]:
    """{file name: text} of every revision file."""
    return {p.name: p.read_text() for p in sorted(lab.project.versions_dir.glob("*.py"))}


def _any_revision(lab: Lab, pattern: str) -> bool:
    return any(re.search(pattern, text) for text in _revision_texts(lab).values())


def _model_line(lab: Lab, model: str, attribute: str) -> str | None:
    """The line of main.py that defines `model.attribute`, or None."""
    source = (lab.project.service_dir / "main.py").read_text()
    match = re.search(rf"(?ms)^class {model}\(.*?(?=^\S|\Z)", source)
    found = re.search(rf"(?m)^\s+{attribute}\s*=.*$", match.group(0)) if match else None
    return found.group(0).strip() if found else None


REVISION_ID = re.compile(r"[0-9a-f]{12}")


def _answer_hints(
    answer: object, expected: str | None, concept: str, command: str, what: str, code: str
) -> checks.Hints:
    """Hints for a revision id typed as the answer: the specific mistake first."""
    if isinstance(answer, str):
        text = answer.strip()
        if text != answer or " " in text or "(" in text or "," in text:
            inner = REVISION_ID.search(text)
            return (
                f'Your answer {answer!r} is more than an id. Alembic adds notes such as "(head)", the arrow and the '
                "message to what it prints; the answer is the 12-character revision id alone.",
                f'answer = "{inner.group(0)}"' if inner else code,
            )
        if not REVISION_ID.fullmatch(text):
            return (
                f"{answer!r} is not a revision id: those are 12 characters, digits and a-f, like 0123456789ab.",
                f"{command} prints them; copy {what}.",
                code,
            )
        return (
            f"{answer!r} is a revision id, but not {what}.",
            f"Look again at what {command} prints.",
            code,
        )
    if answer is not None:
        return (f'Give the id as a string, in quotes: answer = "..." (you gave {type(answer).__name__}).', code)
    return (
        concept,
        f'{command} prints it. Give {what} as a string, the 12-character id alone: answer = "..."',
        code,
    )


def _start_here(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.database_heads()
    expected = heads[0] if heads else None
    return [
        checks.answer_is(
            answer,
            expected,
            "your answer is the database's current revision",
            _answer_hints(
                answer,
                expected,
                "Alembic keeps the revision the database is at in its table alembic_version; "
                "`alembic current` reads it for you.",
                'The console\'s `current` button (or ch.alembic("current"))',
                "the revision the database is at",
                f'answer = "{expected}"',
            ),
        )
    ]


LAST_LOGIN = "last_login = Column(DateTime(timezone=True), server_default=func.now())"


def _standard_workflow(lab: Lab, answer: object) -> list[Check]:
    line = _model_line(lab, "UserProfile", "last_login") or ""
    values = checks.column_values(lab, "user_profiles", "last_login")
    empty = sum(v is None for v in values) if values is not None else None
    python_default = "default=" in line and "server_default=" not in line
    if empty is None:
        filled_hints: checks.Hints = "The column is not in the database yet: generate the revision and upgrade first."
    else:
        filled_hints = (
            f"{empty} profile(s) have no last_login. A default only fills rows inserted after it exists: a "
            "`default=` is applied by Python when the app inserts, and a server_default added to a column "
            "that is already there applies to new rows only.",
            "Either add the column with its server_default in one step (the database fills every existing row "
            "then: ch.reset() and start again), or fill the old rows in a data migration: an empty revision whose "
            'upgrade() runs op.execute("UPDATE ...").',
            f'ch.reset(), then ch.add_column("UserProfile", "{LAST_LOGIN}"), '
            'ch.alembic(\'revision --autogenerate -m "add last login"\'), ch.alembic("upgrade head")',
        )
    return [
        checks.model_has(
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
        checks.a_revision_file_matches(
            lab,
            r"add_column\(\s*'user_profiles',\s*sa\.Column\('last_login'",
            "adds user_profiles.last_login",
            (
                "The model changed, the database did not: Alembic needs a revision file that says how.",
                "Autogenerate compares the models with the database and writes it: "
                "ch.alembic('revision --autogenerate -m \"...\"'). Read it with ch.show_revision().",
                "ch.alembic('revision --autogenerate -m \"add last login\"')",
            ),
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
        checks.column_has_server_default(
            lab,
            "user_profiles",
            "last_login",
            (
                "main.py says `default=`: that value is applied by Python when the app inserts a row; the database "
                "never sees it, so existing rows (and rows inserted by psql) get NULL."
                if python_default
                else "The database has no default for last_login, so the rows it has (and new ones) get NULL.",
                "server_default=func.now() in the model is a default the database keeps (DEFAULT now()). "
                "Fix main.py, then generate a new revision and upgrade - or ch.reset() and start again.",
                f'ch.edit_model("{line}", "{LAST_LOGIN}"), then autogenerate and upgrade head'
                if line
                else f'ch.add_column("UserProfile", "{LAST_LOGIN}")',
            ),
        ),
        Check("every existing profile has a last_login", empty == 0, filled_hints),
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ.",
                "Generate a revision for the difference, read it, and upgrade.",
                'ch.alembic(\'revision --autogenerate -m "..."\'); ch.alembic("upgrade head")',
            ),
        ),
    ]


RENAME_UP = "op.alter_column('user_profiles', 'name', new_column_name='full_name')"
RENAME_DOWN = "op.alter_column('user_profiles', 'full_name', new_column_name='name')"


def _never_trust_autogenerate(lab: Lab, answer: object) -> list[Check]:
    full_name = checks.column_values(lab, "user_profiles", "full_name")
    name = checks.column_values(lab, "user_profiles", "name")
    drop_add = _any_revision(lab, r"drop_column\(\s*'user_profiles',\s*'name'")
    kept = full_name is not None and sorted(v for v in full_name if v) == sorted(SEED_NAMES)
    if kept:
        survived = Check("the names are in user_profiles.full_name", True)
    elif full_name is not None and name is None:
        survived = Check(
            "the names are in user_profiles.full_name",
            False,
            (
                "The names are gone: user_profiles.name was dropped and full_name added empty (or filled with "
                "something else). That is what applying autogenerate's drop + add does.",
                "The values cannot come back from this database. Start again with ch.reset() (your files are backed "
                "up), and fix the revision before you upgrade.",
                f'ch.reset(); then rename, autogenerate, ch.rewrite_revision(upgrade="{RENAME_UP}", '
                f'downgrade="{RENAME_DOWN}"), upgrade head',
            ),
        )
    elif name is not None:
        survived = Check(
            "the names are in user_profiles.full_name",
            False,
            (
                "The names are still in user_profiles.name, safe: no revision has moved them yet"
                + (" (an upgrade that failed was rolled back)." if drop_add else ".")
                + " The rename has to happen in the database too.",
                "A rename in a revision: op.alter_column(table, old, new_column_name=new), then upgrade.",
                f'ch.rewrite_revision(upgrade="{RENAME_UP}", downgrade="{RENAME_DOWN}"); ch.alembic("upgrade head")',
            ),
        )
    else:
        survived = Check(
            "the names are in user_profiles.full_name",
            False,
            "user_profiles has neither name nor full_name: ch.reset() and start again.",
        )
    rename = checks.a_revision_file_matches(
        lab,
        r"alter_column\(\s*'user_profiles',\s*'name',[^)]*new_column_name='full_name'",
        "renames user_profiles.name with op.alter_column",
        (
            "Autogenerate wrote drop_column + add_column: it cannot tell a rename from a new column. Applied, "
            "that empties every name."
            if drop_add
            else "The model changed: generate a revision, and read it before you apply it.",
            "In upgrade(), one op.alter_column(table, old, new_column_name=new) instead of the drop and the add; "
            "in downgrade() the reverse. ch.rewrite_revision(upgrade=..., downgrade=...) rewrites them."
            if drop_add
            else "ch.alembic('revision --autogenerate -m \"...\"'), then ch.show_revision()",
            f'ch.rewrite_revision(upgrade="{RENAME_UP}", downgrade="{RENAME_DOWN}")',
        ),
    )
    apply = (
        "The fixed revision is not applied yet.",
        "Upgrade the database to head.",
        'ch.alembic("upgrade head")',
    )
    found = [
        checks.model_has(
            lab,
            "UserProfile",
            "full_name",
            (
                "The exercise renames UserProfile.name to full_name: the model first.",
                "ch.rename_column(model, old, new) renames an attribute in main.py.",
                'ch.rename_column("UserProfile", "name", "full_name")',
            ),
        ),
        checks.model_lacks(
            lab,
            "UserProfile",
            "name",
            ("Rename `name`, don't add a second column.", 'ch.rename_column("UserProfile", "name", "full_name")'),
        ),
        rename,
        checks.column_exists(lab, "user_profiles", "full_name", apply),
        checks.column_absent(lab, "user_profiles", "name", apply),
        survived,
    ]
    if full_name is not None and name is None and not kept:
        found.remove(survived)  # data lost: that is what the learner needs to hear first
        found.insert(0, survived)
    return found


def _rollback(lab: Lab, answer: object) -> list[Check]:
    return [
        checks.a_revision_file_matches(
            lab,
            r"revision: str = 'a1c4e7f20b13'",
            "for a1c4e7f20b13 (add phone number) still exists",
            (
                "A downgrade changes the database; the revision file stays, ready for the next upgrade. "
                "Deleted it? ch.reset() brings it back.",
            ),
        ),
        checks.database_at(
            lab,
            "8b7e5d2c6a41",
            {
                "a1c4e7f20b13": (
                    "The database is still at head: the exercise wants it one revision below.",
                    "A relative downgrade goes one step down. It drops phone_number, which holds data, so the lab "
                    "asks you to confirm.",
                    'ch.alembic("downgrade -1", confirm=True)',
                ),
                "3f1c2a9d4b10": (
                    "One step too far down.",
                    "A relative upgrade goes one step up.",
                    'ch.alembic("upgrade +1")',
                ),
                "base": (
                    "Much too far (base): the database has no tables at all.",
                    "Upgrade to an absolute revision: the one just below head.",
                    'ch.alembic("upgrade 8b7e5d2c6a41")',
                ),
            },
            (
                "Go to exactly one revision below head.",
                "Upgrade to head first, then one relative downgrade.",
                'ch.alembic("upgrade head"), then ch.alembic("downgrade -1", confirm=True)',
            ),
        ),
    ]


def _where_am_i(lab: Lab, answer: object) -> list[Check]:
    wanted = _revision_with_message(lab, "create user profiles and settings")
    return [
        checks.answer_is(
            answer,
            wanted,
            "your answer is the id of 'create user profiles and settings'",
            _answer_hints(
                answer,
                wanted,
                "Every revision has an id and a message; `alembic history` lists them all, newest first, "
                "each after its parent.",
                'ch.alembic("history") (each line: `parent -> revision, message`)',
                "the revision of 'create user profiles and settings'",
                f'answer = "{wanted}"',
            ),
        ),
        checks.database_at(
            lab,
            wanted or "",
            {
                "base": (
                    "Too far down: at base the database has no tables. It should be at the revision of your answer.",
                    'Upgrade to an absolute revision: ch.alembic("upgrade <id>").',
                    'ch.alembic(f"upgrade {answer}")',
                ),
            },
            (
                "The database should be at the revision of your answer, the first one.",
                'Downgrade to an absolute revision: ch.alembic("downgrade <id>"). It drops tables and columns '
                "that hold data, so confirm=True.",
                'ch.alembic(f"downgrade {answer}", confirm=True)',
            ),
            name="the database is at the revision of your answer",
        ),
    ]


LOWERCASE = 'op.execute("UPDATE user_profiles SET email = lower(email)")'


def _data_migrations(lab: Lab, answer: object) -> list[Check]:
    with lab.db.engine.connect() as conn:
        mixed = conn.scalar(sa.text("SELECT count(*) FROM user_profiles WHERE email <> lower(email)"))
    written = _any_revision(lab, r"(?i)lower\(")
    at_head = checks.database_at_head(
        lab, ("The data migration is written but not applied.", "Upgrade to head.", 'ch.alembic("upgrade head")')
    )
    return [
        checks.a_revision_file_matches(
            lab,
            r"(?i)lower\(",
            "lowercases the emails",
            (
                "The capitals are in the rows, not in the schema: this needs a data migration, which autogenerate "
                "never writes (it compares schemas only).",
                "An empty revision (ch.alembic('revision -m \"...\"')), then SQL in its upgrade() with "
                "op.execute(...), written with ch.rewrite_revision(upgrade=...). SQL's lower() lowercases.",
                "ch.alembic('revision -m \"lowercase emails\"'); "
                f"ch.rewrite_revision(upgrade='{LOWERCASE}', downgrade='pass')",
            ),
        ),
        checks.no_revision_file_matches(
            lab,
            r"(?m)^\s*(from main import|import main)",
            "imports today's models from main.py",
            (
                "A migration must not import the models of main.py: they describe today's schema, not the one "
                "at that revision.",
                'Use op.execute("...") or a snapshot of the columns you need: sa.table(name, sa.column(...)).',
            ),
        ),
        at_head,
        Check(
            "every email is lowercase in the database",
            mixed == 0,
            (
                f"{mixed} email(s) still have capitals, although the revision ran: does its UPDATE reach every "
                "row (no WHERE that skips them)?"
                if written and at_head.passed
                else f"{mixed} email(s) still have capitals: write and apply the data migration.",
                f"upgrade() needs: {LOWERCASE}",
            ),
        ),
    ]


def _teams(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.script().get_heads()
    apply = (
        "Carol's revision and the merge are not applied yet.",
        "Upgrade to head: with one head, alembic knows where that is.",
        'ch.alembic("upgrade head")',
    )
    return [
        checks.a_revision_file_matches(
            lab,
            r"revision: str = 'c3e8a6d2f4b5'",
            "from Carol (c3e8a6d2f4b5) is in versions/",
            (
                "Carol's branch has not arrived yet.",
                "ch.start_exercise() brings it, as a git pull would.",
                'ch.teammate_revision("carol")',
            ),
        ),
        Check(
            "there is a single head",
            len(heads) == 1,
            (
                f"There are {len(heads)} heads ({', '.join(sorted(heads))}): your revision and Carol's both start "
                "from the same parent, so `upgrade head` does not know which head you mean.",
                'A merge revision has both heads as parents: `alembic merge heads -m "..."`.',
                "ch.alembic('merge heads -m \"merge carol\"')",
            ),
        ),
        checks.database_at_head(lab, apply),
        checks.column_exists(lab, "user_settings", "timezone", apply),
    ]


def _enum_values(lab: Lab) -> tuple[str, ...]:
    with lab.db.engine.connect() as conn:
        return tuple(
            conn.scalars(
                sa.text(
                    "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                    "WHERE t.typname = 'job_state' ORDER BY e.enumsortorder"
                )
            )
        )


ADD_PAUSED = "op.execute(\"ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused'\")"


def _enums(lab: Lab, answer: object) -> list[Check]:
    model = (lab.project.service_dir / "main.py").read_text()
    apply = ("The revision is written but not applied.", "Upgrade to head.", 'ch.alembic("upgrade head")')
    return [
        Check(
            "main.py's job_state has 'paused'",
            '"paused"' in model,
            (
                "The model first: JobEntry.state's Enum(...) lists the values job_state may take.",
                "ch.edit_model(old, new) replaces text in main.py.",
                'ch.edit_model(\'"done"\', \'"done", "paused"\')',
            ),
        ),
        checks.a_revision_file_matches(
            lab,
            r"'paused'",
            "adds 'paused' to job_state",
            (
                "Plain autogenerate does not see a new enum value: the revision is yours to write (or let "
                "alembic-postgresql-enum write it, as in the steps above).",
                "An empty revision whose upgrade() runs ALTER TYPE ... ADD VALUE, inside "
                "`with op.get_context().autocommit_block():`.",
                'ch.alembic(\'revision -m "add paused job state"\'); ch.rewrite_revision(upgrade="""with '
                f'op.get_context().autocommit_block():\n    {ADD_PAUSED}""")',
            ),
        ),
        Check("the database's job_state has 'paused'", "paused" in _enum_values(lab), apply),
        checks.database_at_head(lab, apply),
    ]


def _troubleshooting(lab: Lab, answer: object) -> list[Check]:
    current = lab.runner.current()
    return [
        checks.Check(
            "alembic can load env.py and the models",
            current.ok,
            (
                f"`alembic current` fails: {current.error}. env.py imports something main.py does not have.",
                'Fix the import line in migrations/env.py with ch.edit_file("migrations/env.py", old, new): '
                "env.py needs only Base, which knows every model.",
                'ch.edit_file("migrations/env.py", "from main import Base, JobQueue", "from main import Base")',
            ),
        ),
        checks.database_at_head(
            lab,
            (
                "The tables exist (create_all made them) but alembic_version is empty: alembic thinks the database "
                "is at base, and an upgrade would create the tables again.",
                "When the tables really match the models, record the revision without running it: `stamp`.",
                'ch.alembic("stamp head")',
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "Stamp only when the tables really match the models: they differ.",
                'ch.alembic("check") says how.',
            ),
        ),
    ]


TABLES = ("user_profiles", "user_settings", "job_entries")


def _nuke(lab: Lab, answer: object) -> list[Check]:
    texts = _revision_texts(lab)
    whole = [name for name, text in texts.items() if all(f"create_table('{t}'" in text for t in TABLES)]
    empty_initial = len(texts) == 1 and not whole
    return [
        Check(
            "versions/ holds exactly one revision",
            len(texts) == 1,
            (
                f"It holds {len(texts)}. Starting fresh means one revision for the whole schema, none of the old "
                "history.",
                "ch.clean_versions() deletes every revision file; then autogenerate one against an empty database.",
                "ch.nuke(confirm=True); ch.clean_versions(); "
                "ch.alembic('revision --autogenerate -m \"initial schema\"')",
            ),
        ),
        Check(
            "that revision creates the whole schema (every table)",
            len(texts) == 1 and bool(whole),
            (
                "The one revision does not create every table: autogenerate compared the models with a database "
                "that still had them, so it found little or nothing to do."
                if empty_initial
                else "One revision file has to create every table: " + ", ".join(TABLES) + ".",
                "Autogenerate writes the whole schema only when the database is empty: ch.nuke(confirm=True), "
                "delete the revision, autogenerate again.",
                "ch.nuke(confirm=True); ch.clean_versions(); "
                "ch.alembic('revision --autogenerate -m \"initial schema\"')",
            ),
        ),
        checks.database_at_head(
            lab,
            ("The new revision is not applied yet.", "Upgrade to head.", 'ch.alembic("upgrade head")'),
        ),
        checks.models_match_database(
            lab,
            ("Autogenerate against an empty database, then upgrade.", 'ch.alembic("check") says what differs.'),
        ),
    ]


COUNTRY = 'country = Column(String(2), nullable=False, server_default="GB")'


def _review(lab: Lab, answer: object) -> list[Check]:
    columns: dict[str, Any] = {c["name"]: c for c in sa.inspect(lab.db.engine).get_columns("user_profiles")}
    country = columns.get("country")
    line = _model_line(lab, "UserProfile", "country") or ""
    revisions = [
        t
        for t in _revision_texts(lab).values()
        if re.search(r"add_column\(\s*'user_profiles',\s*sa\.Column\('country'", t)
    ]
    not_null_no_default = [t for t in revisions if "nullable=False" in t and "server_default" not in t]
    at_head = lab.runner.database_heads() and set(lab.runner.database_heads()) == set(lab.runner.script().get_heads())
    server_default = (
        "NOT NULL on a table with rows: the database needs a value for the rows already there, and only a "
        "server_default gives one (the review said not-null-without-default).",
        "server_default=\"GB\" in the model; the revision's add_column needs it too (server_default='GB'). Fix "
        "main.py and the revision (ch.rewrite_revision), or ch.reset() and start again.",
        f"ch.edit_model(\"{line}\", '{COUNTRY}')" if line else f"ch.add_column(\"UserProfile\", '{COUNTRY}')",
    )
    if not_null_no_default and not at_head:
        # The upgrade failed (NOT NULL without a value for the rows): that is what the learner needs now.
        exists_hints: checks.Hints = (
            "The revision adds country NOT NULL without a server default, so its upgrade fails on the rows "
            "user_profiles already has (and was rolled back). " + server_default[0],
            *server_default[1:],
        )
    elif revisions:
        exists_hints = (
            "The revision is written but not applied.",
            "Review it (ch.review()), then upgrade to head.",
            'ch.review(); ch.alembic("upgrade head")',
        )
    else:
        exists_hints = (
            "The model has the column; the database needs a revision for it.",
            "Generate it, review it (ch.review()), then apply it.",
            'ch.alembic(\'revision --autogenerate -m "add country"\'); ch.review(); ch.alembic("upgrade head")',
        )
    return [
        checks.model_has(
            lab,
            "UserProfile",
            "country",
            (
                "The model first: every profile gets a two-letter country, never empty.",
                'ch.add_column("UserProfile", "country = Column(...)"): String(2), nullable=False, and a '
                "server_default for the rows that are already there.",
                f"ch.add_column(\"UserProfile\", '{COUNTRY}')",
            ),
        ),
        checks.column_exists(lab, "user_profiles", "country", exists_hints),
        checks.Check(
            "user_profiles.country is NOT NULL",
            country is not None and not country["nullable"],
            (
                "Every profile needs a country: the column must be NOT NULL.",
                "nullable=False in the model, then a revision that alters the column, and upgrade.",
            ),
        ),
        checks.column_has_server_default(lab, "user_profiles", "country", server_default),
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ.",
                "Generate a revision for the difference, review it, upgrade.",
            ),
        ),
    ]


CHAPTERS: dict[str, ChapterSpec] = {
    spec.number: spec
    for spec in (
        ChapterSpec("00", "Start here", BASELINE_CHECKPOINT, _start_here),
        ChapterSpec("01", "The standard workflow", BASELINE_CHECKPOINT, _standard_workflow),
        ChapterSpec("02", "Never trust autogenerate", WITH_PHONE_NUMBER, _never_trust_autogenerate),
        ChapterSpec("03", "Rollback", WITH_PHONE_NUMBER, _rollback),
        ChapterSpec("04", "Where am I", WITH_PHONE_NUMBER, _where_am_i),
        ChapterSpec("05", "Data migrations", WITH_PHONE_NUMBER, _data_migrations, _mixed_case_sign_up),
        ChapterSpec("06", "Teams and two heads", WITH_PHONE_NUMBER, _teams, _carol_arrives),
        ChapterSpec("07", "Enums and special types", WITH_PHONE_NUMBER, _enums),
        ChapterSpec("08", "Troubleshooting", WITH_PHONE_NUMBER, _troubleshooting, _break_the_lab),
        ChapterSpec("09", "The nuke option", WITH_PHONE_NUMBER, _nuke),
        ChapterSpec("10", "Review before you apply", WITH_PHONE_NUMBER, _review),
        ChapterSpec("13", "Migrations in production", WITH_PHONE_NUMBER, deploy.exercise, deploy.prepare_release),
    )
}


def spec(number: str) -> ChapterSpec:
    """A chapter by number ("1", "01" and "01-standard-workflow" all mean chapter 01)."""
    match = re.fullmatch(r"(\d{1,2})(-[\w-]+)?(\.ipynb)?", str(number).strip())
    key = match.group(1).zfill(2) if match else None
    if key is None or key not in CHAPTERS:
        raise LabError(f"There is no chapter {number!r}.", f"Chapters: {', '.join(CHAPTERS)}.")
    return CHAPTERS[key]


def reset(number: str, lab: Lab | None = None) -> ResetReport:
    """Restore ai-service/ files and the database to the start of chapter `number`."""
    return restore_checkpoint(lab or Lab(), spec(number).checkpoint)
