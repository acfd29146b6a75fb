"""Retention (SPEC §7): what handled mail leaves behind is pruned, in small batches.

Each batch is its own unit of work of at most `BATCH` rows, so the write lock is never held
long and intake, the router and the workers go on between batches. What is kept and why is in
`docs/retention.md`: rows keep their outcome and status (the chair's `queue` listing stays
right); only the bytes go, and bookkeeping rows no window counts any more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, select, update
from sqlalchemy.orm import Session

from listserv.store.engine import Store
from listserv.store.models.core import SEEN_MESSAGE_DAYS, Held, Inbound, Request, SeenMessage
from listserv.store.models.features import ImapMessage
from listserv.store.models.outgoing import (
    REPLY_PROOF_DAYS,
    AutoMail,
    OutMessage,
    OutRecipient,
    SendUsage,
    SentOnlyTo,
)

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
    session.execute(update(Inbound).where(Inbound.id.in_(ids)).values(raw=b""))


def _delete_recipients(session: Session, ids: list[int]) -> None:
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

    - incoming mail handled (`done`) more than `inbound_days` ago loses its raw bytes; a failed
      one keeps them (the chair may `queue retry` it), and so does a post held and waiting, and
      a request waiting for its confirmation (a peer-input request is read again when
      confirmed);
    - recipient rows with a result (sent, failed, dropped) of messages queued more than
      `outgoing_days` ago are deleted; such a message loses its bytes once none of its
      recipients is still queued;
    - the automatic-mail cap's and the sending limits' ledgers (windows of a day at most) keep
      `outgoing_days` of rows;
    - IMAP rows that are marked on the server and older than `inbound_days` are deleted (an
      unmarked one is still needed to mark it);
    - the Message-IDs of mail sent to one address (`sent_only_to`) are deleted once a reply
      to them no longer proves anything (`REPLY_PROOF_DAYS`, whatever the settings say).
    - Message-IDs that proved their sender are forgotten after `SEEN_MESSAGE_DAYS`, when a
      replay would fail the proof's Date window anyway.
    """
    inbound_before = now - timedelta(days=inbound_days)
    outgoing_before = now - timedelta(days=outgoing_days)
    waiting = (exists().where(Held.inbound_id == Inbound.id, Held.status == "waiting")
               | exists().where(Request.inbound_id == Inbound.id,
                                Request.status == "confirming"))
    queued = exists().where(OutRecipient.message_id == OutMessage.id,
                            OutRecipient.status == "queued")
    pruned = Pruned()
    pruned.inbound_raw = _in_batches(store, select(Inbound.id).where(
        Inbound.status == "done", Inbound.processed_at < inbound_before,
        Inbound.raw != b"", ~waiting), _drop_inbound_raw, batch)
    pruned.out_recipients = _in_batches(store, select(OutRecipient.id).join(
        OutMessage).where(OutMessage.created_at < outgoing_before,
                          OutRecipient.status != "queued"), _delete_recipients, batch)
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
