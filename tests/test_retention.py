"""Retention (SPEC §7): after the retention period a scheduler run prunes what handled mail left.

The raw bytes of handled incoming mail (one copy per transaction) and of delivered outgoing
mail go; a held post keeps its bytes while it waits; delivered recipients become per-message
counts (`queue --sent`); closed requests past their token's expiry go; the queue and the
outcomes stay; on SQLite the file shrinks.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from listserv.config import load_settings
from listserv.errors import ConfigError
from listserv.store.engine import INCREMENTAL, Store
from listserv.store.models.core import (
    ChairToken,
    Held,
    Inbound,
    InboundRaw,
    MailingList,
    Request,
    SeenMessage,
)
from listserv.store.models.features import ImapMessage
from listserv.store.models.outgoing import AutoMail, OutMessage, OutRecipient, SendUsage
from listserv.store.retention import prune

from .helpers import LIST, lmtp_send, make_message, smtp_send, wait_settled, wait_until

MEMBERS = ("jane@example.org", "ann@example.net", "bob@example.net")
#: Big enough that dropping the bytes frees many pages.
BODY = "".join(f"line {n} of a long post about the meeting\n" for n in range(3000))


@pytest.fixture
def members(cli, shma):
    for member in MEMBERS:
        cli("members", "add", shma, member, "--no-welcome")


def queue(cli):
    return json.loads(cli("queue", "--json").output)


def held(cli):
    return json.loads(cli("held", "list", "--json").output)


def sent(cli):
    return {item["id"]: item for item in json.loads(cli("queue", "--sent", "--json").output)}


def file_pages(store: Store) -> tuple[int, int]:
    """SQLite's page count and free-page count."""
    with store.engine.connect() as connection:
        return (connection.exec_driver_sql("PRAGMA page_count").scalar_one(),
                connection.exec_driver_sql("PRAGMA freelist_count").scalar_one())


@pytest.mark.both_backends
def test_pruning_after_the_retention_drops_old_bytes_and_keeps_held_posts(
        cli, members, daemon, sink, store, backend):
    with store.unit_of_work() as session:  # the held post outlives the retention period
        session.execute(update(MailingList).values(held_expiry_days=60))
    # The archive keeps posts whatever the retention (SPEC §7); here: only what is pruned.
    cli("lists", "set", LIST, "archive.policy", "none")
    for n in range(3):
        lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST],
                  make_message(subject=f"Post {n}", body=BODY))
    lmtp_send(daemon.ports["lmtp"], "stranger@else.org", [LIST],
              make_message(sender="stranger@else.org", subject="Held", body=BODY))
    sink.wait_for(lambda s: all(len(s.messages_for(m)) == 3 for m in MEMBERS)
                  and s.messages_for("chair@example.org"), description="copies and held notice")
    wait_until(lambda: queue(cli) == [], what="every copy recorded")
    held_before = held(cli)
    with store.reading() as session:
        old_messages = set(session.scalars(select(OutMessage.id)))
    assert [h["sender"] for h in held_before] == ["stranger@else.org"]
    if backend == "sqlite":
        pages_before, _ = file_pages(store)

    daemon.clock.advance(timedelta(days=31))
    daemon.run_scheduler()

    with store.reading() as session:
        rows = session.scalars(select(Inbound).order_by(Inbound.id)).all()
        held_row = session.scalars(select(Held)).one()
        assert held_row.status == "waiting"
        for row in rows:
            if row.id == held_row.inbound_id:
                assert len(row.raw) == row.size  # kept while it waits
            else:
                assert (row.raw, row.status) == (b"", "done")
                assert row.outcome  # the outcome stays
        # What the run itself queued (the chair's daily summary) is new, so it stays.
        assert not session.scalars(select(OutRecipient).where(
            OutRecipient.message_id.in_(old_messages))).all()
        assert set(session.scalars(select(OutMessage.raw).where(
            OutMessage.id.in_(old_messages)))) == {b""}
    # The chair's daily summary, queued by the run, goes out; nothing else was waiting.
    wait_until(lambda: queue(cli) == [], what="the summary delivered")
    assert held(cli) == held_before
    if backend == "sqlite":
        pages_after, free_after = file_pages(store)
        assert free_after == 0
        assert pages_after < pages_before / 2

    cli("held", "approve", "1")  # its bytes are still whole
    sink.wait_for(lambda s: all(len(s.messages_for(m)) == 4 for m in MEMBERS),
                  description="the approved post")


