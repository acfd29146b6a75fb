"""The posts a digest collects, and what its table of contents and its text form say of each.

A post enters its list's collection (`collect`) in the transaction that distributes it, so
each distributed post is collected once. Only while the list has a digest member: a list
without one keeps nothing (a member who switches to digests gets the posts from then on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from listserv.mail.headers import header_text
from listserv.mail.message import parse
from listserv.mail.text import body_text
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import DigestPost

#: The delivery modes that get digests instead of each post.
DIGEST_MODES = ("digest", "digest-plain")
#: Every delivery mode of a member (SPEC §3).
DELIVERY_MODES = ("regular", *DIGEST_MODES, "nomail")

#: RFC 1153 separates messages with a line of 30 hyphens; a line of 30 or more hyphens in a
#: post's text is stuffed (RFC 934: "- " before it) so no reader takes it for a separator.
_SEPARATOR_LIKE = re.compile(r"^(-{30,})$", re.MULTILINE)


def has_digest_members(session: Session, ml: MailingList) -> bool:
    """Whether any active member of `ml` takes digests."""
    return bool(session.scalar(select(exists().where(
        Member.list_id == ml.id, Member.status == "active",
        Member.delivery.in_(DIGEST_MODES)))))


def collect(session: Session, ml: MailingList, copy: bytes, now: datetime) -> None:
    """Keep `copy` (the members' copy of a post, without the footer) for the list's next
    digest; the caller asks `has_digest_members` first (no copy is made for nobody)."""
    session.add(DigestPost(list_id=ml.id, added_at=now, size=len(copy), raw=copy))


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment a plain digest lists (and does not include)."""

    name: str
    type: str
    kb: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One post as a digest shows it: the table of contents' line and the plain text."""

    number: int
    author: str
    sender: str
    date: str
    subject: str
    message_id: str
    text: str
    attachments: list[Attachment] = field(default_factory=list)


def _attachments(msg: EmailMessage) -> list[Attachment]:
    found = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        # an attached message has no decoded payload: its size as it goes out (CRLF lines)
        size = len(payload) if isinstance(payload, bytes) else len(part.as_bytes(policy=SMTP))
        found.append(Attachment(part.get_filename() or "(no name)", part.get_content_type(),
                                max(1, (size + 1023) // 1024)))
    return found


def entry(number: int, raw: bytes, prefix: str) -> Entry:
    """Post number `number` of a digest, from its stored copy; `prefix` (the list's subject
    prefix) is left out of the subject, as the digest's own Subject names the list."""
    msg = parse(raw)
    subject = header_text(msg, "Subject")
    if prefix and subject.startswith(prefix):
        subject = subject[len(prefix):].strip()
    sender = header_text(msg, "From")
    name, address = parseaddr(sender)
    text = _SEPARATOR_LIKE.sub(r"- \1", body_text(msg).rstrip())
    return Entry(number, name or address or sender, sender, header_text(msg, "Date"),
                 subject or "(no subject)", header_text(msg, "Message-ID"), text,
                 _attachments(msg))
