"""Each proof of who sent a message (SPEC §2, "Who sent it"), without sockets: tokens, the
freshness rules, DKIM (a generated test key, DNS stubbed by a lookup of our own) and a trusted
Authentication-Results header. tests/test_forged_mail.py shows them at work in the daemon."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import dkim
import pytest
from sqlalchemy import select

from listserv.identity import dkim as dkim_proof
from listserv.identity import fresh, results, tokens
from listserv.identity.proof import identify
from listserv.mail.addresses import Destination, Role
from listserv.mail.dns import TxtAnswer, TxtCache
from listserv.mail.message import parse
from listserv.store.models.core import SEEN_MESSAGE_DAYS, Inbound, MailingList, Member

from .dkim_keys import dkim_record_of, new_dkim_key
from .helpers import LIST

NOW = datetime.now(UTC)
LEAVE = "shma-leave@lists.example.org"
AT_LEAVE = fresh.Arrival(frozenset({LEAVE}), f"{LIST} leave")


@pytest.fixture(scope="module")
def key() -> bytes:
    return new_dkim_key()


@pytest.fixture
def keys(key) -> TxtCache:
    """example.org's key for selector s1 and nothing else, as a stubbed DNS would answer."""
    record = dkim_record_of(key).decode()

    def lookup(name: str, seconds: float) -> TxtAnswer:
        return TxtAnswer((record,) if name == "s1._domainkey.example.org" else (), 300)

    return TxtCache(lookup)


def message(*, sender: str = "jane@example.org", to: str = LEAVE, date: datetime = NOW,
            message_id: str = "<m1@example.org>", extra: str = "") -> bytes:
    return (f"{extra}From: Jane <{sender}>\r\nTo: {to}\r\nSubject: bye\r\n"
            f"Date: {format_datetime(date)}\r\nMessage-ID: {message_id}\r\n\r\nbye\r\n"
            ).encode()


def sign(key: bytes, raw: bytes, domain: bytes = b"example.org",
         headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date",
                                       b"message-id")) -> bytes:
    return dkim.sign(raw, b"s1", domain, key, canonicalize=(b"relaxed", b"relaxed"),
                     include_headers=list(headers)) + raw


def prove(session, raw: bytes, keys: TxtCache, address: str = "jane@example.org",
          now: datetime = NOW) -> tuple[bool, str]:
    return dkim_proof.prove(session, raw, parse(raw), address, AT_LEAVE, now, keys=keys)


# -- freshness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("age,ok", [
    (timedelta(0), True), (timedelta(days=6, hours=23), True), (timedelta(days=7, hours=1),
                                                                False),
    (-timedelta(hours=23), True), (-timedelta(days=2), False)])
def test_a_date_is_fresh_within_seven_days_back_and_one_ahead(age, ok):
    assert fresh.fresh_date(format_datetime(NOW - age), NOW) is ok


def test_an_unreadable_date_is_not_fresh():
    assert not fresh.fresh_date("next Tuesday", NOW)
    assert not fresh.fresh_date("", NOW)


def test_the_arrival_address_must_be_named_in_to_or_cc():
    assert fresh.names_arrival(["Shma Leave <SHMA-leave@Lists.Example.org>"], AT_LEAVE)
    assert fresh.names_arrival(["bob@example.net", "a@b.c, shma-leave@lists.example.org"],
                               AT_LEAVE)
    assert not fresh.names_arrival([LIST], AT_LEAVE)
    assert not fresh.names_arrival([], AT_LEAVE)


def test_seen_message_ids_are_kept_longer_than_a_date_stays_fresh():
    assert fresh.MAX_AGE + fresh.MAX_AHEAD < timedelta(days=SEEN_MESSAGE_DAYS)


@pytest.mark.both_backends
def test_a_message_id_proves_once_per_list_and_role(store):
    at_request = fresh.Arrival(frozenset({"shma-request@lists.example.org"}), f"{LIST} request")
    with store.unit_of_work() as session:
        assert fresh.first_use(session, "<m1@example.org>", AT_LEAVE, NOW)
        assert not fresh.first_use(session, "<m1@example.org>", AT_LEAVE, NOW)
        assert fresh.first_use(session, "<m1@example.org>", at_request, NOW)
        assert not fresh.first_use(session, "  ", AT_LEAVE, NOW)


