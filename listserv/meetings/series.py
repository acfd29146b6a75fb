"""Meetings (SPEC §5): series and one-offs, reminders with calendar invites, peer-input time.

A meeting keeps its start in UTC beside its IANA zone; a series keeps an RFC 5545 RRULE whose
occurrences keep their wall-clock time in that zone (12:00 Chicago stays 12:00 across DST).
The scheduler keeps each active series two scheduled meetings ahead and sends the reminders:
each sending (or miss) is a `MeetingReminder` row, unique per meeting and offset, written in
the transaction that queues the mail, so no restart and no second daemon repeats one.

Reminders, updates and cancellations are list mail from the list itself, queued straight for
the members (never re-injected as posts): a text part from a template and an `.ics` part built
with `icalendar` (METHOD:PUBLISH, or METHOD:CANCEL for a cancellation; never REQUEST).

Peer-input time is `duration × meetings.peer_input_share` per meeting. Requests take it in
order of arrival, in the first meeting with room whose sign-up has not closed
(`meetings.signup_cutoff_days` before it starts); `reflow` moves provisional and waiting
requests up whenever time frees. Placement locks the list's row, so two routers (or a router
and the chair) never book the same minutes twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr
from icalendar import Calendar, Event, vCalAddress
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.delivery.notices import list_context, notify
from listserv.delivery.outbox import enqueue_to_members
from listserv.errors import ListservError
from listserv.mail.addresses import Role
from listserv.mail.mime.transforms import distribution_copy
from listserv.mail.render import Renderer
from listserv.mail.wire import message_bytes
from listserv.posting.distribute import footer_text, list_headers
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.list_settings import (
    declare,
    duration_minutes,
    duration_text,
    durations,
    items,
    number,
    whole,
)
from listserv.store.lookup import by_number
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import Meeting, MeetingReminder, MeetingSeries, PeerInput

log = logging.getLogger(__name__)

#: Scheduled meetings a series keeps ahead of now.
AHEAD = 2
#: The most minutes of peer input one request may have (and the default).
MAX_PEER_MINUTES = 30
#: Reminders of meetings that began longer ago than this are no longer looked at.
MISSED_WINDOW = timedelta(days=7)
MAX_DURATION = 24 * 60
MAX_OFFSET = timedelta(days=90)
MAX_OFFSETS = 10

# -- list settings ---------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or one clear error."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ListservError(f"unknown time zone {name!r} (use an IANA name such as "
                            "America/Chicago or Europe/Berlin)") from None


def _zone_name(name: str) -> str:
    try:
        zone(name)
    except ListservError:
        raise ValueError("an IANA time zone such as America/Chicago or Europe/Berlin") from None
    return name


REMINDERS = declare("meetings.reminders", durations(MAX_OFFSET.days, MAX_OFFSETS),
                    ("14d", "1d"),
                    "when reminders go out before the start; `\"\"` or `none` = no reminders")
PEER_INPUT_SHARE = declare("meetings.peer_input_share", number(0, 1), 0.5,
                           "part of each meeting for peer input; whole minutes, rounded down")
EXTRA_ZONES = declare("meetings.extra_zones",
                      items(_zone_name, "IANA time zones, comma-separated"), (),
                      "zones shown in reminders after the meeting's zone and UTC")
SIGNUP_CUTOFF_DAYS = declare("meetings.signup_cutoff_days", whole(0, 90, unit="days"), 2,
                             "requests book only meetings starting more than this many days "
                             "ahead (time for the chair to approve, and for the last reminder "
                             "to show the agenda)")


def reminder_offsets(ml: MailingList) -> list[int]:
    """The list's reminder offsets in minutes, largest (earliest reminder) first."""
    return [duration_minutes(t) for t in REMINDERS.get(ml)]


# -- times -------------------------------------------------------------------------------------


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
    begin = start.astimezone(where)
    end = (start + timedelta(minutes=minutes)).astimezone(where)
    until = f"{end:%H:%M}" if end.date() == begin.date() else f"{end:%A} {end:%H:%M}"
    line = f"{begin:%A} {begin.day} {begin:%B %Y}, {begin:%H:%M}-{until} {begin.tzname()}"
    return f"{line} ({label})" if label else line


