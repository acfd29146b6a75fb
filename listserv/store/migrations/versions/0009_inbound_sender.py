"""intake: the per-sender hourly limit counts inbound rows by sender and time (issue 14)

Revision ID: 0009_inbound_sender
Revises: 0008
Create Date: 2026-12-06 16:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0009_inbound_sender'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_inbound_sender', 'inbound', ['mail_from', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_inbound_sender', table_name='inbound')
