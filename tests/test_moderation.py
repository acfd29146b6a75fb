"""Held posts: announced to the owners, decided by the chair, expired with a notice (SPEC §2)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from listserv.posting import dmarc
from listserv.store.engine import Store

from .helpers import LIST, lmtp_send, make_message, parse, wait_settled

REQUEST = "shma-request@lists.example.org"
MEMBERS = ["ann@example.net", "ben@example.net", "cat@example.net"]


@pytest.fixture
def members(cli, shma):
    for member in MEMBERS:
        cli("members", "add", shma, member, "--no-welcome")
    return MEMBERS


def post_from_stranger(daemon, sink, subject="Conference announcement"):
    notices = len(sink.messages_for("chair@example.org"))
    post = make_message(sender="Stranger <stranger@else.org>", subject=subject)
    lmtp_send(daemon.ports["lmtp"], "stranger@else.org", [LIST], post)
    sink.wait_for(lambda s: len(s.messages_for("chair@example.org")) > notices,
                  description="held notice")
    return post


def held_items(cli):
    return json.loads(cli("held", "list", "--json").output)


def test_nonmember_post_is_held_and_announced_to_the_owner(cli, members, daemon, sink):
    post_from_stranger(daemon, sink)
    [notice] = sink.messages_for("chair@example.org")
    text = parse(notice.data)
    assert text["Subject"] == "shma: message #1 held for your approval"
    assert text["Auto-Submitted"] == "auto-generated"
    body = text.get_body(("plain",)).get_content()
    assert "stranger@else.org" in body and "Conference announcement" in body
    assert "listserv held approve 1" in body
    [item] = held_items(cli)
    assert item == {**item, "id": "1", "list": LIST, "sender": "stranger@else.org",
                    "subject": "Conference announcement",
                    "reason": "the sender stranger@else.org is not a member"}
    assert not any(sink.messages_for(m) for m in MEMBERS)
    shown = json.loads(cli("held", "show", "1", "--json").output)
    assert "Hello everyone." in shown["text"]


def test_approve_distributes_and_can_add_the_sender(cli, members, daemon, sink):
    post_from_stranger(daemon, sink)
    cli("held", "approve", "1", "--add-member")
    sink.wait_for(lambda s: all(s.messages_for(m) for m in MEMBERS), description="the post")
    copy = parse(sink.messages_for("ann@example.net")[0].data)
    assert copy["Subject"] == "[shma] Conference announcement"
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert "stranger@else.org" in emails
    assert held_items(cli) == []
    again = cli("held", "approve", "1", ok=False)
    assert again.exit_code != 0 and "already approved" in again.output


def test_approving_looks_up_the_authors_dmarc_before_the_write_transaction(
        cli, members, daemon, sink, dns_zone, monkeypatch):
    """A DNS lookup can take seconds; inside `held approve`'s unit of work it would hold the
    store's write lock that long (issue 13, hidden I/O)."""
    dns_zone.records["_dmarc.else.org"] = ["v=DMARC1; p=reject"]
    post_from_stranger(daemon, sink)
    queried_inside: list[str] = []  # DNS queries sent while this thread's unit of work was open
    real_unit_of_work = Store.unit_of_work

    @contextmanager
    def tracked(store: Store) -> Iterator[Session]:
        if threading.current_thread() is not threading.main_thread():
            with real_unit_of_work(store) as session:  # the daemon's threads
                yield session
            return
        before = len(dns_zone.queries)
        try:
            with real_unit_of_work(store) as session:
                yield session
        finally:
            queried_inside.extend(dns_zone.queries[before:])

    monkeypatch.setattr(Store, "unit_of_work", tracked)
    dmarc.set_default_lookup(None)  # forget what the router looked up when the post arrived
    dns_zone.queries.clear()
    cli("held", "approve", "1")
    assert "_dmarc.else.org" in dns_zone.queries  # looked up by `held approve`...
    assert queried_inside == []  # ...but not while it held the write lock
    sink.wait_for(lambda s: all(s.messages_for(m) for m in MEMBERS), description="the post")
    copy = parse(sink.messages_for("ann@example.net")[0].data)
    assert copy["From"] == "Stranger via SHMA <shma@lists.example.org>"
    assert copy["Reply-To"] == "Stranger <stranger@else.org>"


def test_reject_replies_from_the_template_and_discard_is_silent(cli, members, daemon, sink):
    post_from_stranger(daemon, sink, subject="First")
    post_from_stranger(daemon, sink, subject="Second")
    cli("held", "reject", "1", "--reason", "Off topic for this list.")
    sink.wait_for(lambda s: s.messages_for("stranger@else.org"), description="rejection")
    [rejection] = sink.messages_for("stranger@else.org")
    reply = parse(rejection.data)
    assert reply["Subject"] == f"Your message to {LIST} was not posted"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert "Off topic for this list." in reply.get_content()
    cli("held", "discard", "2")
    daemon.deliver_wake.set()
    log = json.loads(cli("log", "--json").output)
    assert [e["action"] for e in log][-2:] == ["held-rejected", "held-discarded"]
    sink.wait_for(lambda s: not daemon_has_queue(cli), description="empty queue")
    assert len(sink.messages_for("stranger@else.org")) == 1
    assert not any(sink.messages_for(m) for m in MEMBERS)


