"""Fixtures shared by the core tests."""

import pytest

from migration_lab import Lab
from migration_lab.course.registry import spec
from migration_lab.front.notebook import Chapter


@pytest.fixture
def chapter03(lab: Lab, capsys) -> Chapter:
    """Chapter 03's start: phone_number (a1c4e7f20b13) applied, two phone numbers in the rows."""
    chapter = Chapter(spec("03"), lab)
    chapter.reset()
    capsys.readouterr()
    return chapter
