"""Chapter 14, Constraints and types without downtime: the calls its cells make, and its exercise's checks.

Each operation of the catalogue is shown two ways, the way autogenerate (or
habit) writes it and the way that keeps the app serving, by its lock trace:
both run for real, one after the other, on one throw-away copy of the database
(the learner's is never touched). One of them runs live under the busy app
(`ch14_busy_jobs`): a foreign key added the way autogenerate writes it, while
a job worker sits idle in its transaction. The exercise is its safe twin,
graded on a copy: the lock trace (the statement that validates the foreign
key holds no lock that stops writes), the upgrade under the same traffic and
worker (0 failed requests), the end state and the downgrade.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..lab import Lab
from ..tools.lock_trace import trace_each
from ..workspace import checkpoints
from . import checks
from .ch14_busy_jobs import CLIENT_TIMEOUT, HOLDS, JOBS, START, WORKER, Replay, lab_of, replay
from .checks import Check

FK = "fk_job_entries_reviewer_id_user_profiles"
UNIQUE = "uq_job_entries_request_key"


# --- the catalogue's traces: each way of doing it, on one copy ---------------------------------------


@dataclass(frozen=True)
class Way:
    """One way to make a change: a revision's upgrade() and the downgrade() that undoes it."""

    title: str  # what the trace's heading says
    upgrade: str
    downgrade: str = "pass"


