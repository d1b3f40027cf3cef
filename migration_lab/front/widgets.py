"""Widgets: thin layers over the runner, the schema and the checks.

Output goes through the kernel-side `Output.append_stdout` /
`append_display_data`, which behave the same in JupyterLab, nbclient and
nbval, and which tests read back from `Output.outputs` after `Button.click()`.
"""

import contextlib
import html
import shlex
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import ipywidgets as w
import sqlalchemy as sa
from IPython.display import Markdown

from ..course.checks import Report
from ..database import schema
from ..errors import BrokenConfig, BrokenHistory, LabError
from ..lab import Lab
from ..running import policy
from ..running.runner import RunResult
from ..styles import FOCUS_RING, KIT_CLASS, WHITE_TEXT_ON
from ..tools import graph
from ..tools.review import review

# (button label, alembic command, destructive: asks before running)
COMMANDS: tuple[tuple[str, str, bool], ...] = (
    ("current", "current", False),
    ("history", "history -i", False),
    ("heads", "heads", False),
    ("upgrade head", "upgrade head", False),
    ("downgrade -1", "downgrade -1", True),
    ("downgrade base", "downgrade base", True),
    ("stamp head", "stamp head", True),
)
UNREACHABLE = "The lab database does not answer: start it with `python -m migration_lab up`, then run a command."
# A second click on the same button this soon after its command finished is the
# tail of a double click (queued while the first ran), not a new request.
DOUBLE_CLICK_SECONDS = 0.5


def button(description: str, kind: str = "", **kwargs: Any) -> w.Button:
    """An ipywidgets Button whose text keeps AA contrast whatever the theme makes of its kind.

    `button_style` stays: its class still says what kind of button it is.
    """
    style = {"button_color": WHITE_TEXT_ON[kind], "text_color": "#ffffff"} if kind else {}
    return w.Button(description=description, button_style=kind, style=style, **kwargs)


class SchemaView(w.HTML):
    """Live tables and columns; what changed since the previous refresh is highlighted."""

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab
        self._previous: schema.Snapshot | None = None
        self.changes = schema.SchemaDiff()
        self.refresh()

    def refresh(self) -> None:
        try:
            with self.lab.db.connect() as conn:
                current = schema.snapshot(conn)
        except (LabError, sa.exc.OperationalError):
            self.value = f"<b>Live schema</b><p><i>{html.escape(UNREACHABLE)}</i></p>"
            return
        self.changes = schema.diff(self._previous, current) if self._previous is not None else schema.SchemaDiff()
        self._previous = current
        said = ", ".join(self.changes.said())
        legend = f"<p><small>Changed by the last command: {html.escape(said)}</small></p>" if self.changes else ""
        self.value = "<b>Live schema</b>" + legend + schema.render_html(current, self.changes)

    def __repr__(self) -> str:
        return "Schema view (live tables and columns)"


