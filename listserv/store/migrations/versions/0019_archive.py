"""the archive: every distributed post, with its thread ids and a full-text index (issue 17)

SQLite: an FTS5 table over subject, sender and text, with `archived_posts` as its content
(no second copy of the text), kept in step by triggers. PostgreSQL: a generated `tsvector`
column with a GIN index. Both use no stemming (`unicode61` / the `simple` configuration):
lists write in several languages. A later batch migration of `archived_posts` on SQLite
(which copies the table) must make the triggers again.

Revision ID: 0019_archive
Revises: 0018_languages
Create Date: 2026-12-06 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import listserv.store.models.base

revision: str = '0019_archive'
down_revision: str | None = '0018_languages'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE = [
    "CREATE VIRTUAL TABLE archive_fts USING fts5(subject, sender, text, "
    "content='archived_posts', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER archived_posts_ai AFTER INSERT ON archived_posts BEGIN "
    "INSERT INTO archive_fts(rowid, subject, sender, text) "
    "VALUES (new.id, new.subject, new.sender_name || ' ' || new.sender, new.text); END",
    "CREATE TRIGGER archived_posts_ad AFTER DELETE ON archived_posts BEGIN "
    "INSERT INTO archive_fts(archive_fts, rowid, subject, sender, text) "
    "VALUES ('delete', old.id, old.subject, old.sender_name || ' ' || old.sender, old.text); END",
    "CREATE TRIGGER archived_posts_au AFTER UPDATE ON archived_posts BEGIN "
    "INSERT INTO archive_fts(archive_fts, rowid, subject, sender, text) "
    "VALUES ('delete', old.id, old.subject, old.sender_name || ' ' || old.sender, old.text); "
    "INSERT INTO archive_fts(rowid, subject, sender, text) "
    "VALUES (new.id, new.subject, new.sender_name || ' ' || new.sender, new.text); END",
]

# The subject weighs most, then the author (name, and the address with '@' as a space so
# its local part is a word of its own), then the text.
_POSTGRESQL = [
    "ALTER TABLE archived_posts ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple'::regconfig, subject), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, "
    "sender_name || ' ' || replace(sender, '@', ' ')), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, text), 'C')) STORED",
    "CREATE INDEX ix_archived_posts_search ON archived_posts USING gin (search)",
]


def upgrade() -> None:
    op.create_table('archived_posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=250), nullable=False),
    sa.Column('in_reply_to', sa.String(length=250), nullable=False),
    sa.Column('thread_id', sa.String(length=250), nullable=False),
    sa.Column('references', sa.Text(), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('sender_name', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('date', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('archived_at', listserv.store.models.base.UTCDateTime(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'number')
    )
    op.create_index('ix_archived_posts_list_date', 'archived_posts', ['list_id', 'date'],
                    unique=False)
    op.create_index('ix_archived_posts_message_id', 'archived_posts', ['list_id', 'message_id'],
                    unique=False)
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE if dialect == 'sqlite' else _POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for trigger in ('ai', 'ad', 'au'):
            op.execute(f"DROP TRIGGER IF EXISTS archived_posts_{trigger}")
        op.execute("DROP TABLE IF EXISTS archive_fts")
    op.drop_index('ix_archived_posts_message_id', table_name='archived_posts')
    op.drop_index('ix_archived_posts_list_date', table_name='archived_posts')
    op.drop_table('archived_posts')
