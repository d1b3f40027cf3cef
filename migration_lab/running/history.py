"""The revision files as one history: a revision whose parent no file holds.

When a revision's `down_revision` names a revision that no file in
`versions/` holds (a reset or a restore deleted the parent while the child was
open in an editor tab, which saved it back; a file from another branch),
alembic cannot build its revision map, and every command fails with a bare
`KeyError: '<parent id>'` raised in `RevisionMap._revision_map`. The kit
recognises that by the exception's type and where it was raised, or finds it
before a command runs, and says one thing wherever it runs alembic (console,
`ch.alembic`, "Check my work"): which file, and the two ways out.

`ai-service/migrations/env.py` says the same for the terminal's `alembic`.
It runs alone in its container and may not import the kit: `message()` is
the wording both use; keep them in step.
"""

from __future__ import annotations

import ast
import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic.script import Script, ScriptDirectory
from alembic.util import load_python_file, to_tuple

from ..errors import BrokenHistory

NOT_PRESENT = r"Revision \S+ referenced from .+ is not present"  # alembic's warning before its KeyError


def message(
    file: str, parent: str, root: Path | None = None, applied: str | None = "", how: str = "revises"
) -> tuple[str, str]:
    """(what happened, what to do) for revision file `file` (as the reader sees its path) whose parent is gone;
    `root`: the project folder, whose backups may hold the parent's file. `applied`: the revision the database is
    at that is this file's or comes after it, then deleting the file is no way out (alembic could no longer find
    where the database is) and only bringing the parent back is said; "" when the database is at none of them;
    None when it could not be asked (deleting is then said as a way out only if it never applied the file)."""
    name = Path(file).name
    what = f"{file} {how} {parent}, and no revision file is {parent}: alembic cannot read the history."
    if applied:
        return (
            what,
            f"The database is at {applied}, which is {name} or comes after it: keep {name}, and bring {parent}'s "
            f"file back ({way_back(root, parent)}).",
        )
    if applied is None:
        return (
            what,
            f"Bring {parent}'s file back ({way_back(root, parent)}); or, if the database never applied {name} (the "
            "database could not be asked here), delete it.",
        )
    return (
        what,
        f"Either delete {name} (its parent is gone for good: a reset removed it, say, while {name} was open in "
        f"an editor), or bring {parent}'s file back ({way_back(root, parent)}).",
    )


def applied_at_or_after(scripts: list[Script], revision: str, heads: tuple[str, ...] | None) -> str | None:
    """The revision of `heads` (the database's) that is `revision` or comes after it among `scripts`; "" if none;
    None when the database's heads are not known."""
    if heads is None:
        return None
    after, grew = {revision}, True
    while grew:
        grew = False
        for script in scripts:
            if script.revision not in after and after.intersection(to_tuple(script.down_revision, default=())):
                after.add(script.revision)
                grew = True
    return min(set(heads) & after, default="")


def way_back(root: Path | None, revision: str) -> str:
    """How `revision`'s file comes back: the copy the newest backup holds, else git or a restore."""
    if root is not None and (copy := backed_up(root, revision)) is not None:
        return f"a copy is in {shown(copy, root)}: copy it into ai-service/migrations/versions/"
    return "`git checkout -- ai-service/migrations/versions/`, or `python -m migration_lab restore`"


def backed_up(root: Path, revision: str) -> Path | None:
    """The newest backup's copy of `revision`'s file, in the lab's backups under `root`; None if none holds it."""
    found = []
    for path in (root / ".lab" / "backups").glob("*/ai-service/migrations/versions/*.py"):
        try:
            text = path.read_text(errors="replace")
            if (
                revision in text
                and getattr(load_python_file(str(path.parent), path.name), "revision", None) == revision
            ):
                found.append(path)
        except Exception:  # noqa: BLE001 - a backup's file that does not load is not the one
            continue
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


@dataclass(frozen=True)
class Orphan:
    """A revision file whose parent (or a revision it depends on) no file holds."""

    path: Path
    revision: str
    parent: str
    how: str = "revises"  # or "depends on": its depends_on names it


def loaded(scripts: ScriptDirectory) -> list[Script]:
    """Every revision file as alembic reads it, without building the revision map (which a missing parent breaks)."""
    return sorted(scripts._load_revisions(), key=lambda s: s.path)  # what alembic builds its map from


def readable(scripts: ScriptDirectory) -> list[Script]:
    """Every revision file alembic can read, each on its own: one with a syntax error (or a failing import) is left
    out, and the others are still there (`loaded` stops at the first file it cannot read)."""
    found = (_script(scripts, path.resolve()) for path in sorted(Path(scripts.versions).glob("*.py")))
    return [script for script in found if script is not None]


def _script(scripts: ScriptDirectory, path: Path) -> Script | None:
    """One file as alembic reads it (alembic's own per-file reader: there is no public one that does not build
    the whole map); None when it cannot (a syntax error, a failing import, no `revision`)."""
    try:
        return Script._from_path(scripts, path)
    except Exception:  # noqa: BLE001 - whatever the file raises: this is the file alembic cannot read
        return None


