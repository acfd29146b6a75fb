"""One decision of the chair on one waiting item, whichever way she gives it (SPEC §2, §4).

The chair's replies by mail (`chair.replies`) and the command line (`listserv requests approve
ID --as …`, `requests ignore`, `held discard ID --as …`) come here; each verb calls the one
function that already does that decision (`chair.actions` for held posts,
`membership.subscriptions` for requests, `meetings.peer_input` for peer-input requests,
`column.desk` for held column follow-ups, as `submissions approve-follow-up` /
`discard-follow-up` do), so no decision is written twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from listserv.chair.actions import (
    approve_held,
    discard_held,
    find_held,
    find_membership_request,
    may_mail_sender,
    reject_held,
)
from listserv.column import desk
from listserv.errors import ListservError
from listserv.mail.render import Renderer
from listserv.meetings import peer_input
from listserv.membership import subscriptions as membership
from listserv.store.audit import audit
from listserv.store.models.core import Held, MailingList, Request
from listserv.store.models.features import SubmissionRevision

#: What the chair may read an unclear request or a held post as (`subscribe 12`, `--as
#: unsubscribe`): its sender is asked to confirm.
READ_AS = ("subscribe", "unsubscribe")
#: ... and an unclear request may be `ignore`d.
UNCLEAR_ANSWERS = (*READ_AS, "ignore")
#: The verbs that act on each kind of item.
APPLIES = {
    "held": ("approve", "approve_add", "reject", "discard", *READ_AS),
    "request": ("approve", "reject", "discard"),
    "unclear": (*UNCLEAR_ANSWERS, "discard"),
    "peer_input": ("approve", "reject"),
    "follow_up": ("approve", "discard"),
}
#: ... and those a summary's `all` does not reach: `subscribe all` reads the unclear requests,
#: never every held post as a join.
NOT_BY_ALL = {"held": READ_AS}


def answer_unclear(session: Session, renderer: Renderer, request: Request, answer: str,
                   now: datetime, actor: str) -> str:
    """The chair reads an unclear request as `subscribe` or `unsubscribe`, or `ignore`s it.

    Reading it sends the confirmation to the requester, as if they had asked clearly: nobody
    joins or leaves without confirming. `ignore` closes it without mail.
    """
    if answer not in UNCLEAR_ANSWERS:
        raise ListservError(f"an unclear request is read as {', '.join(UNCLEAR_ANSWERS)}")
    if request.kind != "unclear" or request.status != "waiting":
        raise ListservError(f"request {request.id} is not an unclear request waiting for you")
    ml = request.mailing_list
    request.decided_at, request.decided_by = now, actor
    if answer == "ignore":
        request.status = "ignored"
        audit(session, now, actor, "request-ignored", f"#{request.id} from {request.email}",
              ml.id)
        return f"request {request.id} from {request.email}: ignored"
    request.status = "done"
    audit(session, now, actor, f"request-read-as-{answer}", f"#{request.id} from "
          f"{request.email}", ml.id)
    return _ask_to_confirm(session, renderer, ml, answer, request.email, now,
                           f"request {request.id}", lang=request.lang, name=request.name,
                           inbound_id=request.inbound_id)


def read_held_as_request(session: Session, renderer: Renderer, held: Held, answer: str,
                         now: datetime, actor: str) -> str:
    """The chair reads a held post as the join or leave it is (`subscribe`, `unsubscribe`: a
    post held because "it may be a request"): it is not distributed, and its sender is asked
    to confirm, as for an unclear request the chair reads."""
    if not may_mail_sender(held):
        raise ListservError(f"post {held.id}: its sender ({held.sender or 'none'}) cannot be "
                            "asked to confirm: no address, or an automatic one")
    ml = held.mailing_list
    discard_held(session, held, now, actor, action=f"held-read-as-{answer}")
    return _ask_to_confirm(session, renderer, ml, answer, held.sender, now,
                           f"post {held.id} (not distributed)", lang=held.lang,
                           inbound_id=held.inbound_id)


def _ask_to_confirm(session: Session, renderer: Renderer, ml: MailingList, answer: str,
                    email: str, now: datetime, label: str, *, lang: str, name: str = "",
                    inbound_id: int | None = None) -> str:
    """Ask `email` to confirm the join or leave the chair read (`answer`); what was done."""
    member = membership.find_member(session, ml, email) is not None
    if answer == "subscribe" and member:
        return f"{label}: {email} is already a member"
    if answer == "unsubscribe" and not member:
        return f"{label}: {email} is not a member"
    sent = membership.ask_to_confirm(session, renderer, ml, answer, email, now, lang=lang,
                                     requested_by=email, name=name, inbound_id=inbound_id)
    if not sent:
        return (f"{label}: no confirmation could be sent to {email} today (too much mail to "
                "that address)")
    return f"{label}: {answer} confirmation sent to {email}"


def kind_of(session: Session, kind: str, item_id: int) -> str:
    """The kind of item for `APPLIES`: an unclear request is told from a waiting join."""
    if kind == "request":
        request = session.get(Request, item_id)
        if request is not None and request.kind == "unclear":
            return "unclear"
    return kind


def decide(session: Session, renderer: Renderer, ml: MailingList, kind: str, item_id: int,
           verb: str, reason: str, now: datetime, actor: str, *, hosted: bool = False,
           trusted_authserv_id: str | None = None) -> str:
    """Do `verb` (approve, approve_add, reject, discard, subscribe, unsubscribe, ignore) to the
    item `kind` `item_id` of `ml`; returns what was done, in one line.

    Raises `ListservError` when the verb does not apply or the item is not waiting.
    """
    ref = str(item_id)
    applies_to = kind_of(session, kind, item_id)
    if verb not in APPLIES[applies_to]:
        what = {"held": "a held post", "request": "a join request",
                "unclear": "an unclear request", "peer_input": "a peer-input request",
                "follow_up": "a held column follow-up"}
        raise ListservError(f"{verb.replace('_', ' and ')} does not apply to {what[applies_to]}")
    if kind == "held":
        held = find_held(session, ref)
        _same_list(held.list_id, ml, f"held message {ref}")
        if verb == "discard":
            discard_held(session, held, now, actor)
            return f"post {ref} from {held.sender}: discarded"
        if verb in READ_AS:
            return read_held_as_request(session, renderer, held, verb, now, actor)
        if verb == "reject":
            reject_held(session, renderer, held, now, actor, reason)
            return f"post {ref} from {held.sender}: rejected" + (f" ({reason})" if reason else "")
        count = approve_held(session, renderer, held, now, actor,
                             add_member_too=verb == "approve_add", hosted=hosted,
                             trusted_authserv_id=trusted_authserv_id)
        added = ", and the sender subscribed" if verb == "approve_add" else ""
        return f"post {ref} from {held.sender}: approved, queued for {count} members{added}"
    if kind == "request":
        request = find_membership_request(session, ref)
        _same_list(request.list_id, ml, f"request {ref}")
        if request.kind == "unclear":
            answer = "ignore" if verb == "discard" else verb
            return answer_unclear(session, renderer, request, answer, now, actor)
        if verb == "approve":
            return f"request {ref}: " + membership.approve(session, renderer, request, now,
                                                           actor)
        membership.deny(session, renderer, request, now, actor, reason, tell=verb == "reject")
        return f"request {ref} from {request.email}: " + (
            "refused" if verb == "reject" else "discarded (not told)")
    if kind == "follow_up":
        return _follow_up(session, renderer, ml, ref, verb, now, actor)
    request_pi = peer_input.find_peer_input(session, ref)
    _same_list(request_pi.list_id, ml, f"peer-input request {ref}")
    if request_pi.status != "held":
        raise ListservError(f"peer-input request {ref} is {request_pi.status}")
    if verb == "approve":
        return "peer input " + peer_input.approve(session, renderer, request_pi, now, actor)
    return "peer input " + peer_input.decline(session, renderer, request_pi, now, actor, reason)


def _follow_up(session: Session, renderer: Renderer, ml: MailingList, ref: str, verb: str,
               now: datetime, actor: str) -> str:
    """A held column follow-up made the next revision (`approve`) or dropped (`discard`)."""
    row = session.get(SubmissionRevision, int(ref))
    if row is None:
        raise ListservError(f"no held follow-up {ref}")
    _same_list(row.submission.list_id, ml, f"follow-up {ref}")
    # The command line's own lookup: only a follow-up still held is found.
    revision = desk.find_follow_up(row.submission, ref)
    if verb == "approve":
        return desk.approve_follow_up(session, renderer, revision, now, actor)
    return desk.discard_follow_up(session, revision, now, actor)


def _same_list(list_id: int, ml: MailingList, what: str) -> None:
    if list_id != ml.id:
        raise ListservError(f"{what} is not on {ml.address}")
