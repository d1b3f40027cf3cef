"""The chapters: each one's title, starting checkpoint, and exercise checks."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import chapter_locks, checks, course_checks_early, deploy, teams
from .chapter_expand import alan_gives_his_phone, expand_phone
from .checks import Check
from .errors import LabError
from .lab import Lab
from .round_trip import round_trip
from .tracebacks import cli_traceback, failing_line, names_the_line
from .workspace import (
    BASELINE_CHECKPOINT,
    WITH_PHONE_NUMBER,
    Checkpoint,
    ResetReport,
    load_models,
    restore_checkpoint,
)


@dataclass(frozen=True)
class ChapterSpec:
    number: str
    title: str
    checkpoint: Checkpoint
    exercise: Callable[[Lab, object], list[Check]]
    # Puts the lab where the exercise starts (a teammate's branch, a broken env.py); says what it did.
    exercise_setup: Callable[[Lab], str] | None = None


def _carol_arrives(lab: Lab) -> str:
    """Carol's branch, from a1c4e7f20b13, next to a revision of yours that adds the same column: see teams.py."""
    return teams.conflicting_branches(lab)


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
        "rebuilt with Base.metadata.create_all() (no alembic_version). In a terminal, in ai-service/, "
        "`alembic current` now prints:\n\n"
        f"{cli_traceback(lab, 'current') or '(nothing: it runs)'}\n"
        'Which line of your project fails? Put it in `answer` as "file:line", then make '
        "`alembic upgrade head` work."
    )


ENV_PY = "ai-service/migrations/env.py"


def _env_import_line(lab: Lab) -> tuple[int, str]:
    """The line of env.py that imports from main.py: where the exercise's traceback points."""
    return failing_line(lab.project.service_dir / "migrations" / "env.py", r"^from main import") or (0, "")


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


def _never_trust_autogenerate(lab: Lab, answer: object) -> list[Check]:
    return course_checks_early.rename_email(lab)


def _rollback(lab: Lab, answer: object) -> list[Check]:
    return course_checks_early.write_the_downgrade(lab)


def _where_am_i(lab: Lab, answer: object) -> list[Check]:
    return course_checks_early.next_upgrade(lab, answer)


def _data_migrations(lab: Lab, answer: object) -> list[Check]:
    return course_checks_early.lowercase_emails(lab)


