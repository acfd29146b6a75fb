"""A member's post reaches every member exactly once, with the list headers (SPEC §3)."""

from __future__ import annotations

from collections import Counter

import pytest

from .helpers import LIST, lmtp_send, make_message, parse

MEMBERS = [f"member{i:02d}@example.net" for i in range(50)]


@pytest.fixture
def roster(cli, shma, tmp_path):
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("email,name\n" + "".join(f"{m},Member {m[6:8]}\n" for m in MEMBERS))
    cli("members", "import", shma, str(csv_file))
    return MEMBERS


@pytest.mark.both_backends
@pytest.mark.parametrize("personalize", ["true", "false"])
def test_post_reaches_each_member_once_with_list_headers(cli, roster, daemon, sink,
                                                         personalize):
    cli("lists", "set", LIST, "personalize", personalize)
    post = make_message(sender="Member 07 <member07@example.net>", subject="Agenda")

    assert lmtp_send(daemon.ports["lmtp"], "member07@example.net", [LIST], post) == {}

    sink.wait_for_recipients(len(MEMBERS), timeout=20)
    delivered = Counter(r.lower() for d in sink.deliveries for r in d.rcpt_tos)
    assert delivered == Counter({m: 1 for m in MEMBERS})
    envelopes, unsubscribes = set(), set()
    for delivery in sink.deliveries:
        copy = parse(delivery.data)
        assert copy["List-Id"] == "<shma.lists.example.org>"
        assert copy["List-Post"] == f"<mailto:{LIST}>"
        assert copy["List-Help"] == "<mailto:shma-request@lists.example.org?subject=help>"
        assert copy["List-Subscribe"] == "<mailto:shma-join@lists.example.org>"
        assert copy["Precedence"] == "list"
        assert copy["X-BeenThere"] == LIST
        assert copy["Subject"] == "[shma] Agenda"
        assert copy["Message-ID"] == parse(post)["Message-ID"]
        assert copy.get_content().count("shma mailing list -- shma@lists.example.org") == 1
        unsubscribe = copy["List-Unsubscribe"]
        assert unsubscribe is not None
        envelopes.add(delivery.mail_from)
        unsubscribes.add(str(unsubscribe))
    if personalize == "true":
        assert len(sink.deliveries) == len(MEMBERS)
        assert len(envelopes) == len(MEMBERS)
        assert all(e.startswith("shma-bounces+") and e.endswith("@lists.example.org")
                   for e in envelopes)
        assert len(unsubscribes) == len(MEMBERS)
        assert all(u.startswith("<mailto:shma-leave+") for u in unsubscribes)
        # Opaque tokens: no member's address inside them.
        assert not any(m.split("@")[0] in e for m in MEMBERS for e in envelopes)
    else:
        assert len(sink.deliveries) < len(MEMBERS)
        assert envelopes == {"shma-bounces@lists.example.org"}
        assert unsubscribes == {"<mailto:shma-leave@lists.example.org>"}


def test_personalized_envelopes_use_the_lists_public_addresses(cli, roster, daemon, sink):
    cli("lists", "set", LIST, "address.bounces", "group+bounces@provider.example")
    cli("lists", "set", LIST, "address.leave", "group+leave@provider.example")
    lmtp_send(daemon.ports["lmtp"], "member07@example.net", [LIST],
              make_message(sender="member07@example.net"))
    sink.wait_for_recipients(len(MEMBERS), timeout=20)
    for delivery in sink.deliveries:
        assert delivery.mail_from.startswith("group+bounces+")
        assert delivery.mail_from.endswith("@provider.example")
        assert str(parse(delivery.data)["List-Unsubscribe"]).startswith(
            "<mailto:group+leave+")
