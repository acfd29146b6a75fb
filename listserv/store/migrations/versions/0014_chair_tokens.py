"""chair decision tokens: replies to notices and daily summaries (SPEC §2, issue 16)

Revision ID: 0014_chair_tokens
Revises: 0013_raw_once
Create Date: 2026-12-06 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0014_chair_tokens'
down_revision: str | None = '0013_raw_once'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'chair_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('list_id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(length=40), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=True),
        sa.Column('items', sa.JSON(), nullable=False),
        sa.Column('created_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.Column('expires_at', listserv.store.models.base.UTCDateTime(), nullable=False),
        sa.Column('used_at', listserv.store.models.base.UTCDateTime(), nullable=True),
        sa.Column('used_by', sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token'),
    )


def downgrade() -> None:
    op.drop_table('chair_tokens')
