"""What the instructor's role needs (issue 16, finding 16): CREATEROLE and CREATEDB, no superuser, on
PostgreSQL 16+. The whole workshop runs with such a role, which never gets its learners' privileges."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from helpers import REPO, copy_project
from hostile import Server, learner_role_count, owner, sql, start_server
from migration_lab import Lab, LabError, Project, UrlBackend
from migration_lab.course.registry import spec
from migration_lab.front.notebook import Chapter
from migration_lab.workshop.instructor import LEFT, Workshop


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from start_server("createrole")


def test_createrole_and_createdb_run_the_whole_workshop(server: Server, tmp_path: Path) -> None:
    shop = Workshop(server.instructor_url, roster=tmp_path / "roster.json", project=Project(REPO))
    shop.init()
    shop.init()  # again: idempotent
    ada = shop.add("ada").database_url
    lab = Lab(copy_project(tmp_path / "project"), UrlBackend(ada))
    chapter = Chapter(spec("01"), lab)
    chapter.check()
    assert [(r.name, r.chapter, r.total > 0) for r in shop.status()] == [("ada", "01", True)]
    assert shop.reset("ada", "02") is not None  # backed up as ada, cloned as ada
    assert owner(server.superuser_url, "lab_ada") == "ada"
    Chapter(spec("01"), lab).reset()  # ada's own re-clone
    assert lab.db.heads() == ("8b7e5d2c6a41",)
    lab.db.dispose()
    assert shop.ensure("ada").database_url == ada
    # the instructor acts as its learners only for what they own, and never inherits their privileges
    with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
        sql(server.instructor_url, "SELECT 1", database="lab_ada")
    assert sql(server.instructor_url, "SELECT pg_has_role('ada', 'USAGE'), pg_has_role('ada', 'SET')") == [
        (False, True)
    ]
    said = shop.remove("ada")
    assert not [line for line in said if LEFT in line], said
    shop.add("ben")
    assert not [line for line in shop.drop() if LEFT in line]
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mlab_%'") == [(0,)]
    assert learner_role_count(server.superuser_url) == 0
    assert sql(server.superuser_url, "SELECT count(*) FROM pg_database") == [(3,)]


def test_a_role_without_createrole_is_told_what_it_needs(server: Server, tmp_path: Path) -> None:
    sql(server.superuser_url, "CREATE ROLE helper LOGIN CREATEDB PASSWORD 'helper'")
    try:
        url = make_url(server.superuser_url).set(username="helper", password="helper")
        shop = Workshop(url.render_as_string(hide_password=False), roster=tmp_path / "r.json", project=Project(REPO))
        with pytest.raises(LabError, match="CREATEROLE and CREATEDB"):
            shop.init()
        assert sql(server.superuser_url, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mlab_%'") == [(0,)]
    finally:
        sql(server.superuser_url, "DROP ROLE helper")
