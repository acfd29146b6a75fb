"""Meetings on the calendar (SPEC §5): one-offs, the recurring series, the scheduler's pass.

A series keeps an RFC 5545 RRULE whose occurrences keep their wall-clock time in its zone
(12:00 Chicago stays 12:00 across DST). The scheduler keeps each active series two scheduled
meetings ahead, sends the reminders that are due (`reminders`) and expires held peer-input
requests (`booking`); each series and each meeting is its own unit of work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

from dateutil.rrule import rrule, rrulestr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.mail.render import Renderer
from listserv.meetings.booking import expire_held_requests, reflow, tell_moved
from listserv.meetings.reminders import MAX_OFFSET, send_due_reminders
from listserv.meetings.times import when, zone
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.models.core import MailingList
from listserv.store.models.features import Meeting, MeetingSeries

log = logging.getLogger(__name__)

#: Scheduled meetings a series keeps ahead of now.
AHEAD = 2
#: Reminders of meetings that began longer ago than this are no longer looked at.
MISSED_WINDOW = timedelta(days=7)
MAX_DURATION = 24 * 60

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
