"""delivery: first attempts are claimed before retries (issue 12), by their own index

Revision ID: 0008
Revises: 0007_inbound_retry
Create Date: 2026-12-06 15:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007_inbound_retry'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_out_recipients_fresh', 'out_recipients',
                    ['status', 'attempts', 'next_attempt_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_out_recipients_fresh', table_name='out_recipients')
