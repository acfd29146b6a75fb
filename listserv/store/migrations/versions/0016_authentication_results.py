"""out_messages.authentication_results: how the post of a distributed copy was authenticated

Recorded when a post is distributed (`identity.authentication.results`), read by the delivery
worker for the ARC set it seals each batch with (RFC 8617, issue 18). "" for mail we composed.

Revision ID: 0016_authentication_results
Revises: 0015_attempted_at
Create Date: 2026-12-06 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016_authentication_results'
down_revision: str | None = '0015_attempted_at'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('out_messages', sa.Column('authentication_results', sa.Text(),
                                            nullable=False, server_default=''))


def downgrade() -> None:
    op.drop_column('out_messages', 'authentication_results')
