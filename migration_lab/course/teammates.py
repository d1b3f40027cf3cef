"""Teammates whose branches started from the same revision (a1c4e7f20b13) as yours: chapters 04 and 06."""

import shutil

from ..project import Project
from ..workspace.baseline import REVISIONS
from ..workspace.edits import add_column, apply_edit

# (their revision file, the model line they added to UserSettings)
TEAMMATES = {
    "bob": ("b7d1e5f3c9a2_add_language_to_user_settings.py", "language = Column(String(8), nullable=True)"),
    "carol": ("c3e8a6d2f4b5_add_timezone_to_user_settings.py", "timezone = Column(String(40), nullable=True)"),
}


def teammate_arrives(project: Project, name: str) -> tuple[str, str]:
    """A teammate's branch lands, as `git pull` would bring it: their revision file and model line.

    Returns (the revision's file name, the diff of main.py).
    """
    revision, line = TEAMMATES[name]
    shutil.copy(REVISIONS / revision, project.versions_dir / revision)
    return revision, apply_edit(project.service_dir / "main.py", add_column("UserSettings", line), project.root)
