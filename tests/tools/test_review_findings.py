"""The reviewer's existing findings, corrected: squawk's said once, the enum fix puts the value in the model's
place and names the real scope of "cannot be used in the same transaction"."""

import pytest

from helpers import edit_model, write_revision
from migration_lab import Lab
from migration_lab.course.registry import reset
from migration_lab.tools.review import review

EMAIL_LINE = "    email = Column(String(255), nullable=False, unique=True)\n"


def test_a_squawk_rule_broken_by_two_statements_is_said_once(lab: Lab) -> None:
    reset("01", lab)
    edit_model(
        lab.project,
        EMAIL_LINE,
        EMAIL_LINE + "    nickname = Column(String(40), nullable=True)\n    city = Column(String(60), nullable=True)\n",
    )
    result = lab.runner.run(["revision", "--autogenerate", "-m", "two varchar columns"])
    found = review(result.new_revisions[0], lab)
    text = [f for f in found.findings if f.rule == "squawk:prefer-text-field"]
    assert len(text) == 1, str(found)
    assert text[0].message.endswith("(2 statements)")
    rules = [f.rule for f in found.findings]
    assert len(rules) == len(set(rules)), str(found)


def test_the_enum_fix_says_where_the_value_goes_and_which_transaction(lab: Lab) -> None:
    reset("07", lab)
    edit_model(lab.project, '"done", name="job_state"', '"done", "failed", name="job_state"')
    edit_model(lab.project, '"running", "done"', '"running", "paused", "done"')
    result = lab.runner.run(["revision", "--autogenerate", "-m", "two states"])
    fixes = {f.message: f.fix for f in review(result.new_revisions[0], lab).findings if f.rule == "enum-change-unseen"}
    [paused] = [fix for message, fix in fixes.items() if "'paused'" in message]
    [failed] = [fix for message, fix in fixes.items() if "'failed'" in message]
    assert "ADD VALUE 'paused' AFTER 'running'" in paused
    assert "ADD VALUE 'failed' AFTER 'done'" in failed
    assert "whole `alembic upgrade` run" in failed and "UnsafeNewEnumValueUsage" in failed
    assert "if the same migration uses it" not in failed


ADD_FAILED = "op.execute(\"ALTER TYPE job_state ADD VALUE 'failed' AFTER 'done'\")"
USE_FAILED = "op.execute(\"UPDATE job_entries SET state = 'failed' WHERE id = 1\")"


@pytest.mark.parametrize("per_migration", [True, False])
def test_a_new_enum_value_used_by_a_later_revision_of_the_same_run(lab: Lab, per_migration: bool) -> None:
    """What the enum fix claims: with alembic's default (one transaction for the whole upgrade run) a later
    revision cannot use the value; with transaction_per_migration=True (this project's env.py) it can."""
    reset("07", lab)
    if not per_migration:
        env = lab.project.service_dir / "migrations" / "env.py"
        env.write_text(env.read_text().replace("transaction_per_migration=True", "transaction_per_migration=False"))
    write_revision(lab.project, "0f0000000001", "a1c4e7f20b13", ADD_FAILED)
    write_revision(lab.project, "0f0000000002", "0f0000000001", USE_FAILED)
    result = lab.runner.run("upgrade head")
    if per_migration:
        assert result.ok, result.error
    else:
        assert not result.ok and "UnsafeNewEnumValueUsage" in (result.error or ""), result.error
