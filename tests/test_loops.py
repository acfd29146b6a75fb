"""No loops, no answers to machines (SPEC §3): own List-Id discarded, automatic mail held."""

from __future__ import annotations

import json

import pytest

from .helpers import LIST, inbound_outcomes, lmtp_send, make_message, wait_handled


@pytest.fixture
def member(cli, shma):
    cli("members", "add", shma, "jane@example.org", "--no-welcome")
    cli("members", "add", shma, "ann@example.net", "--no-welcome")
    return "jane@example.org"


@pytest.mark.parametrize("header", [
    ("List-Id", "SHMA list <shma.lists.example.org>"),
    ("X-BeenThere", "SHMA@lists.example.org"),
])
def test_own_list_headers_are_discarded(member, daemon, sink, store, cli, header):
    post = make_message(**{header[0].replace("-", "_"): header[1]})
    lmtp_send(daemon.ports["lmtp"], member, [LIST], post)
    wait_handled(sink, store, 1)
    [(status, outcome)] = inbound_outcomes(store)
    assert status == "done" and outcome.startswith("discarded: carries")
    assert json.loads(cli("held", "list", "--json").output) == []
    assert sink.deliveries == []


@pytest.mark.parametrize("headers,mail_from,reason", [
    ({"Auto_Submitted": "auto-replied"}, "jane@example.org", "Auto-Submitted: auto-replied"),
    ({"X_Autoreply": "yes"}, "jane@example.org", "X-Autoreply"),
    ({"Subject": "Automatic reply: Agenda"}, "jane@example.org", "out-of-office subject"),
    ({"Subject": "Respuesta automática: Agenda"}, "jane@example.org", "out-of-office subject"),
    ({"Subject": "Réponse automatique : Agenda"}, "jane@example.org", "out-of-office subject"),
    ({}, "", "empty envelope sender"),
])
def test_automatic_mail_is_held_with_the_reason_and_never_answered(
        member, daemon, sink, store, cli, headers, mail_from, reason):
    cli("lists", "set", LIST, "nonmember_action", "reject")
    fields = {"subject": headers.pop("Subject", "Agenda")}
    post = make_message(sender="jane@example.org", **fields, **headers)
    lmtp_send(daemon.ports["lmtp"], mail_from, [LIST], post)
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="held notice")
    [item] = json.loads(cli("held", "list", "--json").output)
    assert reason in item["reason"]
    assert not sink.messages_for("jane@example.org")
    assert not sink.messages_for("ann@example.net")


def test_automatic_mail_from_a_nonmember_gets_no_rejection(member, daemon, sink, store, cli):
    cli("lists", "set", LIST, "nonmember_action", "reject")
    lmtp_send(daemon.ports["lmtp"], "robot@else.org", [LIST],
              make_message(sender="robot@else.org", Auto_Submitted="auto-generated"))
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="held notice")
    assert not sink.messages_for("robot@else.org")


RECEIVED = b"Received: from relay.example.net by mx.example.org; Mon, 1 Jan 2029 10:00:00 +0000\r\n"


def _without_from(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    kept = [line for line in head.split(b"\r\n") if not line.startswith(b"From:")]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


@pytest.mark.parametrize("raw,reason", [
    (_without_from(make_message()), "no From header"),
    (b"From: ann@example.net\r\n" + make_message(), "2 From headers"),
    (make_message(sender="jane@example.org, ann@example.net"), "2 mailboxes in From"),
    (b"X-Loop: shma@lists.example.org\r\n" + make_message(), "X-Loop names this list"),
    (RECEIVED * 31 + make_message(), "31 Received headers"),
], ids=["no-from", "two-from-headers", "two-mailboxes", "x-loop", "31-received"])
def test_malformed_senders_and_loops_are_held_with_the_reason(member, daemon, sink, cli, raw,
                                                             reason):
    lmtp_send(daemon.ports["lmtp"], member, [LIST], raw)
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="held notice")
    [item] = json.loads(cli("held", "list", "--json").output)
    assert reason in item["reason"]
    assert not sink.messages_for("jane@example.org")
    assert not sink.messages_for("ann@example.net")


def test_thirty_received_headers_are_still_a_post(member, daemon, sink, cli):
    lmtp_send(daemon.ports["lmtp"], member, [LIST], RECEIVED * 30 + make_message())
    sink.wait_for(lambda s: s.messages_for("ann@example.net"), description="the post")
    assert json.loads(cli("held", "list", "--json").output) == []


DSN = (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
       b"To: jane@example.org\r\nSubject: Hello\r\nMessage-ID: <dsn-1@mx.example.net>\r\n"
       b"MIME-Version: 1.0\r\n"
       b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
       b"--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
       b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
       b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
       b"Final-Recipient: rfc822; someone@example.net\r\nAction: failed\r\n"
       b"Status: 5.1.1\r\n\r\n--b--\r\n")


def test_a_report_sent_with_a_members_envelope_is_held_not_distributed(member, daemon, sink,
                                                                       cli):
    # Signs in the content make it automatic mail whatever the envelope says (issue 12, 7).
    lmtp_send(daemon.ports["lmtp"], member, [LIST], DSN)
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="held notice")
    [item] = json.loads(cli("held", "list", "--json").output)
    assert "a delivery report" in item["reason"]
    assert not sink.messages_for("jane@example.org")
    assert not sink.messages_for("ann@example.net")
