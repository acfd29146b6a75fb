"""A crash in the middle of a large delivery loses nobody and repeats little (docs/delivery.md).

Acceptance point 7: SIGKILL the daemon in the middle of a 5,000-member delivery, restart it, and
every member has the post at the sink, with at most one in-flight batch per connection sent twice
(`max_recipients_per_transaction` x `max_connections`). A clean stop (SIGTERM) finishes the
batches in flight, exits 0, and the next start delivers the rest exactly once.

The daemon runs as a real process (`listserv --config FILE serve`), so a SIGKILL is a real crash:
no `finally`, no commit, sockets closed by the kernel. The sink holds each end-of-DATA reply for a
while (`delay_per_transaction`) so that the kill lands in the middle, with transactions in flight.

Without a crash nothing is sent twice, even through a relay so slow that one batch takes longer
than `claim_lease_seconds`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listserv.config import Settings
from listserv.store.engine import Store
from listserv.store.models.outgoing import OutRecipient

from .daemons import DaemonProcess
from .helpers import LIST, lmtp_send, make_message, write_config
from .smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

TOTAL = 5000
BATCH = 50  # outbound.max_recipients_per_transaction
CONNECTIONS = 2  # outbound.max_connections
MAX_DUPLICATES = BATCH * CONNECTIONS  # one in-flight batch per connection
MEMBERS = [f"member{i:04d}@example.net" for i in range(TOTAL)]
POSTER = MEMBERS[7]
KILL_AT = TOTAL * 2 // 5  # recipients acknowledged by the sink when the daemon dies

# Seconds the sink holds each end-of-DATA reply, so a whole delivery takes several seconds:
# 100 transactions of 50 recipients, or 5,000 transactions of one (personalized).
DELAY = {"false": 0.1, "true": 0.002}

DRAIN_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


Spawn = Callable[[], DaemonProcess]


@pytest.fixture
def lease_seconds() -> int:
    """`claim_lease_seconds`: the shared config's 2 s unless a test says otherwise."""
    return 2


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, sink: SmtpSink, lease_seconds: int) -> Path:
    """The shared fixture's config, with small batches over two connections."""
    return write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port,
                        max_recipients_per_transaction=BATCH, max_connections=CONNECTIONS,
                        claim_lease_seconds=lease_seconds)


