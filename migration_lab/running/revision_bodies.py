"""What a revision file's functions do, read from its syntax tree (never from its text).

An `upgrade()` or `downgrade()` whose body is only a docstring, `pass` or `...` does nothing: what
autogenerate writes when it found no difference, and what a colleague leaves when they skip a downgrade.
"""

import ast
from pathlib import Path


def does_nothing(path: Path, name: str) -> bool:
    """The module's function `name` does nothing (or is missing, or the file is not Python yet)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return all(
                isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                for s in node.body
            )
    return True