def time_lines(meeting: Meeting, zones: Iterable[str]) -> list[str]:
    """The meeting's time in its zone, in UTC, then in each extra zone."""
    lines = [_span(meeting.start, meeting.duration, ZoneInfo(meeting.tz), meeting.tz)]
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


# -- series --------------------------------------------------------------------------------

_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")


def _rule(text: str, first: datetime) -> rrule:
    try:
        parsed = rrulestr(text, dtstart=first)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ListservError(f"--rrule {text!r} is not a valid RFC 5545 RRULE ({exc})") from None
    if not isinstance(parsed, rrule):
        raise ListservError(f"--rrule {text!r}: give one RRULE (no RDATE or EXDATE)")
    return parsed


def check_rrule(text: str, first: datetime) -> str:
    """The RRULE, checked (FREQ DAILY to YEARLY); a leading `RRULE:` is dropped."""
    rule = " ".join(text.split()).upper()
    if rule.startswith("RRULE:"):
        rule = rule[len("RRULE:"):]
    parts = dict(p.partition("=")[::2] for p in rule.split(";") if p)
    if "DTSTART" in rule or parts.get("FREQ") not in _FREQUENCIES:
        raise ListservError(f"--rrule {text!r}: need FREQ=DAILY, WEEKLY, MONTHLY or YEARLY "
                            "(the first start comes from --at and --tz)")
    _rule(rule, first)
    return rule


def series_starts(rule: str, first: datetime, after: datetime | None = None) -> Iterator[datetime]:
    """The starts of a series with DTSTART `first` (aware, in its zone), each in that zone.

    With `after`, only those strictly after it. Each keeps `first`'s wall-clock time in its
    zone (RFC 5545): a time the clocks skip is read with the offset before the change.
    """
    parsed = _rule(rule, first)
    return parsed.xafter(after, inc=False) if after is not None else iter(parsed)


def _uid(ml: MailingList) -> str:
    return f"meeting-{uuid.uuid4().hex}@{ml.domain}"


def _new_meeting(ml: MailingList, start: datetime, tz: str, duration: int, dial_in: str,
                 now: datetime, series: MeetingSeries | None = None) -> Meeting:
    start = start.astimezone(UTC)
    return Meeting(list_id=ml.id, series_id=series.id if series else None,
                   occurrence=start if series else None, start=start, tz=tz,
                   duration=duration, dial_in=dial_in, status="scheduled", uid=_uid(ml),
                   sequence=0, created_at=now, updated_at=now)


def _check_details(duration: int, dial_in: str) -> str:
    if not 0 < duration <= MAX_DURATION:
        raise ListservError(f"--duration {duration}: minutes, from 1 to {MAX_DURATION}")
    return dial_in.replace("\\n", "\n").replace("\r", "").strip()


def schedule(session: Session, renderer: Renderer, ml: MailingList, start: datetime,
             duration: int, dial_in: str, now: datetime, actor: str) -> Meeting:
    """A one-off meeting at `start` (aware, in its zone)."""
    dial_in = _check_details(duration, dial_in)
    if start <= now:
        raise ListservError(f"{start:%Y-%m-%d %H:%M} {start.tzinfo} is in the past")
    meeting = _new_meeting(ml, start, str(start.tzinfo), duration, dial_in, now)
    session.add(meeting)
    session.flush()
    audit(session, now, actor, "meeting-scheduled", f"#{meeting.id} at {when(meeting)}", ml.id)
    tell_moved(session, renderer, ml, reflow(session, ml, now), now, "moved-up")
    return meeting