@pytest.fixture
def spawn(config_path: Path, settings: Settings, tmp_path: Path) -> Iterator[Spawn]:
    """Start daemons in subprocesses; any still running at the end are killed."""
    started: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        daemon = DaemonProcess(config_path, settings.run_dir,
                               tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.reap()


def import_members(cli, tmp_path: Path, members: list[str]) -> list[str]:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("email,name\n" + "".join(f"{m},Member {m[6:10]}\n" for m in members))
    result = cli("members", "import", LIST, str(csv_file))
    assert f"imported {len(members)} members" in result.output
    return members


@pytest.fixture
def roster(cli, shma: str, tmp_path: Path) -> list[str]:
    return import_members(cli, tmp_path, MEMBERS)


def queue_state(store: Store) -> Counter[str]:
    """Recipient rows by status, plus "leased": queued rows still claimed by some worker."""
    with store.unit_of_work() as session:
        rows = session.execute(
            select(OutRecipient.status, OutRecipient.lease_until.is_not(None), func.count())
            .group_by(OutRecipient.status, OutRecipient.lease_until.is_not(None))
        ).all()
    state: Counter[str] = Counter()
    for status, leased, count in rows:
        state[status] += count
        if status == "queued" and leased:
            state["leased"] += count
    return state


def wait_until_drained(store: Store, daemon: DaemonProcess, sink: SmtpSink) -> None:
    """Until the post is routed and no recipient row is queued any more (all recorded)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (state := queue_state(store))["queued"] or not sum(state.values()):
        if not daemon.running():
            raise AssertionError(f"the daemon died:\n{daemon.log_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not delivered in {DRAIN_TIMEOUT:g}s: queue {dict(state)}, "
                                 f"{sink}\n{daemon.log_text()}")
        time.sleep(0.05)


def copies(sink: SmtpSink) -> Counter[str]:
    """How many copies of the post each address received."""
    with sink._lock:
        deliveries = list(sink.deliveries)
    return Counter(r.lower() for d in deliveries if d.mail_from.startswith("shma-bounces")
                   for r in d.rcpt_tos)


def kill_when_acknowledged(sink: SmtpSink, daemon: DaemonProcess, at: int) -> None:
    """SIGKILL the daemon from inside the sink, as soon as `at` recipients are recorded.

    The kill happens after the sink has recorded a transaction and before its 250 reply is
    written: the worst moment, a copy the server took but the daemon never learnt of.
    """
    record = sink._record
    fired = False

    def record_then_kill(mail_from: str, rcpts: list[str], data: bytes,
                         options: tuple[str, ...]) -> None:
        nonlocal fired
        record(mail_from, rcpts, data, options)
        if not fired and sink.recipients >= at:
            fired = True
            os.kill(daemon.pid, signal.SIGKILL)

    sink._record = record_then_kill  # type: ignore[method-assign]


# A lease nearer the product's (60 s): with 2 s, a worker stalled that long on a busy machine
# loses rows it is still sending to the other connection, a duplicate the crash did not cause.
@pytest.mark.parametrize("lease_seconds", [6])
@pytest.mark.parametrize("kill_point", ["acknowledged", "in-flight"])
@pytest.mark.parametrize("personalize", ["true", "false"])
def test_sigkill_mid_delivery_then_restart_loses_nobody(
    cli, roster: list[str], sink: SmtpSink, store: Store, spawn: Spawn, personalize: str,
    kill_point: str,
) -> None:
    cli("lists", "set", LIST, "personalize", personalize)
    sink.delay_per_transaction = DELAY[personalize]
    first = spawn()
    if kill_point == "acknowledged":
        kill_when_acknowledged(sink, first, KILL_AT)

    post = make_message(sender=POSTER, subject="Big delivery")
    assert lmtp_send(first.ports["lmtp"], POSTER, [LIST], post) == {}

    if kill_point == "in-flight":
        # Kill while the sink holds replies: those transactions were never acknowledged.
        sink.wait_for(lambda s: s.recipients >= KILL_AT and s.pending > 0, timeout=20,
                      description=f"{KILL_AT} recipients, transactions in flight")
        assert first.kill() == -signal.SIGKILL
    else:
        assert first.proc.wait(20) == -signal.SIGKILL
    # The dead daemon's held transactions are dropped by the sink, never recorded.
    sink.wait_for(lambda s: s.pending == 0, timeout=5, description="no transaction pending")
    at_kill = sink.recipients
    assert TOTAL // 5 <= at_kill <= TOTAL * 3 // 5, at_kill
    state = queue_state(store)
    assert state["queued"] > 0, state  # the crash really interrupted the delivery
    assert state["leased"] > 0, state  # and left batches claimed by the dead workers

    second = spawn()
    wait_until_drained(store, second, sink)
    code, _ = second.terminate()
    assert code == 0, second.log_text()

    state = queue_state(store)
    assert state == Counter({"sent": TOTAL}), state
    received = copies(sink)
    missing = [m for m in MEMBERS if received[m] == 0]
    assert missing == [], f"{len(missing)} members missing, e.g. {missing[:5]}"
    assert set(received) == set(MEMBERS)
    extra = sum(received.values()) - TOTAL
    assert extra <= MAX_DUPLICATES, (extra, Counter(received.values()))
    if kill_point == "acknowledged":
        # The sink took a transaction whose reply the daemon never read: it is sent again.
        assert extra >= 1, extra


@pytest.mark.parametrize("personalize", ["true", "false"])
def test_sigterm_stops_cleanly_and_restart_resumes_delivery(
    cli, roster: list[str], sink: SmtpSink, store: Store, spawn: Spawn, personalize: str,
) -> None:
    cli("lists", "set", LIST, "personalize", personalize)
    sink.delay_per_transaction = DELAY[personalize]
    first = spawn()
    post = make_message(sender=POSTER, subject="Big delivery")
    assert lmtp_send(first.ports["lmtp"], POSTER, [LIST], post) == {}
    sink.wait_for(lambda s: s.recipients >= KILL_AT and s.pending > 0, timeout=20,
                  description=f"{KILL_AT} recipients, transactions in flight")

    code, seconds = first.terminate()
    assert code == 0, first.log_text()
    assert seconds < STOP_TIMEOUT, (seconds, first.log_text())
    assert "listserv stopped" in first.log_text()
    # The batches in flight were finished and recorded; nothing is left claimed.
    assert sink.pending == 0
    at_stop = sink.recipients
    assert at_stop < TOTAL
    state = queue_state(store)
    assert state["sent"] == at_stop, (state, at_stop)
    assert state["queued"] == TOTAL - at_stop, (state, at_stop)
    assert state["leased"] == 0, state

    second = spawn()
    wait_until_drained(store, second, sink)
    code, _ = second.terminate()
    assert code == 0, second.log_text()

    assert queue_state(store) == Counter({"sent": TOTAL})
    received = copies(sink)
    assert received == Counter(dict.fromkeys(MEMBERS, 1)), Counter(received.values())


def test_batch_slower_than_its_lease_is_not_sent_twice(
    cli, shma: str, tmp_path: Path, sink: SmtpSink, store: Store, spawn: Spawn,
) -> None:
    """Without any crash, every member gets exactly one copy, however slow the relay.

    Personalized, a batch is 50 one-member transactions; at 60 ms each it takes 3 s, longer
    than the 2 s lease of the test config. The lease must not lapse while its holder is still
    sending, or the other connection claims the same rows and sends them again.
    """
    members = import_members(cli, tmp_path, MEMBERS[:4 * BATCH])
    sink.delay_per_transaction = 0.06
    daemon = spawn()
    post = make_message(sender=POSTER, subject="Slow relay")
    assert lmtp_send(daemon.ports["lmtp"], POSTER, [LIST], post) == {}

    wait_until_drained(store, daemon, sink)
    code, _ = daemon.terminate()
    assert code == 0, daemon.log_text()

    received = copies(sink)
    assert set(received) == set(members)
    twice = sorted(m for m, n in received.items() if n > 1)
    assert twice == [], (f"{len(twice)} members got the post more than once, e.g. {twice[:3]}; "
                         f"members by copies received: {dict(Counter(received.values()))}")
