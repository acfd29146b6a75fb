"""identity: the Message-IDs of mail queued for one address, whose replies prove it (issue 14)

Revision ID: 0010_sent_only_to
Revises: 0009_inbound_sender
Create Date: 2026-12-06 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0010_sent_only_to'
down_revision: str | None = '0009_inbound_sender'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sent_only_to',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('message_id', sa.String(length=250), nullable=False),
                    sa.Column('address', sa.String(length=320), nullable=False),
                    sa.Column('at', listserv.store.models.base.UTCDateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_sent_only_to_message_id', 'sent_only_to', ['message_id'])
    op.create_index('ix_sent_only_to_at', 'sent_only_to', ['at'])


def downgrade() -> None:
    op.drop_index('ix_sent_only_to_at', table_name='sent_only_to')
    op.drop_index('ix_sent_only_to_message_id', table_name='sent_only_to')
    op.drop_table('sent_only_to')
