"""Intake limits (SPEC §7): recipients per transaction, messages per sender and hour, the raw
message stored once per transaction, chair notices capped per list and hour."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listserv.store.models.core import AuditEntry, Inbound, InboundRaw

from .helpers import LIST, lmtp_send, make_message, smtp_send, wait_settled, write_config
from .smtp_sink import SmtpSink
from .test_intake import Dialogue, count_inbound

HELLO = {"lmtp": "LHLO", "smtp": "EHLO"}
SENDER_LIMIT = 3


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, sink: SmtpSink) -> Path:
    """The test config with a per-sender limit small enough to reach.

    The lease outlasts sending a 1 MB notice on a busy machine (the 2 s of the other tests
    would let a second worker send it again).
    """
    path = write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port,
                        claim_lease_seconds=60)
    with path.open("a") as config:
        config.write(f"[intake]\nmax_messages_per_sender_per_hour = {SENDER_LIMIT}\n")
    return path


def junk_recipients(count: int) -> list[str]:
    """`count` distinct recipients at one list: confirm addresses with their own tokens."""
    return [f"shma-confirm+junk{n}@lists.example.org" for n in range(count)]


@pytest.mark.both_backends
@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
def test_at_most_max_recipients_per_transaction_the_rest_452(shma, daemon, store, protocol):
    talk = Dialogue(daemon.ports[protocol])
    assert talk.command(f"{HELLO[protocol]} mta.example.org")[-1].startswith("250")
    assert talk.command("MAIL FROM:<mallory@example.org>")[0].startswith("250")
    answers = [talk.command(f"RCPT TO:<{rcpt}>")[0] for rcpt in junk_recipients(200)]
    assert all(a.startswith("250") for a in answers[:50]), answers[:50]
    assert all(a.startswith("452 4.5.3") for a in answers[50:]), answers[50:]
    assert talk.command("DATA")[0].startswith("354")
    talk.sock.sendall(make_message(to=LIST) + b".\r\n")
    replies = talk.replies(50 if protocol == "lmtp" else 1)
    assert all(r.startswith("250") for r in replies), replies
    talk.command("QUIT")
    talk.close()
    assert count_inbound(store) == 50


@pytest.mark.both_backends
@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
def test_duplicate_recipients_count_once_and_are_stored_once(shma, daemon, store, protocol):
    repeated = [LIST, "SHMA@Lists.Example.ORG", LIST] * 30 + junk_recipients(60)
    talk = Dialogue(daemon.ports[protocol])
    talk.command(f"{HELLO[protocol]} mta.example.org")
    talk.command("MAIL FROM:<mallory@example.org>")
    answers = [talk.command(f"RCPT TO:<{rcpt}>")[0] for rcpt in repeated]
    # 90 copies of one address are one recipient; 49 of the 60 others fit under the 50.
    assert sum(a.startswith("250") for a in answers) == 90 + 49
    assert sum(a.startswith("452 4.5.3") for a in answers) == 11
    assert talk.command("DATA")[0].startswith("354")
    talk.sock.sendall(make_message(to=LIST) + b".\r\n")
    replies = talk.replies(139 if protocol == "lmtp" else 1)
    assert all(r.startswith("250") for r in replies), replies
    talk.command("QUIT")
    talk.close()
    with store.unit_of_work() as session:
        rcpts = [r.rcpt.lower() for r in session.scalars(select(Inbound))]
    assert len(rcpts) == 50 and rcpts.count(LIST) == 1


@pytest.mark.both_backends
@pytest.mark.parametrize("send", [lmtp_send, smtp_send], ids=["lmtp", "smtp"])
def test_a_sender_past_its_hourly_limit_gets_451_and_the_null_sender_does_not(
        shma, daemon, store, send):
    port = daemon.ports["lmtp" if send is lmtp_send else "smtp"]
    # Over SMTP, two recipients are one message: the limit counts transactions, not rows.
    # (smtplib's LMTP reads one reply after DATA, so it is given one recipient.)
    rcpts = [LIST] if send is lmtp_send else [LIST, "shma-owner@lists.example.org"]
    for _ in range(SENDER_LIMIT):
        assert send(port, "Jane@Example.org", rcpts, make_message()) == {}
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(port, "jane@example.org", [LIST], make_message())
    assert refused.value.smtp_code == 451 and refused.value.smtp_error.startswith(b"4.7.1")
    for _ in range(SENDER_LIMIT + 1):
        assert send(port, "", ["shma-bounces@lists.example.org"], make_message()) == {}
    assert send(port, "other@example.org", [LIST], make_message()) == {}
    assert count_inbound(store) == len(rcpts) * SENDER_LIMIT + SENDER_LIMIT + 1 + 1


@pytest.mark.both_backends
def test_the_sender_limit_frees_up_after_an_hour(shma, daemon, store, clock):
    port = daemon.ports["smtp"]
    for _ in range(SENDER_LIMIT):
        smtp_send(port, "jane@example.org", [LIST], make_message())
    with pytest.raises(smtplib.SMTPSenderRefused):
        smtp_send(port, "jane@example.org", [LIST], make_message())
    clock.advance(timedelta(hours=1, minutes=1))
    assert smtp_send(port, "jane@example.org", [LIST], make_message()) == {}


@pytest.mark.slow  # 50 MB through the router, 20 MB of notices
@pytest.mark.timeout(600)
@pytest.mark.both_backends
def test_one_megabyte_to_200_recipients_stores_50_rows_the_bytes_once_and_20_notices(
        shma, daemon, store, sink):
    """Issue 14, acceptance 3: the attack that wrote 458 MB and 102 chair notices."""
    # A non-member's post (held: a notice) and reports to made-up bounce tokens (each one a
    # report the bounce handler cannot use: forwarded to the chair, attached).
    rcpts = [LIST] + [f"shma-bounces+junk{n}@lists.example.org" for n in range(199)]
    line = "All work and no play makes a very large message indeed, again and again.\n"
    message = make_message(sender="mallory@example.org", subject="Big",
                           body=line * (1024 * 1024 // len(line) + 1))
    assert len(message) > 1024 * 1024
    talk = Dialogue(daemon.ports["lmtp"])
    talk.command("LHLO mta.example.org")
    talk.command("MAIL FROM:<mallory@example.org>")
    answers = [talk.command(f"RCPT TO:<{rcpt}>")[0] for rcpt in rcpts]
    assert [a[:9] for a in answers] == ["250 2.1.5"] * 50 + ["452 4.5.3"] * 150
    assert talk.command("DATA")[0].startswith("354")
    talk.sock.sendall(message + b".\r\n")
    replies = talk.replies(50)
    assert all(r.startswith("250") for r in replies), replies
    talk.command("QUIT")
    talk.close()

    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Inbound)) == 50
        assert session.scalar(select(func.count(func.distinct(Inbound.raw_id)))) == 1
        assert session.scalar(select(func.count()).select_from(InboundRaw)) == 1
        assert session.scalar(select(func.sum(func.length(InboundRaw.raw)))) == len(message)
    wait_settled(store, timeout=500)
    # The held-post notice and 19 of the 49 reports; the other 30 wait for no one.
    assert len(sink.messages_for("chair@example.org")) == 20
    with store.reading() as session:
        capped = session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "chair-notice-capped"))
    assert capped == 30
