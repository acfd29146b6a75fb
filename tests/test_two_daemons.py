"""Two daemons on one PostgreSQL database, behind one relay: every mail goes out once
(issue 19, acceptance 6; docs/scaling.md).

Two `listserv serve` processes, each with its own data folder and LMTP port, share the
database and deliver to one strict sink. Both start with a meeting reminder due; then 10 people
join (their requests and their confirmations come in through either daemon) and 100 posts
reach the 50-member list, alternately through one daemon and the other. Every recipient gets
each mail once: no (recipient, Message-ID) and no (recipient, subject) twice.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

from .daemons import DaemonProcess
from .helpers import LIST, lmtp_send, make_message, parse, wait_settled, write_config
from .smtp_sink import SmtpSink

# Some 5,000 one-member SMTP transactions and two daemons: minutes on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.postgresql_only, pytest.mark.timeout(600)]

FOUNDERS = [f"founder{n:02d}@example.net" for n in range(40)]
JOINERS = [f"joiner{n:02d}@example.net" for n in range(10)]
POSTS = 100
TIMEOUT = 60.0
#: What `serve -v` logs after each scheduler pass (the reminders are queued by then).
PASS_DONE = "meeting work done"


@pytest.fixture
def start_two(tmp_path: Path, db_url: str, sink: SmtpSink,
              store) -> Iterator[Callable[[], list[DaemonProcess]]]:
    """Starts daemons a and b: their own data folders and ports, the one database, the one
    sink; both are stopped at the end."""
    started: list[DaemonProcess] = []

    def start() -> list[DaemonProcess]:
        for name in ("a", "b"):
            data = tmp_path / f"data-{name}"
            # The default lease (60 s): a lease lapsing on a loaded machine sends again by
            # design (at least once after a crash, docs/delivery.md); not this test's subject.
            config = write_config(tmp_path / f"{name}.toml", data, db_url, sink.port,
                                  claim_lease_seconds=60)
            started.append(DaemonProcess(config, data / "run", tmp_path / f"{name}.log",
                                         verbose=True, wait=False))
        for daemon in started:
            daemon.wait_until(daemon.ports_file.exists, "start", TIMEOUT)
        return started

    yield start
    for daemon in started:
        daemon.reap()


class Received:
    """What each recipient received: (subject, Message-ID) per copy, parsed once per copy (the
    waits below look again and again at thousands of them)."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self.seen = 0
        self.copies: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def of(self, address: str) -> list[tuple[str, str]]:
        """Every copy `address` received so far."""
        with self.sink._lock:
            new = self.sink.deliveries[self.seen:]
        self.seen += len(new)
        for delivery in new:
            msg = parse(delivery.data)
            for rcpt in delivery.rcpt_tos:
                self.copies[rcpt.lower()].append((str(msg["Subject"]), str(msg["Message-ID"])))
        return self.copies[address]

    def subjects(self, address: str) -> list[str]:
        return [subject for subject, _ in self.of(address)]

    def has(self, address: str, words: str) -> bool:
        return any(words in subject for subject in self.subjects(address))


def test_two_daemons_on_one_database_send_every_mail_once(cli, shma, store, sink, start_two,
                                                          tmp_path):
    for member in FOUNDERS:
        cli("members", "add", shma, member, "--no-welcome")
    when = (datetime.now(UTC) + timedelta(days=13)).replace(second=0, microsecond=0)
    cli("meetings", "schedule", LIST, "--at", when.strftime("%Y-%m-%d %H:%M"), "--tz", "UTC",
        "--duration", "60")
    received = Received(sink)
    # Both schedulers make a pass as they start, both with the 14-day reminder due.
    daemons = start_two()
    for daemon in daemons:
        daemon.wait_until(lambda d=daemon: PASS_DONE in d.log_text(tail=1 << 20),
                          "finish a scheduler pass", TIMEOUT)
    sink.wait_for(lambda s: all(received.has(m, "Reminder:") for m in FOUNDERS), TIMEOUT,
                  "the reminder to every founding member")

    # Ten joins: each request through one daemon, its confirmation through the other.
    for n, joiner in enumerate(JOINERS):
        port = daemons[n % 2].ports["lmtp"]
        lmtp_send(port, joiner, ["shma-join@lists.example.org"],
                  make_message(sender=joiner, to="shma-join@lists.example.org", subject="join",
                               body="join\n"))
    for n, joiner in enumerate(JOINERS):
        sink.wait_for(lambda s, j=joiner: received.has(j, "confirm"), TIMEOUT,
                      f"the confirmation request to {joiner}")
        [request] = [parse(d.data) for d in sink.messages_for(joiner)]
        assert re.search(r"confirm [a-z0-9]+\)", str(request["Subject"]))
        confirm = str(request["Reply-To"])
        lmtp_send(daemons[(n + 1) % 2].ports["lmtp"], joiner, [confirm],
                  make_message(sender=joiner, to=confirm, subject=f"Re: {request['Subject']}",
                               body="OK\n"))
    for joiner in JOINERS:
        sink.wait_for(lambda s, j=joiner: received.has(j, "Welcome to the shma list"), TIMEOUT,
                      f"the welcome to {joiner}")

    # A hundred posts by members, alternately through each daemon.
    members = FOUNDERS + JOINERS
    for n in range(POSTS):
        author = members[n % len(members)]
        lmtp_send(daemons[n % 2].ports["lmtp"], author, [LIST],
                  make_message(sender=author, subject=f"Post {n:03d}", body=f"Post {n}.\n"))
    sink.wait_for(lambda s: all(sum("Post " in t for t in received.subjects(m)) >= POSTS
                                for m in members), 5 * TIMEOUT, "every post to every member")
    wait_settled(store, TIMEOUT)  # nothing more is going to be sent

    for daemon in daemons:
        assert daemon.running(), daemon.log_text()
    received.of("")  # the last copies too
    copies = Counter((rcpt, message_id) for rcpt, got in received.copies.items()
                     for _, message_id in got)
    assert [pair for pair, count in copies.items() if count > 1] == []
    for member in members:
        got = Counter(received.subjects(member))
        assert [s for s, count in got.items() if count > 1] == [], member
        posts = sorted(s for s in got if "Post " in s)
        assert posts == [f"[shma] Post {n:03d}" for n in range(POSTS)], member
        assert sum("Reminder:" in s for s in got) == (member in FOUNDERS)
        assert sum("Welcome to the shma list" in s for s in got) == (member in JOINERS)
    # Each daemon's `listserv status` (its config, its machine) sees its own workers alive.
    for name in ("a", "b"):
        result = CliRunner().invoke(main, ["--config", str(tmp_path / f"{name}.toml"), "status",
                                           "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["workers"] and all(w["alive"] for w in report["workers"]), report
    for daemon in daemons:
        code, _ = daemon.terminate()
        assert code == 0, daemon.log_text()
