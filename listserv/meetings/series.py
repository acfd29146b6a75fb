"""Meetings on the calendar (SPEC §5): one-offs, the recurring series, the scheduler's pass.

A series keeps an RFC 5545 RRULE whose occurrences keep their wall-clock time in its zone
(12:00 Chicago stays 12:00 across DST). The scheduler keeps each active series two scheduled
meetings ahead, sends the reminders that are due (`reminders`) and expires held peer-input
requests (`booking`); each series and each meeting is its own unit of work.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

from dateutil.rrule import rrule, rrulestr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.mail.render import Renderer
from listserv.meetings.booking import expire_held_requests, reflow, tell_moved
from listserv.meetings.reminders import MAX_OFFSET, cancel, send_due_reminders
from listserv.meetings.times import parse_at, when, zone
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


def first_start(rule: str, at: str, tz: str, now: datetime) -> datetime:
    """The series' first start (DTSTART) from the chair's `--at`, aware in zone `tz`.

    `HH:MM`: the rule's first occurrence after now, at that time. `YYYY-MM-DD HH:MM`: that
    moment, which must be an occurrence of the rule (dateutil would silently begin at the next
    one, and a quarter would be lost).
    """
    if re.fullmatch(r"\d{1,2}:\d{2}", at.strip()):
        seed = parse_at(f"{now.astimezone(zone(tz)):%Y-%m-%d} {at.strip()}", tz)
        start = next(series_starts(check_rrule(rule, seed), seed, now), None)
        if start is None:
            raise ListservError(f"{rule}: the series has no meeting after now")
        return start
    start = parse_at(at, tz)
    rule = check_rrule(rule, start)
    if next(series_starts(rule, start), None) != start:
        # The nearest occurrence, before or after: most often the day the chair meant.
        seed = start - timedelta(days=366)
        near = min(islice(series_starts(rule, seed, seed), 800),
                   key=lambda s: abs(s - start), default=None)
        hint = f"; the nearest is {near:%A %Y-%m-%d %H:%M}" if near else ""
        raise ListservError(f"--at {start:%A %Y-%m-%d %H:%M} is not an occurrence of "
                            f"{rule}{hint}")
    return start


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


def current_series(session: Session, ml: MailingList) -> MeetingSeries | None:
    """The list's active series, if it has one."""
    return session.scalars(select(MeetingSeries).where(
        MeetingSeries.list_id == ml.id, MeetingSeries.active).order_by(MeetingSeries.id)).first()


def create_series(session: Session, renderer: Renderer, ml: MailingList, rule: str,
                  first: datetime, duration: int, dial_in: str, now: datetime, actor: str,
                  *, replace: bool = False,
                  changes: list[str] | None = None) -> tuple[MeetingSeries, list[Meeting]]:
    """The list's recurring series from DTSTART `first`; its next meetings are made at once.

    With `replace`, the current series ends (`_retire`); `changes` gets a line for each of
    its meetings that was removed, kept or taken over by the new series.
    """
    dial_in = _check_details(duration, dial_in)
    rule = check_rrule(rule, first)
    if next(series_starts(rule, first, now), None) is None:
        raise ListservError(f"--rrule {rule}: the series has no meeting after now")
    current = session.scalars(
        select(MeetingSeries).where(MeetingSeries.list_id == ml.id, MeetingSeries.active)
    ).all()
    if current and not replace:
        raise ListservError(f"{ml.address} has a series already (#{current[0].id}); add "
                            "--replace to end it")
    series = MeetingSeries(list_id=ml.id, rrule=rule, first_start=first.astimezone(UTC),
                           tz=str(first.tzinfo), duration=duration, dial_in=dial_in,
                           active=True, created_at=now)
    session.add(series)
    session.flush()
    for old in current:
        old.active = False
        audit(session, now, actor, "meeting-series-ended", f"#{old.id}", ml.id)
        retired = _retire(session, renderer, old, series, now, actor)
        if changes is not None:
            changes.extend(retired)
    audit(session, now, actor, "meeting-series", f"#{series.id}: {rule} from "
          f"{first:%Y-%m-%d %H:%M} {series.tz}, {duration} minutes", ml.id)
    return series, keep_series_ahead(session, renderer, series, now)


def _retire(session: Session, renderer: Renderer, old: MeetingSeries, new: MeetingSeries,
            now: datetime, actor: str) -> list[str]:
    """The old series' meetings still ahead, when a new series replaces it.

    One never announced to the members is removed without mail (it was a mistake nobody
    heard of). One they were told of stays, and is not doubled: at an instant of the new
    series it becomes that occurrence; elsewhere it stays for the chair to keep or cancel.
    Requesters of peer-input time in a removed meeting are told where their request went.
    """
    first = new.first_start.astimezone(zone(new.tz))
    lines: list[str] = []
    ahead = session.scalars(select(Meeting).where(
        Meeting.series_id == old.id, Meeting.status == "scheduled", Meeting.start > now,
    ).order_by(Meeting.start)).all()
    for meeting in ahead:
        if meeting.announced_at is None:
            cancel(session, renderer, meeting, now, actor, quiet=True)
            audit(session, now, actor, "meeting-removed",
                  f"#{meeting.id} at {when(meeting)}: never announced, replaced by series "
                  f"#{new.id}", meeting.list_id)
            lines.append(f"removed meeting {meeting.id} ({when(meeting)}): never announced, "
                         "nobody mailed")
            session.delete(meeting)
        elif next(series_starts(new.rrule, first, meeting.start - timedelta(seconds=1)),
                  None) == meeting.start:
            meeting.series_id, meeting.occurrence = new.id, meeting.start
            lines.append(f"kept meeting {meeting.id} ({when(meeting)}): announced, and an "
                         f"occurrence of the new series")
        else:
            lines.append(f"kept meeting {meeting.id} ({when(meeting)}): the members were told "
                         f"of it; `listserv meetings cancel {meeting.id}` if it is not wanted")
    session.flush()
    return lines


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


def due_work(store: Store, renderer: Renderer, now: datetime) -> None:
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
                    keep_series_ahead(session, renderer, series, now)
        except Exception:
            log.exception("keeping series %s ahead failed; trying again next tick", series_id)
    current = now
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
                    send_due_reminders(session, renderer, meeting, now)
        except Exception:
            log.exception("reminders of meeting %s failed; trying again next tick", meeting_id)
    with store.unit_of_work() as session:
        expire_held_requests(session, renderer, now)
    log.debug("meeting work done at %s", now.isoformat())
