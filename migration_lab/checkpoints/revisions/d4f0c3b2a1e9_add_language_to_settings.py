"""add language to settings

Revision ID: d4f0c3b2a1e9
Revises: a1c4e7f20b13
Create Date: 2026-11-30 09:00:00.000000+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'd4f0c3b2a1e9'
down_revision: Union[str, Sequence[str], None] = 'a1c4e7f20b13'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user_settings', sa.Column('language', sa.String(length=8), nullable=True))
    op.create_index(op.f('ix_user_settings_language'), 'user_settings', ['language'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    pass