@dataclass(frozen=True)
class Said:
    """What one revision file says it is: the ids it may be, its down_revision and the revisions its depends_on
    names (both run before it); `readable`, whether alembic can read it (else it was read from its text)."""

    path: Path
    revisions: frozenset[str]
    parents: tuple[str, ...]
    needs: tuple[str, ...]
    readable: bool


def said(scripts: ScriptDirectory, path: Path) -> Said:
    """What `path` says it is: alembic's Script when alembic can read it; else its `revision =`/`down_revision =`
    assignments (read as literals, even from a file that does not parse) and the id its name starts with, per
    alembic.ini's file_template. A file alembic cannot read (a syntax error) may still be applied: it is judged
    by every id it may be, never left out."""
    script = _script(scripts, path)
    if script is not None:
        down, needs = to_tuple(script.down_revision, default=()), to_tuple(script.dependencies, default=())
        return Said(path, frozenset({script.revision}), down, needs, readable=True)
    try:
        text = path.read_text(errors="replace")
    except OSError:  # a dangling link, a file this account may not read: judged by its name
        text = ""
    values = _assigned(text)
    ids = {i for i in (values.get("revision"), _named_id(scripts, path)) if isinstance(i, str) and i}
    down, needs = (
        tuple(str(r) for r in to_tuple(values.get(name), default=())) for name in ("down_revision", "depends_on")
    )
    return Said(path, frozenset(ids), down, needs, readable=False)


# `name = value` at the start of a line; a value in brackets may run over several lines (a formatter writes a
# merge's down_revision one parent per line), any other ends with its line.
_ASSIGNED = re.compile(
    r"^(revision|down_revision|depends_on)\s*(?::[^=\n]*)?=\s*(\([^)]*\)|\[[^\]]*\]|[^\n#]*?)\s*(?:#[^\n]*)?$", re.M
)


def _assigned(text: str) -> dict[str, object]:
    """The top-level `revision`, `down_revision` and `depends_on` literals of a revision file's text, line by line
    (a file with a syntax error elsewhere still says them); a value that is not a literal is left out."""
    found: dict[str, object] = {}
    for name, value in _ASSIGNED.findall(text):
        try:
            found.setdefault(name, ast.literal_eval(value))
        except (ValueError, SyntaxError):
            continue
    return found


def _named_id(scripts: ScriptDirectory, path: Path) -> str | None:
    """The revision id a file's name starts with, when alembic.ini's file_template starts with the id
    (`%%(rev)s_%%(slug)s`); None when the template puts something else first."""
    template = scripts.file_template
    if not template.startswith("%(rev)s"):
        return None
    separator = template[len("%(rev)s") : len("%(rev)s") + 1]
    return path.stem.split(separator, 1)[0] if separator else path.stem


def every_file(scripts: ScriptDirectory) -> list[Said]:
    """Every .py file of the versions folder, readable or not, with what it says it is (a link: as its name)."""
    return [said(scripts, path) for path in sorted(Path(scripts.versions).glob("*.py"))]


def orphans(scripts: ScriptDirectory) -> list[Orphan]:
    """Each revision file whose down_revision, or a revision its depends_on names, is in no file (a branch label
    counts as there)."""
    found = loaded(scripts)
    present = {script.revision for script in found} | {label for script in found for label in script.branch_labels}
    return [
        Orphan(Path(script.path), script.revision, parent, how)
        for script in found
        for how, named in (("revises", script.down_revision), ("depends on", script.dependencies))
        for parent in to_tuple(named, default=())
        if parent not in present
    ]


