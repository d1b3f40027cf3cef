"""What makes the kit's widgets usable by everyone, checked in Python (tests/e2e/test_accessibility.py checks them
in a real browser with axe-core): text contrast, nothing said by colour alone, the graph in words, the question."""

import re
from datetime import UTC, datetime, timedelta

from helpers import write_revision
from migration_lab import Lab
from migration_lab.course.registry import reset, spec
from migration_lab.front.notebook import Chapter
from migration_lab.front.widgets import CheckButton, MigrationConsole
from migration_lab.styles import FOCUS_RING, KIT_CLASS
from migration_lab.tools import graph
from migration_lab.workshop.room import ChapterProgress, LearnerStatus
from migration_lab.workshop.status import html


def _luminance(colour: str) -> float:
    """WCAG 2.1's relative luminance of #rrggbb."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: str, other: str) -> float:
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_contrast_formula() -> None:
    assert round(contrast("#ffffff", "#000000"), 1) == 21.0
    assert round(contrast("#ffffff", "#f57c00"), 1) == 2.7  # JupyterLab's warning orange: what the issue measured


def test_every_coloured_button_keeps_its_text_readable(lab: Lab) -> None:
    """Coloured buttons carry their own colours (the theme's fail AA); their kind stays in button_style."""
    reset("01", lab)
    console = MigrationConsole(lab)
    check = CheckButton(Chapter(spec("01"), lab))
    coloured = [b for b in [*console.buttons.values(), console.confirm, check.button] if b.button_style]
    assert {b.description for b in coloured} >= {"downgrade -1", "stamp head", "autogenerate", "Yes, run it"}
    for button in coloured:
        assert button.style.text_color == "#ffffff", button.description
        assert contrast(button.style.button_color, "#ffffff") >= 4.5, button.description
    for widget in (console, check):
        assert KIT_CLASS in widget._dom_classes
        assert any(getattr(child, "value", None) == FOCUS_RING for child in widget.children)
    assert re.search(r"outline: 2px solid #1a5fb4", FOCUS_RING) and contrast("#1a5fb4", "#eeeeee") >= 3


def test_the_question_is_announced_and_its_buttons_wrap_rather_than_shrink(lab: Lab) -> None:
    reset("03", lab)
    console = MigrationConsole(lab)
    console.buttons["downgrade -1"].click()
    assert console.question.value.startswith('<div role="alert">')
    assert console.confirm_row.layout.flex_flow == "row wrap"
    assert console.confirm.layout.flex == console.cancel.layout.flex == "0 0 auto"
    console.cancel.click()


def test_the_live_schema_says_each_change_in_words(lab: Lab) -> None:
    reset("03", lab)  # at a1c4e7f20b13: phone_number
    console = MigrationConsole(lab)
    console.buttons["downgrade -1"].click()
    console.confirm.click()
    view = console.schema_view.value
    assert "- column user_profiles.phone_number (dropped)" in view
    assert "<td>- dropped</td><td><code>phone_number</code>" in view
    console.buttons["upgrade head"].click()
    view = console.schema_view.value
    assert "+ column user_profiles.phone_number (added)" in view
    assert "<td>+ added</td><td><code>phone_number</code>" in view


def test_the_revision_graph_has_its_revisions_in_words(lab: Lab) -> None:
    """accTitle and accDescr: JupyterLab makes them the picture's alt text and a caption; merges name both."""
    project = lab.project
    write_revision(project, "aaaa00000001", "8b7e5d2c6a41", "pass")
    write_revision(project, "bbbb00000002", "8b7e5d2c6a41", "pass")
    write_revision(project, "cccc00000003", ("aaaa00000001", "bbbb00000002"), "pass")
    text = graph.mermaid(lab.runner.script(), ("aaaa00000001",))
    lines = text.splitlines()
    assert lines[1] == "flowchart TD"
    assert lines[2] == "  accTitle: Revision graph: 5 revisions, the database at aaaa00000001"
    description = lines[3]
    assert description.startswith("  accDescr { Oldest first: 3f1c2a9d4b10 create user profiles and settings")
    assert "; 8b7e5d2c6a41 add job entries (after 3f1c2a9d4b10);" in description
    assert "aaaa00000001 hand written aaaa00000001 (after 8b7e5d2c6a41, database);" in description
    assert description.endswith(
        "cccc00000003 hand written cccc00000003 (after aaaa00000001, bbbb00000002, head, merge point) }"
    )
    empty = graph.mermaid(lab.runner.script(), ())
    assert "the database at base (no revision)" in empty


def test_the_room_marks_a_stuck_learner_in_words_too() -> None:
    now = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)

    def learner(name: str, chapter: str, passed: int, total: int, error: str | None, idle: int) -> LearnerStatus:
        """A learner whose last check gained nothing for `idle` minutes."""
        since = now - timedelta(minutes=idle)
        progress = ChapterProgress(chapter, passed, total, error, since, since, since, None)
        return LearnerStatus(name, (progress,), sessions=1, databases=1, problem=None, now=now)

    rows = [learner("learner01", "01", 3, 3, None, 2), learner("learner03", "08", 1, 5, "✘ <the> frame & more", 14)]
    table = html(rows)
    assert "<td style='padding:2px 8px'>STUCK learner03</td>" in table
    assert "<td style='padding:2px 8px'>learner01</td>" in table  # the others are not marked
    assert "&lt;the&gt; frame &amp; more" in table and "<th scope='col'" in table
