"""What `alembic check` cannot see: the lab database compared with one the migrations alone build.

CHECK constraints, enum values, triggers and views of the lab database are
compared with those of a copy wiped and upgraded to head.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..lab import Lab

CATALOG = {
    "CHECK constraint": "SELECT conrelid::regclass::text || '.' || conname || ' ' || pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace",
    "enum value": "SELECT t.typname || '.' || e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
    "WHERE t.typnamespace = 'public'::regnamespace",
    "trigger": "SELECT tgrelid::regclass::text || '.' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = tgrelid "
    "WHERE NOT tgisinternal AND c.relnamespace = 'public'::regnamespace",
    "view": "SELECT viewname || ' AS ' || definition FROM pg_views WHERE schemaname = 'public'",
}


def _catalog(conn: sa.Connection) -> set[tuple[str, str]]:
    return {(kind, row) for kind, query in CATALOG.items() for row in conn.scalars(sa.text(query))}


@dataclass(frozen=True)
class Drift:
    only_here: tuple[tuple[str, str], ...]  # in the lab database, not made by the migrations
    only_migrations: tuple[tuple[str, str], ...]  # made by the migrations, missing here

    def __str__(self) -> str:
        if not (self.only_here or self.only_migrations):
            return "No drift: CHECK constraints, enum values, triggers and views are what the migrations make."
        lines = ["Drift that `alembic check` does not see:"]
        lines += [f"  + {kind} {what}: in your database, no migration makes it" for kind, what in self.only_here]
        lines += [
            f"  - {kind} {what}: the migrations make it, your database lacks it" for kind, what in self.only_migrations
        ]
        return "\n".join(lines)


def drift(lab: Lab) -> Drift:
    """Compare the lab database with one the migrations alone build (a copy, wiped, upgraded to head)."""
    with lab.db.connect() as conn:
        here = _catalog(conn)
    with lab.db.copy() as fresh:
        with fresh.connect() as conn:
            fresh.wipe(conn)
            conn.commit()
        result = lab.runner.on(fresh).run("upgrade head")
        if not result.ok:
            raise RuntimeError(f"the migrations alone do not reach head: {result.error}")
        with fresh.connect() as conn:
            built = _catalog(conn)
    return Drift(tuple(sorted(here - built)), tuple(sorted(built - here)))
