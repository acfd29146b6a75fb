"""digests and digest_posts; members.delivery and requests.delivery take "digest-plain"

Digests (issue 17): each post a list distributes waits in `digest_posts` for the list's next
digest; each digest is a `digests` row, unique per list, volume and issue, written in the
transaction that queues it. The delivery columns grow from 10 to 12 characters for the
`digest-plain` mode (PostgreSQL checks the length; SQLite does not).

Revision ID: 0017_digests
Revises: 0016_authentication_results
Create Date: 2026-12-06 20:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0017_digests'
down_revision: str | None = '0016_authentication_results'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('digests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('volume', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=10), nullable=False),
    sa.Column('sent_at', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('posts', sa.Integer(), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'volume', 'number')
    )
    op.create_table('digest_posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('digest_id', sa.Integer(), nullable=True),
    sa.Column('added_at', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['digest_id'], ['digests.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_digest_posts_pending', 'digest_posts', ['list_id', 'digest_id', 'id'],
                    unique=False)
    for table in ('members', 'requests'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('delivery', existing_type=sa.String(length=10),
                                  type_=sa.String(length=12), existing_nullable=False)


def downgrade() -> None:
    for table in ('members', 'requests'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('delivery', existing_type=sa.String(length=12),
                                  type_=sa.String(length=10), existing_nullable=False)
    op.drop_index('ix_digest_posts_pending', table_name='digest_posts')
    op.drop_table('digest_posts')
    op.drop_table('digests')
