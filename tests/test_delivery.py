"""Per-recipient delivery results: retries with backoff, permanent failures, give-up, and
messages whose handling failed staying visible in `listserv queue`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from listserv.delivery import worker
from listserv.mail.addresses import Role
from listserv.router.dispatch import HANDLERS
from listserv.store.models.core import Inbound
from listserv.store.models.outgoing import OutRecipient

from .helpers import LIST, lmtp_send, make_message


@pytest.fixture
def members(cli, shma):
    for member in ("jane@example.org", "ann@example.net", "bob@example.net"):
        cli("members", "add", shma, member, "--no-welcome")


def queue(cli):
    """What `listserv queue` says is still to be done."""
    return json.loads(cli("queue", "--json").output)


def failures(cli):
    """The final failures, which `listserv queue` shows only with --failed."""
    return json.loads(cli("queue", "--failed", "--json").output)


@pytest.mark.both_backends
@pytest.mark.parametrize("personalize", ["true", "false"])
def test_temporary_failure_is_retried_and_permanent_one_recorded(cli, members, daemon, sink,
                                                                 personalize):
    cli("lists", "set", LIST, "personalize", personalize)
    sink.rcpt_responses["ann@example.net"] = "450 4.2.1 Mailbox busy, try later"
    sink.rcpt_responses["bob@example.net"] = "550 5.1.1 No such user"
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message())
    sink.wait_for(lambda s: s.messages_for("jane@example.org"), description="jane's copy")
    sink.wait_for(lambda s: any("Mailbox busy" in i["reason"] for i in queue(cli)),
                  description="the temporary failure in the queue")
    assert [(i["recipients"], i["reason"]) for i in failures(cli)] == [
        ("bob@example.net", "550 5.1.1 No such user")]
    assert [i["recipients"] for i in queue(cli)] == ["1"]  # ann's retry, still to be done
    del sink.rcpt_responses["ann@example.net"]
    daemon.clock.advance(timedelta(seconds=5))
    daemon.deliver_wake.set()
    sink.wait_for(lambda s: s.messages_for("ann@example.net"), description="ann's retry")
    assert len(sink.messages_for("ann@example.net")) == 1
    assert not sink.messages_for("bob@example.net")
    sink.wait_for(lambda s: queue(cli) == [], description="the retry recorded")


@pytest.mark.both_backends
def test_delivery_gives_up_after_five_days(cli, members, daemon, sink):
    sink.rcpt_responses["ann@example.net"] = "451 4.3.0 Greylisted"
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message())
    sink.wait_for(lambda s: any("Greylisted" in i["reason"] for i in queue(cli)),
                  description="first temporary failure")

    # One jump past the five days (small repeated jumps could expire the lease of a batch
    # still in flight): the next attempt gives up instead of planning another retry.
    daemon.clock.advance(timedelta(days=6))
    daemon.deliver_wake.set()
    sink.wait_for(lambda s: failures(cli), timeout=30, description="the give-up")
    assert queue(cli) == []
    [failed] = failures(cli)
    assert failed["recipients"] == "ann@example.net"
    assert failed["reason"].startswith("gave up after 5 days: 451 4.3.0 Greylisted")


def test_a_failing_handler_leaves_the_message_failed_and_visible(cli, members, daemon, sink,
                                                                 monkeypatch, store):
    def broken(ctx):
        raise RuntimeError("handler bug")

    monkeypatch.setitem(HANDLERS, Role.POST, broken)
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message(subject="Kept"))
    sink.wait_for(lambda s: any(i["direction"] == "incoming" and "handler bug" in i["reason"]
                                for i in failures(cli)), description="the failure in the queue")
    assert queue(cli) == []  # nothing more to be done: a final failure, shown with --failed
    [item] = [i for i in failures(cli) if i["direction"] == "incoming"]
    assert item["reason"] == "RuntimeError: handler bug"
    assert sink.deliveries == []
    with store.unit_of_work() as session:
        row = session.scalars(select(Inbound)).one()
        assert b"Subject: Kept" in row.raw and row.status == "failed"


def test_results_that_cannot_be_recorded_twice_still_mark_the_sent_copies_sent(
        cli, members, daemon, sink, store, clock, monkeypatch):
    """Recording a batch fails twice (the same bug each time): the copies the sink took are
    marked sent on their own, so the batch is not sent again when its lease lapses."""
    failed: list[int] = []
    real = worker.record

    def record(session, results, *args, **kwargs):
        if len(failed) < 2:
            failed.append(len(results))
            raise RuntimeError("a bug in recording")
        return real(session, results, *args, **kwargs)

    monkeypatch.setattr(worker, "record", record)
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST],
              make_message(sender="jane@example.org", subject="Recorded at last"))

    def statuses() -> list[str]:
        with store.reading() as session:
            return [r.status for r in session.scalars(select(OutRecipient))]

    sink.wait_for(lambda s: len(failed) == 2 and statuses() == ["sent"] * 3,
                  description="the sent copies marked sent after two failed records")
    clock.advance(timedelta(minutes=5))  # every lease long lapsed
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST],
              make_message(sender="jane@example.org", subject="The next post"))
    sink.wait_for(lambda s: len(statuses()) == 6 and statuses().count("sent") == 6,
                  description="the next post delivered")
    copies = [r for d in sink.deliveries if "Recorded at last" in d.message["Subject"]
              for r in d.rcpt_tos]
    assert sorted(copies) == sorted(["jane@example.org", "ann@example.net", "bob@example.net"])
