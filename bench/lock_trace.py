"""What the lock trace costs, against a plain upgrade of the same revision on a copy.

In one run, on a throw-away embedded PostgreSQL and a copy of ai-service/:
chapter 01's database with 200,000 rows in user_profiles, and two revisions
from its head. A big one adds a nullable column, adds a column with a
volatile default (a rewrite), builds an index, and builds another
CONCURRENTLY in an autocommit_block; a small one only adds the nullable
column (where the trace's own cost shows most). For each: `trace()` (copy +
traced upgrade) N times, against a copy + plain `alembic upgrade` of the same
revision N times. Prints the big revision's trace once, the medians and
their ratios.

    python bench/lock_trace.py [N]
"""

import sys

import sqlalchemy as sa
from throwaway import median_ms, throwaway_lab

from migration_lab import Lab
from migration_lab.course.registry import reset
from migration_lab.tools.lock_trace import trace

ROWS = 200_000
SMALL = (
    "bench10sm",
    """
    op.add_column('user_profiles', sa.Column('nickname', sa.String(), nullable=True))
""",
)
BIG = (
    "bench10bg",
    """
    op.add_column('user_profiles', sa.Column('nickname', sa.String(), nullable=True))
    op.add_column('user_profiles', sa.Column('seen', sa.DateTime(), server_default=sa.text('clock_timestamp()')))
    op.create_index('ix_user_profiles_name', 'user_profiles', ['name'])
    with op.get_context().autocommit_block():
        op.create_index('ix_user_profiles_created', 'user_profiles', ['created_at'], postgresql_concurrently=True)
""",
)


def write_revision(lab: Lab, revision: str, down: str, upgrade: str) -> None:
    (lab.project.versions_dir / f"{revision}_bench.py").write_text(
        f'"""lock trace bench"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():{upgrade}\n\ndef downgrade():\n    pass\n"
    )


def compare(lab: Lab, revision: str, times: int) -> tuple[float, float]:
    """(copy + plain upgrade, copy + traced upgrade): medians in ms."""

    def plain() -> None:
        with lab.db.copy() as copy:
            result = lab.runner.on(copy).run(["upgrade", revision])
            assert result.ok, result.error

    return median_ms(plain, times), median_ms(lambda: trace(revision, lab), times)


def main(times: int) -> int:
    with throwaway_lab() as lab:
        reset("01", lab)
        [head] = lab.db.heads()
        with lab.db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO user_profiles (name, email) "
                    "SELECT 'user ' || i, 'user' || i || '@example.org' FROM generate_series(1, :rows) i"
                ),
                {"rows": ROWS},
            )
        for revision, upgrade in (SMALL, BIG):
            write_revision(lab, revision, head, upgrade)  # two children of head: each traced from there
        found = trace(BIG[0], lab)
        print(found)
        if found.error is not None:
            return 1
        figures = {revision: compare(lab, revision, times) for revision, _ in (SMALL, BIG)}
    print()
    for name, (revision, _) in (("one ADD COLUMN", SMALL), ("four statements, one rewrite", BIG)):
        plain_ms, traced_ms = figures[revision]
        print(f"{name}, {ROWS:,} rows (median of {times}):")
        print(f"  {'copy + plain upgrade':<36}{plain_ms:>8.0f} ms")
        print(f"  {'copy + traced upgrade (lock trace)':<36}{traced_ms:>8.0f} ms")
        print(f"  ratio: the trace takes {traced_ms / plain_ms:.2f}x the time of a plain upgrade on a copy")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
