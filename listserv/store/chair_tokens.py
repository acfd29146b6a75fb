"""The chair's decision tokens (SPEC §2, "The chair replies"): the `NAME-confirm+TOKEN@` of a
notice that asks for a decision, and of each daily summary.

Issued here, below the features that send those notices (posting holds a post, membership
makes a join wait, meetings hold a peer-input request, the column holds a follow-up); read by
the confirm handler, which hands a reply to `chair.replies`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.mail.tokens import TOKEN_DAYS, new_token
from listserv.store.models.core import ChairToken, MailingList

#: What one token decides on: a held post, a membership request (waiting join or unclear),
#: a held peer-input request, a held column follow-up, or everything a daily summary listed.
KINDS = ("held", "request", "peer_input", "follow_up", "summary")


def issue(session: Session, ml: MailingList, kind: str, now: datetime, *,
          item_id: int | None = None, items: dict[str, list[int]] | None = None) -> ChairToken:
    """A new single-use token for one item (`item_id`) or for a summary's `items`."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of chair decision {kind!r}")
    row = ChairToken(list_id=ml.id, token=new_token(), kind=kind, item_id=item_id,
                     items=items or {}, created_at=now,
                     expires_at=now + timedelta(days=TOKEN_DAYS))
    session.add(row)
    session.flush()
    return row


def find(session: Session, token: str) -> ChairToken | None:
    """The chair token `token`, used, expired or not (None when it is not one)."""
    if not token:
        return None
    return session.scalar(select(ChairToken).where(ChairToken.token == token.lower()))
