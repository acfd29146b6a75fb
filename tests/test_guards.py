"""The guard pipeline (listserv/guards.py): its rules and table by role without sockets, and
the router running it once, judging a post before the transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from listserv.clock import FakeClock
from listserv.intent.guard import Guard
from listserv.intent.understanding import Understanding
from listserv.mail.addresses import Role
from listserv.mail.render import Renderer
from listserv.router.dispatch import prepare_next, route_one
from listserv.router.guards import MAX_RECEIVED, Action, Facts, check
from listserv.store.models.core import Inbound, MailingList

from .helpers import LIST, inbound_outcomes, make_message, parse

OWNER = "shma-owner@lists.example.org"
OWN = frozenset({LIST, "shma-request@lists.example.org", OWNER})


def facts(raw: bytes, mail_from: str = "jane@example.org", *, size: int | None = None,
          headers_only: bool = False, administrivia: Guard | None = None) -> Facts:
    """`size`: as received (the bytes kept are as many, or only the headers)."""
    size = len(raw) if size is None else size
    return Facts(msg=parse(raw), mail_from=mail_from, size=size,
                 stored=len(raw) if headers_only else size,
                 list_id="shma.lists.example.org", list_address=LIST,
                 owner_address=OWNER, own_addresses=OWN, max_post_kb=40,
                 administrivia=administrivia)


def with_headers(*lines: str, **headers: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode() + make_message(**headers)


def without_from(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    kept = [line for line in head.split(b"\r\n") if not line.startswith(b"From:")]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


RECEIVED = "Received: from relay.example by mx.example; Mon, 1 Jan 2029 10:00:00 +0000"


@pytest.mark.parametrize("raw,rule,reason", [
    (with_headers(List_Id="SHMA <shma.lists.example.org>"), "own-loop", "own List-Id"),
    (with_headers(X_BeenThere=LIST), "own-loop", "X-BeenThere"),
    (without_from(make_message()), "malformed-from", "no From header"),
    (with_headers("From: bob@example.org"), "malformed-from", "2 From headers"),
    (make_message(sender="jane@example.org, bob@example.org"), "malformed-from",
     "2 mailboxes in From"),
    (make_message(sender="Jane Doe"), "malformed-from", "no address in From"),
    (with_headers(X_Loop=LIST), "x-loop", "X-Loop names this list"),
    (with_headers(X_Loop="SHMA <shma-request@lists.example.org>"), "x-loop", "X-Loop"),
    (with_headers(*[RECEIVED] * (MAX_RECEIVED + 1)), "received", "31 Received headers"),
    (make_message(Auto_Submitted="auto-replied"), "automatic", "Auto-Submitted"),
    (make_message(sender="MAILER-DAEMON@mx.example.org"), "automatic", "a delivery report"),
])
def test_a_post_hits_the_rule_with_its_reason(raw, rule, reason):
    verdict = check(Role.POST, facts(raw))
    assert verdict is not None and verdict.rule == rule and reason in verdict.reason
    assert verdict.action is (Action.DISCARD if rule == "own-loop" else Action.HOLD)


@pytest.mark.parametrize("raw", [
    make_message(),
    with_headers(*[RECEIVED] * MAX_RECEIVED),
    with_headers(X_Loop="other-list@lists.example.net"),
    with_headers(List_Id="Another list <other.lists.example.org>"),
    make_message(sender='"Doe, Jane" <jane@example.org>'),
])
def test_a_plain_post_passes(raw):
    assert check(Role.POST, facts(raw)) is None


def test_the_rules_run_in_order_loops_before_automatic_mail_before_size():
    looping = with_headers(X_BeenThere=LIST, Auto_Submitted="auto-replied")
    assert check(Role.POST, facts(looping)).rule == "own-loop"
    automatic_and_big = make_message(Auto_Submitted="auto-replied")
    assert check(Role.POST, facts(automatic_and_big, size=10**7)).rule == "automatic"
    assert check(Role.POST, facts(make_message(), size=10**7)).rule == "size"
    cut = check(Role.POST, facts(make_message(), size=10**7, headers_only=True))
    assert (cut.rule, cut.action) == ("headers-only", Action.HOLD)


@pytest.mark.parametrize("administrivia,action", [
    (Guard.REQUEST, Action.REQUEST), (Guard.UNSURE, Action.HOLD), (Guard.POST, None),
])
def test_the_administrivia_verdict_comes_after_the_automatic_rule(administrivia, action):
    verdict = check(Role.POST, facts(make_message(), administrivia=administrivia))
    assert (verdict.action if verdict else None) is action
    automatic = facts(make_message(X_Autoreply="yes"), administrivia=administrivia)
    assert check(Role.POST, automatic).action is Action.HOLD


@pytest.mark.parametrize("role", [Role.REQUEST, Role.JOIN, Role.LEAVE, Role.CONFIRM,
                                  Role.COLUMN, Role.PEER_INPUT])
def test_automatic_and_looping_mail_to_an_answering_address_is_ignored(role):
    for raw in (make_message(Auto_Submitted="auto-replied"), with_headers(X_Loop=LIST),
                with_headers(*[RECEIVED] * 40)):
        assert check(role, facts(raw)).action is Action.IGNORE
    assert check(role, facts(make_message(), mail_from="")).action is Action.IGNORE
    assert check(role, facts(make_message(), size=10**7)) is None  # size limits posts only


def test_the_bounce_address_takes_automatic_mail_and_the_owners_get_theirs():
    report = make_message(sender="MAILER-DAEMON@mx.example.org", Auto_Submitted="auto-replied")
    assert check(Role.BOUNCES, facts(report, mail_from="")) is None
    assert check(Role.OWNER, facts(report, mail_from="")) is None
    looped = check(Role.OWNER, facts(with_headers(X_BeenThere=OWNER)))
    assert (looped.action, looped.reason) == (Action.DISCARD, "owner mail looped back")


def test_the_router_judges_a_post_before_its_transaction_and_uses_that_verdict(
        shma, store, settings):
    clock = FakeClock(datetime.now(UTC))
    raw = make_message(subject="help", body="help\n")
    with store.unit_of_work() as session:
        ml = session.scalar(select(MailingList))
        for _ in range(2):
            session.add(Inbound(rcpt=LIST, list_id=ml.id, role=Role.POST.value, token="",
                                raw=raw, size=len(raw), mail_from="jane@example.org",
                                received_at=clock.now()))
    prepared = prepare_next(store, clock.now())
    assert prepared is not None and prepared.administrivia[0] is Guard.REQUEST
    # The verdict read before the transaction is the one acted on (here: a doctored one) ...
    doctored = replace(prepared, administrivia=(Guard.UNSURE, Understanding("en", ())))
    assert route_one(store, settings, Renderer(), clock, doctored)
    # ... and a message other than the one read is judged inside the transaction.
    assert route_one(store, settings, Renderer(), clock, doctored)
    outcomes = [outcome for _, outcome in inbound_outcomes(store)]
    assert outcomes[0].startswith("held #1: it may be a request")
    assert outcomes[1].startswith("request: help")
