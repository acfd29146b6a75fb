"""Meeting times (SPEC §5): IANA zones, the chair's local times, and how mail writes them.

A meeting keeps its start in UTC beside its IANA zone; these read the chair's wall-clock time
into that pair and write the pair back in the meeting's zone, in UTC and in other zones. No
database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from listserv.errors import ListservError
from listserv.store.models.features import Meeting


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or one clear error."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ListservError(f"unknown time zone {name!r} (use an IANA name such as "
                            "America/Chicago or Europe/Berlin)") from None


def parse_at(at: str, tz: str) -> datetime:
    """A local wall-clock time "YYYY-MM-DD HH:MM" in zone `tz`, as an aware datetime."""
    where = zone(tz)
    try:
        naive = datetime.strptime(" ".join(at.replace("T", " ").split()), "%Y-%m-%d %H:%M")
    except ValueError:
        raise ListservError(f'--at {at!r}: give the local time as "YYYY-MM-DD HH:MM"') from None
    local = naive.replace(tzinfo=where)
    if local.astimezone(UTC).astimezone(where).replace(tzinfo=None) != naive:
        raise ListservError(f"{naive:%Y-%m-%d %H:%M} does not exist in {tz} "
                            "(the clocks skip it); choose another time")
    return local


def local_start(meeting: Meeting) -> datetime:
    """The meeting's start in its own zone."""
    return meeting.start.astimezone(ZoneInfo(meeting.tz))


def _span(start: datetime, minutes: int, where: ZoneInfo, label: str) -> str:
    """`Thursday 21 January 2027, 16:00–17:00 UTC`: start–end (an en dash), the zone named
    once; `label` (the IANA name) follows in brackets only where the abbreviation differs."""
    begin = start.astimezone(where)
    end = (start + timedelta(minutes=minutes)).astimezone(where)
    until = f"{end:%H:%M}" if end.date() == begin.date() else f"{end:%A} {end:%H:%M}"
    abbreviation = begin.tzname() or label
    line = f"{begin:%A} {begin.day} {begin:%B %Y}, {begin:%H:%M}\u2013{until} {abbreviation}"
    return f"{line} ({label})" if label and label != abbreviation else line


def span(meeting: Meeting) -> str:
    """The meeting's start–end in its own zone, in one line (`time_lines`' first)."""
    return _span(meeting.start, meeting.duration, ZoneInfo(meeting.tz), meeting.tz)


def time_lines(meeting: Meeting, zones: Iterable[str]) -> list[str]:
    """The meeting's time in its zone, in UTC, then in each extra zone."""
    lines = [span(meeting)]
    if meeting.tz != "UTC":
        lines.append(_span(meeting.start, meeting.duration, ZoneInfo("UTC"), ""))
    for name in zones:
        if name not in (meeting.tz, "UTC"):
            lines.append(_span(meeting.start, meeting.duration, ZoneInfo(name), name))
    return lines


def moment(at: datetime, where: ZoneInfo) -> str:
    """A point in time in a zone: `Thursday 21 January 2027, 12:00 CST`."""
    local = at.astimezone(where)
    return f"{local:%A} {local.day} {local:%B %Y}, {local:%H:%M} {local.tzname()}"


def when(meeting: Meeting) -> str:
    """The meeting's start in its zone, in one line."""
    return moment(meeting.start, ZoneInfo(meeting.tz))
