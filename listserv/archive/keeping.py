"""Keeping a distributed post (SPEC §3): the bytes the members got, before personalisation.

`keep` is called by `posting.distribute` in the transaction that queues the members' copy, so
a post is archived exactly when it is distributed. What is kept is the queued copy's wire
bytes: list headers, subject prefix and footer included, and no member's token (each member's
`List-Unsubscribe` and envelope are added by the delivery worker, never stored here). The
author, subject, date and text are read from the post as it came (a DMARC-munged From names
the list, not the author).
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parsedate_to_datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.archive.settings import keeps
from listserv.mail.headers import header_text, wire_message_id
from listserv.mail.message import parse
from listserv.mail.mime.headers import author_of, decoded_subject
from listserv.mail.mime.raw import RawMessage
from listserv.mail.text import body_text
from listserv.store.models.archive import MAX_MESSAGE_ID, ArchivedPost
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList

#: The text searched is the first this many characters of a post's text (PostgreSQL's tsvector
#: holds at most 1 MB; a longer post is still kept whole and exported whole).
MAX_TEXT = 200_000
#: At most this many References are kept (a thread's root is the first).
MAX_REFERENCES = 50
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def message_ids(value: str) -> list[str]:
    """The `<id>`s in a Message-ID, In-Reply-To or References value, in order."""
    return _MESSAGE_ID.findall(value)


def post_date(value: str, now: datetime) -> datetime:
    """The post's Date as an aware datetime; `now` when it has none or it cannot be read."""
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return now
    return date if date.tzinfo is not None else now


def keep(session: Session, ml: MailingList, original: bytes, copy: bytes,
         now: datetime) -> ArchivedPost | None:
    """Archive `copy` (the wire bytes of the members' copy of the post `original`), numbered
    next in its list; None when the list keeps no archive (`archive.policy = none`)."""
    if not keeps(ml):
        return None
    msg = parse(original)
    raw = RawMessage.parse(original)
    name, address = author_of(raw)
    header_id = wire_message_id(copy)  # the wire form always has one
    own_id = (message_ids(header_id) or [header_id])[0]
    references = message_ids(header_text(msg, "References"))[-MAX_REFERENCES:]
    parent = (message_ids(header_text(msg, "In-Reply-To")) or references[-1:] or [""])[0]
    post = ArchivedPost(
        list_id=ml.id, number=_next_number(session, ml), message_id=own_id[:MAX_MESSAGE_ID],
        in_reply_to=parent[:MAX_MESSAGE_ID],
        thread_id=_thread(session, ml, parent, references, own_id)[:MAX_MESSAGE_ID],
        references=" ".join(references), sender=address.lower(),
        sender_name=name[:MAX_NAME_LENGTH], subject=decoded_subject(raw),
        text=body_text(msg, MAX_TEXT)[:MAX_TEXT], date=post_date(header_text(msg, "Date"), now),
        archived_at=now, raw=copy, size=len(copy),
    )
    session.add(post)
    session.flush()
    return post


def _next_number(session: Session, ml: MailingList) -> int:
    """The next post number of `ml`; the list's row is locked first (PostgreSQL), so two
    daemons archiving at once take turns instead of taking one number twice."""
    session.execute(select(MailingList.id).where(MailingList.id == ml.id).with_for_update())
    highest = session.scalar(select(func.max(ArchivedPost.number))
                             .where(ArchivedPost.list_id == ml.id))
    return (highest or 0) + 1


def _thread(session: Session, ml: MailingList, parent: str, references: list[str],
            own_id: str) -> str:
    """The thread of a post: its parent's when the archive has the parent, else the first
    reference (the thread's root), else the post itself."""
    if parent:
        known = session.scalar(select(ArchivedPost.thread_id).where(
            ArchivedPost.list_id == ml.id, ArchivedPost.message_id == parent[:MAX_MESSAGE_ID])
            .order_by(ArchivedPost.id).limit(1))
        if known:
            return known
    return references[0] if references else (parent or own_id)
