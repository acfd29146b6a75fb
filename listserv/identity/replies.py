"""The reply proof (SPEC §2): a message that replies to a mail we sent only to its sender.

Every mail we compose and queue for exactly one address has its Message-ID recorded by the
outbox (`SentOnlyTo`); those Message-IDs come from `secrets` (`tokens.message_id`), so only
someone who received the mail can quote one. A message whose `In-Reply-To` or `References`
holds such a Message-ID, sent to its From address within `REPLY_PROOF_DAYS`, proves that
address. Mail to several addresses (a chair notice to all owners is one mail per owner, so
it counts; list copies to the members never do) proves nothing.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.mail.headers import header_text
from listserv.store.models.outgoing import REPLY_PROOF_DAYS, SentOnlyTo

_MSGID = re.compile(r"<[^<>\s]{1,248}>")
#: How many of the Message-IDs a reply quotes are looked up: the last ones of `References`
#: are the nearest ancestors; a long thread's older ones add nothing.
MAX_QUOTED = 20


def quoted_ids(msg: EmailMessage) -> list[str]:
    """The Message-IDs a message replies to: its `In-Reply-To`, then the last of its
    `References`, without repeats, at most MAX_QUOTED."""
    found = _MSGID.findall(header_text(msg, "In-Reply-To"))
    found += reversed(_MSGID.findall(header_text(msg, "References")))
    return list(dict.fromkeys(found))[:MAX_QUOTED]


def replied_to(session: Session, msg: EmailMessage, address: str, now: datetime) -> str:
    """The Message-ID of a mail we sent only to `address` (normalized) that `msg` replies to,
    sent within REPLY_PROOF_DAYS; "" when it replies to none."""
    ids = quoted_ids(msg)
    if not ids or not address:
        return ""
    found = session.scalar(select(SentOnlyTo.message_id).where(
        SentOnlyTo.message_id.in_(ids), SentOnlyTo.address == address,
        SentOnlyTo.at > now - timedelta(days=REPLY_PROOF_DAYS)).limit(1))
    return found or ""
