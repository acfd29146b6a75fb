"""Whose failure a report is: the member (or probe) whose envelope token it came back to, or,
without a token, whether we sent the address a message the report quotes (`sent_to`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from listserv.mail.addresses import normalize
from listserv.mail.headers import wire_message_id
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import BounceProbe
from listserv.store.models.outgoing import OutMessage, OutRecipient


@dataclass(frozen=True, slots=True)
class Target:
    """The member a bounce token names, and the probe when it was a probe's token."""

    member: Member
    probe: BounceProbe | None = None


def by_token(session: Session, ml: MailingList, token: str) -> Target | None:
    """The member (or probe) whose envelope token a report came back to, if it is ours."""
    token = token.strip().lower()
    if not token:
        return None
    member = session.scalar(select(Member).where(Member.bounce_token == token,
                                                 Member.list_id == ml.id))
    if member is not None:
        return Target(member)
    probe = session.scalar(select(BounceProbe).where(BounceProbe.token == token,
                                                     BounceProbe.list_id == ml.id))
    if probe is not None:
        member = session.get(Member, probe.member_id)
        if member is not None:
            return Target(member, probe)
    return None


SENT_WINDOW = timedelta(days=30)  # how old a message a report may return and still count
MAX_MESSAGE_IDS = 5


def sent_to(session: Session, ml: MailingList, address: str, message_ids: tuple[str, ...],
            now: datetime) -> bool:
    """Whether we sent `address` a message of this list with one of `message_ids` lately.

    The outgoing queue keeps each message's bytes: the Message-ID is looked for in them (a
    substring search in the database, then the header itself checked), among the messages
    that had `address` as a recipient in the last SENT_WINDOW.
    """
    if not message_ids:
        return False
    sqlite = session.get_bind().dialect.name == "sqlite"
    for message_id in message_ids[:MAX_MESSAGE_IDS]:
        needle = message_id.encode("utf-8", "replace")
        contains: Any = (func.instr(OutMessage.raw, needle) > 0 if sqlite else
                         text("position(:needle in out_messages.raw) > 0")
                         .bindparams(needle=needle))
        candidates = session.scalars(
            select(OutMessage.raw)
            .join(OutRecipient, OutRecipient.message_id == OutMessage.id)
            .where(OutRecipient.email == normalize(address), OutRecipient.status != "dropped",
                   OutMessage.list_id == ml.id, OutMessage.created_at >= now - SENT_WINDOW,
                   contains)
            .limit(5)
        )
        if any(wire_message_id(raw) == message_id for raw in candidates):
            return True
    return False
