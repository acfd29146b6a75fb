"""The guards every incoming message passes once, in the router, before its handler (SPEC §3).

Mailman's chain, kept small: each rule is a pure predicate that returns a readable reason or
None, and says per role what a hit means. Rules run in the order of `RULES`; the first hit
decides. A role that a rule does not name skips it, on purpose:

* posts (the list address) are **held** with the reason, so a real post that only looks odd
  waits for the chair; only the list's own copy coming back is **discarded**;
* mail to the addresses that act and answer (request, join, leave, confirm, column, peer
  input) is **ignored** (logged, nothing done, nothing answered) when it is automatic or looping:
  an out-of-office reply must never confirm, undo or ask for anything;
* the owner address forwards everything to the chair but its own forward coming back;
* the bounce address takes automatic mail: reports and automatic replies are its job.

A post that is really a request (the administrivia guard, `intent.guard`) is handled as one
(**request**), after the loop and automatic-mail rules and before the size rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from enum import StrEnum

from listserv.intent.guard import Guard
from listserv.mail.addresses import Role, normalize
from listserv.mail.automatic import automatic
from listserv.mail.headers import header_values, raw_header_values
from listserv.membership.bans import banning
from listserv.posting.distribute import headers_only, too_big

#: More `Received` headers than this: the message has been going round in a loop (SPEC §3).
MAX_RECEIVED = 30


class Action(StrEnum):
    """What a rule's hit does to the message; the value is the outcome's first word."""

    DISCARD = "discarded"
    HOLD = "held"
    IGNORE = "ignored"
    REQUEST = "request"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards read: the message, its envelope and sizes, and the list's own names."""

    msg: EmailMessage
    mail_from: str  # the envelope sender, "" for the null sender
    size: int  # as received
    stored: int  # bytes kept (fewer than `size` when only the headers were read)
    list_id: str  # NAME.DOMAIN
    list_address: str
    owner_address: str
    own_addresses: frozenset[str]  # every address of the list, normalized
    max_post_kb: int
    administrivia: Guard | None = None  # the administrivia guard's verdict on a post
    bans: tuple[str, ...] = ()  # the list's ban patterns (`members ban`)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The first rule that hit: what to do, and the reason the chair and the log see."""

    action: Action
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    check: Callable[[Facts], str | None]
    actions: Mapping[Role, Action]


def banned(facts: Facts) -> str | None:
    """The author (any From mailbox) or the envelope sender is banned on this list."""
    if not facts.bans:
        return None
    authors = [a for _, a in getaddresses(raw_header_values(facts.msg, "From")) if "@" in a]
    hit = banning(facts.bans, [*authors, facts.mail_from])
    return f"the sender {hit[0]} is banned ({hit[1]})" if hit else None


def own_loop(facts: Facts) -> str | None:
    """This list's own List-Id or X-BeenThere: our own copy came back to us."""
    for value in header_values(facts.msg, "List-Id"):
        if facts.list_id and f"<{facts.list_id}>".lower() in value.lower():
            return f"carries this list's own List-Id <{facts.list_id}>"
    for value in header_values(facts.msg, "X-BeenThere"):
        if normalize(value) == normalize(facts.list_address):
            return f"carries X-BeenThere: {facts.list_address}"
    return None


def owner_loop(facts: Facts) -> str | None:
    """Our forward to the owners came back to the owner address."""
    for value in header_values(facts.msg, "X-BeenThere"):
        if normalize(value) == normalize(facts.owner_address):
            return "owner mail looped back"
    return None


def malformed_from(facts: Facts) -> str | None:
    """No From, several From headers, or several mailboxes in one: no one author to judge."""
    values = raw_header_values(facts.msg, "From")
    if not values:
        return "no From header"
    if len(values) > 1:
        return f"{len(values)} From headers"
    mailboxes = [a for _, a in getaddresses(values) if "@" in a]
    if not mailboxes:
        return "no address in From"
    if len(mailboxes) > 1:
        return f"{len(mailboxes)} mailboxes in From"
    return None


def x_loop(facts: Facts) -> str | None:
    """An X-Loop header naming one of this list's addresses."""
    for value in header_values(facts.msg, "X-Loop"):
        named = {normalize(a) for _, a in getaddresses([value]) if a} | {normalize(value)}
        if named & facts.own_addresses:
            return f"X-Loop names this list ({value[:100]})"
    return None


def too_many_received(facts: Facts) -> str | None:
    """More Received headers than a message needs: a mail loop somewhere."""
    count = len(raw_header_values(facts.msg, "Received"))
    if count > MAX_RECEIVED:
        return f"{count} Received headers, more than {MAX_RECEIVED} (a mail loop?)"
    return None


def automatic_mail(facts: Facts) -> str | None:
    """Written by a program (RFC 3834 and the other signs of `mail.automatic`)."""
    sign = automatic(facts.msg, facts.mail_from)
    return str(sign) if sign is not None else None


def request_on_list(facts: Facts) -> str | None:
    """The administrivia guard found a request (commands, "please add me") on the list."""
    if facts.administrivia is Guard.REQUEST:
        return "a request sent to the list address"
    return None


def maybe_request(facts: Facts) -> str | None:
    """The administrivia guard could not tell a request from a post."""
    if facts.administrivia is Guard.UNSURE:
        return "it may be a request to join or leave rather than a post"
    return None


_ANSWERING = (Role.REQUEST, Role.JOIN, Role.LEAVE, Role.CONFIRM, Role.COLUMN, Role.PEER_INPUT)
_HOLD_OR_IGNORE = {Role.POST: Action.HOLD, **{role: Action.IGNORE for role in _ANSWERING}}

RULES: tuple[Rule, ...] = (
    # A banned sender's posts and requests are dropped (and logged); leaving, the owner
    # address and bounce reports stay open to them, as in Mailman.
    Rule("banned", banned, {role: Action.DISCARD for role in (Role.POST, Role.REQUEST,
                                                               Role.JOIN, Role.CONFIRM,
                                                               Role.COLUMN, Role.PEER_INPUT)}),
    Rule("own-loop", own_loop,
         {Role.POST: Action.DISCARD, Role.COLUMN: Action.IGNORE, Role.PEER_INPUT: Action.IGNORE}),
    Rule("owner-loop", owner_loop, {Role.OWNER: Action.DISCARD}),
    Rule("malformed-from", malformed_from, {Role.POST: Action.HOLD}),
    Rule("x-loop", x_loop, _HOLD_OR_IGNORE),
    Rule("received", too_many_received, _HOLD_OR_IGNORE),
    Rule("automatic", automatic_mail, _HOLD_OR_IGNORE),
    Rule("administrivia", request_on_list, {Role.POST: Action.REQUEST}),
    Rule("administrivia-unsure", maybe_request, {Role.POST: Action.HOLD}),
    Rule("headers-only", lambda f: headers_only(f.size, f.stored), {Role.POST: Action.HOLD}),
    Rule("size", lambda f: too_big(f.size, f.max_post_kb), {Role.POST: Action.HOLD}),
)


def check(role: Role, facts: Facts) -> Verdict | None:
    """The first rule for `role` that `facts` hit, or None: the handler takes the message."""
    for rule in RULES:
        action = rule.actions.get(role)
        if action is None:
            continue
        reason = rule.check(facts)
        if reason:
            return Verdict(action, reason, rule.name)
    return None
