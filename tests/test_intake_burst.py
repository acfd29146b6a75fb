"""A burst of posts from several LMTP clients at once: each accepted once, delivered once to
every member, and none lost by a crash once it got its 250 (issue 15, acceptance 2; SPEC §7).

The daemon stores DATA commands that arrive together in one commit (docs/intake.md, "Group
commit"); these tests check that batching loses, repeats and mixes up nothing.
"""

from __future__ import annotations

import signal
import smtplib
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listserv.config import Settings
from listserv.store.engine import Store
from listserv.store.models.core import Inbound

from .daemons import DaemonProcess
from .helpers import LIST, make_message, parse, write_config
from .smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

MEMBERS = [f"member{i:02d}@example.net" for i in range(10)]
POSTS = 200
#: The crash test's burst: the kill comes after a quarter, and a smaller burst shows the same
#: thing (acknowledged posts survive, the rest are the MTA's to retry) in half the time.
CRASH_POSTS = 80
CLIENTS = 8


@pytest.fixture
def lease_seconds() -> int:
    """A lease no batch outlasts on a busy machine: a second worker never sends it again."""
    return 60


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, sink: SmtpSink, lease_seconds: int) -> Path:
    """The shared config without the per-sender hourly limit (20 posts a member would pass
    the default in a real burst too; the limit has tests of its own)."""
    path = write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port,
                        claim_lease_seconds=lease_seconds)
    with path.open("a") as config:
        config.write("[intake]\nmax_messages_per_sender_per_hour = 0\n")
    return path


@pytest.fixture
def roster(cli, shma: str, tmp_path: Path) -> list[str]:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("email,name\n" + "".join(f"{m},Member {m[6:8]}\n" for m in MEMBERS))
    cli("members", "import", shma, str(csv_file))
    return MEMBERS


def posts(count: int = POSTS) -> list[tuple[str, bytes]]:
    """`count` posts, (sender, bytes), taking turns among the members."""
    return [(MEMBERS[n % len(MEMBERS)],
             make_message(sender=MEMBERS[n % len(MEMBERS)], subject=f"Burst post {n}",
                          body=f"Post number {n} of the burst.\n"))
            for n in range(count)]


def send_concurrently(port: int, mail: list[tuple[str, bytes]],
                      acknowledged: list[str]) -> list[BaseException]:
    """Send `mail` over CLIENTS LMTP connections at once (each client its share, in order).

    The Message-ID of each post that got 250 joins `acknowledged`; a client stops at its first
    error (the daemon died) and the errors are returned.
    """
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(share: list[tuple[str, bytes]]) -> None:
        try:
            with smtplib.LMTP("127.0.0.1", port, timeout=60) as lmtp:
                for sender, data in share:
                    assert lmtp.sendmail(sender, [LIST], data) == {}
                    with lock:
                        acknowledged.append(parse(data)["Message-ID"])
        except (OSError, smtplib.SMTPException) as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(mail[i::CLIENTS],))
               for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def received_posts(sink: SmtpSink) -> dict[str, Counter[str]]:
    """For each member, how many copies of each post (by Message-ID) the sink holds."""
    with sink._lock:
        deliveries = list(sink.deliveries)
    copies: dict[str, Counter[str]] = defaultdict(Counter)
    for delivery in deliveries:
        if not delivery.mail_from.startswith("shma-bounces"):
            continue  # automatic mail, not a post
        message_id = parse(delivery.data)["Message-ID"]
        for rcpt in delivery.rcpt_tos:
            copies[rcpt.lower()][message_id] += 1
    return copies


def all_delivered(sink: SmtpSink, wanted: set[str]) -> bool:
    """Has every member a copy of every wanted post? Counted first: parsing every copy at each
    poll would take the daemon's time (it runs in this process) as the copies grow."""
    if sink.recipients < len(wanted) * len(MEMBERS):
        return False
    copies = received_posts(sink)
    return all(wanted <= set(copies.get(member, ())) for member in MEMBERS)


def stored_transactions(store: Store) -> int:
    with store.reading() as session:
        return int(session.scalar(select(func.count(func.distinct(Inbound.raw_id)))) or 0)


@pytest.mark.both_backends
def test_a_burst_from_eight_clients_is_accepted_once_and_delivered_once_to_every_member(
        roster, daemon, sink, store):
    mail = posts()
    acknowledged: list[str] = []
    assert send_concurrently(daemon.ports["lmtp"], mail, acknowledged) == []
    assert sorted(acknowledged) == sorted(parse(data)["Message-ID"] for _, data in mail)
    assert stored_transactions(store) == POSTS  # each accepted once

    wanted = set(acknowledged)
    sink.wait_for(lambda s: all_delivered(s, wanted), timeout=120,
                  description=f"{POSTS} posts delivered to {len(MEMBERS)} members")
    copies = received_posts(sink)
    for member in MEMBERS:
        assert copies[member] == Counter({message_id: 1 for message_id in wanted}), member


@pytest.fixture
def spawned(config_path: Path, settings: Settings, tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    """Daemons started in subprocesses by the test; any still running at the end are killed."""
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.reap()


@pytest.mark.both_backends
# The killed daemon's claims wait out their lease before the second daemon sends them; this
# test asks for every post at least once, so a short lease (and a copy sent twice) is fine.
@pytest.mark.parametrize("lease_seconds", [2], ids=["lease-2s"])
def test_sigkill_during_a_burst_loses_no_post_that_got_250(
        roster, sink, store, spawned, config_path, settings, tmp_path):
    first = DaemonProcess(config_path, settings.run_dir, tmp_path / "daemon-0.log")
    spawned.append(first)
    acknowledged: list[str] = []
    burst = threading.Thread(
        target=lambda: send_concurrently(first.ports["lmtp"], posts(CRASH_POSTS),
                                         acknowledged))
    burst.start()
    # Kill in the middle of the burst: some posts acknowledged, others in flight.
    first.wait_until(lambda: len(acknowledged) >= CRASH_POSTS // 4, "acknowledge a quarter",
                     timeout=60)
    assert first.kill() == -signal.SIGKILL
    burst.join(120)
    assert CRASH_POSTS // 4 <= len(acknowledged) < CRASH_POSTS, len(acknowledged)

    second = DaemonProcess(config_path, settings.run_dir, tmp_path / "daemon-1.log")
    spawned.append(second)
    wanted = set(acknowledged)
    second.wait_until(lambda: all_delivered(sink, wanted), "deliver every acknowledged post",
                      timeout=120)
    copies = received_posts(sink)
    for member in MEMBERS:
        assert wanted <= set(copies[member]), member
    code, _ = second.terminate()
    assert code == 0, second.log_text()
