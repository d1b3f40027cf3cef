"""The room's progress exported (`workshop status --format csv|json`, the room view's Save buttons): a room of
learners at different chapters, recorded through each learner's own kit, read back from the instructor's one read
of the store; what learners wrote comes out inert in a spreadsheet and as recorded in JSON."""

import csv
import io
import json
import re
import stat
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from helpers import copy_project
from hostile import Server, sql
from migration_lab import Lab, UrlBackend
from migration_lab.course.registry import CHAPTERS
from migration_lab.front.cli import main
from migration_lab.workshop import export
from migration_lab.workshop.instructor import Workshop
from migration_lab.workshop.status import RoomView
from migration_lab.workspace import progress

LEARNERS = ("ada", "ben", "cy", "dee")  # dee has recorded nothing yet
FORMULA = '=HYPERLINK("http://x") looks like a formula'
ANSI = "\x1b[31m-- DROP TABLE x\x1b[0m\x07 \u202eevil"  # what cy's failed command printed, first line
RAW = '\t=1+1\r\nforged,row\x9b31m "quoted" \u2028'  # a row written raw, as from a store that did not clean it
# The store's own clock for what the export derives, computed by PostgreSQL, not by the code under test.
TRUTH = """
SELECT learner, chapter, passed, total, first_passed_at IS NOT NULL, last_error,
       to_char(first_passed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       round(extract(epoch FROM coalesce(first_passed_at, updated_at) - started_at) / 60, 1)::text
FROM room.progress ORDER BY learner, chapter
"""


@pytest.fixture(scope="module")
def room(server: Server, shop: Workshop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workshop]:
    """ada finished 01 (then broke a check again), ben is half-way through 05 and hit a formula-looking error,
    cy finished 00 and is stuck in 08 on an error full of escapes; dee has done nothing yet."""
    urls = {name: shop.add(name).database_url for name in LEARNERS}
    project = copy_project(tmp_path_factory.mktemp("learner") / "project")
    labs = {name: Lab(project, UrlBackend(url)) for name, url in urls.items()}
    progress.record_check(labs["ada"], "01", 1, 3, "a revision adds phone_number")
    progress.record_check(labs["ada"], "01", 3, 3, None)
    progress.record_check(labs["ada"], "01", 2, 3, "the downgrade drops it")
    progress.record_check(labs["ben"], "05", 2, 4, 'the backfill <keeps> every row, "quoted" & =SUM(A1)')
    progress.record_error(labs["ben"], "05", f"{FORMULA}\nsecond line")
    progress.record_check(labs["cy"], "00", 1, 1, None)
    progress.record_error(labs["cy"], "08", f"{ANSI}\nSTUCK ada  01  3/3")
    for lab in labs.values():
        lab.db.dispose()
    # ada started 01 25 minutes before her first full pass: elapsed_minutes has something to measure
    sql(
        server.superuser_url,
        "UPDATE room.progress SET started_at = started_at - interval '25 minutes' WHERE learner = 'ada'",
        database="mlab_workshop",
    )
    yield shop
    for name in LEARNERS:
        shop.remove(name)


def truth(server: Server) -> dict[tuple[str, str], tuple]:
    rows = sql(server.superuser_url, TRUTH, database="mlab_workshop") or []
    return {(r[0], r[1]): r[2:] for r in rows}