def _teams(lab: Lab, answer: object) -> list[Check]:
    heads = lab.runner.script().get_heads()
    parent = teams.parent_line(lab)
    wanted = repr(teams.new_parent(lab))
    on_top = (
        "Both branches add user_settings.timezone. Carol's revision reached main first: yours must run after "
        "hers and change her column, not add it again (a merge of the two heads runs both ADD COLUMNs, and "
        "the second fails: DuplicateColumn).",
        f"In your revision ({teams.YOURS}), set down_revision to {wanted} (a rebase; a tuple makes it a merge "
        "revision with content), and write upgrade() with op.alter_column(): fill the NULLs, then type_, "
        "server_default and nullable as main.py has them; downgrade() the reverse. Editor or ch.edit_file + "
        "ch.rewrite_revision.",
        f'ch.edit_file("migrations/versions/{teams.YOURS}", "{parent}", '
        f'"down_revision: Union[str, Sequence[str], None] = {wanted}"); '
        f'ch.rewrite_revision(revision="{teams.YOURS_ID}", upgrade="""{teams.ON_TOP_UPGRADE}""", '
        f'downgrade="""{teams.ON_TOP_DOWNGRADE}""")',
    )
    apply = (
        "Your revision and Carol's are not both applied yet.",
        "Upgrade to head: with one head, alembic knows where that is.",
        'ch.alembic("upgrade head")',
    )
    return [
        checks.a_revision_file_matches(
            lab,
            rf"revision: str = '{teams.CAROL_ID}'",
            f"from Carol ({teams.CAROL_ID}) is in versions/",
            (
                "Carol's branch has not arrived yet.",
                "ch.start_exercise() brings it, as a git pull would.",
                "ch.start_exercise()",
            ),
        ),
        Check(
            "there is a single head",
            len(heads) == 1,
            (
                f"There are {len(heads)} heads ({', '.join(sorted(heads))}): your branch and Carol's both start "
                "from a1c4e7f20b13, so `upgrade head` does not know which head you mean. Look at what each adds "
                "before you join them.",
                *on_top[1:],
            ),
        ),
        checks.database_at_head(
            lab,
            (
                f"{apply[0]} If `upgrade head` failed with DuplicateColumn: " + on_top[0],
                *on_top[1:],
            )
            if _any_revision(lab, r"add_column\('user_settings', sa\.Column\('timezone'.*length=64")
            else apply,
        ),
        checks.column_exists(lab, "user_settings", "timezone", apply),
        checks.models_match_database(
            lab,
            (
                "user_settings.timezone is not what main.py says (String(64), NOT NULL, default 'UTC').",
                *on_top[1:],
            ),
        ),
        round_trip(
            lab,
            (
                "Your revision's downgrade() must undo its upgrade(): give Carol's column back as she made it.",
                f'downgrade() with op.alter_column(...): """{teams.ON_TOP_DOWNGRADE}"""',
            ),
        ),
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


ADD_PAUSED = "op.execute(\"ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused' AFTER 'done'\")"


def _model_enum_values(lab: Lab) -> tuple[str, ...]:
    """JobEntry.state's Enum(...) values in main.py, in their order (loaded afresh); () if main.py does not load."""
    try:
        column = load_models(lab.project).Base.metadata.tables["job_entries"].columns["state"]
    except Exception:  # a half-edited main.py fails in any way: the first check says so
        return ()
    return tuple(getattr(column.type, "enums", ()))


def _enums(lab: Lab, answer: object) -> list[Check]:
    model = _model_enum_values(lab)
    database = _enum_values(lab)
    apply = ("The revision is written but not applied.", "Upgrade to head.", 'ch.alembic("upgrade head")')
    return [
        Check(
            "main.py's job_state has 'paused'",
            "paused" in model,
            (
                "The model first: JobEntry.state's Enum(...) lists the values job_state may take.",
                "ch.edit_model(old, new) replaces text in main.py (or edit ai-service/main.py in the editor).",
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
                "An empty revision whose upgrade() runs ALTER TYPE ... ADD VALUE ... AFTER ..., inside "
                "`with op.get_context().autocommit_block():`.",
                'ch.alembic(\'revision -m "add paused job state"\'); ch.rewrite_revision(upgrade="""with '
                f'op.get_context().autocommit_block():\n    {ADD_PAUSED}""")',
            ),
        ),
        Check("the database's job_state has 'paused'", "paused" in database, apply),
        checks.database_at_head(lab, apply),
        Check(
            "job_state's values are in the same order in main.py and the database",
            bool(model) and model == database,
            (
                f"main.py says {', '.join(model)}; the database says {', '.join(database)}. An enum's order is "
                "part of the type (ORDER BY state and state > 'done' follow it), and ADD VALUE appends at the "
                "end unless told where.",
                "ALTER TYPE job_state ADD VALUE 'paused' AFTER 'done' puts it where the model has it (squawk's "
                "require-enum-value-ordering asks for AFTER or BEFORE). Already applied at the end? PostgreSQL "
                "cannot move a value: the downgrade must rebuild the type without it (as in step 1) before you fix "
                "the upgrade and apply it again.",
                "ch.solution() starts the exercise again and adds it in its place: "
                f'ch.edit_model(\'"done"\', \'"done", "paused"\'), a revision whose upgrade() runs {ADD_PAUSED} '
                "in an autocommit_block, and a downgrade() that rebuilds the type.",
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "main.py and the database differ in something else as well.",
                'ch.alembic("check") says what differs.',
            ),
        ),
        round_trip(
            lab,
            (
                "Your downgrade() must undo the upgrade. PostgreSQL cannot drop one value from an enum: the "
                "downgrade moves the paused rows to another value and rebuilds the type without 'paused'.",
                "As step 1's downgrade does: UPDATE the rows, RENAME the type, CREATE it again without the value, "
                "ALTER the column TYPE ... USING state::text::job_state, DROP the old type.",
                "ch.solution() shows the whole revision, downgrade() included.",
            ),
        ),
    ]


def _troubleshooting(lab: Lab, answer: object) -> list[Check]:
    current = lab.runner.current()
    number, text = _env_import_line(lab)
    given = answer.strip() if isinstance(answer, str) else ""
    read = "Read the traceback from the bottom up: the error's last line says what failed (an ImportError)"
    return [
        Check(
            "your answer names the line of your project that fails",
            names_the_line(answer, ENV_PY, number, text),
            (
                (
                    f"{given!r} is a frame of alembic or of Python's import machinery: code you did not write. "
                    + read
                    + "; the frame just above it is the last one in a file of your project."
                )
                if "site-packages" in given or "frozen" in given or re.search(r"(pyfiles|command|config)\.py", given)
                else (
                    f"{read}; the frame just above it is the last one in a file of your project. Which file, "
                    "which line?"
                ),
                'The frame reads File "ai-service/migrations/...", line N. Give it as a string: '
                'answer = "<file>:<line>" (or the line\'s text).',
                f'answer = "{ENV_PY}:{number}"',
            ),
        ),
        checks.Check(
            "alembic can load env.py and the models",
            current.ok,
            (
                f"`alembic current` fails: {current.error}. env.py imports something main.py does not have.",
                'Fix the import line in migrations/env.py with ch.edit_file("migrations/env.py", old, new): '
                "env.py needs only Base: its metadata knows every model main.py defines (and every model module "
                "main.py imports).",
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
        round_trip(
            lab,
            (
                "The history must still build the schema from nothing: `downgrade base` then `upgrade head`.",
                "`alembic history` shows the chain; each downgrade() undoes its upgrade().",
            ),
        ),
    ]


TABLES = ("user_profiles", "user_settings", "job_entries")
# The initial revision's downgrade(), reviewed: autogenerate's, plus the ENUM type its create_table made.
INITIAL_DOWNGRADE = """op.drop_table('user_settings')
op.drop_index(op.f('ix_job_entries_user_id'), table_name='job_entries')
op.drop_table('job_entries')
op.drop_table('user_profiles')
sa.Enum(name='job_state').drop(op.get_bind())"""


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
        round_trip(
            lab,
            (
                "Review what autogenerate wrote: its downgrade() drops the tables but not the ENUM type job_state "
                "that create_table made, so after `downgrade base` the next `upgrade head` fails on CREATE TYPE "
                "(DuplicateObject).",
                "End downgrade() with sa.Enum(name='job_state').drop(op.get_bind()) (or op.execute(\"DROP TYPE "
                'job_state")), after the drop_table calls; ch.rewrite_revision(downgrade=...) or the editor.',
                f'ch.rewrite_revision(downgrade="""{INITIAL_DOWNGRADE}""")',
            ),
        ),
    ]


COUNTRY = 'country = Column(String(2), nullable=False, server_default="GB")'
# The other right answer, the one that works on any table: add it nullable, backfill, then NOT NULL.
COUNTRY_IN_STEPS = """op.add_column('user_profiles', sa.Column('country', sa.String(length=2), nullable=True))
op.execute("UPDATE user_profiles SET country = 'GB' WHERE country IS NULL")
op.alter_column('user_profiles', 'country', existing_type=sa.String(length=2), nullable=False)"""


def _review(lab: Lab, answer: object) -> list[Check]:
    columns: dict[str, Any] = {c["name"]: c for c in sa.inspect(lab.db.engine).get_columns("user_profiles")}
    country = columns.get("country")
    revisions = [
        t
        for t in _revision_texts(lab).values()
        if re.search(r"add_column\(\s*'user_profiles',\s*sa\.Column\('country'", t)
    ]
    not_null_no_default = [t for t in revisions if "nullable=False" in t and "server_default" not in t]
    at_head = lab.runner.database_heads() and set(lab.runner.database_heads()) == set(lab.runner.script().get_heads())
    # Both answers a careful team gives: a value for the rows already there, from a server_default or a backfill.
    two_ways = (
        "NOT NULL on a table with rows: the rows already there need a value. Two ways: a server_default (the "
        "database fills the old rows, and new ones too), or add the column nullable, backfill it with an UPDATE, "
        "then make it NOT NULL.",
        "Either server_default='GB' in the model and in the revision's add_column, or rewrite upgrade(): "
        'op.add_column(... nullable=True), op.execute("UPDATE ..."), op.alter_column(..., nullable=False). '
        "Fix the revision (ch.rewrite_revision or the editor), or ch.reset() and start again.",
        f'ch.rewrite_revision(upgrade="""{COUNTRY_IN_STEPS}""")',
    )
    if not_null_no_default and not at_head:
        # The upgrade failed (NOT NULL without a value for the rows): that is what the learner needs now.
        exists_hints: checks.Hints = (
            "The revision adds country NOT NULL in one step, without a server default, so its upgrade fails on "
            "the rows user_profiles already has (and was rolled back). " + two_ways[0],
            *two_ways[1:],
        )
    elif revisions:
        exists_hints = (
            "The revision is written but not applied.",
            "Review it (ch.review(), or `alembic upgrade <parent>:head --sql` and squawk), then upgrade to head.",
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
                'ch.add_column("UserProfile", "country = Column(...)") or the editor: String(2), nullable=False '
                "(and, if you like, a server_default for the rows that are already there).",
                f"ch.add_column(\"UserProfile\", '{COUNTRY}')",
            ),
        ),
        checks.column_exists(lab, "user_profiles", "country", exists_hints),
        checks.Check(
            "user_profiles.country is NOT NULL, so every profile has one",
            country is not None and not country["nullable"],
            (
                "Every profile needs a country: the column must be NOT NULL.",
                "nullable=False in the model, then a revision that fills the empty rows and alters the column "
                "(op.alter_column(..., nullable=False)), and upgrade.",
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "main.py and the database still differ (a server_default in one and not the other counts too).",
                "Generate a revision for the difference, review it, upgrade.",
            ),
        ),
        round_trip(
            lab,
            (
                "The revision's downgrade() does not undo its upgrade().",
                "downgrade() drops the column: op.drop_column('user_profiles', 'country').",
            ),
        ),
    ]


