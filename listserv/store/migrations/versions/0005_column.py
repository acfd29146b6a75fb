"""column submissions and their revisions (SPEC §6, issue 6)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 11:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'column_submissions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('list_id', sa.Integer(), nullable=False),
        sa.Column('tracking_id', sa.String(length=64), nullable=False),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('sender', sa.String(length=320), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('member', sa.Boolean(), nullable=False),
        sa.Column('deadline', sa.String(length=10), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('issue', sa.Text(), nullable=False),
        sa.Column('lang', sa.String(length=8), nullable=False),
        sa.Column('created_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.Column('decided_at', listserv.store.models.base.UTCDateTime(), nullable=True),
        sa.Column('decided_by', sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('list_id', 'year', 'number'),
        sa.UniqueConstraint('tracking_id'),
    )
    op.create_index('ix_column_submissions_list_status', 'column_submissions',
                    ['list_id', 'status'], unique=False)
    op.create_table(
        'column_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('submission_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('inbound_id', sa.Integer(), nullable=True),
        sa.Column('sender', sa.String(length=320), nullable=False),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('folder', sa.String(length=200), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('refused', sa.JSON(), nullable=False),
        sa.Column('ack_message_id', sa.String(length=250), nullable=False),
        sa.Column('received_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['submission_id'], ['column_submissions.id'],
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['inbound_id'], ['inbound.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('submission_id', 'number'),
    )
    op.create_index('ix_column_revisions_ack_message_id', 'column_revisions',
                    ['ack_message_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_column_revisions_ack_message_id', table_name='column_revisions')
    op.drop_table('column_revisions')
    op.drop_index('ix_column_submissions_list_status', table_name='column_submissions')
    op.drop_table('column_submissions')