def create_series(session: Session, renderer: Renderer, ml: MailingList, rule: str,
                  first: datetime, duration: int, dial_in: str, now: datetime, actor: str,
                  *, replace: bool = False) -> tuple[MeetingSeries, list[Meeting]]:
    """The list's recurring series from DTSTART `first`; its next meetings are made at once."""
    dial_in = _check_details(duration, dial_in)
    rule = check_rrule(rule, first)
    if next(series_starts(rule, first, now), None) is None:
        raise ListservError(f"--rrule {rule}: the series has no meeting after now")
    current = session.scalars(
        select(MeetingSeries).where(MeetingSeries.list_id == ml.id, MeetingSeries.active)
    ).all()
    if current and not replace:
        raise ListservError(f"{ml.address} has a series already (#{current[0].id}); add "
                            "--replace to end it (its meetings stay; cancel them if needed)")
    for old in current:
        old.active = False
        audit(session, now, actor, "meeting-series-ended", f"#{old.id}", ml.id)
    series = MeetingSeries(list_id=ml.id, rrule=rule, first_start=first.astimezone(UTC),
                           tz=str(first.tzinfo), duration=duration, dial_in=dial_in,
                           active=True, created_at=now)
    session.add(series)
    session.flush()
    audit(session, now, actor, "meeting-series", f"#{series.id}: {rule} from "
          f"{first:%Y-%m-%d %H:%M} {series.tz}, {duration} minutes", ml.id)
    return series, keep_series_ahead(session, renderer, series, now)


def keep_series_ahead(session: Session, renderer: Renderer, series: MeetingSeries,
                      now: datetime) -> list[Meeting]:
    """Make the series' next meetings until `AHEAD` scheduled ones lie ahead; returns new ones.

    A cancelled occurrence stays cancelled (its row is kept) and does not count. Two daemons
    making the same occurrence meet the unique (series, occurrence) constraint: one wins.
    """
    ml = series.mailing_list
    first = series.first_start.astimezone(zone(series.tz))
    existing = {m.occurrence: m for m in session.scalars(
        select(Meeting).where(Meeting.series_id == series.id, Meeting.occurrence > now))}
    made: list[Meeting] = []
    ahead = 0
    for start in islice(series_starts(series.rrule, first, now), 50):
        meeting = existing.get(start.astimezone(UTC))
        if meeting is None:
            meeting = _new_meeting(ml, start, series.tz, series.duration, series.dial_in, now,
                                   series)
            try:
                with session.begin_nested():
                    session.add(meeting)
            except IntegrityError:
                ahead += 1  # another daemon made it just now
                continue
            made.append(meeting)
            audit(session, now, DAEMON, "meeting-scheduled",
                  f"#{meeting.id} at {when(meeting)} (series #{series.id})", ml.id)
        if meeting.status == "scheduled":
            ahead += 1
        if ahead >= AHEAD:
            break
    if made:
        tell_moved(session, renderer, ml, reflow(session, ml, now), now, "moved-up")
    return made


# -- finding and showing --------------------------------------------------------------------


def find_meeting(session: Session, ref: str) -> Meeting:
    meeting = by_number(session, Meeting, ref)
    if meeting is None:
        raise ListservError(f"no meeting {ref}")
    return meeting


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


def upcoming(session: Session, ml: MailingList, now: datetime,
             limit: int = 4) -> list[dict[str, str]]:
    """The next scheduled meetings, for `info` and the welcome (when, and the dial-in)."""
    meetings = [m for m in meetings_of(session, ml, now) if m.status == "scheduled"]
    return [{"when": when(m), "dial_in": m.dial_in} for m in meetings[:limit]]


def display_name(request: PeerInput) -> str:
    """What list mail calls a requester: the name (the chair may edit it), never the address."""
    return request.name or "A member"


def agenda(session: Session, meeting: Meeting) -> list[PeerInput]:
    """The meeting's approved peer-input slots, in order of arrival."""
    return list(session.scalars(select(PeerInput).where(
        PeerInput.meeting_id == meeting.id, PeerInput.status == "approved"
    ).order_by(PeerInput.id)))


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


# -- mail to the members ----------------------------------------------------------------------


