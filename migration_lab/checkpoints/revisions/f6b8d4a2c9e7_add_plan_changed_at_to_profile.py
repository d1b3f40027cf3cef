"""Add plan_changed_at to profile

Revision ID: f6b8d4a2c9e7
Revises: e5a9c2d7b3f1
Create Date: 2026-12-01 12:05:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "f6b8d4a2c9e7"
down_revision: Union[str, Sequence[str], None] = "e5a9c2d7b3f1"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # now() is stable: computed once for the ALTER and kept in the catalogue, so no row is rewritten (chapter 11).
    op.add_column(
        "user_profiles",
        sa.Column("plan_changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    # This release's second backfill, which takes a while too.
    op.execute("SELECT pg_sleep(0.2)")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("user_profiles", "plan_changed_at")
