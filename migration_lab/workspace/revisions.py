"""Which revision file a learner means: asked of alembic's Script objects (a file alembic cannot read: of what it
says it is, `history.said`), never guessed from file names alone."""

from collections.abc import Callable
from pathlib import Path

from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError, to_tuple

from ..errors import BrokenHistory, LabError
from ..running import history


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


def applied(scripts: ScriptDirectory, database_heads: tuple[str, ...]) -> set[str]:
    """The revisions the database has run: its heads and all their ancestors, as alembic walks them.

    When alembic cannot walk them (the database is at a revision no file holds,
    or a revision's parent is gone), every file the database could have run counts:
    better a refusal too many than an applied revision rewritten.
    """
    if not database_heads:
        return set()
    try:
        return {s.revision for s in scripts.iterate_revisions(database_heads, "base") if s is not None}
    except (RevisionError, CommandError, KeyError):
        return {s.revision for s in history.loaded(scripts)}


def _file_name(script: Script) -> str:
    return Path(script.path).name


def editable_script(
    scripts: ScriptDirectory,
    database_heads: tuple[str, ...],
    generated: str | None,
    named: str | None,
    changes_upgrade: bool,
    confirm: bool,
) -> Script:
    """The revision a rewrite may change: the one this kernel generated, or the one named.

    Never, silently, one the database has applied: its upgrade() already ran, so a new
    upgrade() changes nothing there and the file would no longer say what the database
    holds. That takes a name and confirm=True. A new downgrade() alone is allowed (the
    upgrade that ran is unchanged): chapter 03 fixes an applied revision's missing one.
    `generated` is the id the last autogenerate of this kernel made; a restarted kernel
    (or a reset) has none, and then a revision must be named.
    """
    if named is not None:
        script = find_script(scripts, named)
    else:
        mine = next((s for s in scripts.walk_revisions() if s.revision == generated), None) if generated else None
        if mine is None:
            heads = sorted(_file_name(s) for s in scripts.get_revisions("heads") if s is not None)
            newest = f" (the newest: {', '.join(heads)})" if heads else ""
            raise LabError(
                "No revision was generated in this kernel since the chapter started (a restarted kernel forgets "
                'it, and so does a reset), so there is no "new one" to rewrite.',
                "Run the cell that generates it first, or name the file you mean: "
                f'ch.rewrite_revision(..., revision="<id>"){newest}.',
            )
        script = mine
    if changes_upgrade and script.revision in applied(scripts, database_heads) and not (named and confirm):
        parent = ", ".join(to_tuple(script.down_revision, default=())) or "base"
        raise LabError(
            f"{_file_name(script)} is already applied to the database (it is at {', '.join(database_heads)}): "
            "a new upgrade() changes nothing there, and the file would no longer say what the database holds. "
            "Nothing was changed.",
            f'Downgrade below it first (ch.alembic("downgrade {parent}")) and rewrite it then, or write a new '
            "revision for the change. To rewrite it anyway: "
            f'ch.rewrite_revision(..., revision="{script.revision}", confirm=True).',
        )
    return script


def refuse_if_applied(
    scripts: ScriptDirectory, database_heads: Callable[[], tuple[str, ...]], path: Path, confirm: bool, deleting: bool
) -> None:
    """Refuse to delete (or edit) a revision file the database has applied, unless confirm=True.

    Deleted, alembic can no longer walk to the revision the database is at
    (`Can't locate revision`, or a child whose parent is gone); edited, the file
    no longer says what the database ran. Chapter 09 deletes one on purpose, and
    says so with confirm=True. A revision whose parent is gone (what
    `BrokenHistory` names) can always go, unless the database is at it: that is
    one way out. `scripts` unchecked (`runner.script(check_history=False)`).

    Judged per file, by every id the file may be (`history.said`): a file alembic
    cannot read, a second file with the same id, a link into versions/ (or the
    file a link there points to) are protected like any other. `path` is the file
    as the learner named it; `database_heads` is asked only when it is a revision.
    """
    if confirm:
        return
    files = history.every_file(scripts)
    named = [f for f in files if f.path.resolve() == path.resolve()]
    if not named:
        return  # not a revision file (env.py, main.py)
    heads = database_heads()
    done = _applied_ids(scripts, files, heads)
    script = next((f for f in named if f.revisions & done), None)
    if script is None:
        return
    revision = min(script.revisions & done)
    parent = ", ".join(script.parents) or "base"
    file = f"migrations/versions/{path.name}"
    present = {i for f in files for i in f.revisions}
    gone = [p for p in script.parents if p not in present]
    if gone:  # applied, and its parent's file is gone: no downgrade can get below it, only the parent's file back
        root = Path(scripts.dir).parent.parent  # ai-service/migrations -> the project folder
        raise LabError(
            f"{path.name} is applied to the database (it is at {', '.join(heads)}), and its parent "
            f"{gone[0]}'s file is gone: alembic can go neither below it nor past it. Nothing was changed.",
            f"Bring {gone[0]}'s file back: {history.way_back(root, gone[0])}.",
        )
    mend = f'ch.edit_file("{file}", old, new, confirm=True)'
    unreadable = [f.path for f in files if not f.readable]
    if not script.readable:  # a syntax error in it: no downgrade gets below it until its Python is mended
        raise LabError(
            f"{path.name} is applied to the database (it is at {', '.join(heads)}; the file is revision {revision}), "
            "and alembic cannot read it now: it is the only record of what the database ran. Nothing was changed.",
            f"Mend its Python back to what ran: {mend} (or in the editor); alembic can go below it only then.",
        )
    way_down = (
        f'Downgrade below it first (ch.alembic("downgrade {parent}"))'
        if not unreadable
        else f"Mend {unreadable[0].name} first (alembic cannot read it, so no downgrade runs), then downgrade below it "
        f'(ch.alembic("downgrade {parent}"))'
    )
    raise LabError(
        f"{path.name} is applied to the database (it is at {', '.join(heads)}; the file is revision {revision}): "
        + (
            "without the file, alembic can no longer walk to where the database is."
            if deleting
            else "an edit changes nothing there, and the file would no longer say what the database ran."
        )
        + " Nothing was changed.",
        f"{way_down}, or write a new revision; if you mean it: "
        + (f'ch.delete_file("{file}", confirm=True).' if deleting else f"{mend}."),
    )


def _applied_ids(scripts: ScriptDirectory, files: list[history.Said], heads: tuple[str, ...]) -> set[str]:
    """The revisions the database has run: as alembic walks them when it can map the history, else file by file
    (an unreadable file, two files of one id, an orphan), each file's parents as it says them."""
    try:
        return applied(history.checked(scripts, Path(scripts.dir)), heads)
    except BrokenHistory:  # no map for alembic to walk: each file's own parents, as far as the files go
        return history.ancestors(history.parents_of(files), heads)


def clean_slate(database_heads: tuple[str, ...]) -> None:
    """Refuse to delete every revision file while the database records one: it would be at a revision no file holds."""
    if database_heads:
        raise LabError(
            f"The database is at {', '.join(database_heads)}: its revision files are applied, and without them "
            "alembic cannot find where it is. Nothing was deleted.",
            "Empty the database first, the nuke option's first step: ch.nuke(confirm=True), then ch.clean_versions().",
        )
