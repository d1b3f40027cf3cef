"""A set-up cell run again (a kernel restart, Run All twice) never writes over the learner's work (issue 17): the
kit's revision files it brings stay the learner's once changed, a model line is added once, and a set-up that
must take the database down backs the work up first and names the backup."""

import sqlalchemy as sa

from helpers import start
from migration_lab import Lab
from migration_lab.course.ch03_rollback import LANGUAGE_FILE
from migration_lab.course.ch04_where_am_i import PENDING_FROM
from migration_lab.course.registry import spec
from migration_lab.course.teammates import TEAMMATES
from migration_lab.front.notebook import Chapter
from migration_lab.workspace.backups import Backups

FIX = (
    "    op.drop_index('ix_user_settings_language', table_name='user_settings')\n"
    "    op.drop_column('user_settings', 'language')"
)


def test_03_the_exercise_start_again_keeps_the_learners_fix_of_the_applied_revision(lab: Lab, capsys) -> None:
    chapter = start(lab, "03")
    path = lab.project.versions_dir / LANGUAGE_FILE
    fixed = path.read_text().replace('    """Downgrade schema."""\n    pass', '    """Downgrade schema."""\n' + FIX)
    assert fixed != path.read_text()
    path.write_text(fixed)
    chapter.start_exercise()
    assert path.read_text() == fixed
    assert "is there with your changes" in capsys.readouterr().out


def test_06_a_teammate_arriving_again_adds_the_line_once_and_keeps_a_changed_revision(lab: Lab, capsys) -> None:
    chapter = start(lab, "06")
    revision, line = TEAMMATES["bob"]
    chapter.teammate_revision("bob")
    path = lab.project.versions_dir / revision
    changed = path.read_text() + "\n# my note on Bob's revision\n"
    path.write_text(changed)
    capsys.readouterr()
    chapter.teammate_revision("bob")
    assert path.read_text() == changed
    assert (lab.project.service_dir / "main.py").read_text().count(line) == 1
    assert "it is kept, not replaced" in capsys.readouterr().out


def test_04_the_exercise_start_after_the_upgrade_backs_up_what_its_downgrade_drops(lab: Lab, capsys) -> None:
    chapter = start(lab, "04")
    assert chapter.lab.runner.run("upgrade head").ok
    with lab.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE user_settings SET language = 'fr'"))  # the learner's rows in Bob's column
    capsys.readouterr()
    chapter.start_exercise()
    said = capsys.readouterr().out
    assert lab.db.heads() == (PENDING_FROM,)
    names = Backups(lab.project, lab.db.url).names()
    assert names and f".lab/backups/{names[-1]}/" in said, said
    assert "language" in (Backups(lab.project, lab.db.url).folder / names[-1] / "database.sql").read_text()


def test_04_an_exercise_start_whose_downgrade_fails_says_so_and_brings_no_teammate(lab: Lab, capsys) -> None:
    """A revision of the learner's above 8b7e5d2c6a41 whose downgrade() raises: the start said "your database is
    where you left it, at 8b7e5d2c6a41", and Bob's file made two heads."""
    import pytest

    from helpers import write_revision
    from migration_lab.errors import LabError

    chapter = start(lab, "04")
    head = lab.runner.script().get_current_head()
    write_revision(lab.project, "d0d0d0d0d0d0", head, "pass", 'raise RuntimeError("no way back")')
    assert lab.runner.run("upgrade head").ok
    capsys.readouterr()
    with pytest.raises(LabError, match="could not take your database back to 8b7e5d2c6a41") as raised:
        chapter.start_exercise()
    assert "no way back" in raised.value.what and "Bob's revision has not arrived" in raised.value.what
    assert lab.db.heads() == ("d0d0d0d0d0d0",)
    assert len(lab.runner.script().get_heads()) == 1  # Bob's file did not come


def test_08_the_exercise_start_saves_the_database_it_rebuilds_and_names_the_backup(lab: Lab, capsys) -> None:
    """Chapter 08's start wipes the database to rebuild it with create_all: run again after a kernel restart, it
    took the learner's rows with it, in no backup. They are saved first, and the backup is named."""
    chapter = start(lab, "08")
    chapter.edit_file("migrations/env.py", "from main import Base, JobQueue", "from main import Base")
    chapter.alembic("stamp head", confirm=True)
    chapter.sql("INSERT INTO user_profiles (name, email) VALUES ('Mine', 'precious@example.org')")
    capsys.readouterr()
    Chapter(spec("08"), lab).start_exercise()  # a fresh kernel's `ch`, the cell run again
    name = Backups(lab.project, lab.db.url).names()[-1]
    assert f".lab/backups/{name}/" in capsys.readouterr().out
    assert "precious@example.org" in (lab.project.state_dir / "backups" / name / "database.sql").read_text()
    capsys.readouterr()
