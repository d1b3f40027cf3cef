"""Other variants of issue 16's findings, played by a learner with their own credentials (and psql): names the
kit's SQL must carry as they are, output of a learner's own programs, inputs too large to list, folders another
account prepared, and windows while a database is born."""

import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from hostile import Server, at, learner_role_count, sql
from migration_lab.errors import LabError
from migration_lab.front.cli import main
from migration_lab.workshop import checkouts, folders
from migration_lab.workshop.instructor import LEFT, Workshop
from migration_lab.workshop.status import RoomView, html, table, watch


def raw(url: str, statement: str, database: str = "postgres") -> None:
    """A statement sent as psql would: no client-side parameter syntax (`:name`, `%s`) in the way."""
    engine = sa.create_engine(sa.make_url(url).set(database=database), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
    finally:
        engine.dispose()


ODD_NAMES = (":x", "a :b", "a%sb", "%(y)s", "100%", "mlab_clone_:z", "mlab_old_%s")


def test_database_names_with_colons_and_percents_never_stop_remove(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """`:x` reads as a bind parameter and `%` is doubled when a name goes into SQLAlchemy's text(): a learner's
    database named so made `ensure` and `remove` fail, and the learner could never be removed."""
    url = learner("percy")
    for name in ODD_NAMES:
        raw(url, f'CREATE DATABASE "{name}"')
    shop.ensure("percy")  # its leftovers' clean-up meets mlab_clone_:z and mlab_old_%s
    said = shop.remove("percy")
    assert not [line for line in said if LEFT in line], said
    left = sql(server.superuser_url, "SELECT datname FROM pg_database WHERE datname = ANY(:n)", n=list(ODD_NAMES))
    assert left == [], left
    assert sql(server.superuser_url, "SELECT 1 FROM pg_roles WHERE rolname = 'percy'") == []


def test_a_huge_room_is_refused_before_its_names_are_listed(server: Server, shop: Workshop) -> None:
    """`add --learners 300000000` (with --force too) listed 300 million names first: gigabytes, minutes, then a
    crash. Now one message, at once, and nothing made."""
    before = learner_role_count(server.superuser_url)
    for force in ([], ["--force"]):
        args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]
        done = subprocess.run(
            [sys.executable, "-m", "migration_lab", *args, "add", "--learners", "300000000", *force],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)),  # fail, not swap
        )
        assert done.returncode == 1, done.stderr
        assert "300000000 learners" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert learner_role_count(server.superuser_url) == before


def test_a_bad_server_url_gets_the_workshops_message_without_its_password(tmp_path: Path) -> None:
    """The instructor's URL: told what to give (not the learner's "unset it: the lab uses its own database"),
    and a password in it never shown."""
    for given in ("not a url", "sqlite:///x.db", "postgresql://u:s3cret@h:notaport/db", "mysql://u:s3cret@h/db"):
        with pytest.raises(LabError) as caught:
            Workshop(given, roster=tmp_path / "roster.json")
        said = str(caught.value)
        assert "s3cret" not in said and "unset it" not in said and "--server postgresql://" in said, said