@pytest.mark.both_backends
def test_recent_mail_and_queued_copies_are_kept(cli, members, daemon, sink, store):
    sink.rcpt_responses["ann@example.net"] = "451 4.3.0 Greylisted"
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message())
    wait_until(lambda: any("Greylisted" in i["reason"] for i in queue(cli)),
               what="ann's copy waiting")
    with store.reading() as session:
        recipients = session.scalar(select(func.count()).select_from(OutRecipient))
    pruned = prune(store, daemon.clock.now() + timedelta(days=3), 30, 14)
    assert (pruned.inbound_raw, pruned.out_recipients, pruned.out_messages_raw) == (0, 0, 0)
    # Past the retention, ann's copy is still queued: its message keeps its bytes.
    pruned = prune(store, daemon.clock.now() + timedelta(days=15), 30, 14)
    assert pruned.out_recipients == recipients - 1
    assert pruned.out_messages_raw == 0
    with store.reading() as session:
        assert session.scalars(select(OutRecipient.email)).all() == ["ann@example.net"]
        assert session.scalar(select(OutMessage.raw)) != b""
    del sink.rcpt_responses["ann@example.net"]


@pytest.mark.both_backends
def test_ledgers_seen_message_ids_and_marked_imap_rows_are_pruned_in_batches(store, clock):
    now = clock.now()
    old, recent = now - timedelta(days=40), now - timedelta(hours=1)
    with store.unit_of_work() as session:
        for n, at in enumerate([old] * 7 + [recent] * 2):
            session.add(AutoMail(address=f"a{n}@example.org", kind="notice", at=at))
            session.add(SendUsage(at=at, messages=1, recipients=1))
            session.add(ImapMessage(mailbox="box", uidvalidity=1, uid=n, content_hash="x",
                                    marked=n != 0, received_at=at))
            session.add(SeenMessage(digest=f"{n:064x}", seen_at=at))
    pruned = prune(store, now, 30, 14, batch=3)
    assert (pruned.auto_mail, pruned.send_usage, pruned.imap_messages) == (7, 7, 6)
    assert pruned.seen_messages == 7
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(AutoMail)) == 2
        assert session.scalar(select(func.count()).select_from(SendUsage)) == 2
        assert session.scalar(select(func.count()).select_from(SeenMessage)) == 2
        # The unmarked one is still needed to mark it on the server.
        assert sorted(session.scalars(select(ImapMessage.uid))) == [0, 7, 8]


def test_a_new_database_uses_incremental_auto_vacuum(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == INCREMENTAL
    store.dispose()


def test_an_older_database_is_converted_once_by_migrate(tmp_path: Path):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE leftover (x)")
    raw.commit()
    assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    raw.close()
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.dispose()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL
    assert raw.execute("SELECT count(*) FROM leftover").fetchone()[0] == 0  # nothing lost
    raw.close()


def test_retention_settings_have_defaults_and_refuse_zero(tmp_path: Path):
    config = tmp_path / "listserv.toml"
    config.write_text("[retention]\n")
    settings = load_settings(config)
    assert (settings.retention.inbound_days, settings.retention.outgoing_days) == (30, 14)
    config.write_text("[retention]\ninbound_days = 0\n")
    with pytest.raises(ConfigError, match="retention.inbound_days"):
        load_settings(config)


@pytest.mark.both_backends
@pytest.mark.sink_refusals
def test_delivered_recipients_are_compacted_into_counts_the_chair_still_sees(
        cli, members, daemon, sink, store):
    sink.rcpt_responses["bob@example.net"] = "550 5.1.1 No such user"
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message(body=BODY))
    wait_settled(store)  # every copy delivered or refused
    with store.reading() as session:
        [post] = session.scalars(select(OutMessage.id).where(OutMessage.kind == "post"))
        recipients = session.scalar(select(func.count()).select_from(OutRecipient).where(
            OutRecipient.message_id == post))
    before = sent(cli)[f"out-{post}"]
    assert (before["sent"], before["failed"], before["dropped"], before["bytes"]) == (
        "2", "1", "0", "kept")

    daemon.clock.advance(timedelta(days=15))
    daemon.run_scheduler()

    with store.reading() as session:
        assert not session.scalars(select(OutRecipient).where(
            OutRecipient.message_id == post)).all()
        message = session.get(OutMessage, post)
        assert (message.sent, message.failed, message.dropped, message.raw) == (2, 1, 0, b"")
    assert recipients == 3
    after = sent(cli)[f"out-{post}"]
    assert after == {**before, "bytes": "pruned"}
    del sink.rcpt_responses["bob@example.net"]


