"""No name the kit uses can be taken by a learner (issue 16, findings 4-7 and 17): databases created or renamed
onto a learner's name during a re-clone, before an add, after a database went missing; a template or the room's
store made by a learner under the kit's name; large objects planted in template1."""

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import copy_project
from hostile import TRAP_FUNCTIONS, Server, assert_not_pwned, at, owner, sql
from migration_lab import Lab, LabError, UrlBackend
from migration_lab.course.registry import CHAPTERS, spec
from migration_lab.front.notebook import Chapter
from migration_lab.workshop.instructor import Workshop
from migration_lab.workspace import progress
from migration_lab.workspace.templates import reclone_source, template_name


def learner_lab(tmp_path: Path, url: str) -> Lab:
    return Lab(copy_project(tmp_path / "project"), UrlBackend(url))


def squatters(url: str, statements: list[str]) -> tuple[threading.Event, list[str], list[threading.Thread]]:
    """Threads that run their statement as fast as they can (as `url`'s role) until the event is set; `won` lists
    the statements that ever succeeded."""
    stop, won = threading.Event(), []

    def squat(statement: str) -> None:
        engine = sa.create_engine(at(url, "postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            while not stop.is_set():
                try:
                    conn.execute(sa.text(statement))
                except sa.exc.DBAPIError:
                    continue
                won.append(statement)
                return
        engine.dispose()

    threads = [threading.Thread(target=squat, args=(s,), daemon=True) for s in statements]
    for thread in threads:
        thread.start()
    return stop, won, threads


@pytest.mark.parametrize("who", ["instructor", "learner"])
def test_a_reclone_never_frees_the_name(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path, who: str
) -> None:
    """Another learner loops CREATE DATABASE and ALTER DATABASE ... RENAME TO the victim's name while the victim's
    database is re-cloned (by the instructor's reset, or by the victim's own chapter reset): the name stays
    theirs every time."""
    victim, attacker = learner("victim"), learner("squatter")
    sql(attacker, "CREATE DATABASE bait", database="postgres")
    sql(attacker, "CREATE DATABASE bait2", database="postgres")
    stop, won, threads = squatters(
        attacker,
        [
            "CREATE DATABASE lab_victim",
            "ALTER DATABASE bait RENAME TO lab_victim",
            "CREATE DATABASE lab_victim",
            "ALTER DATABASE bait2 RENAME TO lab_victim",
        ],
    )
    lab = learner_lab(tmp_path, victim)
    try:
        for round in range(12):  # before the fix the name was lost on the 2nd try
            if who == "instructor":
                shop.reset("victim", "02" if round % 2 else "01", backup=False)
            else:
                Chapter(spec("02" if round % 2 else "01"), lab).reset()
            assert owner(server.superuser_url, "lab_victim") == "victim"
            assert not won, won
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        lab.db.dispose()
    assert not won, won
    assert lab.db.heads() == ("a1c4e7f20b13",)  # chapter 02, the last round: the kit works on the victim's database
    lab.db.dispose()


def test_ensure_never_hands_over_a_squatted_database(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """dave's database went missing; a learner made lab_dave: ensure (a hub login) gives dave a database of his
    own, moves the squatter's aside (kept, named), and dave's URL opens his own."""
    attacker = learner("squatter")
    dave = learner("dave")
    sql(server.superuser_url, "DROP DATABASE lab_dave WITH (FORCE)")
    sql(attacker, "CREATE DATABASE lab_dave", database="postgres")
    sql(attacker, "CREATE TABLE stolen (secret text)", database="lab_dave")
    said: list[str] = []
    shop.say = said.append
    try:
        again = shop.ensure("dave")
    finally:
        shop.say = lambda message: None
    assert owner(server.superuser_url, "lab_dave") == "dave"
    assert any("squatter" in line and "lab_dave" in line and "mlab_squatted_" in line for line in said), said
    assert sql(
        again.database_url,
        "SELECT current_user, pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
    ) == [("dave", "dave")]
    assert sql(again.database_url, "SELECT to_regclass('public.stolen')") == [(None,)]
    assert make_url(again.database_url).password == make_url(dave).password  # the roster's password still works
    kept = sql(
        server.superuser_url,
        "SELECT datname FROM pg_database WHERE datname LIKE 'mlab_squatted_%' AND datdba = 'squatter'::regrole",
    )
    assert kept and len(kept) == 1


def test_a_name_squatted_before_add_is_still_provisioned(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """A learner made lab_zoe before zoe's first login: zoe gets it anyway (a hub login name cannot change)."""
    attacker = learner("squatter")
    sql(attacker, "CREATE DATABASE lab_zoe", database="postgres")
    held = sa.create_engine(at(attacker, "lab_zoe"), poolclass=sa.pool.NullPool).connect()  # and sits in it
    try:
        zoe = learner("zoe")
    finally:
        held.invalidate()
    assert owner(server.superuser_url, "lab_zoe") == "zoe"
    assert make_url(zoe).database == "lab_zoe"
    assert sql(zoe, "SELECT current_user") == [("zoe",)]
    assert sql(
        server.superuser_url,
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'mlab_squatted_%' AND datdba = 'squatter'::regrole",
    ) == [(1,)]  # kept, not dropped: it was not the kit's


def test_a_database_of_a_role_that_is_not_a_learner_is_never_moved(server: Server, shop: Workshop) -> None:
    """lab_<name> owned by someone the kit did not make (a DBA's): refused, untouched, no role left behind."""
    sql(server.superuser_url, "CREATE ROLE dba NOLOGIN")
    sql(server.superuser_url, "CREATE DATABASE lab_kim OWNER dba")
    try:
        with pytest.raises(LabError, match="owned by dba"):
            shop.add("kim")
        assert owner(server.superuser_url, "lab_kim") == "dba"
        assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'kim'") == [(0,)]
    finally:
        sql(server.superuser_url, "DROP DATABASE lab_kim")
        sql(server.superuser_url, "DROP ROLE dba")


def test_a_template_the_kit_did_not_make_is_refused_named_and_rebuilt(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path
) -> None:
    """After a course update drops chapter 02's template, a learner makes a database of that name, IS_TEMPLATE,
    with a table of theirs: no kit clones it (the learner's own reset, the instructor's), init names it, moves it
    aside and builds the real one."""
    attacker, victim = learner("squatter"), learner("victim")
    name = template_name(spec("02").checkpoint.fingerprint())
    sql(server.superuser_url, f'ALTER DATABASE "{name}" IS_TEMPLATE false')
    sql(server.superuser_url, f'DROP DATABASE "{name}"')
    sql(attacker, f'CREATE DATABASE "{name}"', database="postgres")
    sql(attacker, "CREATE TABLE evil (x int); CREATE TABLE job_entries (x int)", database=name)
    sql(attacker, f'ALTER DATABASE "{name}" IS_TEMPLATE true', database="postgres")  # an owner may
    lab = learner_lab(tmp_path, victim)
    with lab.db.connect() as conn:
        assert reclone_source(conn, spec("02").checkpoint.fingerprint()) is None
    Chapter(spec("02"), lab).reset()  # the ordinary reset: wipe, upgrade, seed
    assert sql(victim, "SELECT to_regclass('public.evil')") == [(None,)]
    lab.db.dispose()
    with pytest.raises(LabError, match=f"{name}, belongs to squatter"):
        shop.reset("victim", "02", backup=False)
    said: list[str] = []
    shop.say = said.append
    try:
        shop.init()
    finally:
        shop.say = lambda message: None
    assert owner(server.superuser_url, name) == "mlab_templates"
    assert any("squatter" in line and name in line for line in said), said
    shop.reset("victim", "02", backup=False)
    assert sql(victim, "SELECT to_regclass('public.evil'), count(*) FROM job_entries") == [(None, 3)]


def test_large_objects_planted_in_template1_reach_no_database_the_kit_makes(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """A learner may create large objects in template1: none reaches the templates, the room's store or a new
    learner's database (all built from template0), and DROP ROLE of the planter is not blocked by them."""
    planter = learner("planter")
    sql(planter, "SELECT lo_create(0)", database="template1")
    templates = {template_name(chapter.checkpoint.fingerprint()) for chapter in CHAPTERS.values()}
    for name in templates:
        sql(server.superuser_url, f'ALTER DATABASE "{name}" IS_TEMPLATE false')
        sql(server.superuser_url, f'DROP DATABASE "{name}"')
    sql(server.superuser_url, "DROP DATABASE mlab_workshop WITH (FORCE)")
    shop.init()  # a course update: every template and the store made again
    newcomer = learner("newcomer")
    kit = [row[0] for row in sql(server.superuser_url, "SELECT datname FROM pg_database WHERE datname LIKE 'mlab_%'")]
    assert sorted(kit) == sorted([*templates, "mlab_workshop"]), kit  # one per checkpoint, and the store
    for database in [*kit, "lab_newcomer"]:
        sql(server.superuser_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        try:
            assert sql(server.superuser_url, "SELECT count(*) FROM pg_largeobject_metadata", database=database) == [
                (0,)
            ], database
        finally:
            if database.startswith("mlab_tpl_"):
                sql(server.superuser_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    assert sql(newcomer, "SELECT count(*) FROM user_profiles") == [(3,)]


def test_a_room_store_made_by_a_learner_is_never_called_nor_read(
    server: Server, shop: Workshop, learner: Callable[[str], str], tmp_path: Path, marker: Path
) -> None:
    """The store went away (a DBA's cleanup); a learner made `mlab_workshop` with a `room.record_check` that
    changes the caller's password and a `room.progress` view over a trap: no learner's kit calls the function,
    the instructor's status refuses to read the view, init moves it aside (named) and makes the real one."""
    attacker, victim = learner("squatter"), learner("victim")
    sql(server.superuser_url, "DROP DATABASE mlab_workshop WITH (FORCE)")
    sql(attacker, "CREATE DATABASE mlab_workshop", database="postgres")
    sql(attacker, TRAP_FUNCTIONS.format(learner="squatter", marker=marker), database="mlab_workshop")
    sql(
        attacker,
        "CREATE SCHEMA room; CREATE VIEW room.progress AS SELECT 'victim'::name AS learner, '01'::text AS chapter, "
        "1 AS passed, 2 AS total, NULL::text AS last_error, now() AS started_at, now() AS updated_at, "
        "now() AS progressed_at, NULL::timestamptz AS first_passed_at FROM (SELECT public.trap('store')) t; "
        "CREATE FUNCTION room.record_check(chapter text, passed int, total int, error text) RETURNS void "
        "LANGUAGE plpgsql AS $$ BEGIN "  # runs as the caller, who may change their own password
        "EXECUTE format('ALTER ROLE %I PASSWORD %L', session_user, 'squatter-knows'); END $$; "
        "GRANT USAGE ON SCHEMA room TO PUBLIC",
        database="mlab_workshop",
    )
    lab = learner_lab(tmp_path, victim)
    progress.record_check(lab, "01", 1, 2, None)
    lab.db.dispose()
    assert sql(victim, "SELECT current_user") == [("victim",)]  # the password is still the roster's
    with pytest.raises(LabError, match="not the workshop's"):
        shop.status()
    assert_not_pwned(server.superuser_url, "squatter", marker)
    said: list[str] = []
    shop.say = said.append
    try:
        shop.init()
    finally:
        shop.say = lambda message: None
    assert owner(server.superuser_url, "mlab_workshop") == "mlab_room"
    assert any("squatter" in line and "mlab_workshop" in line for line in said), said
    lab = learner_lab(tmp_path / "again", victim)
    progress.record_check(lab, "01", 1, 2, None)
    lab.db.dispose()
    assert [(r.name, r.chapter) for r in shop.status() if r.name == "victim"] == [("victim", "01")]


def test_a_missing_database_is_named_missing(
    server: Server,
    shop: Workshop,
    learner: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The learner's kit says their database does not exist (not that the server is down); the room says so too,
    and who owns a learner's name when it is not them."""
    from migration_lab.front.cli import main

    url = learner("gone")
    sql(server.superuser_url, "DROP DATABASE lab_gone WITH (FORCE)")
    monkeypatch.setenv("LAB_DATABASE_URL", url)
    monkeypatch.chdir(copy_project(tmp_path / "checkout").root)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "running:  yes" in out and "lab_gone does not exist" in out, out
    assert main(["up"]) == 1
    assert "lab_gone does not exist" in capsys.readouterr().err
    rows = {r.name: r for r in shop.status()}
    assert rows["gone"].problem == "database lab_gone is missing"


def test_a_squatter_who_keeps_reconnecting_cannot_keep_the_name(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """A database can only be renamed while nobody is connected: the squatter sits in lab_amy from several
    sessions, each reconnecting as soon as it is closed. amy is provisioned anyway (the squatter's database is
    closed to new connections before it is moved aside)."""
    attacker = learner("squatter")
    sql(attacker, "CREATE DATABASE lab_amy", database="postgres")
    stop = threading.Event()

    def sit() -> None:
        engine = sa.create_engine(at(attacker, "lab_amy"), poolclass=sa.pool.NullPool)
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    while not stop.is_set():
                        conn.execute(sa.text("SELECT 1"))
            except sa.exc.DBAPIError:
                continue
        engine.dispose()

    threads = [threading.Thread(target=sit, daemon=True) for _ in range(8)]  # their connection limit
    for thread in threads:
        thread.start()
    try:
        learner("amy")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert owner(server.superuser_url, "lab_amy") == "amy"


def test_a_learner_cannot_act_as_the_learners_group_to_take_a_name(
    server: Server, shop: Workshop, learner: Callable[[str], str]
) -> None:
    """Every learner is a member of mlab_learners (for CONNECT to the room and its functions). Able to SET ROLE to
    it, a learner made databases the group owns under a future learner's name and a template's, which the kit
    moves aside only when a learner owns them: `add learner31` was refused for good, `init` failed."""
    attacker = learner("squatter")
    for statement in (
        "SET ROLE mlab_learners",
        "CREATE DATABASE lab_learner31 OWNER mlab_learners",
        "ALTER DATABASE lab_squatter OWNER TO mlab_learners",
    ):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be able to SET ROLE"):
            sql(attacker, statement, database="postgres")
    assert sql(attacker, "SELECT has_database_privilege('mlab_workshop', 'CONNECT')") == [(True,)]  # its grants
    shop.add("learner31")
    assert owner(server.superuser_url, "lab_learner31") == "learner31"
