"""retention: the raw message once per transaction, outgoing recipients compacted into counts

Inbound rows lose their `raw` column: the bytes move to `inbound_raw`, one row per SMTP/LMTP
transaction (rows of one transaction share `received_at`, `mail_from` and their bytes), and
`inbound.raw_id` points at it; pruned rows (empty `raw`) point at nothing. `out_messages`
gains the counts `sent`, `failed` and `dropped` that retention adds to when it deletes
recipient rows (issue 14).

SQLite: the columns are added and dropped with ALTER TABLE, never by rebuilding `inbound`: with
foreign keys on, dropping the old table would cascade to `held` (SQLite 3.35 or newer).

Revision ID: 0013_raw_once
Revises: 0012_bans
Create Date: 2026-12-06 17:45:00.000000
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_raw_once'
down_revision: str | None = '0012_bans'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

inbound = sa.table('inbound', sa.column('id', sa.Integer), sa.column('received_at'),
                   sa.column('mail_from', sa.String), sa.column('raw', sa.LargeBinary),
                   sa.column('raw_id', sa.Integer))
inbound_raw = sa.table('inbound_raw', sa.column('id', sa.Integer),
                       sa.column('raw', sa.LargeBinary))
COUNTS = ('sent', 'failed', 'dropped')


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def _move_raw_out() -> None:
    """One inbound_raw row per transaction: equal bytes among rows with the same time and sender."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(inbound.c.id, inbound.c.received_at, inbound.c.mail_from)
                        .where(sa.func.length(inbound.c.raw) > 0)
                        .order_by(inbound.c.id)).all()
    transaction: tuple[object, str] | None = None
    seen: dict[str, int] = {}  # digest of the bytes -> inbound_raw id, within one transaction
    for row in rows:  # one row's bytes in memory at a time
        if (row.received_at, row.mail_from) != transaction:
            transaction, seen = (row.received_at, row.mail_from), {}
        raw = bind.execute(sa.select(inbound.c.raw).where(inbound.c.id == row.id)).scalar_one()
        digest = hashlib.sha256(raw).hexdigest()
        if digest not in seen:
            seen[digest] = bind.execute(inbound_raw.insert().values(raw=raw)
                                        .returning(inbound_raw.c.id)).scalar_one()
        bind.execute(inbound.update().where(inbound.c.id == row.id)
                     .values(raw_id=seen[digest]))


def upgrade() -> None:
    op.create_table('inbound_raw',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('raw', sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    if _sqlite():
        op.execute('ALTER TABLE inbound ADD COLUMN raw_id INTEGER REFERENCES inbound_raw (id)')
    else:
        op.add_column('inbound', sa.Column('raw_id', sa.Integer(), nullable=True))
        op.create_foreign_key(None, 'inbound', 'inbound_raw', ['raw_id'], ['id'])
    op.create_index('ix_inbound_raw_id', 'inbound', ['raw_id'])
    _move_raw_out()
    if _sqlite():
        op.execute('ALTER TABLE inbound DROP COLUMN raw')
    else:
        op.drop_column('inbound', 'raw')
    for name in COUNTS:
        op.add_column('out_messages', sa.Column(name, sa.Integer(), nullable=False,
                                                server_default='0'))


def downgrade() -> None:
    for name in COUNTS:
        if _sqlite():
            op.execute(f'ALTER TABLE out_messages DROP COLUMN {name}')
        else:
            op.drop_column('out_messages', name)
    op.add_column('inbound', sa.Column('raw', sa.LargeBinary(), nullable=False,
                                       server_default=sa.text("X''") if _sqlite()
                                       else sa.text("''::bytea")))
    op.execute(inbound.update().where(inbound.c.raw_id.is_not(None)).values(
        raw=sa.select(inbound_raw.c.raw).where(inbound_raw.c.id == inbound.c.raw_id)
        .scalar_subquery()))
    op.drop_index('ix_inbound_raw_id', table_name='inbound')
    if _sqlite():
        op.execute('ALTER TABLE inbound DROP COLUMN raw_id')
    else:
        op.drop_column('inbound', 'raw_id')
    op.drop_table('inbound_raw')
