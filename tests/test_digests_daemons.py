"""Digests across crashes, restarts and a second daemon (issue 17, acceptance 2): real processes.

Posts collected by one daemon, which is then killed; two daemons start together one minute
after the digest moment on the same database, one is killed after the digest went out and
started again two hours later: each digest member gets the day's digest once. The daemons run
on fake clocks (tests/fake_clock_cli.py); `serve -v` logs "digest work done" after each
scheduler pass, which is how the test knows a daemon has had its chance.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listserv.store.engine import Store
from listserv.store.models.features import Digest, DigestPost
from listserv.store.models.outgoing import OutMessage, OutRecipient

from .daemons import Start, daemons_on_one_database
from .helpers import LIST, lmtp_send, make_message, parse
from .smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

REGULAR = "rita@example.net"
DIGEST_MEMBERS = {"dora@example.net": "digest", "dan@example.net": "digest",
                  "paul@example.net": "digest-plain"}
TIMEOUT = 30.0
PASS_DONE = "digest work done"
SUBJECT = "SHMA Digest, Vol 1, Issue 1"


@pytest.fixture
def start(tmp_path: Path, db_url: str, sink: SmtpSink) -> Iterator[Start]:
    """Start daemon NAME (its own data folder and ports, the shared database); no waiting."""
    with daemons_on_one_database(tmp_path, db_url, sink.port, PASS_DONE, TIMEOUT) as run:
        yield run


def digest_mails(sink: SmtpSink, address: str) -> list[str]:
    """The Subjects of the digests `address` received, each message once (a copy sent again
    after a SIGKILL or a lapsed lease is the same message: delivery is at least once,
    docs/delivery.md; the digest itself must not repeat)."""
    found = {str(m["Message-ID"]): str(m["Subject"])
             for m in (parse(d.data) for d in sink.messages_for(address))}
    return [s for s in found.values() if "Digest" in s]


def recorded(store: Store) -> Callable[[SmtpSink], bool]:
    """Every delivery recorded (a SIGKILL before that may send a copy again: at least once,
    docs/delivery.md; the digest itself must not repeat)."""
    def check(_sink: SmtpSink) -> bool:
        with store.reading() as session:
            return not session.scalar(select(func.count()).select_from(OutRecipient)
                                      .where(OutRecipient.status == "queued"))
    return check


@pytest.mark.both_backends
def test_kill_restart_and_second_daemon_send_each_digest_once(cli, shma, store, sink, start):
    cli("members", "add", shma, REGULAR, "--no-welcome")
    for address, delivery in DIGEST_MEMBERS.items():
        cli("members", "add", shma, address, "--no-welcome")
        cli("members", "set", shma, address, "--delivery", delivery)

    # The day's posts, taken by one daemon, which then crashes.
    today = datetime.now(UTC)
    first = start("a", today)
    first.wait_for_pass()
    for subject in ("Tea on Thursday", "Who has the key?"):
        assert lmtp_send(first.ports["lmtp"], REGULAR, [LIST],
                         make_message(sender=REGULAR, subject=subject)) == {}
    sink.wait_for(lambda s: len(s.messages_for(REGULAR)) >= 2, timeout=TIMEOUT,
                  description="the posts to the regular member")
    sink.wait_for(recorded(store), timeout=TIMEOUT, description="the deliveries recorded")
    assert first.kill() == -signal.SIGKILL
    assert not any(digest_mails(sink, a) for a in DIGEST_MEMBERS)

    # Two daemons start together just after the digest moment (midnight UTC): one sends it.
    midnight = datetime.combine(today.date() + timedelta(days=1), time(0, 0), tzinfo=UTC)
    # (A second apart: clocks further apart would make one read the other's delivery leases as
    # lapsed, and send a copy again, which no real clock does.)
    restarted, second = start("a", midnight + timedelta(seconds=2)), start("b", midnight)
    restarted.wait_for_pass()
    second.wait_for_pass()
    sink.wait_for(lambda s: all(digest_mails(s, a) for a in DIGEST_MEMBERS), timeout=TIMEOUT,
                  description="the digest to each digest member")

    # Killed after it went out, started again later that day beside the other: nothing more.
    sink.wait_for(recorded(store), timeout=TIMEOUT, description="the deliveries recorded")
    assert restarted.kill() == -signal.SIGKILL
    again = start("a", midnight + timedelta(hours=2))
    again.wait_for_pass()
    for daemon in (again, second):
        assert daemon.terminate()[0] == 0, daemon.log_text()

    for address in DIGEST_MEMBERS:
        assert digest_mails(sink, address) == [SUBJECT], address
    assert not digest_mails(sink, REGULAR)
    with store.reading() as session:
        assert [(d.volume, d.number, d.posts, d.recipients)
                for d in session.scalars(select(Digest))] == [(1, 1, 2, 3)]
        # One queued message per form (MIME and plain), each post in it once.
        assert session.scalar(select(func.count()).select_from(OutMessage)
                              .where(OutMessage.kind == "digest")) == 2
        assert session.scalar(select(func.count()).select_from(DigestPost)
                              .where(DigestPost.digest_id.is_(None))) == 0