def read_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith(",".join(export.NAMES) + "\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_reads_back_cell_for_cell(room: Workshop, server: Server) -> None:
    text = export.render(room.status(), "csv")
    assert text.count("\r\n") == 6  # the header, 5 rows: no learner's text makes a line of its own
    stored = truth(server)
    rows = read_csv(text)
    assert [(r["learner"], r["chapter"]) for r in rows] == [*stored, ("dee", "")]
    for row in rows[:-1]:
        passed, total, completed, error, first_passed, first, last, elapsed = stored[row["learner"], row["chapter"]]
        assert row == {
            "learner": row["learner"],
            "chapter": row["chapter"],
            "chapter_title": CHAPTERS[row["chapter"]].title,
            "checks_passed": str(passed) if total else "",
            "checks_total": str(total) if total else "",
            "completed": "true" if completed else "false",
            "first_passed_at": first_passed or "",
            "last_error": "'" + error if error and error[0] in "=+-@" else error or "",
            "first_recorded_at": first,
            "last_recorded_at": last,
            "elapsed_minutes": elapsed,
        }
    ada, ben, cy00, cy08, dee = rows
    assert (ada["checks_passed"], ada["checks_total"], ada["completed"]) == ("2", "3", "true")  # passed once
    assert ada["last_error"] == "✘ the downgrade drops it" and 25.0 <= float(ada["elapsed_minutes"]) < 26
    assert ben["chapter_title"] == "Data migrations" and ben["completed"] == "false" and not ben["first_passed_at"]
    assert ben["last_error"] == "'" + FORMULA  # the first line only, and a spreadsheet shows it as text
    assert (cy00["completed"], cy00["last_error"]) == ("true", "")
    assert (cy08["checks_passed"], cy08["checks_total"], cy08["completed"]) == ("", "", "false")  # no check ran
    assert cy08["last_error"] == "?[31m-- DROP TABLE x?[0m? ?evil"  # the store replaced each control character
    assert dee == {**dict.fromkeys(export.NAMES, ""), "learner": "dee", "completed": "false"}


def test_learner_text_is_inert_in_csv_and_as_recorded_in_json(room: Workshop, server: Server) -> None:
    """A row the store did not clean (written raw by a superuser): the CSV strips its control characters and
    guards the formula they hid; the JSON carries it exactly, every control character a \\u escape."""
    sql(
        server.superuser_url,
        "INSERT INTO room.progress (learner, chapter, last_error) VALUES ('dee', '09', :e)",
        database="mlab_workshop",
        e=RAW,
    )
    try:
        learners = room.status()
        text = export.render(learners, "csv")
        dee = [r for r in read_csv(text) if r["learner"] == "dee"]
        assert [r["last_error"] for r in dee] == ['\'=1+1forged,row31m "quoted" ']
        for bad in ("\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\t", "\n\r"):
            assert bad not in text, repr(bad)
        document = export.render(learners, "json")
        for bad in ("\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\t"):
            assert bad not in document, repr(bad)
        parsed = json.loads(document)
        errors = {(r["learner"], r["chapter"]): r["last_error"] for r in parsed["rows"]}
        assert errors["dee", "09"] == RAW and errors["ben", "05"] == FORMULA  # as recorded: no quote added
        assert errors["cy", "08"] == "?[31m-- DROP TABLE x?[0m? ?evil"
    finally:
        sql(server.superuser_url, "DELETE FROM room.progress WHERE learner = 'dee'", database="mlab_workshop")


def test_json_carries_the_columns_and_typed_values(room: Workshop, server: Server) -> None:
    document = export.render(room.status(), "json")
    parsed = json.loads(document)
    assert parsed["format"] == "migration-lab-progress/1" and parsed["kit_version"]
    assert parsed["exported_at"].endswith("Z")
    assert '"last_error": "✘ the downgrade drops it"' in document  # UTF-8 as it is, not \u2718
    assert [c["name"] for c in parsed["columns"]] == list(export.NAMES)
    assert all(c["type"] and c["meaning"] for c in parsed["columns"])
    csv_rows = read_csv(export.render(room.status(), "csv"))
    assert len(parsed["rows"]) == len(csv_rows) == 5
    ada = parsed["rows"][0]
    assert (ada["learner"], ada["chapter"], ada["checks_passed"], ada["checks_total"], ada["completed"]) == (
        "ada",
        "01",
        2,
        3,
        True,
    )
    assert isinstance(ada["elapsed_minutes"], float) and ada["first_passed_at"] == csv_rows[0]["first_passed_at"]
    assert parsed["rows"][-1] == {**dict.fromkeys(export.NAMES), "learner": "dee", "completed": False}
    cy08 = parsed["rows"][3]
    assert (cy08["checks_passed"], cy08["checks_total"], cy08["first_passed_at"]) == (None, None, None)


def cli(room: Workshop, *args: str) -> tuple[int, str, str]:
    server = ["--server", room.url.render_as_string(hide_password=False), "--roster", str(room.roster)]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["workshop", *server, "status", *args])
    return code, out.getvalue(), err.getvalue()


def test_the_cli_exports_to_stdout_and_to_a_private_file(room: Workshop, tmp_path: Path) -> None:
    code, out, _ = cli(room, "--format", "csv")
    assert code == 0 and [r["learner"] for r in read_csv(out)] == ["ada", "ben", "cy", "cy", "dee"]
    code, out, _ = cli(room, "--format", "json")
    assert code == 0 and json.loads(out)["format"] == export.FORMAT
    code, out, _ = cli(room)  # the table stays the default
    assert code == 0 and out.split()[:3] == ["learner", "chapter", "checks"] and re.search(r"ada +01 +2/3", out)
    target = tmp_path / "progress.csv"
    target.write_text("an older export, readable by all\n")
    target.chmod(0o644)
    code, out, err = cli(room, "--format", "csv", "--output", str(target))
    assert code == 0 and out == "" and f"Wrote {target}" in err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [r["chapter"] for r in read_csv(target.read_bytes().decode())] == ["01", "05", "00", "08", ""]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_bad_options_are_refused_with_a_clear_message(room: Workshop, tmp_path: Path) -> None:
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main(["workshop", "status", "--format", "xlsx"])
    assert exited.value.code == 2
    assert "--format: invalid choice: 'xlsx'" in err.getvalue() and "'csv', 'json'" in err.getvalue()
    code, out, err_text = cli(room, "--format", "csv", "--watch")
    assert (code, out) == (1, "") and "--watch redraws the table" in err_text
    missing = tmp_path / "no such folder" / "progress.csv"
    code, out, err_text = cli(room, "--format", "json", "--output", str(missing))
    assert (code, out) == (1, "") and "There is no folder" in err_text and not missing.parent.exists()
    with pytest.raises(export.LabError, match="no export format 'xml'"):
        export.render([], "xml")


def test_the_room_view_saves_csv_and_json(room: Workshop, tmp_path: Path) -> None:
    view = RoomView(room, every=3600, save_to=tmp_path)
    try:
        view.save_csv.click()
        view.save_json.click()
    finally:
        view.stop()
    saved = sorted(tmp_path.iterdir())
    assert [p.suffix for p in saved] == [".csv", ".json"], view.saved.value
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in saved)
    assert [r["learner"] for r in read_csv(saved[0].read_bytes().decode())] == ["ada", "ben", "cy", "cy", "dee"]
    assert json.loads(saved[1].read_text())["format"] == export.FORMAT
    assert str(saved[1]) in view.saved.value
