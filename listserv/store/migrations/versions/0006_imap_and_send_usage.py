"""hosted mailbox: the IMAP cursor and messages read, and the relay's usage ledger (issue 7)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'imap_cursors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mailbox', sa.String(length=500), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('last_uid', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('mailbox'),
    )
    op.create_table(
        'imap_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mailbox', sa.String(length=500), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('uid', sa.BigInteger(), nullable=False),
        sa.Column('message_id', sa.String(length=250), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('inbound_id', sa.Integer(), nullable=True),
        sa.Column('marked', sa.Boolean(), nullable=False),
        sa.Column('received_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['inbound_id'], ['inbound.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('mailbox', 'uidvalidity', 'uid'),
    )
    op.create_index('ix_imap_messages_identity', 'imap_messages', ['mailbox', 'message_id'])
    op.create_index('ix_imap_messages_unmarked', 'imap_messages', ['mailbox', 'marked'])
    op.create_table(
        'send_usage',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.Column('messages', sa.Integer(), nullable=False),
        sa.Column('recipients', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_send_usage_at', 'send_usage', ['at'])


def downgrade() -> None:
    op.drop_index('ix_send_usage_at', table_name='send_usage')
    op.drop_table('send_usage')
    op.drop_index('ix_imap_messages_unmarked', table_name='imap_messages')
    op.drop_index('ix_imap_messages_identity', table_name='imap_messages')
    op.drop_table('imap_messages')
    op.drop_table('imap_cursors')
