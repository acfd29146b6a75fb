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
