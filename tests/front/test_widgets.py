"""Widgets, clicked in plain Python: assert on the database and on the kernel-side output."""

import ipywidgets as w
import sqlalchemy as sa

from helpers import EMAIL_LINE, add_phone_number, columns, edit_model
from migration_lab import Lab
from migration_lab.course.ch03_rollback import LANGUAGE_DOWN
from migration_lab.course.registry import reset, spec
from migration_lab.front.notebook import Chapter
from migration_lab.front.widgets import CheckButton, MigrationConsole


def shown(console: MigrationConsole) -> str:
    return "".join(o.get("text", "") for o in console.output.outputs)


def start(lab: Lab, number: str = "01") -> MigrationConsole:
    reset(number, lab)
    return MigrationConsole(lab)


def test_each_button_shows_both_command_lines(lab: Lab) -> None:
    console = start(lab)
    console.buttons["current"].click()
    text = shown(console)
    assert "$ alembic current" in text
    assert "(Docker route: docker-compose exec ai-api alembic current)" in text
    assert "8b7e5d2c6a41 (head)" in text and " ms)" in text
    console.buttons["history"].click()
    assert "<base> -> 3f1c2a9d4b10, create user profiles and settings" in shown(console)
    assert repr(console).startswith("Migration console: current, history, heads, upgrade head")


def test_autogenerate_then_upgrade_updates_the_views(lab: Lab, engine: sa.Engine) -> None:
    console = start(lab)
    console.buttons["autogenerate"].click()
    assert "Type a message first" in shown(console)
    add_phone_number(lab.project)
    console.message.value = "Add phone number to profile"
    console.buttons["autogenerate"].click()
    assert "New file: ai-service/migrations/versions/" in shown(console)
    assert "_add_phone_number_to_profile.py" in shown(console)
    assert "Review of " in shown(console) and "[squawk:" in shown(console)  # reviewed before it is applied
    console.buttons["upgrade head"].click()
    assert "Running upgrade 8b7e5d2c6a41 -> " in shown(console)
    assert "phone_number" in columns(engine, "user_profiles")
    assert console.schema_view.changes.added_columns == (("user_profiles", "phone_number"),)
    assert "+ column user_profiles.phone_number" in console.schema_view.value
    assert "<code>phone_number</code>" in console.schema_view.value
    graph = console.graph.outputs[0]["data"]["text/markdown"]
    assert "flowchart TD" in graph and "head · ● database" in graph


def test_destructive_commands_ask_and_cancel_changes_nothing(lab: Lab) -> None:
    console = start(lab, "03")  # at head; phone_number holds two values
    console.buttons["downgrade -1"].click()
    assert console.confirm_row.layout.display == "flex"
    assert "would destroy data: column user_profiles.phone_number and its 2 value(s)" in console.question.value
    assert lab.db.heads() == ("a1c4e7f20b13",)
    console.cancel.click()
    assert "Cancelled: alembic downgrade -1 was not run." in shown(console)
    assert console.confirm_row.layout.display == "none"
    assert lab.db.heads() == ("a1c4e7f20b13",)


def test_a_double_click_runs_once(lab: Lab) -> None:
    console = start(lab, "03")
    console.buttons["downgrade -1"].click()
    console.confirm.click()
    console.confirm.click()  # the second click of a double click on "Yes"
    console.buttons["downgrade -1"].click()  # queued while the first ran: ignored
    assert lab.db.heads() == ("8b7e5d2c6a41",)
    assert console.confirm_row.layout.display == "none"
    console.buttons["upgrade head"].click()
    console.buttons["upgrade head"].click()
    assert shown(console).count("Running upgrade") == 1


def test_buttons_are_disabled_while_a_command_runs(lab: Lab, monkeypatch) -> None:
    console = start(lab)
    seen = []
    original = lab.runner.run

    def spy(*args, **kwargs):
        seen.append(all(b.disabled for b in console.buttons.values()))
        return original(*args, **kwargs)

    monkeypatch.setattr(lab.runner, "run", spy)
    console.buttons["heads"].click()
    assert seen == [True]
    assert not any(b.disabled for b in console.buttons.values())


def test_a_broken_model_shows_a_short_error_and_a_hint(lab: Lab) -> None:
    console = start(lab)
    edit_model(lab.project, EMAIL_LINE, EMAIL_LINE + "    phone_number = Column(String, nullable=True\n")
    console.buttons["upgrade head"].click()
    text = shown(console)
    assert "FAILED: SyntaxError in ai-service/main.py, line " in text
    assert "Hint: Python could not read that file" in text and "Traceback" not in text
    assert "Database unchanged, at 8b7e5d2c6a41" in text


def test_a_failed_migration_says_it_was_rolled_back(lab: Lab, engine: sa.Engine) -> None:
    from helpers import write_revision

    console = start(lab)
    write_revision(
        lab.project,
        "eeee00000001",
        "8b7e5d2c6a41",
        """
        op.add_column('user_profiles', sa.Column('nickname', sa.String()))
        op.execute("UPDATE user_profiles SET nickname = 1/0")
    """,
    )
    console.buttons["upgrade head"].click()
    text = shown(console)
    assert "FAILED: DivisionByZero: division by zero" in text
    assert (
        "Database unchanged, at 8b7e5d2c6a41\nThe failing revision was rolled back: nothing this command did was kept."
        in text
    )
    assert "nickname" not in columns(engine, "user_profiles")


