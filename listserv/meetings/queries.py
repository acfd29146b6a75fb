"""The meeting schedule, read only: a meeting by its number, those not yet over, the next ones.

The one part of meetings another feature reads: `upcoming` is shown in the welcome
(membership) and in the answer to `info` (the request handler).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.meetings.times import when
from listserv.store.lookup import required
from listserv.store.models.core import MailingList
from listserv.store.models.features import Meeting


def find_meeting(session: Session, ref: str) -> Meeting:
    return required(session, Meeting, ref, "meeting")


def meetings_of(session: Session, ml: MailingList | None, now: datetime, *,
                everything: bool = False) -> list[Meeting]:
    """Meetings not yet over (or all, with `everything`), soonest first."""
    query = select(Meeting).order_by(Meeting.start, Meeting.id)
    if ml is not None:
        query = query.where(Meeting.list_id == ml.id)
    meetings = list(session.scalars(query))
    if everything:
        return meetings
    return [m for m in meetings if m.start + timedelta(minutes=m.duration) > now]


def upcoming(session: Session, ml: MailingList, now: datetime, lang: str = "en",
             limit: int = 4) -> list[dict[str, str]]:
    """The next scheduled meetings, for `info` and the welcome (when, written in `lang`, and
    the dial-in, its line breaks kept)."""
    meetings = [m for m in meetings_of(session, ml, now) if m.status == "scheduled"]
    return [{"when": when(m, lang), "dial_in": m.dial_in} for m in meetings[:limit]]