# -- tokens -------------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_a_leave_token_proves_its_member_and_nothing_else_does(cli, shma, store):
    cli("members", "add", LIST, "jane@example.org", "--no-welcome")
    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        token = session.scalar(select(Member.leave_token))
        inbound = Inbound(list_id=ml.id, rcpt=f"shma-leave+{token}@lists.example.org")
        assert tokens.owner(session, inbound, Destination(LIST, Role.LEAVE, token),
                            NOW) == "jane@example.org"
        assert tokens.owner(session, inbound, Destination(LIST, Role.LEAVE, "x" * 24),
                            NOW) == ""
        assert tokens.owner(session, inbound, Destination(LIST, Role.LEAVE), NOW) == ""
        # A confirmation token names the address its confirmation went to, while it is open.
        assert tokens.owner(session, inbound, Destination(LIST, Role.CONFIRM, token), NOW) == ""


# -- DKIM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("signing,author,ok", [
    ("example.org", "example.org", True), ("example.org", "mail.example.org", True),
    ("EXAMPLE.org", "example.ORG", True), ("mail.example.org", "example.org", False),
    ("other.org", "example.org", False), ("org", "example.org", False),
    ("ample.org", "example.org", False)])
def test_a_signature_aligns_with_its_own_domain_or_a_parent(signing, author, ok):
    assert dkim_proof.aligned(signing, author) is ok


@pytest.mark.both_backends
def test_a_fresh_aligned_signature_naming_the_arrival_address_proves_once(store, key, keys):
    raw = sign(key, message())
    with store.unit_of_work() as session:
        assert prove(session, raw, keys) == (True, "dkim: signed by example.org")
        proven, why = prove(session, raw, keys)  # the same mail again: a replay
        assert not proven and "replay" in why


@pytest.mark.both_backends
@pytest.mark.parametrize("case,expected", [
    ("old", "not within 7 days"),
    ("to the list", "do not name the address"),
    ("to unsigned", "do not name the address"),
    ("message-id unsigned", "Date or Message-ID not signed"),
    ("body changed", "body hash mismatch"),
    ("no key", "does not verify"),
    ("other domain", "no signature aligned"),
    ("other sender", "the signed From is not the sender"),
])
def test_a_signature_proves_nothing_unless_every_rule_holds(store, key, keys, case,
                                                            expected):
    address = "jane@example.org"
    if case == "old":
        raw = sign(key, message(date=NOW - timedelta(days=8)))
    elif case == "to the list":
        raw = sign(key, message(to=LIST))
    elif case == "to unsigned":
        raw = sign(key, message(), headers=(b"from", b"date", b"message-id"))
    elif case == "message-id unsigned":
        raw = sign(key, message(), headers=(b"from", b"to", b"date"))
    elif case == "body changed":
        raw = sign(key, message()).replace(b"bye\r\n\r\n", b"bye\r\n\r\nfarewell ")
        raw = raw.replace(b"\r\n\r\nbye", b"\r\n\r\nbye now")
    elif case == "no key":
        raw = sign(key, message(), domain=b"example.org").replace(b"s=s1", b"s=s9")
    elif case == "other domain":
        raw = sign(key, message(), domain=b"evil.example")
    else:  # a signed mail of bob's, claimed by jane
        raw, address = sign(key, message(sender="bob@example.org")), "jane@example.org"
    with store.unit_of_work() as session:
        proven, why = prove(session, raw, keys, address)
    assert not proven
    assert expected in why, why


@pytest.mark.both_backends
def test_an_added_to_header_above_the_signed_one_proves_nothing(store, key, keys):
    # An old signed post to the list, with a To: -leave added on top: the signature covers
    # only the bottom To, which names the list.
    raw = sign(key, message(to=LIST))
    raw = raw.replace(b"From: Jane", f"To: {LEAVE}\r\nFrom: Jane".encode(), 1)
    with store.unit_of_work() as session:
        proven, why = prove(session, raw, keys)
    assert not proven and "do not name the address" in why


# -- Authentication-Results ---------------------------------------------------------------------

TRUSTED = "mx.lists.example.org"
PASS = (f"Authentication-Results: {TRUSTED} 1; spf=pass smtp.mailfrom=example.org;\r\n"
        " dkim=pass header.d=example.org; dmarc=pass (p=none dis=none) header.from=example.org"
        "\r\n")


