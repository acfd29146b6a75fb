"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from listserv.store.engine import MIGRATIONS, Store
from listserv.store.models.archive import include_name, include_object
from listserv.store.models.base import Base
from listserv.store.models.core import Held, Inbound, InboundRaw, MailingList


@pytest.mark.both_backends
def test_migrated_database_matches_the_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "include_name": include_name, "include_object": include_object})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def _upgrade(store: Store, revision: str, down: bool = False) -> None:
    """Move the schema to `revision`, as Store.migrate does (on its connection)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


@pytest.mark.both_backends
def test_the_raw_message_moves_to_one_row_per_transaction_and_back(db_url):
    store = Store(db_url)
    _upgrade(store, "0009_inbound_sender")
    inbound = sa.table("inbound", *(sa.column(c) for c in (
        "id", "received_at", "mail_from", "rcpt", "role", "token", "raw", "size", "status",
        "outcome", "error", "attempts")))
    at = datetime(2026, 12, 1, 9, 0)
    later = at + timedelta(minutes=1)
    rows = [  # a transaction of three, one of one, a second transaction from jane, a pruned row
        (1, at, "jane@example.org", b"A" * 100), (2, at, "jane@example.org", b"A" * 100),
        (3, at, "jane@example.org", b"A" * 100), (4, at, "bob@example.org", b"B"),
        (5, later, "jane@example.org", b"A" * 100), (6, at, "old@example.org", b""),
    ]
    with store.unit_of_work() as session:
        ml = MailingList(name="shma", domain="lists.example.org")
        session.add(ml)
        session.flush()
        session.execute(inbound.insert(), [
            {"id": n, "received_at": when, "mail_from": sender, "rcpt": "shma@lists.example.org",
             "role": "post", "token": "", "raw": raw, "size": len(raw), "status": "done",
             "outcome": "", "error": "", "attempts": 0} for n, when, sender, raw in rows])
        # Written as that revision's table (the model has columns added later: held.lang).
        held = sa.table("held", *(sa.column(c) for c in (
            "list_id", "inbound_id", "sender", "subject", "reason", "status", "created_at",
            "expires_at", "decided_by")))
        session.execute(held.insert(), [{
            "list_id": ml.id, "inbound_id": 2, "sender": "jane@example.org", "subject": "",
            "reason": "r", "status": "waiting", "created_at": at,
            "expires_at": datetime.now(UTC).replace(tzinfo=None), "decided_by": ""}])
    _upgrade(store, "heads")
    with store.reading() as session:
        stored = {row.id: (row.raw_id, row.raw) for row in session.scalars(select(Inbound))}
        assert session.scalar(select(func.count()).select_from(InboundRaw)) == 3
        assert session.scalar(select(func.count()).select_from(Held)) == 1  # nothing cascaded
    assert stored[1][0] == stored[2][0] == stored[3][0] != stored[5][0]
    assert {n: raw for n, (_, raw) in stored.items()} == {n: raw for n, _, _, raw in rows}
    assert stored[6] == (None, b"")
    _upgrade(store, "0009_inbound_sender", down=True)
    with store.engine.connect() as connection:
        back = dict(connection.execute(sa.select(inbound.c.id, inbound.c.raw)).all())
        assert connection.execute(sa.text("SELECT count(*) FROM held")).scalar_one() == 1
    assert back == {n: raw for n, _, _, raw in rows}
    store.dispose()
