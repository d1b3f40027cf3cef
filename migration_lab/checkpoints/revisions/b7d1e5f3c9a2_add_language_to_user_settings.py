"""add language to user settings

Revision ID: b7d1e5f3c9a2
Revises: a1c4e7f20b13
Create Date: 2026-11-24 10:40:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'b7d1e5f3c9a2'
down_revision: Union[str, Sequence[str], None] = 'a1c4e7f20b13'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user_settings', sa.Column('language', sa.String(length=8), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('user_settings', 'language')
