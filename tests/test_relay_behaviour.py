"""Delivery behind a real relay (issue 12, "Relay behaviour"): a dropped connection costs no
recipient anything, a run of refusals never leads into the relay's tarpit, and retries never
hold up the first attempt of newer mail.

The relay is `tests/scripted_smtp.py`, which keeps Postfix's error count (the same behaviour
against a real Postfix is in tests/test_postfix_e2e.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from listserv.clock import FakeClock
from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.delivery.claim import claim, record
from listserv.delivery.due import RETRY_OVERDUE
from listserv.delivery.limits import SendLimits
from listserv.delivery.outbox import enqueue
from listserv.delivery.transports import Dialogue, Outcome, Result, SmtpTransport, outcome
from listserv.store.models.features import BounceEvent, BounceScore
from listserv.store.models.outgoing import OutRecipient

from .helpers import LIST, lmtp_send, make_message, write_config
from .scripted_smtp import ScriptedSmtp

SENDER = "shma-bounces@lists.example.org"
MESSAGE = make_message()
SENT = Result(Outcome.SENT)
GOOD = [f"good{i}@example.net" for i in range(15)]
DEAD = [f"gone{i}@example.net" for i in range(10)]
UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"


@pytest.fixture
def relay() -> Iterator[ScriptedSmtp]:
    with ScriptedSmtp() as server:
        yield server


@pytest.fixture
def transport(relay, tmp_path) -> Iterator[SmtpTransport]:
    settings = load_settings(None, data_dir=str(tmp_path), outbound={
        "transport": "smtp", "host": "127.0.0.1", "port": relay.port}).outbound
    client = SmtpTransport(settings)
    yield client
    client.close()


def refuse(relay: ScriptedSmtp, addresses: list[str]) -> None:
    relay.rcpt_replies.update({a: UNKNOWN.format(a) for a in addresses})


# -- what the relay's answers mean (pure) ------------------------------------------------------


OK, TAKEN, GO_ON = (250, b"2.1.0 Ok"), (250, b"2.1.5 Ok"), (354, b"End data")
GONE = (550, b"5.1.1 User unknown")
BUSY = (450, b"4.2.2 Mailbox full")
BYE = (421, b"4.7.0 Error: too many errors")


@pytest.mark.parametrize(("dialogue", "results", "again"), [
    (Dialogue(OK, [TAKEN, GONE], GO_ON, (250, b"Ok")),
     {"a": SENT, "b": Result(Outcome.PERMANENT, "550 5.1.1 User unknown", True)}, []),
    (Dialogue(OK, [BUSY, TAKEN], GO_ON, (250, b"Ok")),
     {"a": Result(Outcome.TEMPORARY, "450 4.2.2 Mailbox full", True), "b": SENT}, []),
    # The whole transaction refused, at MAIL FROM or after the data: nobody's fault.
    (Dialogue((451, b"4.3.0 Try later"), [], None, None),
     {r: Result(Outcome.TEMPORARY, "451 4.3.0 Try later") for r in "ab"}, []),
    (Dialogue(OK, [TAKEN, TAKEN], GO_ON, (554, b"5.6.0 Bad message")),
     {r: Result(Outcome.TEMPORARY, "554 5.6.0 Bad message") for r in "ab"}, []),
    (Dialogue(OK, [GONE, TAKEN], (451, b"4.3.0 No"), None),
     {"a": Result(Outcome.PERMANENT, "550 5.1.1 User unknown", True),
      "b": Result(Outcome.TEMPORARY, "451 4.3.0 No")}, []),
    # The connection dropped: what the relay answered stands, the rest goes again.
    (Dialogue(None, dropped="connection: closed"), {}, ["a", "b"]),
    (Dialogue(BYE, dropped="421 4.7.0 Error: too many errors"), {}, ["a", "b"]),
    (Dialogue(OK, [GONE, BYE], dropped="421"),
     {"a": Result(Outcome.PERMANENT, "550 5.1.1 User unknown", True)}, ["b"]),
    (Dialogue(OK, [TAKEN, GONE], GO_ON, None, dropped="connection: closed"),
     {"b": Result(Outcome.PERMANENT, "550 5.1.1 User unknown", True)}, ["a"]),
    # Dropped after the whole message went: the relay may have it. Retried later, not at once.
    (Dialogue(OK, [TAKEN, GONE], GO_ON, None, dropped="connection: timed out", body_sent=True),
     {"a": Result(Outcome.TEMPORARY, "message sent, not acknowledged: connection: timed out"),
      "b": Result(Outcome.PERMANENT, "550 5.1.1 User unknown", True)}, []),
    (Dialogue(OK, [TAKEN, TAKEN], GO_ON, BYE, dropped="421", body_sent=True),
     {r: Result(Outcome.TEMPORARY,
                "message sent, not acknowledged: 421 4.7.0 Error: too many errors")
      for r in "ab"}, []),
])
def test_the_relays_answers_become_results_or_a_new_try(dialogue, results, again):
    assert outcome(["a", "b"], dialogue) == (results, again)


# -- a dropped connection ----------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("farewell", ["", "421 4.4.2 relay.test Error: timeout exceeded"])
def test_a_dropped_reused_connection_is_sent_again_at_once_on_a_new_one(relay, transport,
                                                                        pipelining, farewell):
    relay.pipelining = pipelining
    relay.drop_after, relay.hangup_reply = 1, farewell  # gone after each message it takes
    for address in GOOD[:3]:
        assert transport.send(SENDER, [address], MESSAGE) == {address: SENT}
    assert [(d.rcpt_tos, d.connection) for d in relay.deliveries] == [
        ([GOOD[0]], 1), ([GOOD[1]], 2), ([GOOD[2]], 3)]


@pytest.mark.parametrize("reused", [False, True])
def test_a_drop_after_the_message_was_sent_is_no_second_copy(relay, transport, reused):
    """A relay with a slow content filter: it queued the message, then the connection went."""
    if reused:
        assert transport.send(SENDER, [GOOD[0]], MESSAGE) == {GOOD[0]: SENT}
    relay.drop_before_final = True
    results = transport.send(SENDER, GOOD[1:3], MESSAGE)
    assert {r.outcome for r in results.values()} == {Outcome.TEMPORARY}
    assert not any(r.about_recipient for r in results.values())
    assert [d.rcpt_tos for d in relay.deliveries][-1:] == [GOOD[1:3]]
    assert len(relay.deliveries) == 1 + reused and relay.connections == 1


def test_the_final_reply_may_take_longer_than_a_command(relay, tmp_path, monkeypatch):
    settings = load_settings(None, data_dir=str(tmp_path), outbound={
        "transport": "smtp", "host": "127.0.0.1", "port": relay.port}).outbound
    client = SmtpTransport(settings, timeout=0.2)
    relay.final_delay = 0.6  # the relay scans the message longer than a command may take
    try:
        assert client.send(SENDER, [GOOD[0]], MESSAGE) == {GOOD[0]: SENT}
    finally:
        client.close()
    assert len(relay.deliveries) == 1 and relay.connections == 1


def test_a_non_ascii_sender_without_smtputf8_fails_for_good_and_keeps_the_connection(
        relay, transport):
    assert transport.send(SENDER, [GOOD[0]], MESSAGE) == {GOOD[0]: SENT}
    refused = Result(Outcome.PERMANENT, "envelope sender: 553 5.6.7 a non-ASCII address, "
                     "and the relay does not offer SMTPUTF8")
    assert transport.send("josé-bounces@lists.example.org", GOOD[1:3], MESSAGE) == dict.fromkeys(
        GOOD[1:3], refused)
    assert transport.send(SENDER, [GOOD[3]], MESSAGE) == {GOOD[3]: SENT}
    assert relay.connections == 1  # the healthy connection was kept


def test_a_relay_that_refuses_a_new_connection_too_is_a_temporary_failure(relay, transport):
    assert transport.send(SENDER, [GOOD[0]], MESSAGE) == {GOOD[0]: SENT}
    relay.mail_reply = "421 4.3.2 relay.test Service shutting down"
    assert transport.send(SENDER, [GOOD[1]], MESSAGE) == {
        GOOD[1]: Result(Outcome.TEMPORARY, "421 4.3.2 relay.test Service shutting down")}
    assert relay.connections == 2  # the old connection, then one new one: no loop
    transport.send(SENDER, [GOOD[1]], MESSAGE)
    assert relay.connections == 3


# -- the tarpit --------------------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_run_of_refusals_opens_a_new_connection_before_the_tarpit(relay, transport,
                                                                    pipelining):
    """25 members, 10 of them refused in a row, one transaction each (personalized)."""
    relay.pipelining = pipelining
    refuse(relay, DEAD)
    results = {}
    for address in GOOD[:8] + DEAD + GOOD[8:]:
        results |= transport.send(SENDER, [address], MESSAGE)
    assert {a: results[a] for a in GOOD} == dict.fromkeys(GOOD, SENT)
    assert {a: results[a] for a in DEAD} == {
        a: Result(Outcome.PERMANENT, UNKNOWN.format(a), True) for a in DEAD}
    assert (relay.tarpitted, relay.hangups) == (0, 0)
    assert relay.connections > 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_relay_that_hangs_up_mid_transaction_keeps_the_answers_it_gave(relay, transport,
                                                                         pipelining):
    """One transaction of 30 (not personalized), 25 refused: Postfix says 421 at the 21st."""
    relay.pipelining = pipelining
    dead = [f"gone{i}@example.net" for i in range(25)]
    refuse(relay, dead)
    results = transport.send(SENDER, dead + GOOD[:5], MESSAGE)
    assert {a: results[a].outcome for a in dead} == dict.fromkeys(dead, Outcome.PERMANENT)
    assert {a: results[a] for a in GOOD[:5]} == dict.fromkeys(GOOD[:5], SENT)
    assert relay.hangups == 1
    assert [(d.rcpt_tos, d.connection) for d in relay.deliveries] == [(GOOD[:5], 2)]


def test_the_worker_charges_no_member_for_a_dropped_connection(cli, shma, relay, tmp_path,
                                                               db_url, store):
    """Every copy of a post goes out in the first round although the relay hangs up after
    each message: no attempt is counted, nothing waits for a retry an hour later."""
    for address in GOOD[:4]:
        cli("members", "add", shma, address, "--no-welcome")
    relay.drop_after = 1
    config = write_config(tmp_path / "relay.toml", tmp_path / "data", db_url, relay.port,
                          retry_base_seconds=3600, max_connections=1)
    daemon = Daemon(load_settings(config), clock=FakeClock(datetime.now(UTC), running=True))
    daemon.start()
    try:
        lmtp_send(daemon.ports["lmtp"], GOOD[0], [LIST], make_message(sender=GOOD[0]))
        wait_for(lambda: sorted(relay.delivered_to()) == GOOD[:4], "every copy delivered")
        wait_for(lambda: rows(store) == [("sent", 0)] * 4, "the results recorded")
    finally:
        daemon.stop()
    assert relay.connections == 4


def test_a_drop_after_the_message_was_sent_waits_for_the_backoff_and_scores_nobody(
        cli, shma, relay, tmp_path, db_url, store):
    for address in GOOD[:2]:
        cli("members", "add", shma, address, "--no-welcome")
    relay.drop_before_final = True
    config = write_config(tmp_path / "relay.toml", tmp_path / "data", db_url, relay.port,
                          retry_base_seconds=3600, max_connections=1)
    daemon = Daemon(load_settings(config), clock=FakeClock(datetime.now(UTC), running=True))
    daemon.start()
    try:
        lmtp_send(daemon.ports["lmtp"], GOOD[0], [LIST], make_message(sender=GOOD[0]))
        wait_for(lambda: rows(store) == [("queued", 1)] * 2, "the temporary failure recorded")
    finally:
        daemon.stop()
    assert sorted(relay.delivered_to()) == GOOD[:2]  # one copy each, no second one at once
    with store.unit_of_work() as session:
        assert session.scalars(select(BounceScore)).all() == []
        assert session.scalars(select(BounceEvent)).all() == []
        assert all(r.last_error.startswith("message sent, not acknowledged")
                   for r in session.scalars(select(OutRecipient)))


def test_a_permanent_failure_of_the_sender_fails_the_row_and_scores_nobody(store, settings):
    class NoScoring:
        def delivered(self, session, recipient_ids, now):
            pass

        def refused(self, session, row, reply, now):
            raise AssertionError("a failure not about the recipient was scored")

        def gave_up(self, session, row, reply, now):
            raise AssertionError("a failure not about the recipient was scored")

    now = datetime.now(UTC)
    with store.unit_of_work() as session:
        enqueue(session, b"x", GOOD[:1], envelope_from=SENDER, kind="notice", now=now)
    with store.unit_of_work() as session:
        batch = claim(session, now, timedelta(minutes=1), 10)
        assert batch is not None
        refused = Result(Outcome.PERMANENT, "envelope sender: 553 5.6.7 non-ASCII")
        record(session, {rid: refused for rid, _ in batch.recipients}, now, settings.outbound,
               batch.created_at, NoScoring())
    assert rows(store) == [("failed", 1)]


def rows(store) -> list[tuple[str, int]]:
    with store.unit_of_work() as session:
        return [(r.status, r.attempts) for r in session.scalars(select(OutRecipient))]


def wait_for(condition: Callable[[], bool], description: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {description}"
        time.sleep(0.02)


# -- retries wait their turn -------------------------------------------------------------------


@pytest.mark.both_backends
@pytest.mark.parametrize("limited", [False, True])
def test_a_new_message_is_claimed_before_hundreds_of_due_retries(store, limited):
    """A post accepted now goes out now, while 900 old retries wait their turn."""
    now = datetime.now(UTC)
    limits = SendLimits(messages_per_minute=100) if limited else None
    with store.unit_of_work() as session:
        old = enqueue(session, b"old", [f"m{i}@example.net" for i in range(900)],
                      envelope_from=SENDER, kind="notice", now=now - timedelta(hours=2)).id
        session.execute(update(OutRecipient).where(OutRecipient.message_id == old).values(
            attempts=1, next_attempt_at=now - timedelta(hours=1), last_error="451 4.3.0 Later"))
        new = enqueue(session, b"new", GOOD[:3], envelope_from=SENDER, kind="post",
                      now=now).id
    claimed = []
    while True:
        with store.unit_of_work() as session:
            batch = claim(session, now, timedelta(minutes=1), 500, limits)
        if batch is None:
            break
        claimed.append((batch.message_id, len(batch.recipients)))
    assert claimed == [(new, 3), (old, 500), (old, 400)]


@pytest.mark.both_backends
def test_under_a_limit_a_steady_stream_of_new_mail_lets_an_overdue_retry_through(store):
    """12 new messages a minute against a limit of 10 transactions a minute: first attempts are
    always waiting, yet a retry held back past RETRY_OVERDUE is sent, and new mail keeps going
    out too."""
    start = datetime.now(UTC)
    limits = SendLimits(messages_per_minute=10)
    with store.unit_of_work() as session:
        retry = enqueue(session, b"old", [GOOD[0]], envelope_from=SENDER, kind="notice",
                        now=start - timedelta(hours=3)).id
        session.execute(update(OutRecipient).where(OutRecipient.message_id == retry).values(
            attempts=1, last_error="451 4.3.0 Later",
            next_attempt_at=start - RETRY_OVERDUE + timedelta(minutes=5)))
    claimed: list[tuple[int, int]] = []  # (minute, message id)
    for minute in range(10):
        now = start + timedelta(minutes=minute)
        with store.unit_of_work() as session:
            for n in range(12):
                enqueue(session, b"new", [f"new{minute}.{n}@example.net"],
                        envelope_from=SENDER, kind="post", now=now)
        while True:
            with store.unit_of_work() as session:
                batch = claim(session, now, timedelta(minutes=1), 500, limits)
                if batch is not None:  # sent (what record() writes, without feedback)
                    session.execute(update(OutRecipient).where(
                        OutRecipient.message_id == batch.message_id).values(status="sent"))
            if batch is None:
                break
            claimed.append((minute, batch.message_id))
    (when,) = [minute for minute, message in claimed if message == retry]
    assert 5 <= when <= 6
    assert len(claimed) == 100  # the limit, used in full, by new mail in every other slot