def meeting_context(session: Session, ml: MailingList, meeting: Meeting,
                    now: datetime) -> dict[str, Any]:
    """What the meeting templates say: times, dial-in, agenda, how to ask for time."""
    closes = meeting.start - cutoff(ml)
    peer = peer_minutes(ml, meeting)
    return {
        "meeting": meeting,
        "when": when(meeting),
        "times": time_lines(meeting, EXTRA_ZONES.get(ml)),
        "dial_in": meeting.dial_in,
        "agenda": [{"name": display_name(r), "project": r.project, "minutes": r.minutes}
                   for r in agenda(session, meeting)],
        "peer_minutes": peer,
        "group_minutes": meeting.duration - peer,
        "free_minutes": room(session, ml, meeting),
        "max_minutes": MAX_PEER_MINUTES,
        "signup_open": now < closes,
        "signup_closes": moment(closes, ZoneInfo(meeting.tz)),
        "peer_input_address": ml.role_address(Role.PEER_INPUT),
        "post_address": ml.role_address(Role.POST),
    }


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
    event.add("summary", f"{ml.name} meeting")
    organizer = vCalAddress(f"mailto:{ml.role_address(Role.OWNER)}")
    organizer.params["cn"] = ml.name
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


def send_to_members(session: Session, renderer: Renderer, meeting: Meeting, template: str,
                    now: datetime, *, method: str = "PUBLISH", **extra: Any) -> int:
    """Queue `template` with the meeting's .ics for the members, as list mail; returns how many.

    Built like a distributed post (list headers, prefix, footer) but queued directly: a
    reminder is never re-injected as a post.
    """
    ml = meeting.mailing_list
    context = meeting_context(session, ml, meeting, now)
    msg = renderer.mail(template, domain=ml.domain, now=now, **list_context(ml), **context,
                        **extra)
    msg.add_attachment(
        calendar(ml, meeting, now, method, context), maintype="text", subtype="calendar",
        cte="base64", params={"charset": "utf-8", "method": method},
        filename=f"{ml.name}-meeting.ics",
    )
    del msg.get_payload()[-1]["MIME-Version"]
    copy = distribution_copy(message_bytes(msg), list_headers(ml), ml.prefix,
                             footer_text(renderer, ml))
    count = enqueue_to_members(session, ml, copy, now=now, kind="meeting",
                               eightbit=renderer.eightbit)
    if count < 0:  # the driver did not say (INSERT … SELECT on PostgreSQL): count them
        count = session.scalar(select(func.count()).select_from(Member).where(
            Member.list_id == ml.id, Member.status == "active",
            Member.delivery == "regular")) or 0
    return count


def remind(session: Session, renderer: Renderer, meeting: Meeting, now: datetime,
           actor: str) -> int:
    """Send a reminder now (the chair's `meetings remind`); the planned ones are unchanged."""
    if meeting.status != "scheduled":
        raise ListservError(f"meeting {meeting.id} is {meeting.status}")
    if meeting.start + timedelta(minutes=meeting.duration) <= now:
        raise ListservError(f"meeting {meeting.id} is over")
    count = send_to_members(session, renderer, meeting, "meeting-reminder.txt", now)
    audit(session, now, actor, "meeting-reminder", f"#{meeting.id}: sent now to {count} "
          "members", meeting.list_id)
    return count


def move(session: Session, renderer: Renderer, meeting: Meeting, start: datetime,
         now: datetime, actor: str) -> int:
    """Move a meeting: SEQUENCE rises, the members get an update; returns how many.

    Reminders not yet sent are planned from the new time; one whose new moment has already
    passed is recorded as superseded by the update (which says everything it would).
    """
    if meeting.status != "scheduled":
        raise ListservError(f"meeting {meeting.id} is {meeting.status}")
    if start <= now:
        raise ListservError(f"{start:%Y-%m-%d %H:%M} {start.tzinfo} is in the past")
    before = when(meeting)
    meeting.start, meeting.tz = start.astimezone(UTC), str(start.tzinfo)
    meeting.sequence += 1
    meeting.updated_at = now
    audit(session, now, actor, "meeting-moved", f"#{meeting.id} from {before} to "
          f"{when(meeting)}", meeting.list_id)
    ml = meeting.mailing_list
    done = {r.offset_minutes for r in meeting.reminders}
    for minutes in reminder_offsets(ml):
        due = meeting.start - timedelta(minutes=minutes)
        if minutes not in done and due <= now:
            try:
                with session.begin_nested():
                    session.add(MeetingReminder(
                        meeting_id=meeting.id, offset_minutes=minutes, status="missed",
                        due_at=due, at=now, detail="missed: superseded by the notice of the move"))
            except IntegrityError:
                pass  # the scheduler recorded it meanwhile
    count = send_to_members(session, renderer, meeting, "meeting-moved.txt", now,
                            previous=before)
    tell_moved(session, renderer, ml, reflow(session, ml, now), now, "moved-up")
    return count