def daemon_has_queue(cli) -> bool:
    return any(i["direction"] == "outgoing" for i in json.loads(cli("queue", "--json").output))


def wait_delivered(cli, sink) -> None:
    """Before the clock jumps: an unrecorded delivery's lease would look expired after it."""
    sink.wait_for(lambda s: not daemon_has_queue(cli), description="an empty queue")


def test_expired_post_notifies_the_sender_and_summary_reaches_owner(
        cli, members, daemon, sink, clock):
    post_from_stranger(daemon, sink)
    wait_delivered(cli, sink)
    clock.advance(timedelta(days=1))
    daemon.run_scheduler()
    sink.wait_for(lambda s: len(s.messages_for("chair@example.org")) == 2,
                  description="daily summary")
    summary = parse(sink.messages_for("chair@example.org")[1].data)
    assert summary["Subject"] == "shma: 1 item is waiting for your decision"
    assert "#1  from stranger@else.org" in summary.get_content()
    # The same day brings no second summary.
    daemon.run_scheduler()
    wait_delivered(cli, sink)
    clock.advance(timedelta(days=14))
    daemon.run_scheduler()
    sink.wait_for(lambda s: s.messages_for("stranger@else.org"), description="expiry notice")
    notice = parse(sink.messages_for("stranger@else.org")[0].data)
    assert "nobody approved it in time" in notice.get_content()
    assert held_items(cli) == []
    assert "held-expired" in [e["action"] for e in json.loads(cli("log", "--json").output)]
    assert len(sink.messages_for("chair@example.org")) == 2


def test_nonmember_reject_policy_replies_and_discard_policy_is_silent(cli, members, daemon,
                                                                       sink):
    cli("lists", "set", LIST, "nonmember_action", "reject")
    lmtp_send(daemon.ports["lmtp"], "stranger@else.org", [LIST],
              make_message(sender="stranger@else.org"))
    sink.wait_for(lambda s: s.messages_for("stranger@else.org"), description="rejection")
    assert "only members" in parse(sink.messages_for("stranger@else.org")[0].data).get_content()
    cli("lists", "set", LIST, "nonmember_action", "discard")
    lmtp_send(daemon.ports["lmtp"], "other@else.org", [LIST],
              make_message(sender="other@else.org"))
    log = lambda: [e["action"] for e in json.loads(cli("log", "--json").output)]  # noqa: E731
    sink.wait_for(lambda s: log()[-1] == "discarded", description="discard logged")
    assert held_items(cli) == []
    assert not sink.messages_for("other@else.org")


def test_chair_notices_are_capped_per_hour_and_the_rest_wait_for_the_summary(
        cli, members, store, daemon, sink, clock):
    def notices() -> list:
        """The chair's mail, each once: on a loaded machine the tests' 2 s delivery lease can
        lapse while a copy is being recorded, and the copy is then sent again."""
        seen = {}
        for delivery in sink.messages_for("chair@example.org"):
            msg = parse(delivery.data)
            seen.setdefault(str(msg["Message-ID"]), msg)
        return list(seen.values())

    for n in range(30):
        post = make_message(sender=f"Stranger {n} <stranger{n}@else.org>", subject=f"Ad {n}")
        assert lmtp_send(daemon.ports["lmtp"], f"stranger{n}@else.org", [LIST], post) == {}
    wait_settled(store)
    assert len(held_items(cli)) == 30
    assert len(notices()) == 20
    capped = [e for e in json.loads(cli("log", "--json").output)
              if e["action"] == "chair-notice-capped"]
    assert len(capped) == 10
    # The next day's summary names all 30, the ten never announced among them.
    clock.advance(timedelta(days=1))
    daemon.run_scheduler()
    sink.wait_for(lambda s: len(notices()) == 21, description="daily summary")
    summary = notices()[-1]
    assert summary["Subject"] == "shma: 30 items are waiting for your decision"
    assert "from stranger29@else.org" in summary.get_content()
    # A new hour brings new notices. (First one round trip through the router: a pass that
    # began before the clock's jump may still hold the old time.)
    probe = make_message(sender="probe@example.net", to=REQUEST, subject="help", body="help")
    lmtp_send(daemon.ports["lmtp"], "probe@example.net", [REQUEST], probe)
    sink.wait_for(lambda s: s.messages_for("probe@example.net"), description="help")
    post_from_stranger(daemon, sink)
    assert len(notices()) == 22
