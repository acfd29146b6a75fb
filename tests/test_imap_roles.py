"""Roles of hosted-mailbox mail from its headers (SPEC §1), without a server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listserv.intake.imap import envelope_sender
from listserv.intake.roles import ListAddresses, addresses_of, route
from listserv.mail.addresses import Role, role_address
from listserv.mail.automatic import recognise

from .helpers import make_message, parse

GROUP = "shma@lists.example.org"
TOKEN = "abcdefghijklmnopqrstuvwx"


def hosted() -> ListAddresses:
    """A list whose public addresses are plus-addresses of one provider mailbox."""
    public = {Role.POST: "group@provider.example"}
    public |= {r: f"group+{r.value}@provider.example" for r in Role if r is not Role.POST}
    return addresses_of(GROUP, lambda role: role_address(GROUP, role, "", public[role]))


def routed(raw: bytes, known: tuple[str, ...] = ()) -> tuple[Role, str, str]:
    lists = [hosted()]
    result = route(parse(raw), lists, lists[0], lambda token: token in known)
    return result.destination.role, result.destination.token, result.how


def test_topmost_delivered_to_decides_over_to_and_x_original_to():
    raw = (b"Delivered-To: group+request@provider.example\r\n"
           b"Delivered-To: group@provider.example\r\n"
           b"X-Original-To: group+owner@provider.example\r\n" + make_message())
    assert routed(raw) == (Role.REQUEST, "", "Delivered-To")


def test_x_original_to_then_to_and_cc():
    raw = b"X-Original-To: group+column@provider.example\r\n" + make_message()
    assert routed(raw)[:2] == (Role.COLUMN, "")
    raw = make_message(to="someone@example.org", Cc="group+peer-input@provider.example")
    assert routed(raw) == (Role.PEER_INPUT, "", "To/Cc")


def test_several_roles_in_to_and_cc_take_the_first_of_the_table():
    raw = make_message(to="group+owner@provider.example, group@provider.example")
    assert routed(raw)[0] is Role.POST


def test_plus_prefix_gives_the_token_of_token_roles_only():
    raw = b"Delivered-To: group+confirm+" + TOKEN.encode() + b"@provider.example\r\n" + \
        make_message()
    assert routed(raw)[:2] == (Role.CONFIRM, TOKEN)
    raw = b"Delivered-To: Group+Leave+XYZ@Provider.Example\r\n" + make_message()
    assert routed(raw)[:2] == (Role.LEAVE, "xyz")
    # A post address with something after "+" is no role of ours: To decides instead.
    raw = b"Delivered-To: group+nonsense@provider.example\r\n" + make_message(
        to="group+request@provider.example")
    assert routed(raw)[0] is Role.REQUEST


def test_token_in_the_subject_when_the_provider_dropped_the_plus_part():
    subject = f"Re: Please confirm: join the shma list (confirm {TOKEN})"
    raw = b"Delivered-To: group@provider.example\r\n" + make_message(subject=subject)
    assert routed(raw, known=(TOKEN,)) == (Role.CONFIRM, TOKEN, "Subject token")
    # An unknown token is just words in a post.
    assert routed(raw)[0] is Role.POST


def test_default_addresses_still_work_and_unknown_mail_goes_to_the_chair():
    raw = make_message(to="shma-request@lists.example.org")
    assert routed(raw)[0] is Role.REQUEST
    raw = make_message(to="stranger@elsewhere.example")
    assert routed(raw) == (Role.OWNER, "", "no list address in the headers")


def test_reports_and_automatic_replies_are_recognised_and_posts_are_not():
    assert recognise(parse(make_message())) == ""
    report = make_message(sender="MAILER-DAEMON@mx.example.org",
                          subject="Undelivered Mail Returned to Sender")
    assert "delivery report" in recognise(parse(report))
    null = b"Return-Path: <>\r\n" + make_message(sender="mx@example.org", subject="Hi")
    assert "null envelope sender" in recognise(parse(null))
    auto = make_message(Auto_Submitted="auto-replied")
    assert "automatic reply" in recognise(parse(auto))
    assert "automatic reply" in recognise(parse(make_message(X_Autoreply="yes")))
    assert recognise(parse(make_message(Precedence="bulk"))) == ""


@pytest.mark.parametrize("subject", [
    "Absence of our facilitator on Tuesday", "Out of office hours support group",
    "Mail delivery problems with the new server?", "Automatic reply settings: how?",
])
def test_words_in_a_subject_alone_do_not_make_a_post_a_report(subject):
    # Left to the handlers (the post handler holds what looks automatic, for the chair).
    assert recognise(parse(make_message(subject=subject))) == ""
    assert recognise(parse(b"From: Jane Doe\r\nSubject: x\r\n\r\nhi\r\n")) == ""


def test_a_malformed_address_header_does_not_raise():
    raw = b"From: x:;x@y\r\nTo: x:;x@y\r\nDelivered-To: x:;x@y\r\nSubject: s\r\n\r\nhi\r\n"
    assert routed(raw)[0] is Role.OWNER
    assert recognise(parse(raw)) == ""


def test_an_overlong_plus_part_is_no_token():
    raw = b"Delivered-To: group+confirm+" + b"a" * 90 + b"@provider.example\r\n" + \
        make_message(to="group@provider.example")
    assert routed(raw)[0] is Role.POST


def test_return_path_gives_the_envelope_sender():
    assert envelope_sender("<>", "jane@example.org") == ""
    assert envelope_sender("<Jane@Example.ORG>", "x@example.org") == "jane@example.org"
    assert envelope_sender("", "jane@example.org") == "jane@example.org"


HEADER_LINES = st.lists(st.sampled_from([
    b"Delivered-To: ", b"X-Original-To: ", b"To: ", b"Cc: ", b"From: ", b"Subject: ",
    b"Return-Path: ", b"Content-Type: ", b"Auto-Submitted: ", b"Message-ID: ",
]).flatmap(lambda name: st.binary(max_size=80).map(lambda value: name + value)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(HEADER_LINES, st.binary(max_size=200))
def test_damaged_headers_never_make_routing_raise(lines, body):
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    msg = parse(raw)
    lists = [hosted()]
    result = route(msg, lists, lists[0], lambda token: True)
    assert result.destination.list_address == GROUP
    recognise(msg)
