"""A learner's code never runs with the instructor's rights, and no learner can hang the room or drive the
instructor's terminal (issue 16, findings 1-3). Each learner attacks with their own credentials; the instructor is
a superuser, then a role with CREATEROLE and CREATEDB only."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import copy_project
from hostile import Server, assert_not_pwned, at, plant, sql, start_server
from migration_lab import Lab, UrlBackend
from migration_lab.workshop.instructor import LEFT, Workshop
from migration_lab.workshop.status import html, table
from migration_lab.workspace import progress

CONTROL = ["\x1b", "\x07", "\r", "\x9b", "\x85", "\u202e", "\x7f"]  # and newlines: no line of its own


@pytest.fixture(scope="module", params=["superuser", "createrole"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from start_server(request.param)


def test_no_instructor_command_runs_a_learners_code(
    server: Server, shop: Workshop, learner: Callable[[str], str], marker: Path, tmp_path: Path
) -> None:
    """Views, functions shadowing built-ins, operators, a search_path set on the database, row security, domain and
    column checks, defaults, triggers, rules, a materialized view, a `RESET ROLE` escape: status, the room view,
    reset (its backup reads the whole database), ensure and remove run none of them as the instructor."""
    url = learner("trapper")
    plant(url, "trapper", marker)
    lab = Lab(copy_project(tmp_path / "project"), UrlBackend(url))
    progress.record_check(lab, "02", 1, 3, "a check")  # through the learner's own kit
    lab.db.dispose()
    rows = shop.status()
    table(rows), html(rows)
    assert_not_pwned(server.superuser_url, "trapper", marker)
    assert [r.chapter for r in rows if r.name == "trapper"] == ["02"]
    backup = shop.reset("trapper", "02")
    assert backup is not None and backup.stat().st_size > 0
    assert_not_pwned(server.superuser_url, "trapper", marker)
    plant(url, "trapper", marker)  # again, in the fresh clone
    shop.ensure("trapper")
    shop.reset("trapper", "01")
    shop.status()
    assert_not_pwned(server.superuser_url, "trapper", marker)
    said = shop.remove("trapper")
    assert not [line for line in said if LEFT in line], said
    assert not marker.exists(), marker.read_text()


def test_remove_enters_other_learners_databases_without_running_their_code(
    server: Server, shop: Workshop, learner: Callable[[str], str], marker: Path
) -> None:
    """To drop what ada left in ben's database (a large object she planted in template1, copied into ben's), the
    instructor connects there: ben's traps and search_path in that database run nothing."""
    ada, ben = learner("ada"), learner("ben")
    sql(ada, "SELECT lo_create(0)", database="template1")
    sql(ben, "CREATE DATABASE ben_scratch", database="postgres")  # from template1: holds ada's large object
    sql(
        ada,
        "SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE lomowner = current_user::regrole",
        database="template1",
    )  # gone from template1 already: only ben's database still holds ada's
    plant(ben, "ben", marker, database="ben_scratch")
    said = shop.remove("ada")
    assert any("ben_scratch" in line for line in said) and not [line for line in said if LEFT in line], said
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_largeobject_metadata", database="ben_scratch") == [(0,)]
    assert_not_pwned(server.superuser_url, "ben", marker)


