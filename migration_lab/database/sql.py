"""SQL identifiers, quoted: the one place the kit builds a name into a statement."""

from sqlalchemy.dialects import postgresql

_PREPARER = postgresql.dialect().identifier_preparer


def quote(name: str) -> str:
    """`name` as a PostgreSQL identifier, always in double quotes (a `"` inside is doubled)."""
    return _PREPARER.quote_identifier(name)
