"""What makes an authenticated message count as fresh proof (SPEC §2, "Who sent it").

A signature (or a receiving MTA's `dmarc=pass`) says a domain sent a message, not when or to
which of our addresses. Anyone holding an old signed post could send it again to `-leave@`.
So a signed message proves its sender only if it names the address it arrived at in `To` or
`Cc`, its `Date` is at most `MAX_AGE` old (and at most `MAX_AHEAD` in the future, for clocks
that run fast), and its Message-ID has not proved anything before at that list's role
(`seen_messages`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses, parsedate_to_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.mail.addresses import Destination, normalize
from listserv.store.models.core import Inbound, MailingList, SeenMessage

#: The window a Date must fall in. `seen_messages` keeps a Message-ID for SEEN_MESSAGE_DAYS,
#: longer than this window, so a replay is caught for as long as its Date would still pass.
MAX_AGE = timedelta(days=7)
MAX_AHEAD = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where a message arrived: the addresses it may name as its recipient (the envelope
    recipient, and the public address of the role it reached: they differ when the list's
    addresses are configured, or a hosted mailbox took the mail), and the list and role,
    within which a Message-ID proves once."""

    addresses: frozenset[str]
    scope: str


def arrival(session: Session, inbound: Inbound, destination: Destination) -> Arrival:
    """Where the message stored as `inbound` arrived."""
    found = {normalize(inbound.rcpt)}
    ml = session.get(MailingList, inbound.list_id) if inbound.list_id else None
    if ml is not None:
        found.add(normalize(ml.role_address(destination.role, destination.token)))
    return Arrival(frozenset(a for a in found if a),
                   f"{destination.list_address} {destination.role.value}")


def names_arrival(values: Iterable[str], where: Arrival) -> bool:
    """Whether the `To`/`Cc` header `values` name an address the message arrived at."""
    return any(normalize(address) in where.addresses
               for _, address in getaddresses(list(values)) if "@" in address)


def fresh_date(value: str, now: datetime) -> bool:
    """Whether a `Date` header value lies within the accepted window around `now`."""
    try:
        date = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return False
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)  # RFC 5322's "-0000": UTC, origin unknown
    return now - MAX_AGE <= date <= now + MAX_AHEAD


def _digest(message_id: str, where: Arrival) -> str:
    text = f"{where.scope}\n{' '.join(message_id.split())}"
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def first_use(session: Session, message_id: str, where: Arrival, now: datetime) -> bool:
    """Record that `message_id` proved its sender at `where`; False when it did so before (a
    replay) or is empty.

    Once per list and role, not once in all: one mail sent to the list and to `-request` is
    handled twice, and both may use its proof. Sent again to another role, it would have to
    name that address in its signed To/Cc, so it was delivered there in the first place.
    Recorded in the caller's unit of work: if handling fails, the record goes with it and a
    retry proves again."""
    if not message_id.strip():
        return False
    digest = _digest(message_id, where)
    if session.scalar(select(SeenMessage.id).where(SeenMessage.digest == digest)) is not None:
        return False
    session.add(SeenMessage(digest=digest, seen_at=now))
    session.flush()
    return True
