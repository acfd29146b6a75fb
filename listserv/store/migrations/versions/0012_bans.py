"""chair housekeeping: banned senders per list, a member's own language, when a meeting was
first announced (issue 16)

Revision ID: 0012_bans
Revises: 0011_seen_messages
Create Date: 2026-12-06 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0012_bans'
down_revision: str | None = '0011_seen_messages'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('pattern', sa.String(length=320), nullable=False),
    sa.Column('created_at', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'pattern')
    )
    # Existing members keep the list's language ("").
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=False,
                                      server_default=''))
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.alter_column('language', server_default=None)
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('announced_at', listserv.store.models.base.UTCDateTime(),
                                      nullable=True))
    # A meeting with a reminder sent was announced then.
    op.execute("UPDATE meetings SET announced_at = (SELECT min(r.at) FROM meeting_reminders r "
               "WHERE r.meeting_id = meetings.id AND r.status = 'sent')")


def downgrade() -> None:
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.drop_column('announced_at')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('language')
    op.drop_table('bans')
