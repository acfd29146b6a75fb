"""The chair's replies by mail to a notice or a daily summary (SPEC §2, "The chair replies").

A reply reaches `NAME-confirm+TOKEN@` with a chair token (`store.chair_tokens`). It is taken
only from an owner or moderator address (`delivery.notices.deciders`); anything else is logged
and not answered. A token is single use and expires; it is spent by the first reply that
decides something (a reply with no answer in it can be sent again). Automatic mail never
gets here (the router's guards). Each decision runs in a savepoint, so one that cannot be
done changes nothing, and the chair gets one short reply saying what was done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.chair.decisions import APPLIES, NOT_BY_ALL, decide, kind_of
from listserv.delivery.notices import RESULTS_TEMPLATE, deciders, notify
from listserv.errors import ListservError
from listserv.intent.decision import Decision, item_reply, summary_reply
from listserv.mail.headers import header_text
from listserv.mail.render import Renderer
from listserv.store import chair_tokens
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import ChairToken, Held, Inbound, InboundRaw, MailingList, Request
from listserv.store.models.features import PeerInput

_MODELS: dict[str, type[Held] | type[Request] | type[PeerInput]] = {
    "held": Held, "request": Request, "peer_input": PeerInput}
_KIND_ORDER = ("held", "request", "peer_input")


@dataclass(frozen=True, slots=True)
class Result:
    """One line of the chair's result reply: what she wrote, what came of it."""

    line: str
    outcome: str
    done: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply being answered and where it goes."""

    session: Session
    renderer: Renderer
    ml: MailingList
    token: ChairToken
    sender: str
    now: datetime
    hosted: bool
    trusted_authserv_id: str | None = None


def posts_it_may_approve(session: Session, token: str) -> list[bytes]:
    """The held posts a reply to the chair token `token` may approve, as stored. The router
    looks their authors' DMARC policies up (`actions.before_approving`) before the reply's
    write transaction opens, as `listserv held approve` does, so that approving answers from
    the cache instead of holding the store's write lock through a DNS lookup."""
    row = chair_tokens.find(session, token)
    if row is None or row.used_at is not None:
        return []
    ids = [row.item_id] if row.kind == "held" else row.items.get("held", [])
    waiting = (select(InboundRaw.raw).join(Inbound, Inbound.raw_id == InboundRaw.id)
               .join(Held, Held.inbound_id == Inbound.id)
               .where(Held.id.in_(ids), Held.status == "waiting"))
    return list(session.scalars(waiting))


def answer(session: Session, renderer: Renderer, ml: MailingList, token: ChairToken,
           msg: EmailMessage, sender: str, now: datetime, *, hosted: bool = False,
           trusted_authserv_id: str | None = None) -> str:
    """Act on the chair's reply `msg` to the notice or summary of `token`; returns the outcome
    for the log. `sender` is the reply's From address (`ctx.identity.address`)."""
    if token.list_id != ml.id or sender not in deciders(ml):
        why = "another list's token" if token.list_id != ml.id else "not from an owner"
        audit(session, now, DAEMON, "chair-reply-refused",
              f"a reply to a {token.kind} notice from {sender or '(no sender)'}: {why}", ml.id)
        return f"ignored: a reply to a chair notice, {why}"
    reply = Reply(session, renderer, ml, token, sender, now, hosted, trusted_authserv_id)
    problem = ""
    results: list[Result] = []
    not_understood: list[str] = []
    if token.used_at is not None:
        problem = "used"
    elif token.expires_at <= now:
        problem = "expired"
    elif token.kind == "summary":
        decisions, not_understood = summary_reply(msg)
        for decision in decisions:
            results += _summary_decision(reply, decision)
    else:
        decision = item_reply(msg)
        if decision is not None:
            results.append(_one(reply, decision, token.kind, token.item_id or 0, decision.line))
    if results:
        token.used_at, token.used_by = now, sender
    elif not problem:
        problem = "not-understood"
    notify(session, renderer, ml, RESULTS_TEMPLATE, [sender], now, kind="reply",
           results=results, not_understood=not_understood, problem=problem,
           summary=token.kind == "summary", used_by=token.used_by,
           subject=_reply_subject(header_text(msg, "Subject")))
    done = sum(r.done for r in results)
    return (f"chair reply from {sender}: {done} done, {len(results) - done} not done"
            + (f" ({problem})" if problem else ""))


def _one(reply: Reply, decision: Decision, kind: str, item_id: int, line: str) -> Result:
    """One decision on one item, in a savepoint: if it cannot be done, nothing changes."""
    try:
        with reply.session.begin_nested():
            outcome = decide(reply.session, reply.renderer, reply.ml, kind, item_id,
                             decision.verb, decision.reason, reply.now, reply.sender,
                             hosted=reply.hosted,
                             trusted_authserv_id=reply.trusted_authserv_id)
    except ListservError as exc:
        return Result(line, str(exc), False)
    return Result(line, outcome, True)


def _summary_decision(reply: Reply, decision: Decision) -> list[Result]:
    """One line of a reply to a summary: its ids (or `all`) among the items it listed."""
    listed = {kind: [int(i) for i in reply.token.items.get(kind, [])] for kind in _KIND_ORDER}
    kinds = [decision.kind] if decision.kind else list(_KIND_ORDER)
    if decision.ids is None:
        # `all`: every listed item still waiting that the verb applies to, never a later one.
        targets = [(kind, i) for kind in kinds for i in listed[kind]
                   if _waiting(reply.session, kind, i)
                   and decision.verb in APPLIES[kind_of(reply.session, kind, i)]
                   and decision.verb not in NOT_BY_ALL.get(kind, ())]
        if not targets:
            return [Result(decision.line, "nothing listed in this summary is waiting for that",
                           False)]
        return [_one(reply, decision, kind, i, f"{decision.verb} {i}") for kind, i in targets]
    results = []
    for item_id in decision.ids:
        listed_as = [kind for kind in kinds if item_id in listed[kind]]
        # A post and a request may share a number: the verb tells them apart where it can.
        matches = [kind for kind in listed_as
                   if decision.verb in APPLIES[kind_of(reply.session, kind, item_id)]]
        matches = matches or listed_as[:1]  # none applies: `decide` says why
        label = f"{decision.verb.replace('_', ' and ')} {item_id}"
        if not matches:
            results.append(Result(label, f"{item_id} is not in this summary", False))
        elif len(matches) > 1:
            results.append(Result(label, f"{item_id} is both a post and a request here: write "
                                  f"'{decision.verb} post {item_id}' or "
                                  f"'{decision.verb} request {item_id}'", False))
        else:
            results.append(_one(reply, decision, matches[0], item_id, label))
    return results


def _waiting(session: Session, kind: str, item_id: int) -> bool:
    row = session.get(_MODELS[kind], item_id)
    if row is None:
        return False
    return row.status == ("held" if kind == "peer_input" else "waiting")


def _reply_subject(subject: str) -> str:
    """The subject of an answer to the chair's reply: hers, with one "Re:"."""
    if not subject:
        return "Re: your reply"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"
