"""bounce scores, bounce events and probes (issue 8)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bounce_scores',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('last_bounce_at', listserv.store.models.base.UTCDateTime(), nullable=True),
    sa.Column('counted_on', sa.String(length=10), nullable=False),
    sa.Column('day_weight', sa.Double(), nullable=False),
    sa.Column('last_reason', sa.Text(), nullable=False),
    sa.Column('disabled_at', listserv.store.models.base.UTCDateTime(), nullable=True),
    sa.Column('warnings_sent', sa.Integer(), nullable=False),
    sa.Column('next_step_at', listserv.store.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('member_id')
    )
    with op.batch_alter_table('bounce_scores', schema=None) as batch_op:
        batch_op.create_index('ix_bounce_scores_list', ['list_id', 'score'], unique=False)
        batch_op.create_index('ix_bounce_scores_next_step', ['next_step_at'], unique=False)

    op.create_table('bounce_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('at', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=False),
    sa.Column('weight', sa.Double(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('inbound_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['inbound_id'], ['inbound.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.create_index('ix_bounce_events_member', ['member_id', 'at'], unique=False)

    op.create_table('bounce_probes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('warning', sa.Integer(), nullable=False),
    sa.Column('out_recipient_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('sent_at', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('accepted_at', listserv.store.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['out_recipient_id'], ['out_recipients.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token')
    )
    with op.batch_alter_table('bounce_probes', schema=None) as batch_op:
        batch_op.create_index('ix_bounce_probes_recipient', ['out_recipient_id'], unique=False)
        batch_op.create_index('ix_bounce_probes_status', ['status', 'accepted_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bounce_probes', schema=None) as batch_op:
        batch_op.drop_index('ix_bounce_probes_status')
        batch_op.drop_index('ix_bounce_probes_recipient')
    op.drop_table('bounce_probes')
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.drop_index('ix_bounce_events_member')
    op.drop_table('bounce_events')
    with op.batch_alter_table('bounce_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_bounce_scores_next_step')
        batch_op.drop_index('ix_bounce_scores_list')
    op.drop_table('bounce_scores')
