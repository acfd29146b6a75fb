"""Meeting mail to the members (SPEC §5): reminders, moves and cancellations.

They are list mail from the list itself, queued straight for the members (never re-injected
as posts): a text part from a template and an `.ics` part (`ics`). Each planned reminder's
sending (or miss) is a `MeetingReminder` row, unique per meeting and offset, written in the
transaction that queues the mail, so no restart and no second daemon repeats one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.delivery.listmail import footer_text, list_headers
from listserv.delivery.notices import list_context
from listserv.delivery.outbox import ANNOUNCED, enqueue_per_language
from listserv.errors import ListservError
from listserv.mail.addresses import Role
from listserv.mail.mime.copies import distribution_copy
from listserv.mail.render import Renderer
from listserv.mail.wire import message_bytes
from listserv.meetings.booking import (
    MAX_PEER_MINUTES,
    agenda,
    cutoff,
    display_name,
    lock,
    peer_minutes,
    reflow,
    room,
    tell_moved,
)
from listserv.meetings.ics import calendar
from listserv.meetings.times import moment, span, time_lines, when, zone
from listserv.store.audit import DAEMON, audit
from listserv.store.list_settings import declare, duration_minutes, duration_text, durations, items
from listserv.store.models.core import MailingList
from listserv.store.models.features import Meeting, MeetingReminder, PeerInput

log = logging.getLogger(__name__)

MAX_OFFSET = timedelta(days=90)
MAX_OFFSETS = 10


def _zone_name(name: str) -> str:
    try:
        zone(name)
    except ListservError:
        raise ValueError("an IANA time zone such as America/Chicago or Europe/Berlin") from None
    return name


REMINDERS = declare("meetings.reminders", durations(MAX_OFFSET.days, MAX_OFFSETS),
                    ("14d", "1d"),
                    "when reminders go out before the start; `\"\"` or `none` = no reminders")
EXTRA_ZONES = declare("meetings.extra_zones",
                      items(_zone_name, "IANA time zones, comma-separated"), (),
                      "zones shown in reminders after the meeting's zone and UTC")


def reminder_offsets(ml: MailingList) -> list[int]:
    """The list's reminder offsets in minutes, largest (earliest reminder) first."""
    return [duration_minutes(t) for t in REMINDERS.get(ml)]


def meeting_context(session: Session, ml: MailingList, meeting: Meeting,
                    now: datetime, lang: str = "en") -> dict[str, Any]:
    """What the meeting templates say: times (written in `lang`), dial-in, agenda, how to ask
    for time."""
    closes = meeting.start - cutoff(ml)
    peer = peer_minutes(ml, meeting)
    return {
        "meeting": meeting,
        "when": when(meeting, lang),
        "span": span(meeting, lang),
        "times": time_lines(meeting, EXTRA_ZONES.get(ml), lang),
        "dial_in": meeting.dial_in,
        "agenda": [{"name": display_name(r), "project": r.project, "minutes": r.minutes}
                   for r in agenda(session, meeting)],
        "peer_minutes": peer,
        "group_minutes": meeting.duration - peer,
        "free_minutes": room(session, ml, meeting),
        "max_minutes": MAX_PEER_MINUTES,
        "signup_open": now < closes,
        "signup_closes": moment(closes, ZoneInfo(meeting.tz), lang),
        "peer_input_address": ml.role_address(Role.PEER_INPUT),
        "post_address": ml.role_address(Role.POST),
    }


def send_to_members(session: Session, renderer: Renderer, meeting: Meeting, template: str,
                    now: datetime, *, method: str = "PUBLISH",
                    previous: datetime | None = None) -> int:
    """Queue `template` with the meeting's .ics for the members, as list mail; returns how many.

    Built like a distributed post (list headers, prefix, footer) but queued directly: a
    reminder is never re-injected as a post. The text is written once per language the
    members read (`previous`, a move's old start, too); the `.ics` part is the same for all.
    """
    ml = meeting.mailing_list
    meeting.announced_at = meeting.announced_at or now
    ics = calendar(ml, meeting, now, method, meeting_context(session, ml, meeting, now))

    def copy_in(lang: str) -> bytes:
        context = meeting_context(session, ml, meeting, now, lang)
        if previous is not None:
            context["previous"] = moment(previous, ZoneInfo(str(previous.tzinfo)), lang)
        msg = renderer.mail(template, domain=ml.domain, now=now, lang=lang,
                            **list_context(ml), **context)
        msg.add_attachment(ics, maintype="text", subtype="calendar", cte="base64",
                           params={"charset": "utf-8", "method": method},
                           filename=f"{ml.name}-meeting.ics")
        del msg.get_payload()[-1]["MIME-Version"]
        return distribution_copy(message_bytes(msg), list_headers(ml), ml.prefix,
                                 footer_text(renderer, ml, lang))

    return enqueue_per_language(session, ml, copy_in, now=now, kind="meeting",
                                eightbit=renderer.eightbit, delivery=ANNOUNCED)


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
         now: datetime, actor: str, *, quiet: bool = False) -> int:
    """Move a meeting: SEQUENCE rises, the members get an update; returns how many.

    Reminders not yet sent are planned from the new time; one whose new moment has already
    passed is recorded as superseded by the update (which says everything it would). `quiet`
    (`meetings move --quiet`): the members are not mailed; requesters of peer-input time
    that moves up are still told, each on their own.
    """
    if meeting.status != "scheduled":
        raise ListservError(f"meeting {meeting.id} is {meeting.status}")
    if start <= now:
        raise ListservError(f"{start:%Y-%m-%d %H:%M} {start.tzinfo} is in the past")
    before, before_start = when(meeting), meeting.start.astimezone(ZoneInfo(meeting.tz))
    meeting.start, meeting.tz = start.astimezone(UTC), str(start.tzinfo)
    meeting.sequence += 1
    meeting.updated_at = now
    audit(session, now, actor, "meeting-moved", f"#{meeting.id} from {before} to "
          f"{when(meeting)}" + (" (without mail)" if quiet else ""), meeting.list_id)
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
    count = 0 if quiet else send_to_members(session, renderer, meeting, "meeting-moved.txt",
                                            now, previous=before_start)
    tell_moved(session, renderer, ml, reflow(session, ml, now), now, "moved-up")
    return count


def cancel(session: Session, renderer: Renderer, meeting: Meeting, now: datetime,
           actor: str, *, quiet: bool = False) -> int:
    """Cancel a meeting: METHOD:CANCEL to the members; its peer-input requests move on.

    `quiet` (`meetings cancel --quiet`, or a meeting never announced): the members are not
    mailed; the requesters whose peer-input time moves are still told, each on their own.
    """
    if meeting.status == "cancelled":
        raise ListservError(f"meeting {meeting.id} was already cancelled")
    if meeting.start + timedelta(minutes=meeting.duration) <= now:
        raise ListservError(f"meeting {meeting.id} is over")
    ml = meeting.mailing_list
    lock(session, ml)
    meeting.status = "cancelled"
    meeting.sequence += 1
    meeting.updated_at = now
    audit(session, now, actor, "meeting-cancelled", f"#{meeting.id} at {when(meeting)}"
          + (" (without mail)" if quiet else ""), meeting.list_id)
    count = 0 if quiet else send_to_members(session, renderer, meeting,
                                            "meeting-cancelled.txt", now, method="CANCEL")
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
