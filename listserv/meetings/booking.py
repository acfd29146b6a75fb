"""Peer-input time at meetings: how much each has, who is booked where, requests moved up.

Peer-input time is `duration × meetings.peer_input_share` per meeting. Requests take it in
order of arrival, in the first meeting with room whose sign-up has not closed
(`meetings.signup_cutoff_days` before it starts); `reflow` moves provisional and waiting
requests up whenever time frees. Placement locks the list's row, so two routers (or a router
and the chair) never book the same minutes twice. Requests read from mail, and the chair's
decisions on them, are in `peer_input`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.delivery.notices import notify
from listserv.mail.addresses import Role
from listserv.mail.render import Renderer
from listserv.meetings.times import when
from listserv.store.audit import DAEMON, audit
from listserv.store.list_settings import declare, number, whole
from listserv.store.models.core import MailingList
from listserv.store.models.features import Meeting, PeerInput

#: The most minutes of peer input one request may have (and the default).
MAX_PEER_MINUTES = 30

PEER_INPUT_SHARE = declare("meetings.peer_input_share", number(0, 1), 0.5,
                           "part of each meeting for peer input; whole minutes, rounded down")
SIGNUP_CUTOFF_DAYS = declare("meetings.signup_cutoff_days", whole(0, 90, unit="days"), 2,
                             "requests book only meetings starting more than this many days "
                             "ahead (time for the chair to approve, and for the last reminder "
                             "to show the agenda)")


def display_name(request: PeerInput) -> str:
    """What list mail calls a requester: the name (the chair may edit it), never the address."""
    return request.name or "A member"


def agenda(session: Session, meeting: Meeting) -> list[PeerInput]:
    """The meeting's approved peer-input slots, in order of arrival."""
    return list(session.scalars(select(PeerInput).where(
        PeerInput.meeting_id == meeting.id, PeerInput.status == "approved"
    ).order_by(PeerInput.id)))


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
               meeting_when=when(request.meeting, request.lang) if request.meeting else "",
               previous_when=when(previous, request.lang) if previous else "",
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