@pytest.mark.both_backends
def test_a_transactions_bytes_stay_until_every_recipient_row_is_past_the_retention(
        cli, members, daemon, store):
    owner = "shma-owner@lists.example.org"
    message = make_message()
    smtp_send(daemon.ports["smtp"], "jane@example.org", [LIST, owner], message)
    wait_until(lambda: queue(cli) == [], what="both handled")
    with store.unit_of_work() as session:  # the owner's copy failed: the chair may retry it
        session.execute(update(Inbound).where(Inbound.rcpt == owner).values(status="failed"))
        assert session.scalar(select(func.count()).select_from(InboundRaw)) == 1
    assert prune(store, daemon.clock.now() + timedelta(days=31), 30, 14).inbound_raw == 0
    with store.reading() as session:
        assert [row.raw for row in session.scalars(select(Inbound))] == [message, message]
    with store.unit_of_work() as session:  # handled in the end, ten days later
        session.execute(update(Inbound).where(Inbound.rcpt == owner).values(
            status="done", processed_at=daemon.clock.now() + timedelta(days=10)))
    assert prune(store, daemon.clock.now() + timedelta(days=31), 30, 14).inbound_raw == 0
    assert prune(store, daemon.clock.now() + timedelta(days=41), 30, 14).inbound_raw == 1
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(InboundRaw)) == 0
        assert {(row.raw, row.raw_id) for row in session.scalars(select(Inbound))} == {
            (b"", None)}


@pytest.mark.both_backends
def test_closed_requests_are_pruned_with_their_tokens_once_expired(store, clock):
    now = clock.now()
    past, future = now - timedelta(days=1), now + timedelta(days=1)
    with store.unit_of_work() as session:
        ml = MailingList(name="shma", domain="lists.example.org")
        session.add(ml)
        session.flush()
        for n, (status, expires_at) in enumerate(
                [("done", past), ("denied", past), ("expired", past), ("expired", past),
                 ("done", future), ("confirming", future), ("waiting", past)]):
            session.add(Request(list_id=ml.id, kind="subscribe", email=f"p{n}@example.org",
                                status=status, token=f"token{n}", expires_at=expires_at))
    pruned = prune(store, now, 30, 14, batch=3)
    assert pruned.requests == 4
    with store.reading() as session:
        assert sorted(session.scalars(select(Request.token))) == ["token4", "token5", "token6"]


def test_expired_chair_tokens_are_pruned_used_or_not(store, clock):
    now = clock.now()
    past, future = now - timedelta(days=1), now + timedelta(days=1)
    with store.unit_of_work() as session:
        ml = MailingList(name="shma", domain="lists.example.org")
        session.add(ml)
        session.flush()
        for n, (expires_at, used_at) in enumerate(
                [(past, None), (past, past), (future, None), (future, past)]):
            session.add(ChairToken(list_id=ml.id, token=f"chair{n}", kind="held", item_id=n,
                                   expires_at=expires_at, used_at=used_at))
    pruned = prune(store, now, 30, 14, batch=1)
    assert pruned.chair_tokens == 2
    with store.reading() as session:
        assert sorted(session.scalars(select(ChairToken.token))) == ["chair2", "chair3"]


@pytest.mark.both_backends
def test_an_unanswered_confirmation_is_gone_after_its_expiry(cli, shma, daemon, sink, store):
    stranger = "stranger@else.org"
    lmtp_send(daemon.ports["lmtp"], stranger, ["shma-join@lists.example.org"],
              make_message(sender=stranger, to="shma-join@lists.example.org", subject=""))
    sink.wait_for(lambda s: s.messages_for(stranger), description="the confirmation")
    with store.reading() as session:
        [token] = session.scalars(select(Request.token))
    assert token
    daemon.clock.advance(timedelta(days=15))  # past TOKEN_DAYS: expired, then pruned
    daemon.run_scheduler()
    with store.reading() as session:
        assert session.scalars(select(Request)).all() == []
