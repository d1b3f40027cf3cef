"""Chapter 07's exercise, graded by what the revision does: other correct answers pass (written by hand in plain
SQL, written by alembic-postgresql-enum and reformatted with double quotes, a model with a Python enum.Enum class),
plausible wrong ones fail (a `pass` downgrade, a rebuild that forgets the column's default, step 1's downgrade
copied after the steps, 'paused' first in the enum class)."""

import json
import subprocess
import sys

import pytest

from helpers import REPO, failing, start
from migration_lab import Lab
from migration_lab.course.ch07_enums import UNDONE, enum_values
from migration_lab.front.notebook import Chapter

ADD_PAUSED = """with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused' AFTER 'done'")"""
# By hand, double quotes, every statement in plain SQL, for the exercise's start (queued, running, done).
HAND_WRITTEN_DOWNGRADE = """op.execute("UPDATE job_entries SET state = 'queued' WHERE state = 'paused'")
op.execute("ALTER TYPE job_state RENAME TO job_state_old")
op.execute("CREATE TYPE job_state AS ENUM ('queued', 'running', 'done')")
op.execute("ALTER TABLE job_entries ALTER COLUMN state DROP DEFAULT")
op.execute("ALTER TABLE job_entries ALTER COLUMN state TYPE job_state USING state::text::job_state")
op.execute("ALTER TABLE job_entries ALTER COLUMN state SET DEFAULT 'queued'")
op.execute("DROP TYPE job_state_old")"""
FORGETS_THE_DEFAULT = "\n".join(line for line in HAND_WRITTEN_DOWNGRADE.splitlines() if "DEFAULT" not in line)


def paused_answer(chapter: Chapter, downgrade: str) -> None:
    chapter.edit_model('"done"', '"done", "paused"')
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(upgrade=ADD_PAUSED, downgrade=downgrade)
    chapter.alembic("upgrade head")


def test_a_hand_written_revision_in_plain_sql_passes(lab: Lab, capsys) -> None:
    chapter = start(lab, "07")
    paused_answer(chapter, HAND_WRITTEN_DOWNGRADE)
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


@pytest.mark.parametrize(
    "downgrade, why",
    [
        ("pass  # PostgreSQL cannot remove an enum value", "no downgrade() takes 'paused' out"),
        (FORGETS_THE_DEFAULT, "cannot be cast automatically"),
    ],
    ids=["pass", "forgets-the-default"],
)
def test_a_downgrade_that_does_not_undo_fails_on_a_copy(lab: Lab, downgrade: str, why: str, capsys) -> None:
    chapter = start(lab, "07")
    paused_answer(chapter, downgrade)
    hints = failing(chapter)
    assert UNDONE in hints and why in hints[UNDONE][0], hints
    assert "paused" in enum_values(lab.db)  # replayed on a copy: the learner's database is untouched
    capsys.readouterr()


FAILED_AND_CANCELLED = """with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE 'failed' AFTER 'done'")
    op.execute("ALTER TYPE job_state ADD VALUE 'cancelled' AFTER 'failed'")"""


def test_after_the_steps_step_1s_downgrade_copied_as_it_is_fails(lab: Lab, capsys) -> None:
    """After the steps the type also has failed and cancelled, and a job is failed: step 1's downgrade, copied with
    'paused' for 'failed', rebuilds the type without them, and its cast fails on that job."""
    chapter = start(lab, "07")
    chapter.edit_model('"done"', '"done", "failed", "cancelled"')
    chapter.alembic('revision -m "failed and cancelled"')
    chapter.rewrite_revision(upgrade=FAILED_AND_CANCELLED)
    chapter.alembic("upgrade head")
    chapter.sql("UPDATE job_entries SET state = 'failed' WHERE id = 1")
    paused_answer(chapter, HAND_WRITTEN_DOWNGRADE)
    hints = failing(chapter)
    assert UNDONE in hints and "InvalidTextRepresentation" in hints[UNDONE][0], hints
    capsys.readouterr()


THROUGH_TEXT_DOWNGRADE = """# No 'paused' before this release: those jobs go back to running.
op.execute("UPDATE job_entries SET state = 'running' WHERE state = 'paused'")
op.execute("ALTER TABLE job_entries ALTER COLUMN state DROP DEFAULT")
op.execute("ALTER TABLE job_entries ALTER COLUMN state TYPE text")
op.execute("DROP TYPE job_state")
op.execute("CREATE TYPE job_state AS ENUM ('queued', 'running', 'done', 'failed', 'cancelled')")
op.execute("ALTER TABLE job_entries ALTER COLUMN state TYPE job_state USING state::job_state")
op.execute("ALTER TABLE job_entries ALTER COLUMN state SET DEFAULT 'queued'")"""