CHAPTERS: dict[str, ChapterSpec] = {
    spec.number: spec
    for spec in (
        ChapterSpec("00", "Start here", BASELINE_CHECKPOINT, _start_here),
        ChapterSpec("01", "The standard workflow", BASELINE_CHECKPOINT, _standard_workflow),
        ChapterSpec("02", "Never trust autogenerate", WITH_PHONE_NUMBER, _never_trust_autogenerate),
        ChapterSpec("03", "Rollback", WITH_PHONE_NUMBER, _rollback, course_checks_early.language_without_downgrade),
        ChapterSpec("04", "Where am I", WITH_PHONE_NUMBER, _where_am_i, course_checks_early.back_from_holiday),
        ChapterSpec(
            "05", "Data migrations", WITH_PHONE_NUMBER, _data_migrations, course_checks_early.mixed_case_sign_ups
        ),
        ChapterSpec("06", "Teams and two heads", WITH_PHONE_NUMBER, _teams, _carol_arrives),
        ChapterSpec("07", "Enums and special types", WITH_PHONE_NUMBER, _enums),
        ChapterSpec("08", "Troubleshooting", WITH_PHONE_NUMBER, _troubleshooting, _break_the_lab),
        ChapterSpec("09", "The nuke option", WITH_PHONE_NUMBER, _nuke),
        ChapterSpec("10", "Review before you apply", WITH_PHONE_NUMBER, _review),
        ChapterSpec(
            "11", "Locks and downtime", WITH_PHONE_NUMBER, chapter_locks.exercise, chapter_locks.exercise_start
        ),
        ChapterSpec("12", "Expand and contract", WITH_PHONE_NUMBER, expand_phone, alan_gives_his_phone),
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