def _raised_by_the_revision_map(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return isinstance(error, KeyError) and any(
        frame.name == "_revision_map" and Path(frame.filename).match("alembic/script/revision.py") for frame in frames
    )


def broken_history(
    scripts: ScriptDirectory,
    root: Path,
    error: BaseException | None = None,
    heads: Callable[[], tuple[str, ...] | None] = lambda: None,
) -> BrokenHistory | None:
    """The error to show when the history has a revision whose parent is missing; None when it has none.

    With `error` (what an alembic command raised): only when it is the revision
    map's KeyError. Paths are shown relative to `root` (the project folder).
    `heads`: the database's revisions, asked only when a parent is missing (None when they cannot be read).
    """
    if error is not None and not _raised_by_the_revision_map(error):
        return None
    found = orphans(scripts)
    if not found:
        return None
    missing = error.args[0] if error is not None and error.args else None
    orphan = next((o for o in found if o.parent == missing), found[0])
    applied = applied_at_or_after(loaded(scripts), orphan.revision, heads())
    return BrokenHistory(*message(shown(orphan.path, root), orphan.parent, root, applied, orphan.how))


def checked(
    scripts: ScriptDirectory, root: Path, heads: Callable[[], tuple[str, ...] | None] = lambda: None
) -> ScriptDirectory:
    """`scripts` with its revision map built; BrokenHistory (a LabError) if a revision's parent is missing."""
    # alembic warns "Revision <parent> referenced from <child> is not present" and then raises the KeyError;
    # the BrokenHistory raised below says it once, with the way out. A filter, not warnings.catch_warnings(),
    # which is not thread-safe: a block ending in this thread undid another thread's (FastAPI's, building
    # main.py's app for a busy app's client) and printed its warning into the learner's cell.
    warnings.filterwarnings("ignore", NOT_PRESENT, UserWarning)
    warnings.filterwarnings("ignore", PRESENT_TWICE, UserWarning)  # said below, naming both files
    try:
        scripts.revision_map.heads  # noqa: B018 - builds the map
    except KeyError as error:
        broken = broken_history(scripts, root, error, heads)
        if broken is not None:
            raise broken from None
        raise unreadable(error, root, scripts, heads) from None
    except Exception as error:  # noqa: BLE001 - a cycle, a file Python or alembic cannot read: alembic's, whatever
        raise unreadable(error, root, scripts, heads) from None
    twice = _same_id(scripts, root)
    if twice is not None:
        raise twice
    return scripts


PRESENT_TWICE = r"Revision \S+ is present more than once"  # alembic's warning: it keeps one file and ignores the other


def unreadable(
    error: BaseException,
    root: Path,
    scripts: ScriptDirectory | None = None,
    heads: Callable[[], tuple[str, ...] | None] = lambda: None,
) -> BrokenHistory:
    """Any other failure to read the revision files (a cycle, a syntax error, an import that fails, a file without
    `revision`, a depends_on on no revision), said in one line with the file when the error names one.

    Deleting the file is said as a way out only when the database is known not to have applied it (`heads`, asked
    of the files' own words, `said`): the file of an applied revision is often its only copy."""
    said_first = str(error).strip().splitlines()
    where = getattr(error, "filename", None)
    place = f" ({shown(Path(where), root)}, line {getattr(error, 'lineno', '?')})" if where else ""
    fix = "Fix the revision file it names in ai-service/migrations/versions/ (its down_revision, depends_on or Python)"
    at = _applied_file(scripts, Path(where), heads) if where and scripts is not None else None
    if at:
        out = f"; it is applied (the database is at {at}): keep it, or alembic cannot find where the database is."
    elif at is None:
        out = "; delete it only if the database never applied it."
    else:
        out = ", or delete it."
    return BrokenHistory(
        f"alembic cannot read the revision files{place}: {type(error).__name__}: {said_first[0] if said_first else ''}",
        f"{fix}{out} `python -m migration_lab restore` brings back the files of the last backup.",
    )


def _applied_file(scripts: ScriptDirectory, path: Path, heads: Callable[[], tuple[str, ...] | None]) -> str | None:
    """The database's revision that is `path`'s or comes after it, by what each file says (`said`); "" when the
    database is at none of them; None when it could not be asked, or `path` is no revision file (a module one
    imports) or says no id."""
    files = every_file(scripts)
    mine = next((f for f in files if f.path.resolve() == path.resolve()), None)
    at = heads() if mine is not None and mine.revisions else None
    if mine is None or at is None:
        return None
    return next((head for head in sorted(at) if mine.revisions & ancestors(parents_of(files), (head,))), "")


def parents_of(files: list[Said]) -> dict[str, tuple[str, ...]]:
    """{revision id: every revision a file of that id names below it}, two files of one id merged."""
    below: dict[str, tuple[str, ...]] = {}
    for file in files:
        for revision in file.revisions:
            below[revision] = below.get(revision, ()) + file.parents + file.needs
    return below


def ancestors(below: dict[str, tuple[str, ...]], heads: tuple[str, ...]) -> set[str]:
    """The heads and every revision below them that a file names as its parent, walked file by file (a history
    alembic cannot map: an orphan, a cycle, an unreadable file); a parent no file holds ends that line."""
    seen: set[str] = set()
    waiting = list(heads)
    while waiting:
        revision = waiting.pop()
        if revision in seen:
            continue
        seen.add(revision)
        waiting += below.get(revision, ())
    return seen


def _same_id(scripts: ScriptDirectory, root: Path) -> BrokenHistory | None:
    """Two files that are the same revision: alembic keeps one and ignores the other, and a merge cannot help.
    Looked for only when versions/ holds more files than the map has revisions (a cheap test, most of the time)."""
    files = [p for folder in scripts._version_locations for p in Path(folder).glob("*.py")]
    revisions = {id(r) for r in scripts.revision_map._revision_map.values() if r is not None}  # labels: same one
    if len(files) <= len(revisions):
        return None
    by_id: dict[str, list[Path]] = {}
    for script in loaded(scripts):
        by_id.setdefault(script.revision, []).append(Path(script.path))
    twice = next(((rev, paths) for rev, paths in by_id.items() if len(paths) > 1), None)
    if twice is None:
        return None
    rev, paths = twice
    names = " and ".join(shown(p, root) for p in sorted(paths))
    return BrokenHistory(
        f"{names} are both revision {rev}: alembic reads one of them and ignores the other.",
        "Delete the copy you do not want, or give it an id of its own (its `revision = ...` line and its file "
        "name); `alembic merge` cannot join one revision to itself.",
    )


def shown(path: Path, root: Path) -> str:
    """`path` as a learner finds it: from the project folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
