"""What the welcome, help and info say, and who notices come from (issue 16, "Texts"):
they name how to ask for peer-input time and how to submit to the column, with their
addresses, next to the meeting schedule; notices come from "SHMA (list owner)" <shma-owner@…>,
the name being the list's `display_name`."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from listserv.delivery.notices import list_context
from listserv.mail.render import Renderer
from listserv.store.models.core import MailingList

from .helpers import LIST, lmtp_send, make_message, parse

PEER_INPUT = "shma-peer-input@lists.example.org"
COLUMN = "shma-column@lists.example.org"
OWNER = "shma-owner@lists.example.org"


def received(sink, address: str, count: int = 1):
    sink.wait_for(lambda s: len(s.messages_for(address)) >= count,
                  description=f"{count} mails to {address}")
    return parse(sink.messages_for(address)[count - 1].data)


def test_welcome_help_and_info_name_peer_input_and_the_column(cli, shma, daemon, sink):
    cli("meetings", "schedule", shma, "--at", f"{datetime.now(UTC).year + 1}-02-18 16:00",
        "--tz", "UTC", "--duration", "60")
    cli("members", "add", shma, "ann@example.net")
    welcome = received(sink, "ann@example.net")
    assert str(welcome["From"]) == f'"SHMA (list owner)" <{OWNER}>'
    for n, command in enumerate(("help", "info"), start=2):
        lmtp_send(daemon.ports["lmtp"], "ann@example.net", ["shma-request@lists.example.org"],
                  make_message(sender="ann@example.net", to="shma-request@lists.example.org",
                               subject=command, body=f"{command}\n"))
        reply = received(sink, "ann@example.net", n)
        body = reply.get_content()
        assert "Next meetings" in body, body
        assert PEER_INPUT in body and COLUMN in body and "30 minutes" in body
        # Next to the meeting schedule: right after it.
        assert body.index("Next meetings") < body.index(PEER_INPUT)
    text = welcome.get_content()
    assert "The next meeting" in text and PEER_INPUT in text and COLUMN in text


@pytest.mark.parametrize("lang", ["en", "es", "fr", "de", "pt"])
@pytest.mark.parametrize("template", ["welcome.txt", "reply-help.txt", "reply-info.txt"])
def test_every_language_names_both_addresses(lang, template):
    ml = MailingList(name="shma", domain="lists.example.org", description="", resources="",
                     extra={"display_name": "Self-Help Mutual Aid"})
    ml.owners = []
    msg = Renderer().mail(template, domain=ml.domain, now=datetime.now(UTC), lang=lang,
                          to="ann@example.net", member=SimpleNamespace(name="Ann"),
                          is_member=True,
                          meetings=[{"when": "Thursday 18 February 2027, 16:00-17:00 UTC",
                                     "dial_in": ""}], leave_token_address="x@example.org",
                          **list_context(ml))
    body = msg.get_content()
    assert PEER_INPUT in body and COLUMN in body
    assert body.index("2027") < body.index(PEER_INPUT)
    if template == "welcome.txt":
        assert str(msg["From"]).startswith('"Self-Help Mutual Aid (') and OWNER in str(msg["From"])


def test_notices_come_from_the_display_name(cli, shma, daemon, sink):
    cli("lists", "set", shma, "display_name", "Self-Help Mutual Aid")
    lmtp_send(daemon.ports["lmtp"], "stranger@else.org", [LIST],
              make_message(sender="stranger@else.org"))
    notice = received(sink, "chair@example.org")
    assert str(notice["From"]) == f'"Self-Help Mutual Aid (list owner)" <{OWNER}>'
    cli("lists", "set", shma, "display_name", "--default")
    lmtp_send(daemon.ports["lmtp"], "stranger@else.org", [LIST],
              make_message(sender="stranger@else.org", subject="Again"))
    assert str(received(sink, "chair@example.org", 2)["From"]) == (
        f'"SHMA (list owner)" <{OWNER}>')
