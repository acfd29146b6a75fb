"""A meeting as iCalendar (RFC 5545): the `.ics` part of the meeting mail.

METHOD:PUBLISH, or METHOD:CANCEL for a cancellation (never REQUEST), with the zone's
VTIMEZONE, a stable UID and a SEQUENCE that rises with each change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress

from listserv.mail.addresses import Role
from listserv.meetings.times import local_start
from listserv.store.models.core import MailingList
from listserv.store.models.features import Meeting


def calendar(ml: MailingList, meeting: Meeting, now: datetime, method: str,
             context: dict[str, Any]) -> bytes:
    """The meeting as iCalendar: METHOD PUBLISH or CANCEL, VTIMEZONE, stable UID, SEQUENCE."""
    where = ZoneInfo(meeting.tz)
    start = local_start(meeting)
    cal = Calendar()
    cal.add("prodid", "-//listserv//meetings//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    event = Event()
    event.add("uid", meeting.uid)
    event.add("sequence", meeting.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", (meeting.start + timedelta(minutes=meeting.duration)).astimezone(where))
    event.add("summary", f"{ml.display} meeting")
    organizer = vCalAddress(f"mailto:{ml.role_address(Role.OWNER)}")
    organizer.params["cn"] = ml.display
    event.add("organizer", organizer)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    if meeting.dial_in:
        event.add("location", meeting.dial_in.splitlines()[0])
    lines = []
    if method == "CANCEL":
        lines.append("This meeting has been cancelled.")
    if meeting.dial_in:
        lines += ["Dial-in:", meeting.dial_in, ""]
    if context["agenda"]:
        lines.append("Peer input:")
        lines += [f"- {s['name']}: {s['project']} ({s['minutes']} min)" for s in context["agenda"]]
    event.add("description", "\n".join(lines).strip())
    cal.add_component(event)
    if meeting.tz != "UTC":
        cal.add_missing_timezones(first_date=start.date() - timedelta(days=366),
                                  last_date=start.date() + timedelta(days=366))
    return cal.to_ical()
