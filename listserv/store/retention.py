"""Retention (SPEC §7): what handled mail leaves behind is pruned, in small batches.

Each batch is its own unit of work of at most `BATCH` rows, so the write lock is never held
long and intake, the router and the workers go on between batches. What is kept and why is in
`docs/retention.md`: rows keep their outcome and status (the chair's `queue` listing stays
right); the bytes go, delivered recipient rows become per-message counts, and bookkeeping rows
no window counts any more and closed requests past their token's expiry are deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from listserv.store.engine import Store
from listserv.store.models.core import (
    SEEN_MESSAGE_DAYS,
    ChairToken,
    Held,
    Inbound,
    InboundRaw,
    Once,
    Request,
    SeenMessage,
)
from listserv.store.models.features import DigestPost, ImapMessage
from listserv.store.models.outgoing import (
    REPLY_PROOF_DAYS,
    RESULTS,
    AutoMail,
    OutMessage,
    OutRecipient,
    SendUsage,
    SentOnlyTo,
)
from listserv.store.once import ONE_CLICK_SPENT

#: Rows per unit of work.
BATCH = 500
#: Pages freed per unit of work when SQLite gives free pages back to the file system.
VACUUM_PAGES = 2_000


@dataclass
class Pruned:
    """How many rows one pruning run touched, by table."""

    inbound_raw: int = 0
    out_recipients: int = 0
    out_messages_raw: int = 0
    auto_mail: int = 0
    send_usage: int = 0
    imap_messages: int = 0
    sent_only_to: int = 0
    seen_messages: int = 0
    requests: int = 0
    chair_tokens: int = 0
    digest_posts: int = 0
    spent_one_click: int = 0


#: Requests no longer open: their token answers nothing (`lookup.open_request_for_token`).
CLOSED_REQUESTS = ("done", "denied", "expired", "revoked")


def _in_batches(store: Store, ids: Select[tuple[int]],
                apply: Callable[[Session, list[int]], None], batch: int) -> int:
    """Apply `apply` to the ids `ids` selects, `batch` at a time, one unit of work each."""
    total = 0
    while True:
        with store.unit_of_work() as session:
            chosen = list(session.scalars(ids.limit(batch)))
            if chosen:
                apply(session, chosen)
        total += len(chosen)
        if len(chosen) < batch:
            return total


def _drop_inbound_raw(session: Session, ids: list[int]) -> None:
    session.execute(update(Inbound).where(Inbound.raw_id.in_(ids)).values(raw_id=None))
    session.execute(delete(InboundRaw).where(InboundRaw.id.in_(ids)))


def _compact_recipients(session: Session, ids: list[int]) -> None:
    """Add the results of recipient rows `ids` to their messages' counts, then delete them."""
    counted = session.execute(
        select(OutRecipient.message_id, OutRecipient.status, func.count())
        .where(OutRecipient.id.in_(ids)).group_by(OutRecipient.message_id, OutRecipient.status)
    ).all()
    for message_id, status, count in counted:
        column = getattr(OutMessage, status)
        session.execute(update(OutMessage).where(OutMessage.id == message_id)
                        .values({column: column + count}))
    session.execute(delete(OutRecipient).where(OutRecipient.id.in_(ids)))


def _drop_message_raw(session: Session, ids: list[int]) -> None:
    session.execute(update(OutMessage).where(OutMessage.id.in_(ids)).values(raw=b""))


def _deleting(model: Any) -> Callable[[Session, list[int]], None]:
    def apply(session: Session, ids: list[int]) -> None:
        session.execute(delete(model).where(model.id.in_(ids)))
    return apply