def test_after_the_steps_before_failed_and_a_rebuild_through_text_pass(lab: Lab, capsys) -> None:
    """After the steps: 'paused' placed BEFORE 'failed' (the same place), and a downgrade that goes through text."""
    chapter = start(lab, "07")
    chapter.edit_model('"done"', '"done", "failed", "cancelled"')
    chapter.alembic('revision -m "failed and cancelled"')
    chapter.rewrite_revision(upgrade=FAILED_AND_CANCELLED)
    chapter.alembic("upgrade head")
    chapter.sql("UPDATE job_entries SET state = 'failed' WHERE id = 1")
    chapter.edit_model('"done", "failed"', '"done", "paused", "failed"')
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(
        upgrade="""with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE 'paused' BEFORE 'failed'")""",
        downgrade=THROUGH_TEXT_DOWNGRADE,
    )
    chapter.alembic("upgrade head")
    assert chapter.report().passed, str(chapter.report())
    capsys.readouterr()


# What `alembic revision --autogenerate` writes with alembic-postgresql-enum imported in env.py, after
# `ruff format` (chapter 13's post-write hook): double quotes. Run in a process of its own: once imported, the
# plugin changes autogenerate for the whole process.
PLUGIN_REVISION = '''"""add paused job state"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from alembic_postgresql_enum import TableReference

revision: str = "bb52460cb671"
down_revision: Union[str, Sequence[str], None] = "a1c4e7f20b13"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_enum_value(
        enum_schema="public",
        enum_name="job_state",
        new_value="paused",
    )


def downgrade() -> None:
    op.sync_enum_values(
        enum_schema="public",
        enum_name="job_state",
        new_values=["queued", "running", "done"],
        affected_columns=[
            TableReference(
                table_schema="public",
                table_name="job_entries",
                column_name="state",
                existing_server_default="'queued'::job_state",
            )
        ],
        enum_values_to_rename=[],
    )
'''
ISOLATED = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from helpers import start
from migration_lab import Lab, Project, UrlBackend
lab = Lab(Project(Path(sys.argv[2])), UrlBackend(sys.argv[3]))
chapter = start(lab, "07")
chapter.edit_file(
    "migrations/env.py",
    "from main import Base  # noqa: E402  (needs the sys.path line above)",
    "from main import Base  # noqa: E402  (needs the sys.path line above)\\n"
    "import alembic_postgresql_enum  # noqa: E402,F401",
)
chapter.edit_model('"done"', '"done", "paused"')
(lab.project.versions_dir / "bb52460cb671_add_paused_job_state.py").write_text(sys.stdin.read())
chapter.alembic("upgrade head")
print(json.dumps({c.name: [c.passed, c.hints[0] if c.hints else ""] for c in chapter.report().checks}))
"""
# The paused jobs moved before the plugin rebuilds the type: its sync_enum_values moves no row.
MOVE_PAUSED = """def downgrade() -> None:
    op.execute("UPDATE job_entries SET state = 'queued' WHERE state = 'paused'")
    op.sync_enum_values("""


def _with_the_plugin(lab: Lab, revision: str) -> dict[str, list]:
    """{check: [passed, first hint]} of chapter 07 answered with `revision`, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED, str(REPO / "tests"), str(lab.project.root), lab.db.url],
        input=revision,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_alembic_postgresql_enums_revision_with_double_quotes_and_the_rows_moved_passes(lab: Lab) -> None:
    revision = PLUGIN_REVISION.replace("def downgrade() -> None:\n    op.sync_enum_values(", MOVE_PAUSED)
    assert revision != PLUGIN_REVISION
    report = _with_the_plugin(lab, revision)
    assert all(passed for passed, _ in report.values()), report


def test_alembic_postgresql_enums_downgrade_as_generated_fails_on_a_paused_job(lab: Lab) -> None:
    """The plugin rebuilds the type but moves no row: with a paused job there, its downgrade fails."""
    report = _with_the_plugin(lab, PLUGIN_REVISION)
    failed = {name: hint for name, (passed, hint) in report.items() if not passed}
    assert set(failed) == {UNDONE}, failed
    assert "paused" in failed[UNDONE] and "with a paused job in it" in failed[UNDONE], failed


CATALOGUE_EDIT = """op.execute("DELETE FROM pg_enum WHERE enumlabel = 'paused' AND enumtypid = 'job_state'::regtype")"""


