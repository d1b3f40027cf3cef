"""The revision graph as Mermaid: revisions, heads, merge points, and where the database is.

JupyterLab 4 renders Mermaid in Markdown output, so no system binary is needed;
the same text is readable as-is in a plain terminal.
"""

from alembic.script import ScriptDirectory

MIN_WIDTH_PX = 320  # the graph's box in the console; narrower, Mermaid shrinks the text to fit
FONT_SIZE_PX = 14
# Drawn at its natural size (not shrunk to the box it sits in), with text a person can read.
INIT = f'%%{{init: {{"flowchart": {{"useMaxWidth": false}}, "themeVariables": {{"fontSize": "{FONT_SIZE_PX}px"}}}}}}%%'


def _node(revision: str) -> str:
    return f"r{revision}"


def _plain(text: str) -> str:
    """One line Mermaid's accessibility fields take as it is: no newline, no brace to end a block."""
    return " ".join(text.split()).replace("{", "(").replace("}", ")")


def mermaid(script: ScriptDirectory, database: tuple[str, ...]) -> str:
    """A Mermaid flowchart, base at the top, heads at the bottom, the database's revision marked.

    The picture has its revisions in words too (accTitle, accDescr): JupyterLab makes them the
    image's alt text and a caption for screen readers, instead of its placeholder alt "Image".
    """
    lines = [INIT, "flowchart TD", '  base(["base"])']
    said = []
    for rev in reversed(list(script.walk_revisions())):
        message = (rev.doc or "").replace('"', "'")
        tags = []
        if rev.is_head:
            tags.append("head")
        if rev.is_merge_point:
            tags.append("merge point")
        if rev.revision in database:
            tags.append("● database")
        label = f"{rev.revision}<br/>{message}" + (f"<br/><b>{' · '.join(tags)}</b>" if tags else "")
        lines.append(f'  {_node(rev.revision)}["{label}"]')
        down = rev.down_revision or ()
        parents = (down,) if isinstance(down, str) else tuple(down)
        for parent in parents:
            lines.append(f"  {_node(parent)} --> {_node(rev.revision)}")
        if not parents:
            lines.append(f"  base --> {_node(rev.revision)}")
        plain_tags = "".join(f", {tag.removeprefix('● ')}" for tag in tags)
        said.append(f"{rev.revision} {message} (after {', '.join(parents) or 'base'}{plain_tags})")
    where = ", ".join(database) or "base (no revision)"
    count = f"{len(said)} revision{'s' if len(said) != 1 else ''}"
    lines[2:2] = [
        f"  accTitle: {_plain(f'Revision graph: {count}, the database at {where}')}",
        f"  accDescr {{ {_plain('Oldest first: ' + ('; '.join(said) or 'no revisions yet'))} }}",
    ]
    lines.append("  classDef database fill:#ffe08a,stroke:#b08800,stroke-width:3px")
    lines.append("  classDef head stroke:#2a7ae2,stroke-width:2px")
    heads = [_node(h) for h in script.get_heads() if h not in database]
    if heads:
        lines.append(f"  class {','.join(heads)} head")
    marked = [_node(r) for r in database] or ["base"]
    lines.append(f"  class {','.join(marked)} database")
    return "\n".join(lines)


def markdown(script: ScriptDirectory, database: tuple[str, ...]) -> str:
    return f"```mermaid\n{mermaid(script, database)}\n```"
