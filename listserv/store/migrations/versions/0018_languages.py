"""held.lang and owners.language (issue 20)

held.lang: the language the held post's sender wrote in; the rejection and the expiry notice
answer the sender in it. Rows from before this revision get English, what they were answered
in until now. owners.language: the language of an owner's notices (`members set` on an
owner); "" = the list's `owner_language`, else its `language`.

Revision ID: 0018_languages
Revises: 0017_digests
Create Date: 2026-12-06 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018_languages'
down_revision: str | None = '0017_digests'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('held') as batch:
        batch.add_column(sa.Column('lang', sa.String(length=8), nullable=False,
                                   server_default='en'))
    with op.batch_alter_table('owners') as batch:
        batch.add_column(sa.Column('language', sa.String(length=8), nullable=False,
                                   server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('owners') as batch:
        batch.drop_column('language')
    with op.batch_alter_table('held') as batch:
        batch.drop_column('lang')
