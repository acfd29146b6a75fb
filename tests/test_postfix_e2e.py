"""End to end through a real Postfix (issue 12, acceptance 5): post -> Postfix -> LMTP ->
daemon -> Postfix -> Maildirs, a DSN Postfix writes coming back to the member's bounce address
and counted, and a list with a run of dead addresses delivered in one round despite Postfix's
error tarpit.

Postfix refuses bare LF here (tests/postfix.py): every message these tests send is CRLF-clean,
and so is every copy the daemon makes of them. Mail the daemon composes itself (a welcome)
passes only with the one wire serializer (the `wire` branch of issue 12): that test is marked
as expected to fail until then.
"""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from listserv.clock import FakeClock
from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.store.models.outgoing import OutMessage, OutRecipient

from .daemons import DaemonProcess
from .helpers import LIST, make_message, parse, write_config

CHAIR = "chair@example.net"
JANE, ANN = "jane@example.net", "ann@example.net"
GONE = "bob@dead.example.com"  # accepted by Postfix, refused by the next hop: a DSN
GOOD = [f"good{i}@example.net" for i in range(15)]
DEAD = [f"gone{i}@example.net" for i in range(10)]  # no such mailbox: refused at RCPT TO


def post_through(postfix, sender: str, subject: str) -> None:
    """A member's post, as their mail client hands it to Postfix (CRLF, with a Date)."""
    message = make_message(sender=sender, subject=subject)
    with smtplib.SMTP(postfix.host, postfix.port) as client:
        assert client.sendmail(sender, [LIST], message) == {}


def relay_config(tmp_path: Path, db_url: str, postfix, **outbound: object) -> Path:
    """The config of the daemon behind Postfix: same data and database as the `cli` fixture's,
    delivery to Postfix, retries an hour apart (none of them may be needed)."""
    return write_config(tmp_path / "behind-postfix.toml", tmp_path / "data", db_url,
                        postfix.port, retry_base_seconds=3600, **outbound)


@contextmanager
def serving(config: Path) -> Iterator[Daemon]:
    running = Daemon(load_settings(config), clock=FakeClock(datetime.now(UTC), running=True))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_post_goes_through_postfix_both_ways_and_its_dsn_is_counted(cli, shma, postfix,
                                                                      tmp_path, db_url):
    for member in (JANE, ANN, GONE):
        cli("members", "add", shma, member, "--no-welcome")
    config = relay_config(tmp_path, db_url, postfix)
    daemon = DaemonProcess(config, tmp_path / "data" / "run", tmp_path / "daemon.log")
    try:
        # Postfix hands the list's domain to the daemon by LMTP; the dead domain's next hop
        # is the daemon too, which knows no such address (550 5.1.1 after Postfix took it).
        lmtp = daemon.ports["lmtp"]
        postfix.configure(lmtp={"lists.example.org": lmtp, "dead.example.com": lmtp},
                          mailboxes=[JANE, ANN, CHAIR])
        postfix.start()
        post_through(postfix, JANE, "Through Postfix")
        copies = {member: parse(postfix.wait_for_mail(member)[0]) for member in (JANE, ANN)}

        def show() -> dict:
            return json.loads(cli("bounces", "show", GONE, "--json").output)

        daemon.wait_until(lambda: show()["events"], "count the DSN", timeout=30)
    finally:
        daemon.terminate()
    for member, copy in copies.items():
        assert copy["Subject"] == "[shma] Through Postfix"
        assert copy["List-Id"] == "<shma.lists.example.org>"
        assert copy["Return-Path"].startswith("<shma-bounces+")  # the member's own envelope
        assert copy["Delivered-To"] == member
    record = show()
    [event] = record["events"]
    assert (event["source"], event["kind"], event["counted"]) == ("report", "permanent", True)
    assert record["score"] == 1.0 and "5.1.1" in record["last_reason"]
    assert "no such list or address here" in record["last_reason"]
    assert "bare <LF>" not in postfix.log()
    log = daemon.log_text(tail=1_000_000)
    # The DSN came in by LMTP, logged as LMTP; flufl.bounce's detector lines stay at DEBUG.
    assert "listserv.intake.lmtp: stored" in log and "listserv.intake.smtp" not in log
    assert "flufl.bounce" not in log and "Running detector" not in log


def test_a_run_of_refused_members_holds_up_no_good_copy(cli, shma, postfix, tmp_path, db_url,
                                                        store):
    """Acceptance 5: 25 members, 10 refused in a row, three posts, Postfix's default
    smtpd_hard_error_limit: every other copy goes out in the first round."""
    for member in GOOD[:8] + DEAD + GOOD[8:]:
        cli("members", "add", shma, member, "--no-welcome")
    with serving(relay_config(tmp_path, db_url, postfix)) as daemon:
        postfix.configure(lmtp={"lists.example.org": daemon.ports["lmtp"]}, mailboxes=GOOD)
        postfix.start()
        for number in range(3):
            post_through(postfix, GOOD[0], f"Post {number}")
        for member in GOOD:
            postfix.wait_for_mail(member, 3, timeout=60)
        results = recipient_results(store, 3 * 25)
    assert {r for r in results if r[0] in GOOD} == {(m, "sent", 0) for m in GOOD}
    assert {r for r in results if r[0] in DEAD} == {(m, "failed", 1) for m in DEAD}
    assert "too many errors" not in postfix.log()


def recipient_results(store, count: int, timeout: float = 20.0) -> list[tuple[str, str, int]]:
    """(email, status, attempts) of the posts' recipients, once `count` have a result."""
    deadline = time.monotonic() + timeout
    while True:
        with store.unit_of_work() as session:
            rows = session.execute(
                select(OutRecipient.email, OutRecipient.status, OutRecipient.attempts)
                .join(OutMessage, OutMessage.id == OutRecipient.message_id)
                .where(OutMessage.kind == "post", OutRecipient.status != "queued")).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return [tuple(r) for r in rows]
        time.sleep(0.05)


def test_a_welcome_the_daemon_composes_passes_postfix(cli, shma, postfix, tmp_path, db_url):
    with serving(relay_config(tmp_path, db_url, postfix)) as daemon:
        postfix.configure(lmtp={"lists.example.org": daemon.ports["lmtp"]}, mailboxes=[ANN])
        postfix.start()
        cli("members", "add", shma, ANN)
        daemon.deliver_wake.set()
        [welcome] = postfix.wait_for_mail(ANN, timeout=15)
    assert parse(welcome)["To"] == ANN
