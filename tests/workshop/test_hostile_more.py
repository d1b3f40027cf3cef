"""More variants of issue 16's findings, played by a learner with their own credentials, psql and an OS account:
the learner's own program reaching the instructor's terminal during `--files`, a store of a learner's that
`remove` cleans as the instructor, and a formula a spreadsheet splitting on semicolons would run. The
instructor is a superuser, then a role with CREATEROLE and CREATEDB only."""

import csv
import io
import os
import pty
import pwd
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostile import TRAP_FUNCTIONS, Server, assert_not_pwned, at, os_account, sql, start_server
from migration_lab.errors import LabError
from migration_lab.workshop import checkouts, export
from migration_lab.workshop.instructor import Workshop
from migration_lab.workshop.removal import LEFT
from migration_lab.workshop.room import LEARNER_ROLE


@pytest.fixture(scope="module", params=["superuser", "createrole"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from start_server(request.param)


@pytest.fixture
def os_learner(shop: Workshop, learner: Callable[[str], str]) -> Iterator[pwd.struct_passwd]:
    """A learner with an OS account of the same name (as on a hub), made for the test (root only)."""
    name = "mlabtty"
    with os_account(name) as account:
        learner(name)
        yield account


def in_a_terminal(args: list[str], cwd: Path, timeout: float = 180) -> bytes:
    """`python -m migration_lab ...` as an instructor types it: in a terminal of its own (a pty that is its
    controlling terminal, as an ssh session's); everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "migration_lab", *args])
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the command ended, the terminal closed
                    break
                if not chunk:
                    break
                shown += chunk
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return shown


def learners_checkout(base: Path, account: pwd.struct_passwd, python: str) -> Path:
    """A checkout of `account`'s whose .venv/bin/python is the shell script `python`."""
    checkout = base / "checkout"
    fake = checkout / ".venv" / "bin" / "python"
    (checkout / "ai-service").mkdir(parents=True)
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\n{python}")
    fake.chmod(0o755)
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(checkout)], check=True)
    return checkout


