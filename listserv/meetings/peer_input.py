"""Peer-input requests (SPEC §5): read from mail, booked in meetings, decided by the chair.

A member mails `NAME-peer-input@` (or asks for "peer input" on `-request`): the subject is the
project, the body the help wanted, an optional `minutes: N` line the time (default and cap
30). The request reserves time provisionally in the first meeting with room (see
`meetings.reflow`), or waits; the chair approves, declines (the time goes to the next
request, whose requester is told), moves or edits it. List mail shows only the requester's
name and the project title; the help wanted stays between requester and chair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.delivery.notices import notify, notify_chair
from listserv.errors import ListservError
from listserv.mail.addresses import Role
from listserv.mail.headers import from_name, header_text
from listserv.mail.message import parse
from listserv.mail.render import Renderer, one_line
from listserv.mail.text import message_text
from listserv.mail.tokens import TOKEN_DAYS, new_token
from listserv.meetings.booking import (
    MAX_PEER_MINUTES,
    first_with_room,
    lock,
    peer_minutes,
    reflow,
    room,
    tell_moved,
)
from listserv.meetings.queries import find_meeting
from listserv.meetings.times import when
from listserv.store.audit import DAEMON, audit
from listserv.store.lookup import required
from listserv.store.models.core import MAX_NAME_LENGTH, Inbound, MailingList, Member, Request
from listserv.store.models.features import Meeting, PeerInput

MAX_PROJECT = 200
MAX_HELP = 20_000
#: Requests that hold, or wait for, time (not yet decided or over).
OPEN = ("held", "reserved", "waiting", "approved")

_MINUTES_LINE = re.compile(r"^[ \t>*]*(?:minutes?|mins?)[ \t]*[:=][ \t]*(.*?)[ \t]*$",
                           re.IGNORECASE | re.MULTILINE)
_NUMBER = re.compile(r"\d{1,6}")
_REPLY = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr|rv|res)\s*:\s*)+", re.IGNORECASE)
# "Peer input: X", "Request for peer input - X", "peer-input request on X" (on -request).
_PEER_WORDS = re.compile(
    r"^\s*(?:(?:a\s+)?request(?:ing)?\s+(?:for\s+)?)?peer[- ]?input(?:\s+request)?"
    r"(?:\s+(?:for|on|about))?\s*[:\-\u2013\u2014]?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a peer-input mail asks for."""

    project: str
    help: str
    minutes: int
    requested: int  # the minutes asked for (0: not given or unreadable)
    note: str  # "" | "capped" | "unreadable"

    @property
    def missing(self) -> list[str]:
        """What the request lacks, in words for the reply."""
        missing = []
        if not self.project:
            missing.append("a subject: the name of your project")
        if not self.help:
            missing.append("a message: the help you would like from the group")
        return missing


def read(msg: EmailMessage, list_name: str, *, via_request: bool = False) -> Reading:
    """The project (subject), help wanted (own words of the body) and minutes of a mail."""
    subject = _REPLY.sub("", header_text(msg, "Subject"))
    subject = re.sub(rf"^\s*\[{re.escape(list_name)}\]\s*", "", subject, flags=re.IGNORECASE)
    if via_request:
        subject = _PEER_WORDS.sub("", subject, count=1)
    project = one_line(subject).strip(" -:")[:MAX_PROJECT]
    text = message_text(msg)
    given = _MINUTES_LINE.search(text)
    body = _MINUTES_LINE.sub("", text).strip()
    minutes, requested, note = MAX_PEER_MINUTES, 0, ""
    if given is not None:
        number = _NUMBER.search(given.group(1))
        requested = int(number.group()) if number else 0
        if requested < 1:
            note = "unreadable"
        elif requested > MAX_PEER_MINUTES:
            note = "capped"
        else:
            minutes = requested
    return Reading(project, body[:MAX_HELP], minutes, requested, note)


def _context(request: PeerInput) -> dict[str, Any]:
    meeting = request.meeting
    return {"request": request, "meeting_when": when(meeting) if meeting else "",
            "max_minutes": MAX_PEER_MINUTES,
            "peer_input_address": request.mailing_list.role_address(Role.PEER_INPUT)}


def _open_duplicate(session: Session, ml: MailingList, email: str,
                    project: str) -> PeerInput | None:
    for request in session.scalars(select(PeerInput).where(
            PeerInput.list_id == ml.id, PeerInput.email == email,
            PeerInput.status.in_(OPEN))):
        if request.project.casefold() == project.casefold():
            return request
    return None


