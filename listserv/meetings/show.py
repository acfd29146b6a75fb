"""A meeting as the chair sees it in `meetings list` and `meetings show`.

Its details, its peer-input time and agenda, and each reminder's state (planned, sent, missed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.meetings.booking import cutoff, peer_minutes
from listserv.meetings.reminders import reminder_offsets
from listserv.meetings.times import local_start
from listserv.store.list_settings import duration_text
from listserv.store.models.features import Meeting, PeerInput


def slot_dict(request: PeerInput) -> dict[str, Any]:
    return {"id": str(request.id), "requester": request.name or request.email,
            "email": request.email, "project": request.project, "minutes": request.minutes,
            "status": request.status}


def meeting_dict(session: Session, meeting: Meeting, now: datetime) -> dict[str, Any]:
    """A meeting as `meetings show --json` prints it (SPEC §4 fields first)."""
    ml = meeting.mailing_list
    booked = session.scalars(select(PeerInput).where(
        PeerInput.meeting_id == meeting.id, PeerInput.status.in_(("reserved", "approved"))
    ).order_by(PeerInput.id)).all()
    offsets = {r.offset_minutes: r for r in meeting.reminders}
    reminders = []
    for minutes in sorted(set(reminder_offsets(ml)) | set(offsets), reverse=True):
        row = offsets.get(minutes)
        reminders.append({
            "offset": duration_text(minutes),
            "due": (meeting.start - timedelta(minutes=minutes)).isoformat(),
            "status": row.status if row else "planned",
            "at": row.at.isoformat() if row else "",
            "detail": row.detail if row else "",
        })
    ended = meeting.start + timedelta(minutes=meeting.duration) <= now
    return {
        "id": str(meeting.id),
        "list": ml.address,
        "start": local_start(meeting).isoformat(),
        "tz": meeting.tz,
        "duration": meeting.duration,
        "dial_in": meeting.dial_in,
        "agenda": [slot_dict(r) for r in booked if r.status == "approved"],
        "status": "over" if ended and meeting.status == "scheduled" else meeting.status,
        "start_utc": meeting.start.isoformat(),
        "uid": meeting.uid,
        "sequence": meeting.sequence,
        "series": str(meeting.series_id) if meeting.series_id else "",
        "peer_input_minutes": peer_minutes(ml, meeting),
        "peer_input_free": peer_minutes(ml, meeting) - sum(r.minutes for r in booked),
        "signup_closes": (meeting.start - cutoff(ml)).astimezone(ZoneInfo(meeting.tz))
        .isoformat(),
        "provisional": [slot_dict(r) for r in booked if r.status == "reserved"],
        "reminders": reminders,
    }
