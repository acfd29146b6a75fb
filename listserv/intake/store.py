"""Durable storage of accepted mail: the only thing intake does before saying 250."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import distinct, func, select

from listserv.mail.addresses import Destination, normalize, resolve
from listserv.store.engine import Store
from listserv.store.models.core import Inbound, InboundRaw, MailingList

from ..clock import Clock


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


def store_message(
    store: Store, clock: Clock, mail_from: str, accepted: list[Accepted], raw: bytes
) -> list[int]:
    """Commit one row per recipient and the raw bytes once (SPEC §7); all of them or none.

    The rows share one `received_at`: it marks them as one transaction for `messages_since`.
    """
    now = clock.now()
    with store.unit_of_work() as session:
        lists = {
            f"{ml.name}@{ml.domain}": ml.id
            for ml in session.scalars(select(MailingList)).all()
            if any(a.destination.list_address == ml.address for a in accepted)
        }
        stored = InboundRaw(raw=raw)
        rows = [
            Inbound(
                received_at=now, mail_from=normalize(mail_from) if mail_from else "",
                rcpt=a.rcpt, list_id=lists.get(a.destination.list_address),
                role=a.destination.role.value, token=a.destination.token, raw_message=stored,
                size=len(raw),
            )
            for a in accepted
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def messages_since(store: Store, mail_from: str, since: datetime) -> int:
    """How many transactions from envelope sender `mail_from` were stored after `since`.

    One transaction's rows share their `received_at` (`store_message`), so each counts once.
    """
    with store.reading() as session:
        found = select(func.count(distinct(Inbound.received_at))).where(
            Inbound.mail_from == normalize(mail_from), Inbound.received_at > since
        )
        return session.scalar(found) or 0