def cancel(session: Session, renderer: Renderer, meeting: Meeting, now: datetime,
           actor: str) -> int:
    """Cancel a meeting: METHOD:CANCEL to the members; its peer-input requests move on."""
    if meeting.status == "cancelled":
        raise ListservError(f"meeting {meeting.id} was already cancelled")
    if meeting.start + timedelta(minutes=meeting.duration) <= now:
        raise ListservError(f"meeting {meeting.id} is over")
    ml = meeting.mailing_list
    lock(session, ml)
    meeting.status = "cancelled"
    meeting.sequence += 1
    meeting.updated_at = now
    audit(session, now, actor, "meeting-cancelled", f"#{meeting.id} at {when(meeting)}",
          meeting.list_id)
    count = send_to_members(session, renderer, meeting, "meeting-cancelled.txt", now,
                            method="CANCEL")
    displaced = list(session.scalars(select(PeerInput).where(
        PeerInput.meeting_id == meeting.id, PeerInput.status.in_(("reserved", "approved"))
    ).order_by(PeerInput.id)))
    for request in displaced:
        request.meeting_id, request.meeting, request.status = None, None, "waiting"
        request.pinned = False
    session.flush()
    moved = reflow(session, ml, now)
    displaced_ids = {r.id for r in displaced}
    tell_moved(session, renderer, ml, [(r, meeting) for r in displaced], now, "cancelled")
    tell_moved(session, renderer, ml, [(r, old) for r, old in moved
                                       if r.id not in displaced_ids], now, "moved-up")
    return count


# -- the scheduler's work -------------------------------------------------------------------


def send_due_reminders(session: Session, renderer: Renderer, meeting: Meeting,
                       now: datetime) -> str:
    """Record, and send, the reminders of `meeting` whose moment has come; "" when none.

    Of several due at once (the daemon was down), only the latest is sent, while the meeting
    has not begun; the others are recorded as missed. All are recorded in one savepoint, in
    the transaction that queues the mail: another daemon's rows make this one give way.
    """
    ml = meeting.mailing_list
    done = {r.offset_minutes for r in meeting.reminders}
    due = [m for m in reminder_offsets(ml)
           if m not in done and meeting.start - timedelta(minutes=m) <= now]
    if not due:
        return ""
    send = due[-1] if now < meeting.start else None
    rows = []
    for minutes in due:
        due_at = meeting.start - timedelta(minutes=minutes)
        if minutes == send:
            late = now - due_at
            if due_at < meeting.created_at:
                detail = "sent at once: the meeting was scheduled after this moment"
            elif late < timedelta(minutes=5):
                detail = "sent on time"
            else:
                detail = f"sent {_duration(late)} late (the daemon was not running)"
            rows.append(MeetingReminder(meeting_id=meeting.id, offset_minutes=minutes,
                                        status="sent", due_at=due_at, at=now, detail=detail))
        else:
            detail = ("the meeting had begun" if send is None
                      else f"superseded by the {duration_text(send)} reminder")
            rows.append(MeetingReminder(meeting_id=meeting.id, offset_minutes=minutes,
                                        status="missed", due_at=due_at, at=now,
                                        detail=f"missed: {detail}"))
    try:
        with session.begin_nested():
            session.add_all(rows)
    except IntegrityError:
        session.expire(meeting, ["reminders"])
        return ""  # another daemon recorded them first
    outcome = []
    for row in rows:
        name = f"meeting #{meeting.id}: {duration_text(row.offset_minutes)} reminder"
        if row.status == "sent":
            row.recipients = send_to_members(session, renderer, meeting,
                                             "meeting-reminder.txt", now)
            audit(session, now, DAEMON, "meeting-reminder",
                  f"{name} to {row.recipients} members, {row.detail}", ml.id)
            log.info("%s sent to %d members (%s)", name, row.recipients, row.detail)
        else:
            audit(session, now, DAEMON, "meeting-reminder-missed", f"{name} {row.detail}",
                  ml.id)
            log.warning("%s not sent: %s", name, row.detail)
        outcome.append(f"{duration_text(row.offset_minutes)} {row.status}")
    return ", ".join(outcome)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes >= 2 * 24 * 60:
        return f"{minutes // (24 * 60)} days"
    if minutes >= 120:
        return f"{minutes // 60} hours"
    return f"{minutes} minutes"


