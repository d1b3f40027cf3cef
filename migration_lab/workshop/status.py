"""The room view: who works on which chapter, and who is stuck on which error.

One table, three ways to see it: `table()` for `workshop status` in a
terminal (`--watch` redraws it), `html()` and `RoomView` for the instructor's
notebook, a widget that refreshes itself and saves the room's progress as
CSV or JSON (`export`). Stuck learners (an error, and no check gained for 10
minutes) come first.

Learners write the last error: every cell goes through `printable()`, so a
control character (ESC, BEL, CR, a newline, a C1 code such as CSI, a
bidirectional override) shows as an escape (`\\x1b`) and can neither drive
the instructor's terminal nor forge a row.
"""

from __future__ import annotations

import html as html_escape
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LabError
from ..styles import FOCUS_RING, KIT_CLASS
from . import export
from .instructor import Workshop
from .room import LearnerStatus, natural, printable

WATCH_SECONDS = (0.5, 3600.0)  # how often the room may be redrawn
HEADERS = ("learner", "chapter", "checks passed", "last error", "min since progress", "sessions", "problem")
ERROR_WIDTH = 60


def ordered(rows: Sequence[LearnerStatus]) -> list[LearnerStatus]:
    """Stuck first (longest first), then by name (learner9 before learner10)."""
    return sorted(
        rows, key=lambda r: (not r.stuck, -(r.minutes_since_progress or 0) if r.stuck else 0, natural(r.name))
    )


def _cells(row: LearnerStatus) -> tuple[str, ...]:
    cells = (
        row.name,
        row.chapter or "-",
        f"{row.passed}/{row.total}" if row.chapter else "-",
        row.last_error or "",
        "-" if row.minutes_since_progress is None else str(row.minutes_since_progress),
        str(row.sessions),
        row.problem or "",
    )
    return tuple(printable(cell) for cell in cells)


def summary(rows: Sequence[LearnerStatus]) -> str:
    stuck = sum(r.stuck for r in rows)
    started = sum(r.chapter is not None for r in rows)
    return f"{len(rows)} learners, {started} with a check recorded, {stuck} stuck (an error and 10+ minutes)."


def table(rows: Sequence[LearnerStatus]) -> str:
    """A plain-text table for a terminal; "STUCK" marks who to visit."""
    if not rows:
        return "No learners yet: `python -m migration_lab workshop add --learners N`."
    lines = [HEADERS, *(_cells(r) for r in ordered(rows))]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    widths[3] = min(widths[3], ERROR_WIDTH)
    stuck = {r.name for r in rows if r.stuck}
    out = []
    for line in lines:
        cells = [cell[:ERROR_WIDTH] if i == 3 else cell for i, cell in enumerate(line)]
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()
        out.append(f"{'STUCK ' if line[0] in stuck else '      '}{text}")
    return "\n".join([*out, summary(rows)])


def html(rows: Sequence[LearnerStatus]) -> str:
    """The same table as HTML; stuck rows highlighted, and marked STUCK as in the terminal (not by colour alone)."""
    head = "".join(f"<th scope='col' style='text-align:left;padding:2px 8px'>{h}</th>" for h in HEADERS)
    body = []
    for row in ordered(rows):
        style = " style='background:#fdd'" if row.stuck else ""
        texts = (f"STUCK {row.name}", *_cells(row)[1:]) if row.stuck else _cells(row)
        cells = "".join(f"<td style='padding:2px 8px'>{html_escape.escape(c)}</td>" for c in texts)
        body.append(f"<tr{style}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table><p>{html_escape.escape(summary(rows))}</p>"


def interval(every: float, shortest: float = 0.01) -> float:
    """`every`, when the room may be redrawn that often; a LabError otherwise (0 or less, or NaN, redrew it as fast
    as the server answers, holding it busy; a negative sleep crashed). `--watch` asks at least WATCH_SECONDS[0]."""
    if not shortest <= every <= WATCH_SECONDS[1]:  # False for NaN too
        raise LabError(
            f"--watch {every:g}: the table can be redrawn every {WATCH_SECONDS[0]:g} to {WATCH_SECONDS[1]:g} s.",
            "Give --watch SECONDS in that range (default 10); in Python, RoomView(shop, every=SECONDS).",
        )
    return float(every)


def watch(workshop: Workshop, every: float, show: Callable[[str], None] = print) -> None:
    """`workshop status --watch`: redraw the table every `every` seconds until Ctrl-C."""
    every = interval(every)
    try:
        while True:
            text = table(workshop.status())
            show(f"\x1b[2J\x1b[H{time.strftime('%H:%M:%S')}  every {every:g} s, Ctrl-C to stop\n\n{text}")
            time.sleep(every)
    except KeyboardInterrupt:
        show("")


class RoomView:
    """A widget with the room's table, refreshed every `every` seconds in a background thread.

    `refresh()` redraws it at once (the button does too); `stop()` ends the
    refreshing (closing the notebook does as well: the thread is a daemon).
    "Save CSV" and "Save JSON" write the room's progress (`export`) into
    `save_to` (default: the notebook's folder), readable by you only, and
    say where: the file browser shows it, to download or open.
    """

    def __init__(self, workshop: Workshop, every: float = 15.0, save_to: Path | None = None) -> None:
        import ipywidgets as w

        self.workshop = workshop
        self.every = interval(every)
        self.save_to = save_to or Path.cwd()
        self.table = w.HTML()
        self.updated = w.Label()
        self.button = w.Button(description="Refresh now", layout=w.Layout(width="auto"))
        self.button.on_click(lambda _: self.refresh())
        self.save_csv = w.Button(description="Save CSV", layout=w.Layout(width="auto"))
        self.save_csv.on_click(lambda _: self.save("csv"))
        self.save_json = w.Button(description="Save JSON", layout=w.Layout(width="auto"))
        self.save_json.on_click(lambda _: self.save("json"))
        self.saved = w.Label()
        # The kit's focus ring (styles.py) on the buttons, as on the console's.
        self.widget = w.VBox(
            [
                w.HBox([self.button, self.updated]),
                self.table,
                w.HBox([self.save_csv, self.save_json, self.saved]),
                w.HTML(FOCUS_RING),
            ]
        )
        self.widget.add_class(KIT_CLASS)
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="migration-lab-room-view")
        self._thread.start()

    def refresh(self) -> None:
        try:
            self.table.value = html(self.workshop.status())
            self.updated.value = f"updated {time.strftime('%H:%M:%S')}, every {self.every:g} s"
        except Exception as error:  # noqa: BLE001 - the view keeps trying; it says why it could not update
            self.updated.value = f"could not update: {str(error).splitlines()[0]}"

    def save(self, form: str) -> Path | None:
        """The room's progress now, as `form` ("csv" or "json"), in a new file in `save_to`; None if it failed."""
        try:
            path = self.save_to / f"progress-{time.strftime('%Y%m%d-%H%M%S')}.{form}"
            export.save(export.render(self.workshop.status(), form), path)
        except Exception as error:  # noqa: BLE001 - the view stays; it says why nothing was saved
            self.saved.value = f"not saved: {str(error).splitlines()[0]}"
            return None
        self.saved.value = f"saved {path} (readable by you only)"
        return path

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
