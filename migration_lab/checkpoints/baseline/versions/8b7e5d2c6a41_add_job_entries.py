"""add job entries

Revision ID: 8b7e5d2c6a41
Revises: 3f1c2a9d4b10
Create Date: 2026-11-24 10:09:12.114071+00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '8b7e5d2c6a41'
down_revision: Union[str, Sequence[str], None] = '3f1c2a9d4b10'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

job_state = sa.Enum('queued', 'running', 'done', name='job_state')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('job_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('state', job_state, server_default='queued', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_profiles.id'], name=op.f('fk_job_entries_user_id_user_profiles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_entries'))
    )
    op.create_index(op.f('ix_job_entries_user_id'), 'job_entries', ['user_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_job_entries_user_id'), table_name='job_entries')
    op.drop_table('job_entries')
    # Reviewed by hand: autogenerate drops the table but leaves the ENUM type
    # behind, and the next upgrade would then fail with "type already exists".
    job_state.drop(op.get_bind(), checkfirst=True)
