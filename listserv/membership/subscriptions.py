"""Joining and leaving (SPEC §2): confirmations, goodbyes with an undo, the chair's approval.

Shared by the request, join, leave and confirm handlers and by `listserv requests …`. Each
function changes state and queues its mail in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from listserv.delivery.notices import notify, notify_chair
from listserv.digests import sending as digests
from listserv.errors import ListservError
from listserv.mail.addresses import Role, normalize
from listserv.mail.render import Renderer
from listserv.mail.tokens import TOKEN_DAYS, new_token
from listserv.meetings.queries import upcoming
from listserv.store.audit import DAEMON, audit
from listserv.store.lookup import revoke_open_requests
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList, Member, Request


def find_member(session: Session, ml: MailingList, email: str) -> Member | None:
    """The membership of `email` in `ml`, if any."""
    return session.scalar(
        select(Member).where(Member.list_id == ml.id, Member.email == normalize(email))
    )


def _request(session: Session, ml: MailingList, kind: str, email: str, now: datetime, *,
             lang: str, name: str = "", delivery: str = "regular", requested_by: str = "",
             inbound_id: int | None = None) -> Request:
    request = Request(
        list_id=ml.id, kind=kind, email=normalize(email), name=name[:MAX_NAME_LENGTH],
        delivery=delivery, lang=lang, status="confirming", token=new_token(),
        requested_by=requested_by, inbound_id=inbound_id, created_at=now,
        expires_at=now + timedelta(days=TOKEN_DAYS),
    )
    session.add(request)
    session.flush()
    return request


#: The confirmation template of each kind of request.
CONFIRM_TEMPLATES = {"subscribe": "confirm-sub-request.txt",
                     "unsubscribe": "confirm-unsub-request.txt",
                     "set": "confirm-set-request.txt"}
#: Kinds a member asks for herself, of which one per action waits at a time (SPEC §2: however
#: many forged mails ask, she gets one confirmation).
ONE_PENDING = frozenset({"unsubscribe", "set"})


def pending(session: Session, ml: MailingList, kind: str, email: str, now: datetime,
            delivery: str = "regular") -> Request | None:
    """The open confirmation of `kind` (for `set`: to `delivery`) waiting at `email`."""
    query = select(Request).where(
        Request.list_id == ml.id, Request.kind == kind, Request.email == normalize(email),
        Request.status == "confirming", Request.expires_at > now)
    if kind == "set":
        query = query.where(Request.delivery == delivery)
    return session.scalars(query.order_by(Request.id).limit(1)).first()


def ask_to_confirm(session: Session, renderer: Renderer, ml: MailingList, kind: str,
                   email: str, now: datetime, *, lang: str, requested_by: str, name: str = "",
                   delivery: str = "regular", inbound_id: int | None = None,
                   already_member: bool = False) -> bool:
    """Start a subscribe, unsubscribe or set (of `delivery`) that the address itself must
    confirm.

    The confirmation goes to `email` only, quoting nothing the requester wrote; when someone
    else asked to subscribe a member (`already_member`), it tells the member so instead of
    asking. An unsubscribe or set already waiting for the same confirmation is not asked
    again: nothing new is sent. Returns whether a confirmation waits at the address (sent now
    or before); False when the cap on automatic mail stopped it (then nothing waits either).
    """
    if kind in ONE_PENDING and pending(session, ml, kind, email, now, delivery) is not None:
        audit(session, now, DAEMON, f"{kind}-confirmation-pending", normalize(email), ml.id)
        return True
    request = _request(session, ml, kind, email, now, lang=lang, name=name, delivery=delivery,
                       requested_by=requested_by, inbound_id=inbound_id)
    audit(session, now, DAEMON, f"{kind}-confirmation",
          f"request #{request.id} for {request.email}", ml.id)
    sent = notify(
        session, renderer, ml, CONFIRM_TEMPLATES[kind], [request.email], now, kind="confirm",
        lang=lang, request=request,
        confirm_address=ml.role_address(Role.CONFIRM, request.token or ""),
        for_someone_else=normalize(requested_by) != request.email,
        already_member=already_member,
    )
    if not sent and kind in ONE_PENDING:
        request.status = "expired"  # its token never went out: a later request may ask
    return bool(sent)


def subscribe(session: Session, renderer: Renderer, ml: MailingList, email: str, name: str,
              now: datetime, actor: str, *, lang: str = "en", delivery: str = "regular",
              welcome: bool = True) -> Member:
    """Make `email` a member (or re-enable one that exists) and welcome them."""
    member = find_member(session, ml, email)
    if member is None:
        member = Member(list_id=ml.id, email=normalize(email),
                        name=" ".join(name.split())[:MAX_NAME_LENGTH], delivery=delivery,
                        bounce_token=new_token(), leave_token=new_token(), created_at=now)
        session.add(member)
        session.flush()
    audit(session, now, actor, "member-added", member.email, ml.id)
    if welcome:
        notify(session, renderer, ml, "welcome.txt", [member.email], now, kind="welcome",
               lang=lang, member=member, meetings=upcoming(session, ml, now, limit=1),
               leave_token_address=ml.role_address(Role.LEAVE, member.leave_token))
    return member


def unsubscribe(session: Session, renderer: Renderer, ml: MailingList, member: Member,
                now: datetime, actor: str, *, lang: str = "en") -> None:
    """Remove a member at once; the goodbye says how to undo it with one reply (the one
    open token left: every earlier one is revoked)."""
    revoke_open_requests(session, ml.id, member.email, now, actor)
    undo = _request(session, ml, "resubscribe", member.email, now, lang=lang, name=member.name,
                    delivery=member.delivery, requested_by=member.email)
    session.delete(member)
    audit(session, now, actor, "member-left", member.email, ml.id)
    notify(session, renderer, ml, "goodbye.txt", [member.email], now, kind="goodbye", lang=lang,
           with_change=True, undo_address=ml.role_address(Role.CONFIRM, undo.token or ""))


def set_delivery(session: Session, renderer: Renderer, ml: MailingList, member: Member,
                 delivery: str, now: datetime, actor: str, *, lang: str = "en") -> bool:
    """Set a member's delivery (`regular`, `digest`, `digest-plain` or `nomail`) and tell
    her; False when it already was. Her notice of a mute is sent even past the cap on
    automatic mail (SPEC §2). A digest member who asks for single messages first gets what
    waited for her next digest, in one last digest."""
    if member.delivery == delivery:
        return False
    if delivery == "regular":
        digests.flush(session, renderer, ml, member, now)
    member.delivery = delivery
    audit(session, now, actor, "member-set", f"{member.email}: {delivery}", ml.id)
    notify(session, renderer, ml, "notice-delivery-set.txt", [member.email], now,
           kind="notice", lang=lang, with_change=delivery == "nomail", delivery=delivery)
    return True


def confirm(session: Session, renderer: Renderer, request: Request, now: datetime,
            confirmer_name: str = "") -> str:
    """Complete a confirmed request; returns what happened, for the log and the reply.

    A resubscribe (the undo a goodbye offers) needs no approval: the person was a member.
    """
    ml = request.mailing_list
    request.decided_at, request.decided_by = now, request.email
    if request.kind in ("unsubscribe", "set"):
        request.status = "done"
        member = find_member(session, ml, request.email)
        if member is None:
            return f"{request.email} was not a member"
        if request.kind == "set":
            set_delivery(session, renderer, ml, member, request.delivery, now, request.email,
                         lang=request.lang)
            return f"set {request.email} to {request.delivery}"
        unsubscribe(session, renderer, ml, member, now, request.email, lang=request.lang)
        return f"unsubscribed {request.email}"
    if confirmer_name and not request.name:
        request.name = confirmer_name[:MAX_NAME_LENGTH]
    if find_member(session, ml, request.email) is not None:
        # A subscription someone asked for a member: only the member learns it (SPEC §2).
        request.status = "done"
        return f"{request.email} is already a member"
    if request.kind == "subscribe" and ml.policy == "confirm+approve":
        request.status = "waiting"
        audit(session, now, DAEMON, "subscription-waiting",
              f"request #{request.id} for {request.email}", ml.id)
        notify_chair(session, renderer, ml, "notice-request-waiting.txt", now,
                     decide="request", item_id=request.id, request=request)
        notify(session, renderer, ml, "notice-waiting-for-approval.txt", [request.email], now,
               kind="reply", lang=request.lang)
        return f"{request.email} confirmed; waiting for the chair's approval"
    request.status = "done"
    subscribe(session, renderer, ml, request.email, request.name, now, request.email,
              lang=request.lang, delivery=request.delivery)
    return f"subscribed {request.email}"


def approve(session: Session, renderer: Renderer, request: Request, now: datetime,
            actor: str) -> str:
    """The chair approves a subscription waiting for them."""
    if request.kind != "subscribe" or request.status != "waiting":
        raise ListservError(f"request {request.id} is not a subscription waiting for approval")
    request.status, request.decided_at, request.decided_by = "done", now, actor
    audit(session, now, actor, "request-approved", f"#{request.id} for {request.email}",
          request.list_id)
    subscribe(session, renderer, request.mailing_list, request.email, request.name, now, actor,
              lang=request.lang, delivery=request.delivery)
    return f"subscribed {request.email}"


def deny(session: Session, renderer: Renderer, request: Request, now: datetime, actor: str,
         reason: str, *, tell: bool = True) -> None:
    """The chair refuses a waiting request; the person is told, with the reason if given
    (unless not `tell`: the chair's `discard`)."""
    if request.status != "waiting":
        raise ListservError(f"request {request.id} is not waiting for you (it is {request.status})")
    request.status, request.decided_at, request.decided_by = "denied", now, actor
    audit(session, now, actor, "request-denied" if tell else "request-discarded",
          f"#{request.id} for {request.email}: {reason}", request.list_id)
    if not tell:
        return
    notify(session, renderer, request.mailing_list, "deny-request.txt", [request.email], now,
           kind="reply", lang=request.lang, request=request, reason=reason)


def expire_requests(session: Session, now: datetime) -> int:
    """Close confirmations nobody answered in time, and unclear requests the chair left for
    the list's `held_expiry_days` (the sender had the help text; nobody else is told)."""
    due = session.scalars(
        select(Request).where(Request.expires_at <= now, or_(
            Request.status == "confirming",
            and_(Request.kind == "unclear", Request.status == "waiting")))
    ).all()
    for request in due:
        request.status = "expired"
    return len(due)