def test_the_learners_own_program_never_reaches_the_instructors_terminal(
    server: Server, shop: Workshop, os_learner: pwd.struct_passwd
) -> None:
    """--files runs the learner's own .venv/bin/python as them. Run from the instructor's terminal, it must not
    inherit that terminal: through /dev/tty it would write raw escapes past the kit's escaping, read what the
    instructor types next, and (TIOCSTI) type commands into the instructor's root shell."""
    base = Path(tempfile.mkdtemp(prefix="mlab-tty-", dir="/tmp"))
    try:
        base.chmod(0o755)
        checkout = learners_checkout(
            base,
            os_learner,
            "printf '\\033[2Jforged on the tty\\r\\n' > /dev/tty && echo reached-the-tty\necho reset done\n",
        )
        args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]
        shown = in_a_terminal([*args, "reset", "mlabtty", "02", "--yes", "--files", str(checkout)], base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert b"mlabtty: reset done" in shown, shown  # the reset ran, and said what it printed
    assert b"\x1b[2Jforged" not in shown and b"reached-the-tty" not in shown, shown


def test_remove_never_cleans_progress_in_a_store_the_workshop_did_not_make(
    server: Server, shop: Workshop, learner: Callable[[str], str], marker: Path
) -> None:
    """The store went away (a DBA's cleanup, a `drop` that stopped half-way) and a learner made `mlab_workshop`
    with a `room.progress` table whose trigger (or rule, or policy) is theirs: removing another learner must not
    delete from it as the instructor, which would run their code with the instructor's rights."""
    squatter = learner("squatter")
    learner("leaving")
    sql(server.superuser_url, "DROP DATABASE mlab_workshop WITH (FORCE)")
    sql(squatter, "CREATE DATABASE mlab_workshop", database="postgres")
    sql(
        squatter,
        TRAP_FUNCTIONS.format(learner="squatter", marker=marker)
        + "CREATE SCHEMA room; CREATE TABLE room.progress (learner name); "
        "GRANT USAGE ON SCHEMA room TO PUBLIC; GRANT ALL ON room.progress TO PUBLIC; "
        "CREATE FUNCTION public.on_delete() RETURNS trigger LANGUAGE plpgsql "
        "AS $f$ BEGIN PERFORM public.trap('delete trigger'); RETURN NULL; END $f$; "
        "CREATE TRIGGER t BEFORE DELETE ON room.progress FOR EACH STATEMENT EXECUTE FUNCTION public.on_delete()",
        database="mlab_workshop",
    )
    try:
        said = shop.remove("leaving")
        assert_not_pwned(server.superuser_url, "squatter", marker)
        assert any("dropped the role" in line for line in said), said
    finally:
        sql(server.superuser_url, f"COMMENT ON ROLE squatter IS '{LEARNER_ROLE}'")  # whatever the trap wrote
        shop.init()  # moves the squatter's store aside, makes the real one


def test_a_formula_after_a_semicolon_is_inert_where_spreadsheets_split_on_semicolons(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """German, French or Spanish Excel opens a .csv split on `;` (LibreOffice's import ticks it too): a last error
    with no comma or quote is written unquoted, so `x;=cmd|' /C calc'!A0;` became a cell of its own starting with
    `=`. Every piece a `;` may start must be as inert as the cell's start."""
    url = learner("semi")
    room = at(url, "mlab_workshop")
    for chapter, error in (
        ("02", "x;=cmd|' /C calc'!A0;"),
        ("03", "y; +1+cmd|' /C calc'!A0"),
        ("04", "z;@SUM(1)"),
        ("05", " =SUM(2)"),
    ):
        sql(room, "SELECT room.record_check(:c, 1, 3, :e)", c=chapter, e=error)
    text = export.render(shop.status(), "csv")
    cells = [cell for row in csv.reader(io.StringIO(text), delimiter=";") for cell in row]
    assert len([c for c in cells if "cmd|" in c or "SUM(" in c]) == 4, text
    by_comma = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    for cell in cells + by_comma:  # a space before a formula is no shield either way
        assert not cell.lstrip(" ").startswith(export.FORMULA_STARTS), (cell, text)
    for row in csv.DictReader(io.StringIO(text)):  # read by comma, as RFC 4180: the text is all there
        if row["learner"] == "semi":
            assert any(said in row["last_error"] for said in ("cmd|' /C calc'!A0", "SUM(1)", "SUM(2)")), row


def still_running(account: pwd.struct_passwd) -> list[str]:
    """`account`'s live processes (a killed one whose parent has not reaped it yet, a zombie, is not)."""
    found = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-u", str(account.pw_uid)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if line.split()[1][0] != "Z"]


def gone(account: pwd.struct_passwd) -> None:
    """Every process of `account` has ended (within 10 s: a killed one takes a moment to exit on a busy machine)."""
    deadline = time.monotonic() + 10
    while still_running(account) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_running(account) == []


def test_a_background_program_of_the_learners_neither_holds_the_reset_nor_breaks_its_output(
    shop: Workshop, os_learner: pwd.struct_passwd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--files: the learner's program leaves a process running that holds its output open (a daemon their env.py
    starts) and prints bytes that are not UTF-8. The reset ends when their program does, says what it printed,
    and the timeout stays for a program that itself never ends (stopped, with what it started)."""
    monkeypatch.setattr(checkouts, "RESET_TIMEOUT", 60)  # held by the daemon, it would end in a LabError here
    base = Path(tempfile.mkdtemp(prefix="mlab-daemon-", dir="/tmp"))
    try:
        base.chmod(0o755)
        checkout = learners_checkout(base, os_learner, "sleep 300 &\nprintf 'caf\\351\\n'\necho reset done\n")
        url = shop.learners()["mlabtty"]
        assert checkouts.reset("mlabtty", "02", checkout, url) == ["caf\ufffd", "reset done"]
        subprocess.run(["pkill", "-KILL", "-u", str(os_learner.pw_uid)], check=False)
        shutil.rmtree(checkout)
        # A daemon that writes without end: what is kept is bounded, and nothing of it goes on writing (into a
        # file of root's, filling the instructor's disk) once the reset has ended: the closed pipe stops it.
        checkout = learners_checkout(base, os_learner, "yes flood &\necho reset done\n")
        shown = checkouts.reset("mlabtty", "02", checkout, url)
        assert sum(len(line) + 1 for line in shown) <= checkouts.OUTPUT_LIMIT  # its end (the first line cut)
        assert set(shown[1:]) <= {"flood", "reset done"}, set(shown)
        gone(os_learner)
        monkeypatch.setattr(checkouts, "RESET_TIMEOUT", 2)
        # A reset that never ends, with its pipes open or closed (`exec >&- 2>&-`, as daemonising code does)
        for never_ends in ("sleep 300 &\nsleep 300\n", "exec >&- 2>&-\nsleep 300 &\nsleep 300\n"):
            shutil.rmtree(checkout)
            checkout = learners_checkout(base, os_learner, never_ends)
            with pytest.raises(LabError, match="did not end within 2 s and was stopped"):
                checkouts.reset("mlabtty", "02", checkout, url)
            gone(os_learner)  # the reset's whole process group went with it
    finally:
        subprocess.run(["pkill", "-KILL", "-u", str(os_learner.pw_uid)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_drop_deletes_the_roster_only_through_a_folder_nobody_else_may_swap(shop: Workshop) -> None:
    """drop deletes the roster last, as root too: through a folder others may write (one that became so after the
    roster was written), another account could swap it for a symlink to a folder of root's and have root delete a
    file of that name there. Kept then, with a LEFT line that says why; deleted once the folder is private again."""
    shop.add("mlabkeep")  # the roster is written with the first learner; drop removes them
    folder = shop.roster.parent
    assert shop.roster.exists()
    folder.chmod(0o777)
    try:
        said = shop.drop()
    finally:
        folder.chmod(0o700)
    left = [line for line in said if LEFT in line]
    assert len(left) == 1 and left[0].startswith(f"the roster {shop.roster}: {LEFT}"), said
    assert "others may write in it, mode 777). The roster is kept." in left[0], said
    assert shop.roster.exists() and not any(line.startswith("Dropped the workshop") for line in said), said
    said = shop.drop()
    assert said[-1].startswith("Dropped the workshop") and not shop.roster.exists(), said