def submit(session: Session, renderer: Renderer, ml: MailingList, email: str, name: str,
           reading: Reading, now: datetime, *, lang: str = "en",
           inbound_id: int | None = None, acknowledge: bool = True) -> PeerInput:
    """A member's request: time reserved in the first meeting with room, or waiting.

    The requester gets an acknowledgement naming the meeting (or saying it waits), the
    owners a notice. The same project asked for again while open is acknowledged again.
    """
    lock(session, ml)
    duplicate = _open_duplicate(session, ml, email, reading.project)
    if duplicate is not None:
        audit(session, now, DAEMON, "peer-input-repeated", f"#{duplicate.id} from {email}",
              ml.id)
        if acknowledge:
            notify(session, renderer, ml, "peer-input-received.txt", [email], now,
                   kind="reply", lang=duplicate.lang, duplicate=True, note="",
                   **_context(duplicate))
        return duplicate
    meeting = first_with_room(session, ml, reading.minutes, now)
    request = PeerInput(
        list_id=ml.id, meeting_id=meeting.id if meeting else None, email=email,
        name=" ".join(name.split())[:MAX_NAME_LENGTH], project=reading.project,
        help=reading.help, minutes=reading.minutes,
        requested_minutes=reading.requested or reading.minutes,
        status="reserved" if meeting else "waiting", lang=lang, inbound_id=inbound_id,
        created_at=now,
    )
    request.meeting = meeting
    request.mailing_list = ml
    session.add(request)
    session.flush()
    where = f"meeting #{meeting.id}" if meeting else "waiting for room"
    audit(session, now, DAEMON, "peer-input-request",
          f"#{request.id} from {email}: {request.minutes} minutes, {where}", ml.id)
    if acknowledge:
        notify(session, renderer, ml, "peer-input-received.txt", [email], now, kind="reply",
               lang=lang, duplicate=False, note=reading.note, **_context(request))
    notify(session, renderer, ml, "notice-peer-input-request.txt",
           [o.email for o in ml.owners], now, kind="notice", **_context(request))
    return request


#: The `Request.kind` of a peer-input request waiting for its requester's confirmation.
CONFIRM_KIND = "peer_input"


def ask_to_confirm(session: Session, renderer: Renderer, ml: MailingList, email: str,
                   reading: Reading, now: datetime, *, lang: str = "en",
                   inbound_id: int | None = None) -> str:
    """A member's request from a sender the mail does not prove (SPEC §2): nothing is reserved;
    a confirmation goes to the member, and the request is read again from its stored mail
    (`inbound_id`) when she confirms, and queued then.

    One confirmation waits per member however many such requests arrive: while one waits the
    others change nothing and send nothing. The confirmation quotes nothing the mail says
    (it may be forged): only the minutes and when it came. Returns the outcome for the log.
    """
    waiting = session.scalar(select(Request).where(
        Request.list_id == ml.id, Request.kind == CONFIRM_KIND, Request.email == email,
        Request.status == "confirming", Request.expires_at > now).limit(1))
    if waiting is not None:
        audit(session, now, DAEMON, "peer-input-confirmation-waiting",
              f"inbound #{inbound_id} from {email}: request #{waiting.id} already waits", ml.id)
        return f"peer input from {email} unproven: confirmation #{waiting.id} already waits"
    request = Request(list_id=ml.id, kind=CONFIRM_KIND, email=email, lang=lang,
                      status="confirming", token=new_token(), requested_by=email,
                      inbound_id=inbound_id, created_at=now,
                      expires_at=now + timedelta(days=TOKEN_DAYS))
    session.add(request)
    session.flush()
    sent = notify(session, renderer, ml, "confirm-peer-input.txt", [email], now, kind="confirm",
                  lang=lang, request=request, minutes=reading.minutes, received=now,
                  confirm_address=ml.role_address(Role.CONFIRM, request.token or ""))
    if not sent:  # over the cap: nobody can confirm it, so nothing waits
        session.delete(request)
        return f"peer input from {email} unproven: the confirmation is over the cap, not sent"
    audit(session, now, DAEMON, "peer-input-confirmation",
          f"request #{request.id} for {email} (inbound #{inbound_id})", ml.id)
    return f"peer input from {email} unproven: confirmation #{request.id} sent"