class RevisionGraph(w.Output):
    """Revisions, heads, merge points and the database's position, drawn by Mermaid."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(layout=w.Layout(min_width=f"{graph.MIN_WIDTH_PX}px", overflow="auto"))
        self.lab = lab
        self.refresh()

    def refresh(self) -> None:
        self.outputs = ()
        try:
            heads = self.lab.db.heads()
        except (LabError, sa.exc.OperationalError):
            self.append_stdout(UNREACHABLE + "\n")
            return
        try:
            scripts = self.lab.runner.script()
        except (BrokenHistory, BrokenConfig) as error:  # a parent gone, an alembic.ini alembic cannot read
            self.append_stdout(f"{error.what}\nWhat to do: {error.next_step}\n")
            return
        self.append_display_data(Markdown(graph.markdown(scripts, heads)))

    def __repr__(self) -> str:
        return "Revision graph (Mermaid)"


class MigrationConsole(w.VBox):
    """Buttons for the workflow's commands, each showing the exact command line it stands for."""

    def __init__(self, lab: Lab, with_views: bool = True) -> None:
        self.lab = lab
        self.buttons: dict[str, w.Button] = {}
        for label, line, destructive in COMMANDS:
            self.buttons[label] = button(
                label,
                "warning" if destructive else "",
                tooltip=f"alembic {line}",
                layout=w.Layout(width="auto", min_width="8em"),
            )
            self.buttons[label].on_click(self._handler(line, destructive))
        self.message = w.Text(placeholder="message, e.g. Add phone number to profile", layout=w.Layout(width="24em"))
        self.buttons["autogenerate"] = button(
            "autogenerate",
            "info",
            icon="magic",
            tooltip='alembic revision --autogenerate -m "<message>"',
            layout=w.Layout(width="auto", min_width="10em"),
        )
        self.buttons["autogenerate"].on_click(lambda _: self._autogenerate())
        # The question takes the row and its buttons wrap below it at full width, never cut to "Yes, ..." / "Ca...".
        self.question = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.confirm = button("Yes, run it", "danger", layout=w.Layout(width="auto", flex="0 0 auto"))
        self.cancel = button("Cancel", layout=w.Layout(width="auto", flex="0 0 auto"))
        self.confirm.on_click(lambda _: self._answer(True))
        self.cancel.on_click(lambda _: self._answer(False))
        self.confirm_row = w.HBox(
            [self.question, self.confirm, self.cancel],
            layout=w.Layout(display="none", flex_flow="row wrap", align_items="center"),
        )
        self._asked_from: w.Button | None = None  # the button whose question is open: the focus goes back there
        self.output = w.Output(layout=w.Layout(border="1px solid #ddd", padding="4px"))
        self.schema_view = SchemaView(lab) if with_views else None
        self.graph = RevisionGraph(lab) if with_views else None
        self.confirmation = policy.Confirmation(lab.runner)
        self._pending: str | None = None  # the key of the open question ("Yes, run it" answers it)
        self._finished: dict[str, float] = {}
        self._seen = self._state()  # what the views show; a click that finds the lab elsewhere refreshes them
        self.note = w.HTML(f"<small style='color:#666'>{html.escape(RESTART_NOTE)}</small>")
        children = [
            w.HBox([b for k, b in self.buttons.items() if k != "autogenerate"], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.message, self.buttons["autogenerate"]]),
            self.confirm_row,
            self.output,
        ]
        if with_views:
            children += [w.HBox([self.schema_view, self.graph], layout=w.Layout(flex_flow="row wrap"))]
        self.focus_ring = w.HTML(FOCUS_RING)  # a <style> of its own: it holds in any notebook
        super().__init__([*children, self.note, self.focus_ring])
        self.add_class(KIT_CLASS)
        for old in list(_CONSOLES):  # the cell ran again: this console replaces the one it showed before
            if old.lab.project.root == lab.project.root and old.lab.db.url == lab.db.url:
                old.close_all()
                _CONSOLES.discard(old)
        _CONSOLES.add(self)

    def __repr__(self) -> str:
        return "Migration console: " + ", ".join(self.buttons) + f". {RESTART_NOTE}"

    def close_all(self) -> None:
        """Close the console and every widget in it (the cell ran again)."""
        for child in [*self.buttons.values(), self.message, self.question, self.confirm, self.cancel, self.output]:
            child.close()
        for view in (self.schema_view, self.graph, self.note, self.focus_ring):
            if view is not None:
                view.close()
        self.close()

    def _state(self) -> tuple:
        """Where the lab is: the database's revisions and the revision files (what the views show)."""
        try:
            heads: tuple[str, ...] | None = self.lab.db.heads()
        except (LabError, sa.exc.OperationalError):
            heads = None
        files = tuple(sorted(p.name for p in self.lab.project.versions_dir.glob("*.py")))
        return heads, files

    def _say(self, text: str) -> None:
        self.output.outputs = ()
        self.output.append_stdout(text.rstrip() + "\n")

    def _handler(self, line: str, destructive: bool) -> Callable[[w.Button], None]:
        def handle(pressed: w.Button) -> None:
            self._asked_from = pressed
            self.run(line, ask=destructive)

        return handle

    def _ask(self, key: str, checked: policy.Plan, note: str = "") -> None:
        """Ask before running a checked command; the question says what data it would destroy."""
        self._pending = key
        loss = checked.rehearsal is not None and (checked.rehearsal.losses or not checked.rehearsal.rehearsed)
        style = ' style="color:#b00020;font-weight:bold"' if loss else ""
        # role="alert": a screen reader says the question as it appears.
        self.question.value = (
            f'<div role="alert">{note}<span{style}>{html.escape(checked.question())}</span> Run it?</div>'
        )
        self.confirm_row.layout.display = "flex"
        self.cancel.focus()  # the keyboard lands on the safe answer; Shift+Tab reaches "Yes, run it"
        waiting = f"Waiting for your answer: {checked.question()}"
        if note:  # keep what was said before: why the learner is asked again
            self.output.append_stdout(waiting + "\n")
        else:
            self._say(waiting)

    def _answer(self, yes: bool) -> None:
        key, self._pending = self._pending, None
        self.confirm_row.layout.display = "none"
        if self._asked_from is not None:  # the answered buttons are gone: focus back where the question came from
            self._asked_from.focus()
        if key is None:
            return  # the second click of a double click on "Yes"
        if not yes:
            turn = self.confirmation.answer(key, yes=False)
            if turn is not None:
                self._say(f"Cancelled: {turn.plan.command.local} was not run.")
            return
        asked = self.confirmation.asked(key)
        if asked is None:
            return
        with self._busy(key):
            self._say(f"Running: {asked.command.local} ...")
            turn = self.confirmation.answer(key, yes=True)
            if turn is not None:
                self._show(key, turn)

    def _autogenerate(self) -> None:
        message = self.message.value.strip()
        if not message:
            self._say("Type a message first: it names the revision file and its line in the history.")
            return
        self.run(f"revision --autogenerate -m {shlex.quote(message)}", key="autogenerate")

    def _recently_finished(self, key: str) -> bool:
        return time.monotonic() - self._finished.get(key, float("-inf")) < DOUBLE_CLICK_SECONDS

    @contextlib.contextmanager
    def _busy(self, key: str) -> Iterator[None]:
        for button in self.buttons.values():
            button.disabled = True
        try:
            yield
        finally:
            self._finished[key] = time.monotonic()
            for button in self.buttons.values():
                button.disabled = False

    def run(self, line: str, key: str | None = None, ask: bool = False) -> RunResult | None:
        """Check a command, ask first if it could destroy data (or `ask`), else run it; refresh the views."""
        key = key or line
        if self._recently_finished(key):
            return None
        if self._state() != self._seen:  # a reset or a command elsewhere (another cell, a terminal)
            self.refresh()
        self._pending = None  # another button: the open question is dropped, unanswered
        self.confirmation.forget()
        self.confirm_row.layout.display = "none"
        with self._busy(key):
            try:
                turn = self.confirmation.request(line, key=key, ask=ask, say=lambda stage: self._stage(stage, line))
            except LabError as error:
                self._say(str(error))
                return None
            if turn.result is not None:
                self._show(key, turn)
        if turn.result is None:
            self._ask(key, turn.plan)
        return turn.result

    def _stage(self, stage: policy.Stage, line: str) -> None:
        """What the console is doing, while it does it."""
        if stage == "planning":
            self._say(f"Checking: alembic {line} ...")
        elif stage == "running":
            self._say(f"Running: alembic {line} ...")

    def _show(self, key: str, turn: policy.Turn) -> None:
        """A command's result in the output, the views refreshed; asked again if the database moved."""
        result = turn.result
        if result is None:
            return
        if policy.moved(result):
            self._say(str(result))
        else:
            text = f"{result}\n({result.duration * 1000:.0f} ms)"
            if key == "autogenerate" and result.ok and result.new_files:
                # Step 3 of the workflow, at once: never apply a generated script unread.
                text += "\n\n" + str(review(result.new_revisions[0], self.lab))
            self._say(text)
        self.refresh()
        if turn.question is not None:
            # Asked about one position, the database is at another: checked again from there, asked again.
            self._ask(key, turn.question, note="<b>The database moved since you were asked.</b> ")

    def refresh(self) -> None:
        """Re-read the schema and the revision graph (after a command, a reset, a kernel restart)."""
        self._seen = self._state()
        if self.schema_view is not None and self.graph is not None:
            self.schema_view.refresh()
            self.graph.refresh()