def test_the_backups_folder_is_never_a_symlink_nor_anothers(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path
) -> None:
    """The dump before a reset goes only into a real folder of the instructor's that nobody else may write: a
    symlink put at backups/ (or a folder others may write) is refused before anything is written or reset."""
    url = learner("dumpy")
    sql(url, "CREATE TABLE mine (x int)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    room = tmp_path / "room"
    room.mkdir(mode=0o700)
    (room / "backups").symlink_to(elsewhere)
    linked = Workshop(server.instructor_url, roster=shop.roster, backup_dir=room / "backups")
    with pytest.raises(LabError, match="a symlink"):
        linked.reset("dumpy", "02")
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(LabError, match="others may write"):
        Workshop(server.instructor_url, roster=shop.roster, backup_dir=open_to_all).reset("dumpy", "02")
    assert list(elsewhere.iterdir()) == [] and list(open_to_all.iterdir()) == []
    assert sql(url, "SELECT to_regclass('public.mine')::text") == [("mine",)]  # nothing was reset


def test_a_roster_folder_another_account_prepared_is_refused(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path
) -> None:
    """As root, `--roster /tmp/room/roster.json` in a folder another account made: their symlink at the roster's
    lock made root create any file they named (e.g. /etc/nologin), and their roster fed root URLs of theirs."""
    if os.geteuid() != 0:
        pytest.skip("plays another OS account: root only")
    learner("rosy")
    theirs = Path(tempfile.mkdtemp(prefix="mlab-room-", dir="/tmp"))
    victim = tmp_path / "made-by-root"
    try:
        (theirs / "roster.json.lock").symlink_to(victim)
        os.lchown(theirs / "roster.json.lock", 65534, 65534)
        os.chown(theirs, 65534, 65534)
        for argv in (["add", "rosy2"], ["reset", "rosy", "02", "--yes"], ["add", "--learners", "1"]):
            args = ["workshop", "--server", server.instructor_url, "--roster", str(theirs / "roster.json")]
            done = subprocess.run(
                [sys.executable, "-m", "migration_lab", *args, *argv],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
            assert "owned by nobody" in done.stderr, done.stderr
            assert not victim.exists()
        assert sql(server.superuser_url, "SELECT 1 FROM pg_roles WHERE rolname IN ('rosy2', 'learner01')") == []
        assert not list(theirs.glob("**/*.dump"))
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


def test_a_folder_above_the_roster_that_another_account_could_swap_is_refused(
    server: Server, shop: Workshop, tmp_path: Path
) -> None:
    """As root, `--roster /tmp/anc/room/roster.json` where `anc` is another account's: `room` was root's own 0700
    folder, so it passed, and in the hundreds of ms of an `add` they renamed it and put a symlink to a folder of
    their choosing in its place: root wrote every learner's URL there. A folder above that someone else owns, or
    may write without a sticky bit, is refused before anything is written."""
    if os.geteuid() != 0:
        pytest.skip("plays another OS account: root only")
    theirs = Path(tempfile.mkdtemp(prefix="mlab-anc-", dir="/tmp"))
    try:
        os.chown(theirs, 65534, 65534)
        theirs.chmod(0o755)
        (theirs / "room").mkdir(mode=0o700)  # root's own folder, in theirs
        args = ["workshop", "--server", server.instructor_url, "--roster", str(theirs / "room" / "roster.json")]
        done = subprocess.run(
            [sys.executable, "-m", "migration_lab", *args, "add", "swapped"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"{theirs} above it is owned by nobody" in done.stderr, done.stderr
        assert list((theirs / "room").iterdir()) == []
        assert sql(server.superuser_url, "SELECT 1 FROM pg_roles WHERE rolname = 'swapped'") == []
        ours = tmp_path / "open"  # root's, but writable by all without a sticky bit: anyone may rename in it
        (ours / "room").mkdir(parents=True)
        ours.chmod(0o777)
        with pytest.raises(LabError, match="others may write in .*open above it"):
            Workshop(server.instructor_url, roster=ours / "room" / "roster.json").add("swapped")
        grouped = tmp_path / "grouped"  # umask 002: group-writable, fine while the group is root's alone
        (grouped / "room").mkdir(parents=True)
        grouped.chmod(0o775)
        assert folders.private_folder(grouped / "room", "the roster's folder") == grouped / "room"
        os.chown(grouped, 0, pwd.getpwnam("nobody").pw_gid)  # a group another account is in: they may rename
        with pytest.raises(LabError, match="others may write in .*grouped above it"):
            folders.private_folder(grouped / "room", "the roster's folder")
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


def test_an_export_over_a_fifo_someone_planted_does_not_hang(server: Server, shop: Workshop, tmp_path: Path) -> None:
    """`status --output progress.csv` where a FIFO (mode 0600) stood: the kit read the old file to skip an
    unchanged write, and the read waited for a writer for ever. The export replaces it with the file."""
    target = tmp_path / "progress.csv"
    os.mkfifo(target, 0o600)
    args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]
    done = subprocess.run(
        [sys.executable, "-m", "migration_lab", *args, "status", "--format", "csv", "--output", str(target)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert target.is_file() and target.read_text().startswith("learner,"), target.read_text()[:200]


INVISIBLE = "\u2028\u2029\u200b\u200d\ufeff\u061c\u2066\u00ad\U000e0041"  # separators, zero-width, bidi, tags


def test_line_separators_and_invisible_marks_cannot_forge_a_row(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """Not only C0/C1 controls: U+2028/2029 end a line for many readers (Python's splitlines, editors), zero-width
    and bidi marks hide or reorder text. In what the store keeps and in what the room shows, none is left."""
    url = learner("sepa")
    learner("zed")
    evil = f"fine{INVISIBLE}\u2028STUCK zed  09  0/0  forged"
    sql(at(url, "mlab_workshop"), "SELECT room.record_check('03', 1, 5, :e)", e=evil)
    rows = shop.status()
    text, page = table(rows), html(rows)
    for bad in INVISIBLE:
        assert bad not in text and bad not in page, repr(bad)
    assert len(text.splitlines()) == len(rows) + 2, text.splitlines()
    kept = sql(
        server.superuser_url, "SELECT last_error FROM room.progress WHERE learner = 'sepa'", database="mlab_workshop"
    )
    assert kept and not any(bad in kept[0][0] for bad in INVISIBLE), kept


def test_names_postgresql_reserves_or_reads_as_another_role_are_refused(
    server: Server, shop: Workshop, capsys: pytest.CaptureFixture[str]
) -> None:
    """`add public` and `add none` failed with a traceback that showed the generated password; `current_user`,
    `all` and the like were made, roles whose name reads as someone else unquoted (SQL, pg_hba.conf)."""
    names = ["public", "none", "current_user", "session_user", "current_role", "user", "all"]
    for name in names:
        args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster), "add", name]
        assert main(args) == 1, name
        err = capsys.readouterr().err
        assert "cannot be a learner's name" in err and "password" not in err, err
    assert sql(server.superuser_url, "SELECT rolname FROM pg_roles WHERE rolname = ANY(:n)", n=names) == []


def test_files_never_runs_as_root_even_for_a_learner_named_like_root(tmp_path: Path) -> None:
    """A learner may be called `root` (or `toor`, any name an account with uid 0 has): their `--files` reset ran
    as root, in a checkout root owns."""
    if os.geteuid() != 0:
        pytest.skip("needs a checkout root owns")
    (tmp_path / "ai-service").mkdir()
    root = pwd.getpwuid(0).pw_name
    with pytest.raises(LabError, match="never runs a learner's reset as root"):
        checkouts.account(root, tmp_path)


def test_a_learners_kit_never_works_in_a_database_another_learner_took(
    server: Server,
    shop: Workshop,
    learner: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bob's database gone (dropped by him, by an admin), mallory creates lab_bob, open to all, with a shadowed
    current_schema() and a search_path to reach it: bob's kit said "running: yes" and its first query ran her
    function as bob (who may change his own password). Now it names the owner, refuses `up`, runs nothing."""
    from helpers import copy_project

    bob, mallory = learner("bobby"), learner("mallo")
    sql(server.superuser_url, "DROP DATABASE lab_bobby WITH (FORCE)")
    sql(mallory, "CREATE DATABASE lab_bobby", database="postgres")
    bait = at(mallory, "lab_bobby")
    sql(
        bait,
        "CREATE TABLE public.caught (who text); GRANT INSERT ON public.caught TO PUBLIC; "
        "CREATE FUNCTION public.current_schema() RETURNS name LANGUAGE sql AS "
        "$$ INSERT INTO public.caught VALUES (session_user) RETURNING 'public'::name $$; "
        "GRANT EXECUTE ON FUNCTION public.current_schema() TO PUBLIC",
    )
    sql(mallory, "ALTER DATABASE lab_bobby SET search_path = public, pg_catalog", database="postgres")
    monkeypatch.setenv("LAB_DATABASE_URL", bob)
    monkeypatch.chdir(copy_project(tmp_path / "checkout").root)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "lab_bobby belongs to mallo" in out, out
    assert main(["up"]) == 1
    assert "lab_bobby belongs to mallo" in capsys.readouterr().err
    assert sql(bait, "SELECT who FROM public.caught WHERE who = 'bobby'") == []  # (mallory's own: hers)


def test_a_roster_that_is_not_a_regular_file_is_refused_at_once(server: Server, shop: Workshop, tmp_path: Path) -> None:
    """`--roster` naming a FIFO (or a device) in a folder of yours: it hung on open, waiting for a writer."""
    fifo = tmp_path / "roster.json"
    os.mkfifo(fifo)
    args = ["workshop", "--server", server.instructor_url, "--roster", str(fifo), "add", "fifi"]
    done = subprocess.run(
        [sys.executable, "-m", "migration_lab", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "not a regular file" in done.stderr and "Traceback" not in done.stderr
    assert sql(server.superuser_url, "SELECT 1 FROM pg_roles WHERE rolname = 'fifi'") == []


def test_the_room_view_and_watch_refuse_an_interval_that_would_hammer_the_server(shop: Workshop) -> None:
    """--watch was checked in the CLI only: `RoomView(shop, every=0)` (or -1, NaN) refreshed as fast as the server
    answered, and `watch(shop, -1)` crashed after the first table."""
    for every in (0, -1, float("nan"), 0.001, 1e9, float("inf")):
        with pytest.raises(LabError, match="--watch"):
            RoomView(shop, every=every)
        with pytest.raises(LabError, match="--watch"):
            watch(shop, every, show=lambda text: None)


def test_a_reset_undoes_what_a_killed_reset_left(server: Server, shop: Workshop, learner: Callable[[str], str]) -> None:
    """A reset killed between its clone and the swap (or the swap and the drop) leaves the learner a clone or the
    replaced database under a random name: the next reset drops them (only `ensure`/`add` did)."""
    url = learner("killed")
    for leftover in ("mlab_clone_00112233aabbccdd", "mlab_old_00112233aabbccdd"):
        sql(url, f"CREATE DATABASE {leftover}", database="postgres")
    shop.reset("killed", "02", backup=False)
    rows = sql(server.superuser_url, "SELECT datname FROM pg_database WHERE datname LIKE '%00112233aabbccdd'")
    assert rows == [], rows


def test_a_leftover_a_learner_made_a_template_is_dropped_and_its_name_never_reaches_the_terminal(
    server: Server, shop: Workshop, learner: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A learner's `mlab_clone_...` named with escape sequences and marked IS_TEMPLATE: a plain DROP DATABASE
    failed, and the server's error printed the name raw (a forged screen): the reset drops it now."""
    url = learner("forger")
    name = "mlab_clone_\x1b]0;pwned\x07\x1b[2J\x1b[32mAll learners reset OK"
    raw(url, f'CREATE DATABASE "{name}"')
    raw(url, f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster)]
    assert main([*args, "reset", "forger", "02", "--yes", "--no-backup"]) == 0
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_database WHERE datname LIKE 'mlab_clone_%'") == [(0,)]
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "\x07" not in out.out + out.err


def test_a_server_url_in_libpqs_query_form_backs_up_from_that_server(
    server: Server, shop: Workshop, tmp_path: Path
) -> None:
    """`postgresql://teacher:pw@/postgres?host=...&port=...` (libpq's form, and a socket's folder's): the backup
    before a reset took the URL's host and port only, so pg_dump went to localhost:5432 (whatever server runs
    there got the learner's password) and every `workshop reset` failed."""
    u = sa.make_url(server.instructor_url)
    odd = f"postgresql://{u.username}:{u.password}@/postgres?host={u.host}&port={u.port}"
    odd_shop = Workshop(odd, roster=tmp_path / "room" / "roster.json")  # `shop` made the templates
    assert odd_shop.where == f"{u.host}:{u.port}"
    odd_shop.ensure("querious")
    try:
        saved = odd_shop.reset("querious", "02")
        assert saved is not None and saved.stat().st_size > 0
    finally:
        odd_shop.remove("querious")


def test_remove_of_several_names_goes_on_past_one_that_is_no_learners(
    server: Server, shop: Workshop, learner: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`workshop remove ann outsider cid`: the role that is not a learner's stopped the command, and cid stayed.
    A name that cannot be a learner's at all is refused before anyone is removed."""
    for name in ("ann", "cid", "dot"):
        learner(name)
    sql(server.superuser_url, "CREATE ROLE outsider NOLOGIN")
    args = ["workshop", "--server", server.instructor_url, "--roster", str(shop.roster), "remove"]
    try:
        assert main([*args, "dot", "Not A Name"]) == 1
        assert "cannot be a learner's name" in capsys.readouterr().err
        assert main([*args, "ann", "outsider", "cid"]) == 1
        err = capsys.readouterr().err
        assert "outsider" in err and "not a workshop learner" in err and "Traceback" not in err, err
        rows = sql(
            server.superuser_url, "SELECT rolname FROM pg_roles WHERE rolname IN ('ann', 'cid', 'dot', 'outsider')"
        )
        assert sorted(r[0] for r in rows or []) == ["dot", "outsider"]
    finally:
        sql(server.superuser_url, "DROP ROLE outsider")


def test_a_database_the_kit_creates_is_never_open_to_another_learner_not_even_before_its_revoke(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path
) -> None:
    """A new database grants CONNECT to PUBLIC until the REVOKE that follows its CREATE: a learner looping on
    pg_database could get in during that moment and stay (a clone of a template, another learner's rehearsal copy
    holding their rows). Here the intruder tries at the worst moment, just before each REVOKE the kit sends."""
    from migration_lab import Lab, Project
    from migration_lab.database.url import UrlBackend

    owner_url, intruder_url = learner("carla"), learner("ivan")
    tried: dict[str, str] = {}

    def knock(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.startswith("REVOKE") and " ON DATABASE " in statement:
            name = statement.split(" ON DATABASE ", 1)[1].split(" FROM ", 1)[0].strip('"')
            try:
                sql(intruder_url, "SELECT 1", database=name)
                tried[name] = "connected"
            except sa.exc.OperationalError as refused:
                tried[name] = str(refused.orig)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", knock)
    try:
        shop.add("dora")  # a learner's database: a clone of the chapter's template
        lab = Lab(Project(tmp_path), UrlBackend(owner_url))
        with lab.db.copy():  # carla's rehearsal copy
            pass
        lab.db.dispose()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", knock)
        shop.remove("dora")
    assert any(name.startswith("mlab_clone_") for name in tried), tried  # both kinds of database were tried
    assert any(name.startswith("mlab_copy_") for name in tried), tried
    assert all("not currently accepting connections" in why for why in tried.values()), tried


def test_init_drops_what_a_killed_init_left_and_refuses_to_run_beside_another(
    server: Server, shop: Workshop, learner: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed `init` left its half-built template (`mlab_build_*`, the kit's) until `drop`; the next init drops
    it, never a learner's database of that name. One init at a time: another's lock (here a learner who took the
    advisory lock with psql) is named and refused, not waited for forever."""
    from migration_lab.workshop.setup import INIT_LOCK

    sql(server.superuser_url, 'CREATE DATABASE "mlab_build_killed" OWNER mlab_templates')
    url = learner("bruno")
    raw(url, 'CREATE DATABASE "mlab_build_bruno"')
    said: list[str] = []
    monkeypatch.setattr(shop, "say", said.append)
    shop.init()
    assert any(line.startswith("Dropped mlab_build_killed") for line in said), said
    left = sql(server.superuser_url, "SELECT datname FROM pg_database WHERE starts_with(datname, 'mlab_build_')")
    assert left == [("mlab_build_bruno",)], left

    holder = sa.create_engine(at(url, "postgres"), poolclass=sa.pool.NullPool)
    try:
        with holder.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": INIT_LOCK})
            with pytest.raises(LabError) as refused:
                shop.init()
            assert "Another `workshop init` is running" in str(refused.value) and "bruno" in str(refused.value)
    finally:
        holder.dispose()
    shop.init()  # the lock went with the session


def test_a_learners_own_backup_of_a_url_in_libpqs_query_form_reads_that_server(
    learner: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The learner's kit backs up before a reset with pg_dump (and restores with psql): it took the host of
    `?host=` and dropped `?port=`, so the dump went to port 5432 (another server, if one runs there, got the
    learner's password) and failed. And a PG* variable of the learner's shell redirected it."""
    from migration_lab.workspace import backups

    u = sa.make_url(learner("quinn"))
    sql(u.render_as_string(hide_password=False), "CREATE TABLE quinns_work (id int)")
    odd = f"postgresql+psycopg2://{u.username}:{u.password}@/{u.database}?host={u.host}&port={u.port}"
    monkeypatch.setenv("PGHOST", "/nonexistent")  # the shell's: never followed
    monkeypatch.setenv("PGPORT", "1")
    assert "CREATE TABLE public.quinns_work" in backups.dump(odd)