def confirmed(session: Session, renderer: Renderer, request: Request, now: datetime) -> str:
    """The member confirmed a request her mail did not prove: read it again from its stored
    mail and book it now, so it queues by the confirmation's time (SPEC §2). Returns the
    outcome for the log."""
    ml = request.mailing_list
    request.status, request.decided_at, request.decided_by = "done", now, request.email
    member = session.scalar(select(Member).where(Member.list_id == ml.id,
                                                 Member.email == request.email))
    inbound = session.get(Inbound, request.inbound_id) if request.inbound_id else None
    if member is None or member.status not in ("active", "disabled"):
        why = f"{request.email} is no longer a member"
    elif inbound is None or not inbound.raw:
        why = "its mail is no longer kept"
    else:
        msg = parse(inbound.raw)
        reading = read(msg, ml.name, via_request=inbound.role == Role.REQUEST.value)
        booked = submit(session, renderer, ml, request.email, member.name or from_name(msg),
                        reading, now, lang=request.lang, inbound_id=inbound.id)
        where = f"meeting #{booked.meeting_id}" if booked.meeting_id else "waiting for room"
        return f"peer input #{booked.id} confirmed by {request.email}: {where}"
    audit(session, now, DAEMON, "peer-input-confirmation-void",
          f"request #{request.id}: {why}", ml.id)
    return f"peer input confirmation #{request.id} void: {why}"


def hold(session: Session, renderer: Renderer, ml: MailingList, email: str, name: str,
         reading: Reading, now: datetime, *, lang: str = "en",
         inbound_id: int | None = None) -> PeerInput:
    """A non-member's request, held for the chair (as a non-member's post is)."""
    request = PeerInput(
        list_id=ml.id, email=email, name=" ".join(name.split())[:MAX_NAME_LENGTH],
        project=reading.project, help=reading.help, minutes=reading.minutes,
        requested_minutes=reading.requested or reading.minutes, status="held", lang=lang,
        inbound_id=inbound_id, created_at=now,
    )
    request.mailing_list = ml
    session.add(request)
    session.flush()
    audit(session, now, DAEMON, "peer-input-held",
          f"#{request.id} from {email}: the sender is not a member", ml.id)
    notify_chair(session, renderer, ml, "notice-peer-input-held.txt", now, decide="peer_input",
                 item_id=request.id, expires=now + timedelta(days=ml.held_expiry_days),
                 **_context(request))
    return request


# -- the chair ---------------------------------------------------------------------------------


def find_peer_input(session: Session, ref: str) -> PeerInput:
    """A peer-input request by the number the chair gives."""
    return required(session, PeerInput, ref, "peer-input request")


def requests_of(session: Session, ml: MailingList | None, now: datetime, *,
                everything: bool = False) -> list[PeerInput]:
    """Open requests (or all), in order of arrival; those of meetings over are left out."""
    query = select(PeerInput).order_by(PeerInput.id)
    if ml is not None:
        query = query.where(PeerInput.list_id == ml.id)
    if everything:
        return list(session.scalars(query))
    found = session.scalars(query.where(PeerInput.status.in_(OPEN)))
    return [r for r in found if r.meeting is None
            or r.meeting.start + timedelta(minutes=r.meeting.duration) > now]


def request_dict(request: PeerInput) -> dict[str, Any]:
    meeting = request.meeting
    return {
        "id": str(request.id),
        "meeting_id": str(meeting.id) if meeting else "",
        "requester": request.name or request.email,
        "project": request.project,
        "minutes": request.minutes,
        "status": request.status,
        "list": request.mailing_list.address,
        "email": request.email,
        "name": request.name,
        "meeting": when(meeting) if meeting else "",
        "requested_minutes": request.requested_minutes,
        "received": request.created_at.isoformat(),
        "help": request.help,
        "reason": request.reason,
    }


def approve(session: Session, renderer: Renderer, request: PeerInput, now: datetime,
            actor: str) -> str:
    """Confirm a provisional reservation; admit a held one (booked at once where it fits)."""
    ml = request.mailing_list
    if request.status == "held":
        if not request.project:
            raise ListservError(f"request {request.id} has no project title; give it one "
                                f"first: listserv peer-input edit {request.id} --project ...")
        lock(session, ml)
        meeting = first_with_room(session, ml, request.minutes, now)
        request.meeting_id, request.meeting = (meeting.id, meeting) if meeting else (None, None)
        request.status = "approved" if meeting else "waiting"
    elif request.status == "reserved":
        request.status = "approved"
    elif request.status == "waiting":
        raise ListservError(f"request {request.id} has no meeting yet (no room); give it one: "
                            f"listserv peer-input move {request.id} --to MEETING")
    else:
        raise ListservError(f"request {request.id} is {request.status}")
    request.decided_at, request.decided_by = now, actor
    session.flush()
    place = f"meeting #{request.meeting_id}" if request.meeting else "waiting for room"
    audit(session, now, actor, "peer-input-approved", f"#{request.id} ({place})", ml.id)
    notify(session, renderer, ml, "peer-input-approved.txt", [request.email], now,
           kind="reply", lang=request.lang, **_context(request))
    if request.meeting is None:
        return f"admitted {request.id}: no meeting has room yet, it waits"
    return f"approved {request.id}: {request.minutes} minutes at meeting {request.meeting_id}"


