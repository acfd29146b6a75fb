"""out_recipients.attempted_at: when the last delivery attempt ended, for `listserv status`

Its "deliveries in the last hour" counts recipients by their result whose latest attempt ended
within the hour: sent, failed for good, or due again after a temporary failure (issue 19).
Rows from before this revision have none and are counted by `sent_at` only.

Revision ID: 0015_attempted_at
Revises: 0014_chair_tokens
Create Date: 2026-12-06 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015_attempted_at'
down_revision: str | None = '0014_chair_tokens'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('out_recipients', sa.Column('attempted_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('out_recipients', 'attempted_at')