def test_an_authentication_results_header_is_parsed_without_its_comments():
    authserv_id, found = results.parse(
        'MX.Example.org (the (nested) comment); dmarc=pass (p=reject) header.from="Example.org";'
        " dkim/1=fail reason=\"bad\" header.d=x.org")
    assert authserv_id == "mx.example.org"
    assert found == [("dmarc", "pass", {"header.from": "example.org"}),
                     ("dkim", "fail", {"reason": "bad", "header.d": "x.org"})]


@pytest.mark.parametrize("extra,trusted,why", [
    (PASS, TRUSTED, ""),
    (PASS, "", "no trusted authserv-id"),
    (PASS, "mx.other.example", "not trusted"),
    # A forger's header under ours: only the topmost counts.
    (f"Authentication-Results: {TRUSTED}; dmarc=fail header.from=example.org\r\n" + PASS,
     TRUSTED, "no dmarc=pass"),
    # A forger's header under another authserv-id, or one whose dmarc=pass is for another
    # domain than the From's.
    (PASS.replace(TRUSTED, "mx.evil.example"), TRUSTED, "not trusted"),
    (PASS.replace("header.from=example.org", "header.from=evil.example"), TRUSTED,
     "no dmarc=pass"),
    ("", TRUSTED, "no Authentication-Results"),
])
def test_only_the_topmost_trusted_header_with_dmarc_pass_vouches(extra, trusted, why):
    said = results.dmarc_pass(parse(message(extra=extra)), trusted, "example.org")
    assert said == why if not why else why in said


@pytest.mark.both_backends
def test_a_trusted_dmarc_pass_proves_the_sender_once(store):
    msg = parse(message(extra=PASS))
    with store.unit_of_work() as session:
        proven, why = results.prove(session, msg, "jane@example.org", AT_LEAVE, TRUSTED, NOW)
        assert proven and TRUSTED in why
        proven, why = results.prove(session, msg, "jane@example.org", AT_LEAVE, TRUSTED, NOW)
        assert not proven and "replay" in why
        old = parse(message(extra=PASS, message_id="<m2@example.org>",
                            date=NOW - timedelta(days=9)))
        assert not results.prove(session, old, "jane@example.org", AT_LEAVE, TRUSTED, NOW)[0]


# -- the whole chain ----------------------------------------------------------------------------


@pytest.mark.both_backends
def test_identify_chains_the_proofs_and_says_why(cli, shma, store, settings, key, keys):
    dkim_proof.set_default_keys(keys)
    cli("members", "add", LIST, "jane@example.org", "--no-welcome")
    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        token = session.scalar(select(Member.leave_token))
        destination = Destination(LIST, Role.LEAVE)

        def who(raw: bytes, mail_from: str = "jane@example.org",
                where: Destination = destination):
            inbound = Inbound(list_id=ml.id, rcpt=LEAVE, mail_from=mail_from, raw=raw)
            return identify(session, settings, inbound, parse(raw), where, NOW)

        forged = who(message())
        assert (forged.address, forged.proven) == ("jane@example.org", False)
        assert not forged.proves("jane@example.org")
        assert forged.reason.startswith("unproven")
        signed = who(sign(key, message(message_id="<m3@example.org>")))
        assert signed.proves("jane@example.org") and signed.reason.startswith("dkim")
        by_token = who(message(sender="someone@else.example"), "someone@else.example",
                       Destination(LIST, Role.LEAVE, token))
        assert by_token.proves("jane@example.org") and "token" in by_token.reason
        assert who(b"Subject: x\r\n\r\nx\r\n", "").address == ""
        # Our MTA's dmarc=pass counts once the operator names it as trusted.
        vouched = message(extra=PASS, message_id="<m4@example.org>")
        assert not who(vouched).proven
        settings = replace(settings, intake=replace(settings.intake,
                                                    trusted_authserv_id=TRUSTED))
        by_mta = who(message(extra=PASS, message_id="<m5@example.org>"))
        assert by_mta.proves("jane@example.org") and TRUSTED in by_mta.reason


@pytest.mark.both_backends
@pytest.mark.parametrize("signature", [
    "v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=!!!; b=???",
    "v=1; a=rsa-sha999; d=example.org; s=s1; h=from:to; bh=AAAA; b=AAAA",
    "v=1; d=example.org; s=s1",
])
def test_a_malformed_signature_proves_nothing_and_raises_nothing(store, keys, signature):
    raw = message(extra=f"DKIM-Signature: {signature}\r\n")
    with store.unit_of_work() as session:
        proven, why = prove(session, raw, keys)
    assert not proven and why.startswith("dkim: s1._domainkey.example.org: "), why
