"""Add plan to profile

Revision ID: e5a9c2d7b3f1
Revises: a1c4e7f20b13
Create Date: 2026-12-01 12:00:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "e5a9c2d7b3f1"
down_revision: Union[str, Sequence[str], None] = "a1c4e7f20b13"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("user_profiles", sa.Column("plan", sa.String(length=20), server_default="free", nullable=False))
    # The first profile ever created is grandfathered into the team plan.
    oldest = op.get_bind().execute(sa.text("SELECT min(id) FROM user_profiles")).scalar()
    op.execute(sa.text("UPDATE user_profiles SET plan = 'team' WHERE id = :id").bindparams(id=oldest))
    # A real release's backfill takes a while; a fifth of a second stands in for it.
    op.execute("SELECT pg_sleep(0.2)")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("user_profiles", "plan")