def decline(session: Session, renderer: Renderer, request: PeerInput, now: datetime,
            actor: str, reason: str) -> str:
    """Decline a request and mail the reason; its time goes to the next request that fits."""
    if request.status not in OPEN:
        raise ListservError(f"request {request.id} is {request.status}")
    ml = request.mailing_list
    lock(session, ml)
    request.status, request.decided_at, request.decided_by = "declined", now, actor
    request.reason = reason.strip()
    session.flush()
    audit(session, now, actor, "peer-input-declined", f"#{request.id}: {reason}", ml.id)
    notify(session, renderer, ml, "peer-input-declined.txt", [request.email], now,
           kind="reply", lang=request.lang, reason=request.reason, **_context(request))
    moved = reflow(session, ml, now)
    tell_moved(session, renderer, ml, moved, now, "moved-up")
    return f"declined {request.id}" + (f"; {len(moved)} waiting request(s) moved up"
                                       if moved else "")


def _check_minutes(minutes: int | None) -> None:
    if minutes is not None and not 0 < minutes <= MAX_PEER_MINUTES:
        raise ListservError(f"--minutes {minutes}: from 1 to {MAX_PEER_MINUTES}")


def _fits(session: Session, request: PeerInput, meeting: Meeting, minutes: int) -> None:
    free = room(session, request.mailing_list, meeting)
    if request.meeting_id == meeting.id and request.status in ("reserved", "approved"):
        free += request.minutes
    if free < minutes:
        raise ListservError(
            f"meeting {meeting.id} has {max(free, 0)} of its "
            f"{peer_minutes(request.mailing_list, meeting)} peer-input minutes free; "
            f"this request needs {minutes}")


def move(session: Session, renderer: Renderer, request: PeerInput, meeting_ref: str,
         now: datetime, actor: str, minutes: int | None = None) -> str:
    """Move a request to another meeting (sign-up cutoff or not); the requester is told."""
    if request.status not in ("reserved", "waiting", "approved"):
        raise ListservError(f"request {request.id} is {request.status}"
                            + ("; approve or decline it first" if request.status == "held"
                               else ""))
    _check_minutes(minutes)
    meeting = find_meeting(session, meeting_ref)
    ml = request.mailing_list
    if meeting.list_id != ml.id:
        raise ListservError(f"meeting {meeting.id} is not a meeting of {ml.address}")
    if meeting.status != "scheduled" or meeting.start <= now:
        raise ListservError(f"meeting {meeting.id} is "
                            f"{'cancelled' if meeting.status != 'scheduled' else 'over'}")
    lock(session, ml)
    _fits(session, request, meeting, minutes or request.minutes)
    previous = request.meeting
    request.meeting_id, request.meeting = meeting.id, meeting
    request.minutes = minutes or request.minutes
    request.pinned = True
    if request.status == "waiting":
        request.status = "reserved"
    session.flush()
    audit(session, now, actor, "peer-input-moved", f"#{request.id} to meeting #{meeting.id}",
          ml.id)
    tell_moved(session, renderer, ml, [(request, previous)], now, "chair")
    tell_moved(session, renderer, ml, reflow(session, ml, now), now, "moved-up")
    return f"moved {request.id} to meeting {meeting.id} ({when(meeting)})"


def edit(session: Session, renderer: Renderer, request: PeerInput, now: datetime, actor: str,
         *, name: str | None = None, project: str | None = None,
         minutes: int | None = None) -> str:
    """Change what list mail shows (name, project title) or the minutes of a request."""
    if request.status not in OPEN:
        raise ListservError(f"request {request.id} is {request.status}")
    _check_minutes(minutes)
    changed = []
    if name is not None:
        request.name = one_line(name)[:MAX_NAME_LENGTH]
        changed.append("name")
    if project is not None:
        if not one_line(project):
            raise ListservError("--project cannot be empty")
        request.project = one_line(project)[:MAX_PROJECT]
        changed.append("project")
    if minutes is not None and minutes != request.minutes:
        ml = request.mailing_list
        lock(session, ml)
        if request.meeting is not None and request.status in ("reserved", "approved"):
            _fits(session, request, request.meeting, minutes)
        freed = minutes < request.minutes
        request.minutes = minutes
        changed.append("minutes")
        session.flush()
        if freed:
            tell_moved(session, renderer, ml, reflow(session, ml, now), now, "moved-up")
    if not changed:
        raise ListservError("nothing to change (give --name, --project or --minutes)")
    audit(session, now, actor, "peer-input-edited", f"#{request.id}: {', '.join(changed)}",
          request.list_id)
    return f"changed the {', '.join(changed)} of request {request.id}"
