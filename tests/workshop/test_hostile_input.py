"""The instructor's commands on bad or risky input (issue 16, findings 9-15): a reset that asks and backs up
first, `--files` only into the learner's own checkout and never as root, connection limits the server can hold,
a room too large refused before anything is made, an interrupted `add` finished by the next, names that stay
when a room grows, and one clear message (no traceback) for every input error."""

import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import copy_project, python_for
from hostile import Server, learner_role_count, os_account, sql
from migration_lab.database.programs import program
from migration_lab.front.cli import main
from migration_lab.workshop.instructor import Workshop, learner_names
from migration_lab.workshop.room import LEARNER_ROLE


def workshop_args(server: Server, shop: Workshop) -> list[str]:
    return ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """`python -m migration_lab ...` with standard input closed, as from a script or a cron job."""
    return subprocess.run(
        [sys.executable, "-m", "migration_lab", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,  # type: ignore[arg-type]
    )


def test_reset_asks_and_backs_up_first(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = learner("bob")
    sql(url, "CREATE TABLE my_notes (x text); INSERT INTO my_notes VALUES ('two hours of work')")
    args = [*workshop_args(server, shop), "reset", "bob", "03"]
    done = run(args, cwd=tmp_path)
    assert done.returncode == 1 and "Nothing changed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and str(shop.backup_dir) in done.stdout + done.stderr  # where it goes
    assert sql(url, "SELECT count(*) FROM my_notes") == [(1,)]
    assert not list(shop.backup_dir.glob("lab_bob-*"))
    assert main([*args, "--yes"]) == 0
    dumps = list(shop.backup_dir.glob("lab_bob-*.dump"))
    assert len(dumps) == 1 and str(dumps[0]) in capsys.readouterr().err  # named in the message
    assert stat.S_IMODE(dumps[0].stat().st_mode) == 0o600 and stat.S_IMODE(shop.backup_dir.stat().st_mode) == 0o700
    listed = subprocess.run([program("pg_restore"), "--list", str(dumps[0])], capture_output=True, text=True)
    assert "TABLE public my_notes bob" in listed.stdout and "TABLE DATA public my_notes" in listed.stdout
    assert sql(url, "SELECT to_regclass('public.my_notes')") == [(None,)]  # and then the reset happened
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    restored = subprocess.run(  # with the learner's login, as the README says
        [program("pg_restore"), "--clean", "--if-exists", "-d", libpq, str(dumps[0])], capture_output=True, text=True
    )
    assert restored.returncode == 0, restored.stderr
    assert sql(url, "SELECT x FROM my_notes") == [("two hours of work",)]


def test_reset_backs_up_even_when_the_learner_changed_their_password(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    url = learner("pat")
    sql(url, "ALTER ROLE pat PASSWORD 'only-pat-knows'")  # a learner may
    assert main([*workshop_args(server, shop), "reset", "pat", "02", "--yes"]) == 0
    assert len(list(shop.backup_dir.glob("lab_pat-*.dump"))) == 1
    fresh = shop.learners()["pat"]
    assert make_url(fresh).password not in (make_url(url).password, "only-pat-knows")
    assert sql(fresh, "SELECT current_user") == [("pat",)]  # the roster's URL works again


def test_a_backup_that_fails_stops_the_reset(
    server: Server, shop: Workshop, learner: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A learner holds their table locked: pg_dump gives up after its lock wait, and nothing changes."""
    url = learner("lok")
    sql(url, "CREATE TABLE held (x int)")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text("LOCK TABLE held IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        assert main([*workshop_args(server, shop), "reset", "lok", "02", "--yes"]) == 1
        assert time.monotonic() - started < 30
        err = capsys.readouterr().err
        assert "Nothing was changed" in err and "--no-backup" in err and "Traceback" not in err
        assert sql(url, "SELECT to_regclass('public.held')") == [("held",)]
        conn.rollback()
    engine.dispose()
    assert not list(shop.backup_dir.glob("lab_lok-*"))  # no half-written dump left
    assert main([*workshop_args(server, shop), "reset", "lok", "02", "--yes", "--no-backup"]) == 0
    assert sql(url, "SELECT to_regclass('public.held')") == [(None,)]


@pytest.fixture
def os_learner(shop: Workshop, learner: Callable[[str], str]) -> Iterator[tuple[pwd.struct_passwd, str]]:
    """A learner with an OS account of the same name (as on a hub), made for the test (root only)."""
    name = "mlabfiles"
    with os_account(name) as account:
        yield account, learner(name)


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder other OS accounts may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="mlab-files-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def files_owned_by(folder: Path, uid: int) -> list[Path]:
    return [p for p in [folder, *folder.rglob("*")] if p.lstat().st_uid == uid]


def test_files_reset_runs_as_the_learners_account(
    server: Server, shop: Workshop, os_learner: tuple[pwd.struct_passwd, str], base: Path
) -> None:
    """As root, --files runs the kit's own reset as the learner's OS account: every file it writes is theirs."""
    account, _ = os_learner
    project = copy_project(base / "checkout")
    (project.service_dir / "main.py").write_text("# the learner's half-done work\n")
    python_for(account, project.root / ".venv")  # their own install
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(project.root)], check=True)
    args = [*workshop_args(server, shop), "reset", "mlabfiles", "02", "--yes", "--files", str(project.root)]
    done = run(args, cwd=base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mlabfiles: ai-service/ files and the database are reset: database at a1c4e7f20b13")
    assert "Your earlier work" in done.stdout  # backed up in their checkout first
    assert (project.versions_dir / "a1c4e7f20b13_add_phone_number_to_profile.py").exists()
    assert "phone_number" in (project.service_dir / "main.py").read_text()
    assert files_owned_by(project.root, 0) == []  # nothing of root's in their checkout


def test_what_the_learners_own_reset_prints_cannot_drive_the_terminal(
    server: Server, shop: Workshop, os_learner: tuple[pwd.struct_passwd, str], base: Path
) -> None:
    """--files runs the learner's own .venv/bin/python, as them: whatever it prints (a program of theirs could
    print anything) reaches the instructor escaped, every line under the learner's name, none forged."""
    account, _ = os_learner
    project = copy_project(base / "checkout")
    fake = project.root / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nprintf '\\033]0;owned\\007\\033[2Jdone\\r\\nroot: every learner removed\\n'\n")
    fake.chmod(0o755)
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(project.root)], check=True)
    args = [*workshop_args(server, shop), "reset", "mlabfiles", "02", "--yes", "--files", str(project.root)]
    done = run(args, cwd=base)
    assert done.returncode == 0, done.stderr
    for bad in ("\x1b", "\x07", "\r"):
        assert bad not in done.stdout + done.stderr, repr(done.stdout)
    assert "\\x1b[2J" in done.stdout  # shown, escaped
    assert all(line.startswith("mlabfiles: ") for line in done.stdout.splitlines()), done.stdout


def test_files_never_go_into_another_accounts_checkout(
    server: Server, shop: Workshop, os_learner: tuple[pwd.struct_passwd, str], base: Path
) -> None:
    """A checkout of another account (nobody's), or the learner's own name given for someone else's: refused
    before anything is asked or written."""
    account, _ = os_learner
    others = copy_project(base / "others")
    (others.service_dir / "main.py").write_text("# nobody's work\n")
    subprocess.run(["chown", "-R", "65534:65534", str(others.root)], check=True)
    args = [*workshop_args(server, shop), "reset", "mlabfiles", "02", "--files", str(others.root)]
    done = run(args, cwd=base)
    assert done.returncode == 1 and "not to mlabfiles: nothing was written" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert files_owned_by(others.root, 0) == [] and not (others.root / ".lab").exists()
    assert (others.service_dir / "main.py").read_text() == "# nobody's work\n"
    link = base / "link"
    link.symlink_to(others.root)
    subprocess.run(["chown", "-h", f"{account.pw_uid}:{account.pw_gid}", str(link)], check=True)
    assert run([*args[:-1], str(link)], cwd=base).returncode == 1  # a symlink of theirs to another's checkout


@pytest.mark.parametrize("limit", ["-1", "0", "100000"])
def test_a_connection_limit_the_server_cannot_hold_is_refused(
    server: Server, shop: Workshop, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    assert main([*workshop_args(server, shop), "add", "cal", "--connection-limit", limit]) == 1
    err = capsys.readouterr().err
    assert "--connection-limit" in err and "Traceback" not in err
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'cal'") == [(0,)]


def test_a_room_the_server_cannot_hold_is_refused_before_anything_is_made(
    server: Server, shop: Workshop, capsys: pytest.CaptureFixture[str]
) -> None:
    before = learner_role_count(server.superuser_url)
    assert main([*workshop_args(server, shop), "add", "--learners", "10000"]) == 1
    err = capsys.readouterr().err
    assert "10000 learners" in err and "--force" in err and "Nothing was added" in err
    assert learner_role_count(server.superuser_url) == before


def test_an_interrupted_add_is_finished_by_the_next(server: Server, shop: Workshop) -> None:
    """Half-made learners (a role without its database or URL, a clone left under its random name), and a real
    Ctrl-C in the middle of `add --learners N`: the same command again finishes them all."""
    sql(
        server.instructor_url,
        f"CREATE ROLE learner02 LOGIN CREATEDB CONNECTION LIMIT 8; COMMENT ON ROLE learner02 IS '{LEARNER_ROLE}'",
    )
    sql(server.instructor_url, "CREATE DATABASE mlab_clone_0123456789abcdef OWNER learner02 TEMPLATE template0")
    args = [*workshop_args(server, shop), "add", "--learners", "6"]
    process = subprocess.Popen(
        [sys.executable, "-m", "migration_lab", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()  # the first learner is made: interrupt the second
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    done = run(args)
    assert done.returncode == 0, done.stderr
    assert "learner02: finished adding" in done.stderr
    urls = shop.learners()
    assert sorted(urls) == learner_names(6)
    for name, url in urls.items():
        assert sql(url, "SELECT current_user, current_database()") == [(name, f"lab_{name}")]
    assert sql(
        server.superuser_url,
        "SELECT count(*) FROM pg_roles r WHERE shobj_description(oid, 'pg_authid') = :m AND NOT EXISTS "
        "(SELECT 1 FROM pg_database WHERE datname = 'lab_' || r.rolname AND datdba = r.oid)",
        m=LEARNER_ROLE,
    ) == [(0,)]
    assert sql(
        server.superuser_url,
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'mlab\\_clone\\_%' OR datname LIKE 'mlab\\_old\\_%'",
    ) == [(0,)]
    for name in urls:
        shop.remove(name)


def test_names_stay_when_a_room_grows() -> None:
    assert learner_names(100)[:99] == learner_names(99)
    assert learner_names(1000)[:100] == learner_names(100)
    assert learner_names(3, start=99) == ["learner99", "learner100", "learner101"]


def test_every_input_error_gets_one_message(
    server: Server, shop: Workshop, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "roster.json"
    bad.write_text("[1, 2]")
    url = server.instructor_url
    roster = ["--roster", str(shop.roster)]
    cases = [
        (["workshop", "--server", url, "--roster", str(bad), "add", "x1"], "workshop add NAME"),
        (
            ["workshop", "--server", "not a url", *roster, "status"],
            "'not a url' is not a database URL",
        ),
        (
            ["workshop", "--server", "sqlite:///x.db", *roster, "status"],
            "sqlite is not PostgreSQL",
        ),
        (["workshop", "--server", url, "--roster", str(tmp_path), "add", "x2"], "is a directory"),
        (["workshop", "--server", url, *roster, "status", "--watch", "-1"], "--watch -1"),
        (["workshop", "--server", url, *roster, "status", "--watch", "0"], "--watch 0"),
        (["workshop", "--server", url, *roster, "add", "--learners", "0"], "nobody to add"),
        (["workshop", "--server", url, *roster, "add", "Robert'); DROP TABLE x;--"], "cannot be a learner's name"),
        (["workshop", "--server", url, *roster, "reset", "nobody", "02", "--yes"], "not a learner"),
        (["workshop", "--server", url, *roster, "reset", "learner01", "99", "--yes"], "99"),
    ]
    for argv, needle in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and "ensure NAME" not in err, (argv, err)
        assert "unset it" not in err, (argv, err)  # the lab's own advice for LAB_DATABASE_URL is not the room's
    # --server (and --roster) after the sub-command too
    assert main(["workshop", "status", "--server", url, "--roster", str(shop.roster)]) == 0
    assert main(["workshop", "--server", "not a url", "status", "--server", url]) == 0  # the last one counts
