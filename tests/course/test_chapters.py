"""Each chapter's reset and exercise check: a hint without the solution, a pass with it."""

import pytest
import sqlalchemy as sa

from migration_lab import Lab, LabError
from migration_lab.course.registry import CHAPTERS, reset, spec
from migration_lab.front.notebook import Chapter


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_exercise_hints_without_solution_and_passes_with_it(number: str, lab: Lab, capsys) -> None:
    chapter = Chapter(spec(number), lab)
    chapter.reset()
    chapter.start_exercise()
    before = chapter.spec.exercise(lab, None)
    failing = [c for c in before if not c.passed]
    assert failing, "the exercise is already solved at the chapter's start"
    assert all(len(c.hint) > 20 for c in failing)
    namespace = {}
    chapter.solution(namespace)
    after = chapter.spec.exercise(lab, namespace.get("answer"))
    assert all(c.passed for c in after), [str(c) for c in after if not c.passed]
    capsys.readouterr()


def test_wrong_moves_get_their_own_hints(lab: Lab, capsys) -> None:
    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    chapter.start_exercise()
    lab.runner.run("downgrade -1")  # the empty downgrade ran: alembic_version moved, the column stayed
    at_head = next(c for c in chapter.spec.exercise(lab, None) if c.name == "the database is at head")
    assert "still has language" in at_head.hint and "stamp head" in at_head.hints[1]
    capsys.readouterr()


def test_reset_restores_files_and_database(lab: Lab, engine: sa.Engine) -> None:
    main = lab.project.service_dir / "main.py"
    pristine = main.read_text()
    report = reset("02", lab)
    assert report.revision == ("a1c4e7f20b13",) and report.tables == 3 and report.rows == 9
    main.write_text("garbage(")
    (lab.project.versions_dir / "zzz_stray.py").write_text("revision = 'zzz'\n")
    lab.runner.run("downgrade base")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE made_by_hand (id int)"))
    report = reset("01", lab)
    assert main.read_text() == pristine
    assert sorted(p.name for p in lab.project.versions_dir.glob("*.py")) == [
        "3f1c2a9d4b10_create_user_profiles_and_settings.py",
        "8b7e5d2c6a41_add_job_entries.py",
    ]
    assert set(sa.inspect(engine).get_table_names()) == {
        "alembic_version",
        "user_profiles",
        "user_settings",
        "job_entries",
    }
    assert report.revision == ("8b7e5d2c6a41",)


def test_baseline_checkpoint_matches_the_committed_ai_service() -> None:
    """The kit's pristine copy and ai-service/ as staged (the index, what the next commit holds) never drift apart."""
    import subprocess

    from helpers import REPO
    from migration_lab.workspace.baseline import BASELINE

    pairs = [("main.py", "ai-service/main.py"), ("env.py", "ai-service/migrations/env.py")]
    pairs += [("database_url.py", "ai-service/database_url.py"), ("alembic.ini", "ai-service/alembic.ini")]
    pairs += [
        (f"versions/{p.name}", f"ai-service/migrations/versions/{p.name}") for p in BASELINE.glob("versions/*.py")
    ]
    committed_versions = subprocess.run(
        ["git", "ls-files", "ai-service/migrations/versions"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(committed_versions) == sorted(tracked for _, tracked in pairs[4:])
    for kit, tracked in pairs:
        committed = subprocess.run(
            ["git", "show", f":{tracked}"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        assert (BASELINE / kit).read_text() == committed, f"{kit} differs from the committed {tracked}"


def test_ch_sql_says_rows_for_dml_and_done_for_ddl(lab: Lab, capsys) -> None:
    """As psql does: a row count where there is one, never the driver's -1 for a DDL statement."""
    chapter = Chapter(spec("02"), lab)
    chapter.reset()
    capsys.readouterr()
    chapter.sql("UPDATE user_profiles SET name = name")
    assert capsys.readouterr().out.splitlines()[-1] == "3 row(s) changed"
    chapter.sql("ALTER TABLE user_profiles ADD COLUMN nickname text")
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "Done." and "-1" not in out


def test_at_checkpoint_is_true_only_for_the_checkpoint_untouched(lab: Lab, engine: sa.Engine) -> None:
    """What lets an exercise's start skip a second reset right after one: the checkpoint's files exactly, and the
    database as the reset left it. Any edit, stray revision, or changed row says no."""
    from migration_lab.workspace.checkpoints import BASELINE_CHECKPOINT, WITH_PHONE_NUMBER, at_checkpoint

    reset("02", lab)
    assert at_checkpoint(lab, WITH_PHONE_NUMBER) and not at_checkpoint(lab, BASELINE_CHECKPOINT)
    main = lab.project.service_dir / "main.py"
    main.write_text(main.read_text() + "\n")
    assert not at_checkpoint(lab, WITH_PHONE_NUMBER)
    reset("02", lab)
    (lab.project.versions_dir / "zzz_stray.py").write_text("revision = 'zzz'\n")
    assert not at_checkpoint(lab, WITH_PHONE_NUMBER)
    reset("02", lab)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE user_profiles SET name = 'Ada' WHERE name = 'Ada Lovelace'"))
    assert not at_checkpoint(lab, WITH_PHONE_NUMBER)


def test_an_alembic_ini_alembic_cannot_read_is_two_lines_in_every_cell_that_runs_alembic(lab: Lab, capsys) -> None:
    """A typo in script_location: ch.alembic, ch.check and ch.rewrite_revision showed alembic's CommandError as a
    traceback (whose own advice, `alembic init`, would start a new history), and the revision graph too."""
    from migration_lab.front.widgets import RevisionGraph

    chapter = Chapter(spec("03"), lab)
    reset("03", lab)
    ini = lab.project.service_dir / "alembic.ini"
    ini.write_text(ini.read_text().replace("%(here)s/migrations", "%(here)s/migrationz"))
    said = "alembic cannot read ai-service/alembic.ini: its script_location is ai-service/migrationz"
    chapter.alembic("current")
    assert f"FAILED: {said}" in capsys.readouterr().out
    for cell in (chapter.check, lambda: chapter.rewrite_revision(downgrade="pass", revision="a1c4e7f20b13")):
        with pytest.raises(LabError, match=said):
            cell()
    graph = RevisionGraph(lab)
    assert said in "".join(output.get("text", "") for output in graph.outputs)
    with pytest.raises(LabError, match=said):  # which revisions are applied cannot be told: no .py changes
        chapter.edit_file("main.py", "class", "class")
    chapter.edit_file("alembic.ini", "%(here)s/migrationz", "%(here)s/migrations")  # the way to mend it
    chapter.alembic("current")
    assert "FAILED" not in capsys.readouterr().out
    ini.write_bytes(ini.read_bytes() + "# caf\u00e9\n".encode("latin-1"))  # saved by an editor as Latin-1
    with pytest.raises(LabError, match="alembic cannot read ai-service/alembic.ini"):
        chapter.check()