def prune(store: Store, now: datetime, inbound_days: int, outgoing_days: int,
          batch: int = BATCH) -> Pruned:
    """Prune what is past its retention at `now`; returns what was pruned.

    - a transaction's raw bytes (`inbound_raw`, shared by its recipients' rows) are deleted
      once every row that uses them was handled (`done`) more than `inbound_days` ago; a
      failed row keeps them (the chair may `queue retry` it), and so does a post held and
      waiting, and a request waiting for its confirmation (a peer-input request is read again
      when confirmed);
    - recipient rows with a result (sent, failed, dropped) of messages queued more than
      `outgoing_days` ago are compacted: counted in their message's `sent`/`failed`/`dropped`
      and deleted; such a message loses its bytes once none of its recipients is still queued;
    - the automatic-mail cap's and the sending limits' ledgers (windows of a day at most) keep
      `outgoing_days` of rows;
    - IMAP rows that are marked on the server and older than `inbound_days` are deleted (an
      unmarked one is still needed to mark it);
    - the Message-IDs of mail sent to one address (`sent_only_to`) are deleted once a reply
      to them no longer proves anything (`REPLY_PROOF_DAYS`, whatever the settings say).
    - Message-IDs that proved their sender are forgotten after `SEEN_MESSAGE_DAYS`, when a
      replay would fail the proof's Date window anyway.
    - closed requests (done, denied, expired, revoked) whose token has expired are deleted with
      it (the audit log keeps what was decided); open ones stay for the confirmation or the
      chair;
    - the chair's notice tokens are deleted once expired (used or not: they answer nothing
      then);
    - a post that went into a digest more than `outgoing_days` ago is forgotten by the digest
      bookkeeping (`digest_posts`; the `digests` row keeps its count); one still waiting stays;
    - the digests of leave tokens spent by one-click are forgotten after `outgoing_days`: a
      provider's retry comes within minutes, and a later POST gets the "unknown link" page.
    """
    inbound_before = now - timedelta(days=inbound_days)
    outgoing_before = now - timedelta(days=outgoing_days)
    waiting = (exists().where(Held.inbound_id == Inbound.id, Held.status == "waiting")
               | exists().where(Request.inbound_id == Inbound.id,
                                Request.status == "confirming"))
    still_needed = exists().where(Inbound.raw_id == InboundRaw.id, or_(
        Inbound.status != "done", Inbound.processed_at.is_(None),
        Inbound.processed_at >= inbound_before, waiting))
    queued = exists().where(OutRecipient.message_id == OutMessage.id,
                            OutRecipient.status == "queued")
    pruned = Pruned()
    pruned.inbound_raw = _in_batches(store, select(InboundRaw.id).where(~still_needed),
                                     _drop_inbound_raw, batch)
    pruned.out_recipients = _in_batches(store, select(OutRecipient.id).join(
        OutMessage).where(OutMessage.created_at < outgoing_before,
                          OutRecipient.status.in_(RESULTS)), _compact_recipients, batch)
    pruned.out_messages_raw = _in_batches(store, select(OutMessage.id).where(
        OutMessage.created_at < outgoing_before, OutMessage.raw != b"", ~queued),
        _drop_message_raw, batch)
    pruned.auto_mail = _in_batches(store, select(AutoMail.id).where(
        AutoMail.at < outgoing_before), _deleting(AutoMail), batch)
    pruned.send_usage = _in_batches(store, select(SendUsage.id).where(
        SendUsage.at < outgoing_before), _deleting(SendUsage), batch)
    pruned.imap_messages = _in_batches(store, select(ImapMessage.id).where(
        ImapMessage.marked.is_(True), ImapMessage.received_at < inbound_before),
        _deleting(ImapMessage), batch)
    pruned.sent_only_to = _in_batches(store, select(SentOnlyTo.id).where(
        SentOnlyTo.at < now - timedelta(days=REPLY_PROOF_DAYS)), _deleting(SentOnlyTo), batch)
    pruned.seen_messages = _in_batches(store, select(SeenMessage.id).where(
        SeenMessage.seen_at < now - timedelta(days=SEEN_MESSAGE_DAYS)),
        _deleting(SeenMessage), batch)
    pruned.requests = _in_batches(store, select(Request.id).where(
        Request.status.in_(CLOSED_REQUESTS), Request.expires_at <= now),
        _deleting(Request), batch)
    pruned.chair_tokens = _in_batches(store, select(ChairToken.id).where(
        ChairToken.expires_at <= now), _deleting(ChairToken), batch)
    pruned.digest_posts = _in_batches(store, select(DigestPost.id).where(
        DigestPost.digest_id.is_not(None), DigestPost.added_at < outgoing_before),
        _deleting(DigestPost), batch)
    pruned.spent_one_click = _in_batches(store, select(Once.id).where(
        Once.kind == ONE_CLICK_SPENT, Once.at < outgoing_before), _deleting(Once), batch)
    return pruned


def give_back_space(store: Store, pages: int = VACUUM_PAGES) -> int:
    """On SQLite, return free pages to the file system (incremental auto-vacuum), `pages` per
    unit of work; returns how many were freed. PostgreSQL's autovacuum does this itself."""
    if store.engine.dialect.name != "sqlite":
        return 0
    freed = 0
    while True:
        with store.engine.begin() as connection:
            before = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            if not before:
                return freed
            connection.exec_driver_sql(f"PRAGMA incremental_vacuum({int(pages)})")
            after = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        freed += before - after
        if after == before:  # auto_vacuum is not incremental here: nothing to give back
            return freed
