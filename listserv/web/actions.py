"""What the web endpoint's pages do, inside one unit of work each: find what a token names,
unsubscribe at once, complete a confirmation. Each returns the page to show.

The services are the ones mail uses (SPEC §2): `membership.unsubscribe` (the goodbye with its
undo) for one-click, and `confirmations.complete` for the confirmation button, so a click does
exactly what a reply does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.confirmations.complete import complete
from listserv.mail.render import Renderer
from listserv.meetings.peer_input import CONFIRM_KIND as PEER_INPUT
from listserv.membership import subscriptions as membership
from listserv.store.audit import audit
from listserv.store.lookup import open_request_for_token
from listserv.store.models.core import MailingList, Member, Once, Request
from listserv.store.once import ONE_CLICK_SPENT, claim_once

#: The actor the audit log names for what the endpoint does.
WEB = "web"
#: A token as `mail.tokens.new_token` makes them (lower-case base32); anything else is not
#: looked up at all.
_TOKEN = re.compile(r"[a-z2-7]{16,40}")
#: The kinds of request a confirmation page can complete.
CONFIRMABLE = frozenset({"subscribe", "unsubscribe", "set", "resubscribe", PEER_INPUT})


@dataclass(frozen=True, slots=True)
class Page:
    """A page to render: its template in `templates/web/`, the HTTP status, the language of
    the member or request ("" when unknown: the browser's then), and what it shows."""

    template: str
    status: int = 200
    lang: str = ""
    values: dict[str, Any] = field(default_factory=dict)


NOT_FOUND = Page("not-found.html", 404)


def well_formed(token: str) -> bool:
    """Whether `token` could be one of ours (case-insensitive, as in addresses)."""
    return bool(_TOKEN.fullmatch(token.lower()))


def _about(ml: MailingList, email: str) -> dict[str, Any]:
    return {"list_name": ml.display, "list_address": ml.address, "email": email}


def _spent_key(token: str) -> str:
    # Only a digest is kept: the row must not hand anyone a working token.
    return hashlib.sha256(token.lower().encode()).hexdigest()


def _member(session: Session, token: str) -> Member | None:
    return session.scalar(select(Member).where(Member.leave_token == token.lower()))


def _spent(session: Session, token: str) -> bool:
    return session.scalar(select(Once.id).where(Once.kind == ONE_CLICK_SPENT,
                                                Once.key == _spent_key(token))) is not None


def unsubscribe_page(session: Session, token: str) -> Page:
    """`GET /u/TOKEN`: the page with one button; it changes nothing (link scanners fetch it)."""
    member = _member(session, token) if well_formed(token) else None
    if member is None:
        if well_formed(token) and _spent(session, token):
            return Page("unsubscribed.html", values={"already": True})
        return NOT_FOUND
    ml = session.get(MailingList, member.list_id)
    return Page("unsubscribe.html", lang=member.language, values=_about(ml, member.email))


def one_click(session: Session, renderer: Renderer, token: str, now: datetime,
              lang: str) -> Page:
    """`POST /u/TOKEN` (RFC 8058): the member the token names leaves at once, with the usual
    goodbye and its undo; the token in the URL is the proof, as for mail to `-leave+TOKEN`.
    A token already spent answers as done (200); an unknown one gets the polite 404 page.
    `lang` is the browser's choice, for a member without a language of her own."""
    member = _member(session, token) if well_formed(token) else None
    if member is None:
        if well_formed(token) and _spent(session, token):
            return Page("unsubscribed.html", values={"already": True})
        return NOT_FOUND
    ml, email = session.get(MailingList, member.list_id), member.email
    lang = member.language or lang
    claim_once(session, ONE_CLICK_SPENT, _spent_key(token), now)
    audit(session, now, WEB, "one-click-unsubscribe", email, ml.id)
    membership.unsubscribe(session, renderer, ml, member, now, email, lang=lang)
    return Page("unsubscribed.html", lang=lang, values={**_about(ml, email), "already": False})


def _request(session: Session, token: str) -> Request | None:
    if not well_formed(token):
        return None
    request = session.scalar(select(Request).where(Request.token == token.lower()))
    return request if request is not None and request.kind in CONFIRMABLE else None


def _confirmation_values(request: Request) -> dict[str, Any]:
    return {**_about(request.mailing_list, request.email), "kind": request.kind,
            "delivery": request.delivery}


def confirmation_page(session: Session, token: str, now: datetime) -> Page:
    """`GET /c/TOKEN`: what the confirmation would do, with a button; it changes nothing."""
    request = _request(session, token)
    if request is None:
        return NOT_FOUND
    if open_request_for_token(session, token, now) is None:
        return _closed(request)
    return Page("confirm.html", lang=request.lang, values=_confirmation_values(request))


def _closed(request: Request) -> Page:
    """A confirmation no longer open: done already (a second press) or gone (expired, or
    revoked when the membership changed since)."""
    if request.status in ("done", "waiting"):
        return Page("confirmed.html", lang=request.lang,
                    values={**_confirmation_values(request), "result": "already"})
    return Page("not-found.html", 404, lang=request.lang, values={"expired": True})


def confirm(session: Session, renderer: Renderer, token: str, now: datetime) -> Page:
    """`POST /c/TOKEN`: complete the confirmation exactly as a reply to its mail does."""
    request = _request(session, token)
    if request is None:
        return NOT_FOUND
    if open_request_for_token(session, token, now) is None:
        return _closed(request)
    outcome = complete(session, renderer, request, now)
    audit(session, now, WEB, "confirmed", f"request #{request.id}: {outcome}",
          request.list_id)
    result = _result(session, request, outcome)
    return Page("confirmed.html", lang=request.lang,
                values={**_confirmation_values(request), "result": result})


def _result(session: Session, request: Request, outcome: str) -> str:
    """Which page tells the outcome: welcome, waiting, left, set, peer_input or nothing."""
    ml = request.mailing_list
    member = membership.find_member(session, ml, request.email)
    if request.kind in ("subscribe", "resubscribe"):
        if request.status == "waiting":
            return "waiting"
        return "welcome" if member is not None else "nothing"
    if request.kind == "unsubscribe":
        return "left" if member is None else "nothing"
    if request.kind == "set":
        return "set" if member is not None and member.delivery == request.delivery else "nothing"
    # A peer-input confirmation is void when the member left or its mail is gone.
    return "nothing" if "void" in outcome else "peer_input"
