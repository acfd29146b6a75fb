"""identity: the Message-IDs that proved their sender, so a replayed signed mail proves nothing (issue 14)

Revision ID: 0011_seen_messages
Revises: 0010_sent_only_to
Create Date: 2026-12-06 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0011_seen_messages'
down_revision: str | None = '0010_sent_only_to'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'seen_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('seen_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('digest'),
    )
    op.create_index('ix_seen_messages_seen_at', 'seen_messages', ['seen_at'])


def downgrade() -> None:
    op.drop_index('ix_seen_messages_seen_at', table_name='seen_messages')
    op.drop_table('seen_messages')
