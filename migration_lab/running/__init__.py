"""Running alembic: commands parsed by alembic's own parser, run in-process, rehearsed on copies, under one policy."""