RESTART_NOTE = "Buttons do nothing? After a kernel restart this console is disconnected: run its cell again."
_CONSOLES: "weakref.WeakSet[MigrationConsole]" = weakref.WeakSet()


def refresh_consoles(lab: Lab) -> None:
    """Show the lab as it is now in every console of this kernel on the same lab (after a reset, a command)."""
    for console in list(_CONSOLES):
        if console.lab.project.root == lab.project.root and console.lab.db.url == lab.db.url:
            try:
                console.refresh()
            except Exception as error:  # a view that cannot be drawn must not hide what the cell did
                console.output.append_stdout(f"The console could not refresh its views: {error}\n")


def user_namespace() -> dict:
    """The notebook's variables (where a solution defines `answer`), or {} outside IPython."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def executed_cells() -> list[str]:
    """What this kernel has run, cell by cell (IPython's input history), or [] outside IPython."""
    from IPython import get_ipython

    shell = get_ipython()
    return list(shell.history_manager.input_hist_raw) if shell is not None else []


class Exercise(Protocol):
    """What "Check my work" needs of a chapter: its number, its checks and its hints."""

    spec: Any

    def checked(self, answer: object = None) -> Report: ...

    def next_hint(self, answer: object = None) -> str: ...


# JupyterLab breaks text output anywhere, mid-word (`word-break: break-all` on output <pre>), so a long hint reads
# "ALTER TA / BLE". Between words instead; a word longer than the line (a path, a hash) may still break.
WRAP_BETWEEN_WORDS = "<style>.jp-OutputArea-output pre { word-break: normal; overflow-wrap: anywhere; }</style>"


class CheckButton(w.VBox):
    """ "Check my work": runs the chapter's checks against the real database and files; "Next hint" helps more."""

    def __init__(self, chapter: Exercise, answer_name: str | None = None) -> None:
        self.chapter = chapter
        self.answer_name = answer_name
        self.button = button("Check my work", "success", icon="check")
        self.hint_button = button(
            "Next hint",
            icon="lightbulb-o",
            tooltip="ch.hint(): the idea first, then the API, the code last",
            layout=w.Layout(width="auto"),
        )
        self.output = w.Output()
        self.button.on_click(lambda _: self.run())
        self.hint_button.on_click(lambda _: self.hint())
        style = w.HTML(WRAP_BETWEEN_WORDS, layout=w.Layout(height="0px", margin="0px"))
        super().__init__([style, w.HBox([self.button, self.hint_button]), self.output, w.HTML(FOCUS_RING)])
        self.add_class(KIT_CLASS)

    def __repr__(self) -> str:
        return f"Check my work (chapter {self.chapter.spec.number})"

    def _answer(self) -> object:
        return user_namespace().get(self.answer_name) if self.answer_name else None

    def run(self) -> Report:
        report = self.chapter.checked(self._answer())
        self.output.outputs = ()
        self.output.append_stdout(str(report) + "\n")
        return report

    def hint(self) -> str:
        """The next hint, below what is shown already: the report's first hint and earlier ones stay readable."""
        text = self.chapter.next_hint(self._answer())
        self.output.append_stdout(("\n" if self.output.outputs else "") + text + "\n")
        return text

    def text(self) -> str:
        """What the output area shows (for tests and the curious)."""
        return "".join(str(o.get("text", "")) for o in self.output.outputs)
