"""Whether a reset or a restore can write the ai-service files it replaces and delete the ones it removes.

Asked before anything changes: found half-way, an immutable revision file (`chattr +i`) or a read-only one
stopped the command after the database was wiped or replaced, with a PermissionError traceback.
"""

import os
from pathlib import Path

from ..errors import LabError
from ..project import Project


def check(project: Project, written: list[Path], command: str) -> None:
    """LabError naming the first file (or folder) `command` ("reset", "restore") could not write, or delete: the
    revision files in versions/ that are not among those `written`.

    A file is created, replaced (`os.replace`) or deleted through its folder, which must be writable and
    searchable; one that is there must be writable too (an immutable file is not, even for root; a read-only
    one is refused as well, though a rename could replace it: the message says how to make it writable)."""
    deleted = [path for path in project.versions_dir.glob("*.py") if path not in written]
    for path in [*written, *deleted]:
        needed = [(path.parent, os.W_OK | os.X_OK)] + ([(path, os.W_OK)] if path.exists() else [])
        target = next((where for where, access in needed if where.exists() and not os.access(where, access)), None)
        if target is not None:
            shown = target.relative_to(project.root)
            raise LabError(
                f"The {command} cannot write {shown}, so it changed nothing: files and database are as they were.",
                f"Make it writable (`chmod u+w {shown}`; if `lsattr {shown}` shows an i, it is immutable: "
                f"`sudo chattr -i {shown}`), then run the {command} again.",
            )