def test_check_my_work_button(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    chapter.start_exercise()
    button = CheckButton(chapter)
    button.button.click()
    text = button.output.outputs[0]["text"]
    assert "✘ the downgrade() of d4f0c3b2a1e9" in text and "Hint 1 of 3: A downgrade() that is `pass` still" in text
    chapter.rewrite_revision(revision="add_language", downgrade=LANGUAGE_DOWN)
    button.button.click()
    assert "All checks pass" in button.output.outputs[0]["text"]
    capsys.readouterr()


def graph_text(console: MigrationConsole) -> str:
    return console.graph.outputs[0]["data"]["text/markdown"]


def test_the_console_follows_a_reset_and_commands_in_other_cells(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    console = chapter.console()
    assert "ra1c4e7f20b13 database" in graph_text(console)
    chapter.alembic("downgrade -1", confirm=True)  # another cell: the console shows it at once
    assert "r8b7e5d2c6a41 database" in graph_text(console)
    assert "- column user_profiles.phone_number" in console.schema_view.value
    chapter.reset()
    assert "ra1c4e7f20b13 database" in graph_text(console)
    capsys.readouterr()


def test_a_click_after_a_change_elsewhere_shows_the_lab_as_it_is(lab: Lab) -> None:
    """A terminal or another notebook moved the database: the next click refreshes the views first."""
    console = start(lab, "03")
    lab.runner.run("downgrade -1")  # not through this kernel's chapter
    assert "ra1c4e7f20b13 database" in graph_text(console)  # stale until something happens here
    console.buttons["downgrade -1"].click()
    assert "r8b7e5d2c6a41 database" in graph_text(console)
    assert "8b7e5d2c6a41 to 3f1c2a9d4b10" in console.question.value  # asked from where the database is
    console.cancel.click()


def test_running_the_console_cell_again_replaces_the_old_console(lab: Lab) -> None:
    first = start(lab)
    second = MigrationConsole(lab)
    assert first.comm is None and second.comm is not None  # the old one is closed, not left looking live
    assert "run its cell again" in repr(second) and "kernel restart" in second.note.value


def test_labels_fit_and_the_graph_is_readable(lab: Lab) -> None:
    from migration_lab.tools import graph

    console = start(lab)
    for button in console.buttons.values():
        assert button.layout.width == "auto", button.description
        assert len(button.description) <= 14, button.description
    assert console.buttons["autogenerate"].tooltip.startswith("alembic revision --autogenerate")
    assert int(console.graph.layout.min_width.removesuffix("px")) >= 300
    text = graph_text(console)
    assert text.startswith("```mermaid\n%%{init:") and '"useMaxWidth": false' in text
    assert graph.FONT_SIZE_PX >= 11 and f'"fontSize": "{graph.FONT_SIZE_PX}px"' in text


def test_data_loss_is_red(lab: Lab) -> None:
    console = start(lab, "03")
    console.buttons["downgrade -1"].click()
    assert 'style="color:#b00020;font-weight:bold"' in console.question.value
    console.cancel.click()


def test_stop_and_data_loss_are_red_in_notebook_output(lab: Lab, capsys) -> None:
    from migration_lab.front.notebook import RED

    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    capsys.readouterr()
    chapter.alembic("downgrade -1")
    assert f"{RED}STOP: alembic downgrade -1" in capsys.readouterr().out
    chapter.rehearse("downgrade -1")
    assert f"{RED}DATA LOSS: column user_profiles.phone_number" in capsys.readouterr().out


def test_a_broken_revision_file_does_not_hide_what_the_cell_did(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    console = chapter.console()
    (lab.project.versions_dir / "ffff00000001_broken.py").write_text("revision = 'ffff00000001'\ndown_revision = (\n")
    chapter.alembic("current")  # the cell's own answer comes out; the console's graph says what is wrong
    assert "alembic cannot read the revision files" in capsys.readouterr().out
    graph = "".join(o.get("text", "") for o in console.graph.outputs)
    assert "ffff00000001_broken.py" in graph and "SyntaxError" in graph, graph


def test_next_hint_button_gives_the_next_level_below_the_earlier_ones(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    chapter.start_exercise()
    button = CheckButton(chapter)
    button.button.click()
    assert "Hint 1 of 3: A downgrade() that is `pass` still succeeds" in button.text()
    assert "Stuck? ch.hint() gives hint 2 of 3." in button.text()
    button.hint_button.click()
    assert "Hint 2 of 3: Open ai-service/migrations/versions/d4f0c3b2a1e9" in button.text()
    button.hint_button.click()
    text = button.text()
    assert 'Hint 3 of 3: ch.rewrite_revision(revision="add_language"' in text and "That was the last hint" in text
    # Hint 1 (in the report) and hint 2 are still there to read, in order.
    assert text.index("Hint 1 of 3") < text.index("Hint 2 of 3") < text.index("Hint 3 of 3")
    button.button.click()  # a new check starts a new page
    assert "Hint 2 of 3" not in button.text() and "ch.hints() shows the 3 hints again" in button.text()
    capsys.readouterr()


def test_check_my_work_wraps_hints_between_words(lab: Lab) -> None:
    """JupyterLab's output <pre> breaks anywhere (word-break: break-all): the button brings a rule that wraps long
    hints between words (an ipywidgets HTML sets innerHTML, so its <style> applies to the page)."""
    from migration_lab.front.widgets import WRAP_BETWEEN_WORDS

    button = CheckButton(Chapter(spec("11"), lab))
    styles = [c.value for c in button.children if isinstance(c, w.HTML)]
    assert WRAP_BETWEEN_WORDS in styles  # beside the focus ring's rule (tests/front/test_accessible_widgets.py)
    assert "word-break: normal" in WRAP_BETWEEN_WORDS and ".jp-OutputArea-output pre" in WRAP_BETWEEN_WORDS
