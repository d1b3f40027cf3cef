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


def mermaid(script: ScriptDirectory, database: tuple[str, ...]) -> str:
    """A Mermaid flowchart, base at the top, heads at the bottom, the database's revision marked."""
    lines = [INIT, "flowchart TD", '  base(["base"])']
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
        parents = rev.down_revision or ()
        for parent in (parents,) if isinstance(parents, str) else parents:
            lines.append(f"  {_node(parent)} --> {_node(rev.revision)}")
        if not parents:
            lines.append(f"  base --> {_node(rev.revision)}")
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
