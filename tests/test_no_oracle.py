"""No oracle, no backscatter (SPEC §2, issue 14): asking about another address tells the asker
nothing, strangers get few mails, and a requester's words reach nobody else."""

from __future__ import annotations

import json
import re

import pytest

from listserv.mail.addresses import untagged

from .helpers import LIST, parse, wait_handled, wait_settled
from .test_membership import REQUEST, confirm_address, mails_to, members, send, wait_mails

MALLORY = "mallory@evil.example"
BOB = "bob@example.net"


def without_date_and_id(delivery_data: bytes) -> bytes:
    """A reply as bytes, without the headers that differ between any two mails."""
    msg = parse(delivery_data)
    del msg["Date"], msg["Message-ID"]
    return msg.as_bytes()


@pytest.mark.parametrize("body,bob_is_asked", [
    ("subscribe bob@example.net", True),
    ("SUBSCRIBE SHMA bob@example.net", True),
    ("subscribe address=bob@example.net", True),
    ("Please add bob@example.net to the list, thanks.", True),
    ("unsubscribe bob@example.net", False),
    ("unsubscribe address=bob@example.net", False),
    ("set nomail for bob@example.net", False),
], ids=["subscribe", "listserv-form", "mailman-form", "free-text", "unsubscribe",
        "unsubscribe-mailman-form", "set-for"])
def test_asking_about_another_address_gets_the_same_reply_member_or_not(
        cli, shma, daemon, sink, store, body, bob_is_asked):
    send(daemon, MALLORY, REQUEST, "a question", body)
    wait_mails(sink, MALLORY, 1, "the reply while bob is not a member")
    wait_settled(store)
    before = mails_to(sink, BOB)
    replies = len(sink.messages_for(MALLORY))  # "set … for" is unclear: help and the results
    cli("members", "add", LIST, BOB, "--no-welcome")
    send(daemon, MALLORY, REQUEST, "a question", body)
    wait_mails(sink, MALLORY, 2 * replies, "the reply while bob is a member")
    wait_settled(store)
    answers = [without_date_and_id(d.data) for d in sink.messages_for(MALLORY)]
    # Sorted: the help and the results of one mail may reach the sink in either order.
    assert sorted(answers[:replies]) == sorted(answers[replies:])
    assert not any(b"already" in a or b"not a member" in a for a in answers)
    # Only bob learns the truth, from mail to bob himself.
    after = mails_to(sink, BOB)[len(before):]
    if bob_is_asked:
        [asked] = before
        assert "To confirm" in asked.get_content()
        [told] = after
        assert "already a member" in told.get_content()
        assert "To confirm" not in told.get_content()
    elif body.startswith("unsubscribe"):
        assert before == []  # a stranger is not asked to leave a list he is not on
        [asked] = after
        assert "leave" in str(asked["Subject"])
        assert BOB in members(cli)
    else:
        assert before == after == []


def test_sixty_subscribe_lines_send_at_most_three_confirmations_and_say_which_were_not_done(
        cli, shma, daemon, sink, store):
    targets = [f"target{n}@example.net" for n in range(60)]
    send(daemon, MALLORY, REQUEST, "friends",
         "".join(f"subscribe {target}\n" for target in targets))
    [reply] = wait_mails(sink, MALLORY, 1, "the results")
    wait_settled(store)
    assert sum(len(sink.messages_for(t)) for t in targets) == 3
    text = reply.get_content()
    for target in targets[:3]:
        assert f"subscribe: any confirmation goes to {target} itself" in text
    for target in targets[3:10]:  # commands 4 to 10: not done, and said so
        assert (f"subscribe {target}: not done (at most 3 requests for other addresses per "
                "message)") in text
    assert "Ignored (50 more lines" in text  # past the 10 commands a message may hold
    assert not any(t in text for t in targets[10:])


def test_tagged_addresses_share_one_cap():
    assert untagged("Victim+1@Example.ORG") == "victim@example.org"
    assert untagged("victim+a+b@example.org") == "victim@example.org"
    assert untagged("victim@example.org") == "victim@example.org"


@pytest.mark.both_backends
def test_confirmations_to_victim_plus_tags_count_against_one_cap(cli, shma, daemon, sink,
                                                                 store):
    tagged = ["victim+1@example.org", "victim+2@example.org"] * 2
    for n, address in enumerate(tagged):  # one request per mail: no per-message limit applies
        send(daemon, f"forger{n}@evil.example", REQUEST, "join", f"subscribe {address}")
    wait_handled(sink, store, len(tagged))
    wait_settled(store)
    assert sum(len(sink.messages_for(a)) for a in set(tagged)) == 3
    log = json.loads(cli("log", "--json", "--limit", "1000").output)
    assert [e["action"] for e in log].count("cap-suppressed") == 1


def test_a_requesters_text_reaches_no_mail_to_the_address_it_names(cli, shma, daemon, sink,
                                                                   store):
    victim = "victim@example.org"
    send(daemon, MALLORY, REQUEST, "Visit www.pills.example",
         "SUBSCRIBE SHMA victim@example.org Visit www.pills.example\n", name="Cheap Pills")
    [confirmation] = wait_mails(sink, victim, what="the confirmation")
    # The victim confirms, giving her own name: that one she chose, so she gets it.
    send(daemon, victim, confirm_address(confirmation), f"Re: {confirmation['Subject']}", "OK",
         name="Vic Tim")
    wait_mails(sink, victim, 2, "the welcome")
    wait_settled(store)
    for delivery in sink.messages_for(victim):
        text = delivery.data.decode("utf-8", "replace")
        assert not re.search(r"pills|visit|cheap|mallory", text, re.I)
    assert members(cli)[victim]["name"] == "Vic Tim"
