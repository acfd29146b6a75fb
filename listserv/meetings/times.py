"""Meeting times (SPEC §5): IANA zones, the chair's local times, and how mail writes them.

A meeting keeps its start in UTC beside its IANA zone; these read the chair's wall-clock time
into that pair and write the pair back in the meeting's zone, in UTC and in other zones. No
database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from listserv.errors import ListservError
from listserv.mail import i18n
from listserv.mail.i18n import DEFAULT_LANG
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


def span(meeting: Meeting, lang: str = DEFAULT_LANG) -> str:
    """The meeting's start–end in its own zone, in one line (`time_lines`' first)."""
    return i18n.span(meeting.start, meeting.duration, ZoneInfo(meeting.tz), meeting.tz, lang)


def time_lines(meeting: Meeting, zones: Iterable[str], lang: str = DEFAULT_LANG) -> list[str]:
    """The meeting's time in its zone, in UTC, then in each extra zone, written in `lang`."""
    lines = [span(meeting, lang)]
    if meeting.tz != "UTC":
        lines.append(i18n.span(meeting.start, meeting.duration, ZoneInfo("UTC"), "", lang))
    for name in zones:
        if name not in (meeting.tz, "UTC"):
            lines.append(i18n.span(meeting.start, meeting.duration, ZoneInfo(name), name, lang))
    return lines


def moment(at: datetime, where: ZoneInfo, lang: str = DEFAULT_LANG) -> str:
    """A point in time in a zone: `Thursday, 21 January 2027, 12:00 CST`."""
    return i18n.moment(at, where, lang)


def when(meeting: Meeting, lang: str = DEFAULT_LANG) -> str:
    """The meeting's start in its zone, in one line (in `lang`; the log's is English)."""
    return moment(meeting.start, ZoneInfo(meeting.tz), lang)
