"""Teammates whose branches started from the same revision (a1c4e7f20b13) as yours: chapters 04 and 06."""

from dataclasses import dataclass

from ..project import Project
from ..workspace.baseline import bring_revision
from ..workspace.edits import add_column, apply_edit, model_attributes

# (their revision file, the model line they added to UserSettings)
TEAMMATES = {
    "bob": ("b7d1e5f3c9a2_add_language_to_user_settings.py", "language = Column(String(8), nullable=True)"),
    "carol": ("c3e8a6d2f4b5_add_timezone_to_user_settings.py", "timezone = Column(String(40), nullable=True)"),
}


@dataclass(frozen=True)
class Arrival:
    """What a teammate's branch brought: their revision file, the diff of main.py ("" if their line was there
    already), and whether a file of that name with the learner's changes was kept instead of theirs."""

    revision: str
    diff: str
    kept_yours: bool


def teammate_arrives(project: Project, name: str) -> Arrival:
    """A teammate's branch lands, as `git pull` would bring it: their revision file and model line. Run again, it
    adds the line once and never writes over a revision file the learner changed."""
    revision, line = TEAMMATES[name]
    kept_yours = not bring_revision(project.versions_dir, revision)
    main = project.service_dir / "main.py"
    attribute = line.split("=")[0].strip()
    if attribute in model_attributes(main.read_text(), "UserSettings"):
        return Arrival(revision, "", kept_yours)
    return Arrival(revision, apply_edit(main, add_column("UserSettings", line), project.root), kept_yours)
