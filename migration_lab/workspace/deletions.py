"""Files the kit deleted, so that an editor tab left open on one cannot save it back.

A reset (or a restore, `ch.delete_file`, `ch.clean_versions`) deletes revision
files. JupyterLab does not know: a tab open on such a file stays, and its next
save (Ctrl-S, or the editor's own autosave after a keystroke) would write the
file again, a revision whose parent may be gone with the same reset. The kit
records what it deletes in `.lab/deleted-files.json`, {path from the project
folder: why}; the JupyterLab the kit starts (`jupyter/jupyter_server_config.py`)
refuses a save that would bring back a recorded file that is still gone, and
tells the tab. That file reads the record itself (it does not import the kit):
the format is the contract. An entry whose file exists again (the kit wrote it
back, `git checkout`) is dropped at the next write.
"""

import json
from collections.abc import Iterable
from pathlib import Path

from ..project import Project, write_private

RECORD = "deleted-files.json"
KEEP = 500  # entries at most: the newest deletions matter, a record must not grow for ever


def record_path(project: Project) -> Path:
    return project.state_dir / RECORD


def recorded(project: Project) -> dict[str, str]:
    """{path from the project folder: why the kit deleted it}; empty when nothing was recorded."""
    try:
        found = json.loads(record_path(project).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def record(project: Project, deleted: Iterable[Path], why: str) -> None:
    """Add files the kit has just deleted (absolute paths inside the project), saying why."""
    paths = [str(path.relative_to(project.root)) for path in deleted if path.is_relative_to(project.root)]
    before = recorded(project)
    known = {k: v for k, v in before.items() if not (project.root / k).exists() and k not in paths}
    known.update(dict.fromkeys(paths, why))
    if known == before:
        return
    record_path(project).parent.mkdir(parents=True, exist_ok=True)
    write_private(record_path(project), json.dumps(dict(list(known.items())[-KEEP:]), indent=1) + "\n")


def delete(project: Project, paths: Iterable[Path], why: str) -> list[Path]:
    """Delete these files and record them; the ones that were there. A link is deleted itself, never its target
    (which may be another folder's file), even when that target is gone."""
    gone = []
    for path in paths:
        if path.is_file() or path.is_symlink():
            path.unlink()
            gone.append(path)
    record(project, gone, why)
    return gone