def test_a_learner_cannot_hang_or_break_the_room(server: Server, shop: Workshop, learner: Callable[[str], str]) -> None:
    """A sleeping view, a held row lock, a lock or a type change on the store, code put in the store: status
    answers in seconds and lists everyone; everything against the store itself is refused."""
    sleeper, locker = learner("sleeper"), learner("locker")
    sql(sleeper, "CREATE SCHEMA lab_progress")
    sql(
        sleeper,
        "CREATE VIEW lab_progress.chapters AS SELECT '01'::text AS chapter, 1 AS passed, 2 AS total, "
        "NULL::text AS last_error, now() AS updated_at, now() AS progressed_at FROM pg_sleep(3600)",
    )
    found: list[list] = []
    reading = threading.Thread(target=lambda: found.append(shop.status()), daemon=True)
    started = time.monotonic()
    reading.start()
    reading.join(timeout=15)
    assert found and time.monotonic() - started < 5, "status hangs on a learner's view"
    room = at(locker, "mlab_workshop")
    refused = [
        "LOCK TABLE room.progress IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE room.progress ALTER COLUMN passed TYPE text",
        "SELECT * FROM room.progress",
        "UPDATE room.progress SET passed = 0",
        "DELETE FROM room.progress",
        "TRUNCATE room.progress",
        "CREATE TABLE room.extra (x int)",
        "CREATE TABLE public.extra (x int)",
        "CREATE TEMP TABLE extra (x int)",
        "CREATE SCHEMA mine",
        "CREATE OR REPLACE FUNCTION room.record_check(a text, b int, c int, d text) RETURNS void LANGUAGE sql AS ''",
        "ALTER FUNCTION room.record_check(text, integer, integer, text) OWNER TO locker",
        "SET ROLE sleeper",
        "SET ROLE mlab_room",
        "SELECT room.record_check('../../etc', 1, 2, NULL)",
        "SELECT room.record_check('02', 1000000, 2, NULL)",
        "SELECT room.record_check('02', 999, 3, NULL)",  # more checks passed than there are
        "SELECT room.record_check('99', 1, 1, NULL)",  # no chapter of the course
        "SELECT room.record_error('99', 'forged')",
    ]
    for statement in refused:
        with pytest.raises(sa.exc.DBAPIError):
            sql(room, statement)
            pytest.fail(f"the store let a learner run: {statement}")
    engine = sa.create_engine(room, poolclass=sa.pool.NullPool)
    with engine.connect() as held:  # their own row, locked in a transaction left open
        held.execute(sa.text("SELECT room.record_check('01', 1, 2, NULL)"))
        started = time.monotonic()
        rows = shop.status()
        assert time.monotonic() - started < 5
    engine.dispose()
    assert {"sleeper", "locker"} <= {r.name for r in rows}


def test_learner_text_cannot_drive_the_terminal(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path
) -> None:
    """ESC, BEL, CR, LF, C1 (CSI, NEL), DEL and a right-to-left override in what a learner records: escaped in the
    terminal table and the notebook's HTML, one row per learner, no forged line."""
    url = learner("painter")
    learner("zed")
    evil = "\x1b[2J\x1b]0;owned\x07fake\r\nSTUCK zed  09  0/0\x85\u202eevil\x9b31m\x7f"
    lab = Lab(copy_project(tmp_path / "project"), UrlBackend(url))
    progress.record_check(lab, "03", 1, 5, evil)  # through the learner's own kit
    lab.db.dispose()
    shown(shop.status())
    sql(at(url, "mlab_workshop"), "SELECT room.record_error('04', :e)", e=evil)  # straight to the store
    shown(shop.status())
    # a row written raw (as if from before the store cleaned what it keeps): still shown escaped
    sql(
        server.superuser_url,
        "INSERT INTO room.progress (learner, chapter, last_error) VALUES ('painter', '05', :e)",
        database="mlab_workshop",
        e=evil,
    )
    assert "\\x1b" in shown(shop.status())  # shown, not hidden


def shown(rows: list) -> str:
    """The room's table and page, checked: no control character, one line per learner."""
    text, page = table(rows), html(rows)
    for bad in CONTROL:
        assert bad not in text and bad not in page, repr(bad)
    assert "\n" not in page
    assert len(text.splitlines()) == len(rows) + 2  # the header, a line per learner, the summary
    return text


def test_names_learners_choose_cannot_drive_the_terminal(
    server: Server, shop: Workshop, learner: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Database and table names are the learner's to choose, control characters included: what `init`,
    `reset` (its failed backup quotes a table) and `remove` print shows them escaped, one line per message."""
    from migration_lab.front.cli import main

    url = learner("namer")
    evil = "x\x1b[2J\x1b]0;owned\x07\r\nnamer: dropped the role\x9b31m\u202e"
    quoted = '"' + evil.replace('"', '""') + '"'
    sql(url, f"CREATE DATABASE {quoted}", database="postgres")
    sql(url, f'CREATE DATABASE "mlab_tpl_{evil}"', database="postgres")
    sql(url, f"CREATE TABLE {quoted} (x int)")
    args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]
    assert main([*args, "init"]) == 0
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as held:  # the backup waits on this lock, then fails quoting the table's name
        held.execute(sa.text(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"))
        assert main([*args, "reset", "namer", "02", "--yes"]) == 1
        held.rollback()
    engine.dispose()
    assert main([*args, "remove", "namer"]) == 0
    err = capsys.readouterr().err
    for bad in CONTROL:
        assert bad not in err, repr(bad)
    assert "\\x1b[2J" in err  # shown, escaped
    assert not [line for line in err.splitlines() if line.startswith("namer: dropped the role")]  # nothing forged
