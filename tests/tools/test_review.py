"""The reviewer, one finding at a time, on scripts autogenerate really wrote against a real database."""

from pathlib import Path

import sqlalchemy as sa

from helpers import PHONE_LINE, edit_model
from migration_lab import Lab
from migration_lab.course.registry import reset
from migration_lab.tools.review import review


def autogenerate(lab: Lab, message: str) -> str:
    result = lab.runner.run(["revision", "--autogenerate", "-m", message])
    assert result.ok, result.error
    return result.new_files[0].name.split("_")[0]


def test_rename_as_drop_add_not_null_and_data_loss(lab: Lab) -> None:
    reset("02", lab)  # three profiles, two with phone numbers
    edit_model(
        lab.project,
        "    name = Column(String(100), nullable=False)\n",
        "    full_name = Column(String(100), nullable=False)\n",
    )
    found = review(autogenerate(lab, "rename name"), lab)
    by_rule = {f.rule: f for f in found.findings}
    assert "drops name and adds full_name" in by_rule["rename-as-drop-add"].message
    assert "new_column_name='full_name'" in by_rule["rename-as-drop-add"].fix
    assert by_rule["not-null-without-default"].severity == "error"
    assert "fails on the 3 rows" in by_rule["not-null-without-default"].message
    assert by_rule["fails"].severity == "error" and "NotNullViolation" in by_rule["fails"].message
    assert {"squawk:adding-required-field", "squawk:ban-drop-column"} <= found.rules()
    assert found.findings[0].severity == "error"  # worst first


def test_dropped_column_reports_its_values(lab: Lab) -> None:
    reset("02", lab)
    edit_model(lab.project, PHONE_LINE, "")
    found = review(autogenerate(lab, "drop phone"), lab)
    [loss] = [f for f in found.findings if f.rule == "drops-data"]
    assert loss.message == "drops the column user_profiles.phone_number and its 2 value(s)."


def test_a_fixed_rename_is_recognised(lab: Lab) -> None:
    from migration_lab.workspace.edits import apply_edit, replace_function_body
    from migration_lab.workspace.revisions import newest_script

    reset("02", lab)
    edit_model(lab.project, PHONE_LINE, "    phone = Column(String, nullable=True)\n")
    revision = autogenerate(lab, "rename phone")
    apply_edit(
        Path(newest_script(lab.runner.script()).path),
        replace_function_body("upgrade", "op.alter_column('user_profiles', 'phone_number', new_column_name='phone')"),
        lab.project.root,
    )
    found = review(revision, lab)
    assert "rename-as-drop-add" not in found.rules() and "drops-data" not in found.rules()
    [kept] = [f for f in found.findings if f.rule == "rename-keeps-data"]
    assert "phone_number renamed to phone" in kept.message
    assert "squawk:renaming-column" in found.rules()


def test_enum_value_autogenerate_cannot_see(lab: Lab) -> None:
    reset("01", lab)
    edit_model(
        lab.project,
        'Enum("queued", "running", "done", name="job_state")',
        'Enum("queued", "running", "done", "failed", name="job_state")',
    )
    found = review(autogenerate(lab, "failed state"), lab)
    [enum] = [f for f in found.findings if f.rule == "enum-change-unseen"]
    assert "ENUM job_state the value 'failed'" in enum.message
    assert "ALTER TYPE job_state ADD VALUE 'failed'" in enum.fix


def test_non_concurrent_index_on_a_large_table(lab: Lab, engine: sa.Engine) -> None:
    reset("01", lab)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_profiles (name, email) "
                "SELECT 'user ' || i, 'user' || i || '@example.org' FROM generate_series(1, 20000) i"
            )
        )
    edit_model(
        lab.project,
        "    name = Column(String(100), nullable=False)\n",
        "    name = Column(String(100), nullable=False, index=True)\n",
    )
    found = review(autogenerate(lab, "index names"), lab)
    [index] = [f for f in found.findings if f.rule == "non-concurrent-index"]
    assert "ix_user_profiles_name on user_profiles (20003 rows)" in index.message
    assert "postgresql_concurrently=True" in index.fix
    assert "squawk:require-concurrent-index-creation" in found.rules()


def test_a_harmless_revision_has_no_errors(lab: Lab) -> None:
    reset("01", lab)
    edit_model(
        lab.project,
        "    email = Column(String(255), nullable=False, unique=True)\n",
        "    email = Column(String(255), nullable=False, unique=True)\n" + PHONE_LINE,
    )
    found = review(autogenerate(lab, "phone"), lab)
    assert not [f for f in found.findings if f.severity == "error"], str(found)
    assert "not-rehearsed" not in found.rules()
