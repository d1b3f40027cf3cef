"""Which revision file a learner means: asked of alembic's Script objects, never guessed from file names."""

from pathlib import Path

from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from ..errors import LabError


def find_script(scripts: ScriptDirectory, fragment: str) -> Script:
    """The revision `fragment` names: an id (or its start, as alembic accepts), or part of its message or file name."""
    try:
        found = scripts.get_revision(fragment)
        if found is not None:
            return found
    except CommandError:
        pass
    words = fragment.replace("_", " ").lower()  # "activate_everyone", as in the file name, or the message's words
    matches = [s for s in scripts.walk_revisions() if words in (s.doc or "").lower() or fragment in Path(s.path).name]
    if len(matches) != 1:
        raise LabError(
            f"{len(matches)} revisions match {fragment!r}.",
            "Use the revision id (`alembic history` lists them), or more of its message.",
        )
    return matches[0]


def newest_script(scripts: ScriptDirectory, generated: str | None = None) -> Script:
    """The revision a learner means by "the new one": the one just generated here, else the single head."""
    if generated is not None:
        script = next((s for s in scripts.walk_revisions() if s.revision == generated), None)
        if script is not None:
            return script
    heads = [s for s in scripts.get_revisions("heads") if s is not None]
    if not heads:
        raise LabError("There are no revision files yet.", 'Generate one: alembic revision -m "..."')
    if len(heads) > 1:
        raise LabError(
            f"There are {len(heads)} heads ({', '.join(sorted(h.revision for h in heads))}).",
            'Name the revision you mean, e.g. ch.show_revision("<id>").',
        )
    return heads[0]
