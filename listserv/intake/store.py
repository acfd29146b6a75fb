"""Durable storage of accepted mail: the only thing intake does before saying 250."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import distinct, func, select

from listserv.mail.addresses import Destination, normalize, resolve
from listserv.store.engine import Store
from listserv.store.models.core import Inbound, InboundRaw, MailingList


@dataclass(frozen=True, slots=True)
class Accepted:
    """One accepted recipient: the address as given and where it leads."""

    rcpt: str
    destination: Destination


def lookup(store: Store, address: str) -> Destination | None:
    """Where `address` leads (SPEC §1), or None for an address that is not ours.

    A read: it answers while another connection holds the store's write lock.
    """
    with store.reading() as session:

        def is_list(list_address: str) -> bool:
            name, _, domain = list_address.partition("@")
            found = select(MailingList.id).where(
                MailingList.name == name, MailingList.domain == domain
            )
            return session.scalar(found) is not None

        return resolve(address, is_list)


@dataclass(frozen=True, slots=True)
class Received:
    """One LMTP/SMTP transaction waiting to be stored: its sender, recipients and bytes."""

    received_at: datetime
    mail_from: str
    accepted: list[Accepted]
    raw: bytes


def store_messages(store: Store, received: list[Received]) -> list[list[int]]:
    """Commit every transaction of `received` in ONE database transaction (group commit).

    Each transaction gets one row per recipient and its raw bytes once (SPEC §7); all of them
    are stored or none. Returns the row ids of each transaction, in order. A transaction's
    rows share its `received_at`: that marks them as one transaction for `messages_since`.
    """
    addresses = {a.destination.list_address for r in received for a in r.accepted}
    names = {address.partition("@")[0] for address in addresses}
    with store.unit_of_work() as session:
        found = select(MailingList.id, MailingList.name, MailingList.domain).where(
            MailingList.name.in_(names))
        lists = {f"{name}@{domain}": list_id for list_id, name, domain in session.execute(found)}
        transactions = []
        for r in received:
            stored = InboundRaw(raw=r.raw)
            sender = normalize(r.mail_from) if r.mail_from else ""
            transactions.append([
                Inbound(
                    received_at=r.received_at, mail_from=sender, rcpt=a.rcpt,
                    list_id=lists.get(a.destination.list_address),
                    role=a.destination.role.value, token=a.destination.token,
                    raw_message=stored, size=len(r.raw),
                )
                for a in r.accepted
            ])
        session.add_all(row for rows in transactions for row in rows)
        session.flush()
        return [[row.id for row in rows] for rows in transactions]


def messages_since(store: Store, mail_from: str, since: datetime) -> int:
    """How many transactions from envelope sender `mail_from` were stored after `since`.

    One transaction's rows share their `received_at` (`store_messages`), so each counts once.
    """
    with store.reading() as session:
        found = select(func.count(distinct(Inbound.received_at))).where(
            Inbound.mail_from == normalize(mail_from), Inbound.received_at > since
        )
        return session.scalar(found) or 0