def due_work(store: Store, renderer: Renderer, now: Callable[[], datetime]) -> None:
    """The scheduler's meeting work: series kept ahead, reminders, held requests expired.

    Each series and each meeting is its own unit of work, so one that fails (and is logged)
    holds up no other.
    """
    with store.reading() as session:
        series_ids = list(session.scalars(select(MeetingSeries.id).where(MeetingSeries.active)))
    for series_id in series_ids:
        try:
            with store.unit_of_work() as session:
                series = session.get(MeetingSeries, series_id)
                if series is not None and series.active:
                    keep_series_ahead(session, renderer, series, now())
        except Exception:
            log.exception("keeping series %s ahead failed; trying again next tick", series_id)
    current = now()
    with store.reading() as session:
        meeting_ids = list(session.scalars(select(Meeting.id).where(
            Meeting.status == "scheduled",
            Meeting.start > current - MISSED_WINDOW,
            Meeting.start <= current + MAX_OFFSET,
        ).order_by(Meeting.start)))
    for meeting_id in meeting_ids:
        try:
            with store.unit_of_work() as session:
                meeting = session.get(Meeting, meeting_id)
                if meeting is not None and meeting.status == "scheduled":
                    send_due_reminders(session, renderer, meeting, now())
        except Exception:
            log.exception("reminders of meeting %s failed; trying again next tick", meeting_id)
    with store.unit_of_work() as session:
        expire_held_requests(session, renderer, now())
    log.debug("meeting work done at %s", now().isoformat())


# -- peer-input time --------------------------------------------------------------------------


def cutoff(ml: MailingList) -> timedelta:
    return timedelta(days=SIGNUP_CUTOFF_DAYS.get(ml))


def peer_minutes(ml: MailingList, meeting: Meeting) -> int:
    """A meeting's peer-input time: its duration × the list's share, in whole minutes."""
    return int(meeting.duration * PEER_INPUT_SHARE.get(ml) + 1e-9)


def _booked(session: Session, meeting_ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        select(PeerInput.meeting_id, func.sum(PeerInput.minutes))
        .where(PeerInput.meeting_id.in_(meeting_ids),
               PeerInput.status.in_(("reserved", "approved")))
        .group_by(PeerInput.meeting_id)
    ).all()
    return {mid: int(total or 0) for mid, total in rows if mid is not None}


def room(session: Session, ml: MailingList, meeting: Meeting) -> int:
    """Minutes of peer-input time still free at the meeting."""
    return peer_minutes(ml, meeting) - _booked(session, [meeting.id]).get(meeting.id, 0)


def open_for_signup(session: Session, ml: MailingList, now: datetime) -> list[Meeting]:
    """Scheduled meetings whose sign-up has not closed, soonest first."""
    return list(session.scalars(select(Meeting).where(
        Meeting.list_id == ml.id, Meeting.status == "scheduled",
        Meeting.start > now + cutoff(ml),
    ).order_by(Meeting.start, Meeting.id)))