def _revision_text(revision: str, parent: str, title: str, upgrade: str, downgrade: str) -> str:
    def body(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")

    return (
        f'"""{title}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
        f"revision = {revision!r}\ndown_revision = {parent!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n{body(upgrade)}\n\n\ndef downgrade():\n{body(downgrade)}\n"
    )


@contextmanager
def what_if(lab: Lab, upgrades: list[tuple[str, str, str]]) -> Iterator[list[str]]:
    """Revision files (title, upgrade, downgrade), each after the one before, after the database's head; removed
    afterwards, whatever happens. Yields their ids."""
    [parent] = lab.db.heads() or (None,)
    written = []
    try:
        for title, upgrade, downgrade in upgrades:
            revision = secrets.token_hex(6)
            path = lab.project.versions_dir / f"{revision}_what_if.py"
            path.write_text(_revision_text(revision, parent or "", title, upgrade, downgrade))
            written.append(path)
            parent = revision
        yield [path.name.split("_", 1)[0] for path in written]
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def compare(chapter: Any, *ways: Way) -> None:
    """Each way traced on one copy of the database, one after the other (each undone before the next); printed."""
    lab = lab_of(chapter)
    chain: list[tuple[str, str, str]] = []
    for way in ways:
        chain.append((way.title, way.upgrade, way.downgrade))
        chain.append((f"undo: {way.title}", way.downgrade, "pass"))
    with what_if(lab, chain[:-1]) as revisions:
        traces = trace_each(revisions, lab)
    for way, found in zip(ways, traces[::2], strict=False):
        print(f"--- {way.title}")
        if found.unavailable is not None:
            print(f"not traced: {found.unavailable}")
            continue
        for step in found.steps:
            print("\n".join(step.lines()))
        if found.error is not None:
            print(f"The upgrade FAILS: {found.error}")


# --- a failed CREATE UNIQUE INDEX CONCURRENTLY, and what it leaves ------------------------------------

INDEX_STATES = """
SELECT i.relname, x.indisvalid, x.indisready FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = to_regclass(:table) ORDER BY 1
"""


def show_indexes(chapter: Any, table: str = "job_entries") -> None:
    """The table's indexes: valid, or INVALID and whether PostgreSQL still keeps it up to date (indisready)."""
    with lab_of(chapter).db.connect() as conn:
        rows = conn.execute(sa.text(INDEX_STATES), {"table": table}).all()
    for name, valid, ready in rows:
        if valid:
            print(f"{name}: valid")
        elif ready:
            print(f"{name}: INVALID - used by no query, yet kept up to date on every write")
        else:
            print(f"{name}: INVALID, not even ready - used by no query, not kept up to date, enforces nothing")


# --- the exercise: the foreign key, safely ---------------------------------------------------------------

FK_MODEL_LINE = 'reviewer_id = Column(ForeignKey("user_profiles.id"), nullable=True, index=True)'
SAFE_UPGRADE = f"""op.execute("SET LOCAL lock_timeout = '200ms'")  # ask briefly; the deploy retries
op.create_foreign_key('{FK}', 'job_entries', 'user_profiles',
                      ['reviewer_id'], ['id'], postgresql_not_valid=True)
with op.get_context().autocommit_block():  # each its own transaction: the NOT VALID's lock is gone
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT {FK}')
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'],
                    postgresql_concurrently=True)"""
SAFE_DOWNGRADE = f"""with op.get_context().autocommit_block():
    op.drop_index('ix_job_entries_reviewer_id', table_name='job_entries', postgresql_concurrently=True)
op.drop_constraint('{FK}', 'job_entries', type_='foreignkey')"""


def write_safe(found: Replay) -> str:
    """The hint's code: back to the start, the newest revision of the release rewritten the safe way, upgrade."""
    return found.redo_call(SAFE_UPGRADE, SAFE_DOWNGRADE)


END_STATE = """
SELECT
  (SELECT bool_and(c.convalidated) FROM pg_constraint c JOIN pg_attribute a
     ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
   WHERE c.conrelid = to_regclass('job_entries') AND c.contype = 'f' AND a.attname = 'reviewer_id'
     AND c.confrelid = to_regclass('user_profiles') AND cardinality(c.conkey) = 1) AS validated,
  (SELECT bool_or(x.indisvalid) FROM pg_index x JOIN pg_attribute a
     ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
   WHERE x.indrelid = to_regclass('job_entries') AND a.attname = 'reviewer_id') AS indexed,
  (SELECT md5(string_agg(j.id || ':' || coalesce(j.reviewer_id::text, '-'), ',' ORDER BY j.id))
   FROM job_entries j) AS reviewers
"""


def foreign_key_state(lab: Lab) -> dict[str, Any]:
    """{"validated": True/False (NOT VALID)/None (no foreign key), "indexed": a valid index leads with it,
    "reviewers": a digest of every job's reviewer (a downgrade that drops the column and adds it again runs, and
    loses them)}."""
    with lab.db.connect() as conn:
        validated, indexed, reviewers = conn.execute(sa.text(END_STATE)).one()
    return {"validated": validated, "indexed": bool(indexed), "reviewers": reviewers}


def exercise_start(lab: Lab) -> str:
    """Back to the chapter's start: the steps' revisions and model edits undone."""
    if checkpoints.at_checkpoint(lab, JOBS):
        return "The lab is at the chapter's start already: nothing to undo."
    checkpoints.reset(lab, JOBS)
    return (
        "Back to the chapter's start (the steps' revisions are gone, your files backed up). job_entries.reviewer_id "
        "is a plain integer; the app reads and writes job_entries all the time."
    )


def _validation_locks(found: Replay) -> tuple[bool, list[str]]:
    """Whether some statement of the release validated a constraint, and each one that held a lock that stops
    writes meanwhile ("line N of file validates X holding Y on T")."""
    validated, held = False, []
    for traced in found.traces:
        for step in traced.steps:
            if not step.validates:
                continue
            validated = True
            blocking = step.blocks_writes_while_validating()
            if blocking:
                held.append(
                    f"line {step.line} of {traced.path.name} validates {', '.join(step.validates)} holding "
                    + ", ".join(f"{lock.mode} on {lock.table}" for lock in blocking)
                )
    return validated, held


def _index_builds_blocking_writes(found: Replay) -> list[str]:
    """Each statement of the release that built an index with writes stopped ("line N of file: ShareLock on T")."""
    return [
        f"line {step.line} of {traced.path.name}: {', '.join(lock.mode + ' on ' + lock.table for lock in locks)}"
        for traced in found.traces
        for step in traced.steps
        if (locks := step.builds_an_index_blocking_writes())
    ]


def exercise(lab: Lab, answer: object) -> list[Check]:
    """Chapter 14: job_entries.reviewer_id references user_profiles.id, added while the app is busy."""
    found = replay(lab, WORKER, foreign_key_state, schema=True)
    write = (
        "A foreign key is checked against every existing row, and the check holds a lock that stops every write "
        "to both tables. Split the lock from the check: add it NOT VALID (new rows are checked at once), then "
        "validate the old rows in a transaction of its own; and give reviewer_id an index.",
        "A revision (ch.alembic('revision -m \"...\"')) whose upgrade() sets a short lock_timeout, adds the key with "
        "op.create_foreign_key(..., postgresql_not_valid=True), then, inside `with "
        "op.get_context().autocommit_block():`, runs ALTER TABLE job_entries VALIDATE CONSTRAINT ... and "
        "op.create_index(..., postgresql_concurrently=True) on reviewer_id.",
        "ch.alembic('revision -m \"reviewer references a profile\"'); "
        f'ch.rewrite_revision(upgrade="""{SAFE_UPGRADE}""", downgrade="""{SAFE_DOWNGRADE}"""); '
        'ch.alembic("upgrade head")',
    )
    end = found.end
    has_key = found.upgraded and end.get("validated") is not None
    results = [
        Check(
            "a revision after the chapter's start makes job_entries.reviewer_id reference user_profiles.id",
            has_key,
            found.failure() or write,
        )
    ]
    validated, held = _validation_locks(found)
    if held:
        unsafe = (
            "Your revision validates the foreign key while its transaction holds a lock that stops writes to "
            "job_entries and user_profiles: every signup and every new job waits for the whole scan ("
            + "; ".join(held)
            + "). At 20,000 rows that is milliseconds; at 100 million, minutes."
        )
    else:
        unsafe = (
            "Your revision adds the foreign key NOT VALID and never validates it: new rows are checked, the "
            "existing ones never were, and PostgreSQL cannot rely on the key (pg_constraint.convalidated is false)."
        )
    results.append(
        Check(
            "the lock trace: the foreign key is validated under no lock that stops writes",
            has_key and validated and not held and end.get("validated") is True,
            (
                unsafe,
                "Add it with op.create_foreign_key(..., postgresql_not_valid=True), and run ALTER TABLE job_entries "
                "VALIDATE CONSTRAINT ... in a transaction of its own: inside `with "
                "op.get_context().autocommit_block():`, or in the next revision.",
                write_safe(found),
            ),
        )
    )
    run = found.run
    results.append(
        Check(
            "replayed on a copy under the app's traffic and an idle job worker: 0 failed requests",
            has_key and run is not None and run.failed == 0,
            (
                f"Requests failed while your migration ran ({', '.join(run.failed_kinds) if run else ''}): a job "
                f"worker kept its transaction open {HOLDS} s after your ALTER TABLE began to wait for it, and every "
                f"write queued behind the waiting ALTER, longer than the {CLIENT_TIMEOUT:.0f} s a client waits.",
                "Ask for the lock briefly: op.execute(\"SET LOCAL lock_timeout = '200ms'\") first in upgrade() (the "
                "deploy retries a migration that gave up), shorter than a client waits. A lock_timeout of 1 s or "
                "more still makes the queued requests give up.",
                write_safe(found),
            ),
        )
    )
    blocking_builds = _index_builds_blocking_writes(found)
    results.append(
        Check(
            "job_entries.reviewer_id has an index (deleting a profile must not scan job_entries)",
            has_key and bool(end.get("indexed")) and not blocking_builds,
            (
                (
                    "The lock trace shows an index built with writes stopped ("
                    + "; ".join(blocking_builds)
                    + "): a CREATE INDEX without CONCURRENTLY holds a ShareLock for its whole scan of the table, and "
                    "every insert and update waits. At 20,000 rows that is milliseconds; at 100 million, minutes."
                )
                if blocking_builds
                else "Every DELETE of a profile (and every change of its id) now looks for jobs that name it as "
                "reviewer: without an index on reviewer_id, each one scans job_entries.",
                "op.create_index(..., postgresql_concurrently=True) on ['reviewer_id'], inside the "
                "autocommit_block (a plain CREATE INDEX blocks writes while it builds).",
                write_safe(found),
            ),
        )
    )
    down = found.downgrade
    left = found.undone.get("validated") is not None or bool(found.undone.get("indexed"))
    lost = [found.schema_lost] if found.schema_lost else []
    if found.undone.get("reviewers") != found.at_start.get("reviewers"):
        lost.insert(0, "every job's reviewer_id")
    if down is not None and not down.ok:
        went_wrong = f"fails: {down.error}: a rollback (or the next try of this release) would break"
    elif left:
        went_wrong = "leaves the key or its index behind: a rollback (or the next try of this release) would break"
    else:
        went_wrong = (
            f"runs, but does not give back what the start had: {'; '.join(lost)}. A rollback must keep the data "
            "(drop the constraint and the index, never the column)"
        )
    in_reverse = (
        "downgrade() drops what upgrade() made, in reverse: the index (concurrently, in an "
        "autocommit_block), then the constraint (op.drop_constraint(..., type_='foreignkey'))."
    )
    undoes = Check(
        "its downgrade() runs and undoes it (replayed on the copy)",
        has_key and down is not None and down.ok and not left and not lost,
        (
            (f"Replayed on a copy, going back to the chapter's start {went_wrong}.", in_reverse, write_safe(found))
            if not found.undone_badly
            else found.fix_the_downgrade(in_reverse)
        ),
    )
    # When the replay stopped where the downgrade left the copy, before the key was made, the first check ("a
    # revision ... makes job_entries.reviewer_id reference user_profiles.id") fails though the revision does make
    # it. The learner reads the first failing check, so then the one about the downgrade comes first; every check's
    # verdict stays as it is.
    results.insert(0 if found.undone_badly else len(results), undoes)
    mine = foreign_key_state(lab)
    results.append(
        checks.database_at_head(
            lab,
            (
                "Your revision passes on a copy, but your own database has not run it yet.",
                'Apply it: ch.alembic("upgrade head") (or `alembic upgrade head` in a terminal).',
            ),
        )
    )
    results.append(
        Check(
            "in your database, the foreign key is validated",
            mine["validated"] is True,
            (
                (
                    "The key in your database is NOT VALID: the revision you applied adds it and never validates it."
                    if mine["validated"] is False and end.get("validated") is False
                    else "Your database holds an older version of the revision (or none): the key is missing or "
                    "NOT VALID."
                ),
                f'Go back and apply the revision as it is now: ch.alembic("downgrade {START}", confirm=True), then '
                'ch.alembic("upgrade head").',
            ),
        )
    )
    line = checks.model_line(lab, "JobEntry", "reviewer_id") or "reviewer_id = Column(Integer, nullable=True)"
    results.append(
        checks.models_match_database(
            lab,
            (
                "main.py's model and the database differ: the code must say what the database has, a foreign key "
                "on reviewer_id and its index.",
                f"In JobEntry: {FK_MODEL_LINE} (index=True names the index ix_job_entries_reviewer_id, as yours "
                "should be named for alembic check).",
                f"ch.edit_model({line!r}, {FK_MODEL_LINE!r})",
            )
            if line != FK_MODEL_LINE
            else (  # the model says what the exercise asks: the revision made something else (an ondelete=, ...)
                "main.py's model says what the exercise asks, and the database differs from it: your revision "
                "made the key or its index otherwise (an ON DELETE the model does not have? another index?).",
                f'ch.alembic("check") says what differs. Make the revision make what {FK_MODEL_LINE} says, go '
                f'back (ch.alembic("downgrade {START}", confirm=True)) and apply it again.',
            ),
        )
    )
    return results
