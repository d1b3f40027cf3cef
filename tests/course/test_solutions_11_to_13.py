"""The production chapters' solutions, like every other chapter's: they pass their check, leave `alembic check`
clean, and the history they leave survives `downgrade base` + `upgrade head`."""

import pytest

from helpers import start
from migration_lab import Lab


@pytest.mark.parametrize("number", ["11", "12", "13"])
def test_solution_leaves_alembic_check_clean_and_survives_a_round_trip(number: str, lab: Lab, capsys) -> None:
    chapter = start(lab, number)
    namespace: dict = {}
    chapter.solution(namespace)
    assert chapter.report(namespace.get("answer")).passed, str(chapter.report())
    assert lab.runner.run("check").ok, lab.runner.run("check").error
    assert lab.runner.run(["downgrade", "base"]).ok
    assert lab.runner.run(["upgrade", "head"]).ok
    assert lab.runner.run("check").ok
    capsys.readouterr()