def lock(session: Session, ml: MailingList) -> None:
    """Serialise booking on the list (PostgreSQL row lock; SQLite has one writer anyway)."""
    session.execute(select(MailingList.id).where(MailingList.id == ml.id).with_for_update())


def first_with_room(session: Session, ml: MailingList, minutes: int,
                    now: datetime) -> Meeting | None:
    """The first meeting open for sign-up with `minutes` of peer-input time free."""
    meetings = open_for_signup(session, ml, now)
    booked = _booked(session, [m.id for m in meetings])
    for meeting in meetings:
        if peer_minutes(ml, meeting) - booked.get(meeting.id, 0) >= minutes:
            return meeting
    return None


def reflow(session: Session, ml: MailingList, now: datetime) -> list[tuple[PeerInput,
                                                                         Meeting | None]]:
    """Move waiting and provisional requests into earlier meetings with room, by arrival.

    Approved requests, and those the chair moved (pinned), stay where they are. Returns
    (request, meeting it left) for each request moved. Takes the list's `lock` itself.
    """
    lock(session, ml)
    meetings = open_for_signup(session, ml, now)
    if not meetings:
        return []
    order = {m.id: index for index, m in enumerate(meetings)}
    free = {m.id: peer_minutes(ml, m) for m in meetings}
    for mid, minutes in _booked(session, list(free)).items():
        free[mid] -= minutes
    candidates = list(session.scalars(select(PeerInput).where(
        PeerInput.list_id == ml.id, PeerInput.status.in_(("reserved", "waiting")),
        PeerInput.pinned.is_(False),
    ).order_by(PeerInput.id)))
    left: dict[int, Meeting | None] = {}
    changed = True
    while changed:
        changed = False
        for request in candidates:
            if request.status == "reserved" and request.meeting_id not in order:
                continue  # in a meeting whose sign-up closed: it stays
            limit = order[request.meeting_id] if request.status == "reserved" else len(meetings)
            for meeting in meetings[:limit]:
                if free[meeting.id] >= request.minutes:
                    left.setdefault(request.id, request.meeting)
                    if request.status == "reserved":
                        free[request.meeting_id] += request.minutes
                    free[meeting.id] -= request.minutes
                    request.meeting_id, request.meeting = meeting.id, meeting
                    request.status = "reserved"
                    changed = True
                    break
    session.flush()
    return [(r, left[r.id]) for r in candidates if r.id in left]


def tell_moved(session: Session, renderer: Renderer, ml: MailingList,
               moved: list[tuple[PeerInput, Meeting | None]], now: datetime, why: str) -> None:
    """Tell each requester where their request now is (`why`: moved-up, cancelled, chair)."""
    for request, previous in moved:
        notify(session, renderer, ml, "peer-input-moved.txt", [request.email], now,
               kind="reply", lang=request.lang, request=request, why=why,
               meeting_when=when(request.meeting) if request.meeting else "",
               previous_when=when(previous) if previous else "",
               peer_input_address=ml.role_address(Role.PEER_INPUT))
        audit(session, now, DAEMON, "peer-input-moved",
              f"#{request.id} ({why}) to " + (f"meeting #{request.meeting_id}"
                                             if request.meeting_id else "the waiting list"),
              ml.id)


def expire_held_requests(session: Session, renderer: Renderer, now: datetime) -> int:
    """Non-members' requests nobody approved within the list's held_expiry_days."""
    held = session.scalars(select(PeerInput).where(PeerInput.status == "held")
                           .with_for_update(skip_locked=True)).all()
    expired = 0
    for request in held:
        ml = request.mailing_list
        if request.created_at + timedelta(days=ml.held_expiry_days) > now:
            continue
        request.status, request.decided_at, request.decided_by = "expired", now, DAEMON
        audit(session, now, DAEMON, "peer-input-expired", f"#{request.id} from {request.email}",
              ml.id)
        notify(session, renderer, ml, "peer-input-expired.txt", [request.email], now,
               kind="notice", lang=request.lang, request=request)
        expired += 1
    return expired