def test_a_catalogue_edit_that_breaks_the_rows_is_one_failing_check_not_a_traceback(lab: Lab, capsys) -> None:
    """A downgrade that deletes 'paused' from pg_enum (the lab's role may) leaves paused jobs whose value no longer
    exists: every read of them raises DataError, which came out of "Check my work" as a traceback."""
    chapter = start(lab, "07")
    paused_answer(chapter, CATALOGUE_EDIT)
    chapter.sql("UPDATE job_entries SET state = 'paused' WHERE id = 1")
    report = chapter.report()
    assert [c.name for c in report.checks if not c.passed] == ["the checks can read your database"], str(report)
    assert (
        "invalid internal value for enum" in report.checks[0].hint
        and "ch.start_exercise()" in report.checks[0].hints[1]
    )
    capsys.readouterr()


def test_the_order_hint_says_where_the_model_puts_paused(lab: Lab, capsys) -> None:
    """The model has paused between running and done, the database at the end: the hint said "AFTER 'done' puts it
    where the model has it", which is where it already was."""
    chapter = start(lab, "07")
    chapter.edit_model('"running", "done"', '"running", "paused", "done"')
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(
        upgrade="with op.get_context().autocommit_block():\n"
        "    op.execute(\"ALTER TYPE job_state ADD VALUE 'paused'\")",
        downgrade=HAND_WRITTEN_DOWNGRADE,
    )
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    order = "job_state's values are in the same order in main.py and the database"
    assert order in hints, hints
    assert "ADD VALUE 'paused' AFTER 'running' puts it where the model has it" in hints[order][1], hints[order]
    capsys.readouterr()


PYTHON_ENUM = """class JobState(enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    paused = "paused"


class JobEntry(Base):"""


@pytest.mark.parametrize("wrong", [False, True], ids=["in-order", "paused-first"])
def test_a_python_enum_class_in_the_model_is_graded_by_the_labels_it_gives_postgresql(
    lab: Lab, wrong: bool, capsys
) -> None:
    """The model may list job_state's values as a Python enum.Enum class (`Enum(JobState, name="job_state")`): the
    labels SQLAlchemy sends are what count, so in order it passes; with 'paused' first in the class, the database's
    order ('paused' after 'done') no longer matches and the order check fails."""
    chapter = start(lab, "07")
    chapter.edit_model("import os\n", "import enum\nimport os\n")
    members = PYTHON_ENUM.replace('    paused = "paused"\n', "")
    if wrong:
        members = members.replace('    queued = "queued"\n', '    paused = "paused"\n    queued = "queued"\n')
    else:
        members = members.replace('    done = "done"\n', '    done = "done"\n    paused = "paused"\n')
    chapter.edit_model("class JobEntry(Base):", members)
    chapter.edit_model('Enum("queued", "running", "done", name="job_state")', 'Enum(JobState, name="job_state")')
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(upgrade=ADD_PAUSED, downgrade=HAND_WRITTEN_DOWNGRADE)
    chapter.alembic("upgrade head")
    hints = failing(chapter)
    order = "job_state's values are in the same order in main.py and the database"
    assert list(hints) == ([order] if wrong else []), hints
    if wrong:
        assert "main.py says paused, queued, running, done" in hints[order][0], hints
    capsys.readouterr()


def test_a_python_enum_class_whose_values_are_the_labels_passes_with_values_callable(lab: Lab, capsys) -> None:
    """Upper-case member names, the lower-case labels as values: `values_callable` tells SQLAlchemy to send the values,
    and the grader reads the labels the model gives PostgreSQL, not the member names."""
    chapter = start(lab, "07")
    chapter.edit_model("import os\n", "import enum\nimport os\n")
    members = "\n".join(f'    {name.upper()} = "{name}"' for name in ("queued", "running", "done", "paused"))
    chapter.edit_model("class JobEntry(Base):", f"class JobState(enum.Enum):\n{members}\n\n\nclass JobEntry(Base):")
    chapter.edit_model(
        'Enum("queued", "running", "done", name="job_state")',
        'Enum(JobState, name="job_state", values_callable=lambda states: [s.value for s in states])',
    )
    chapter.alembic('revision -m "add paused job state"')
    chapter.rewrite_revision(upgrade=ADD_PAUSED, downgrade=HAND_WRITTEN_DOWNGRADE)
    chapter.alembic("upgrade head")
    assert failing(chapter) == {}
    capsys.readouterr()
