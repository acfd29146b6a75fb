"""LMTP and SMTP intake: recipients checked in the dialogue, stored before 250 (SPEC §1, §7)."""

from __future__ import annotations

import smtplib
import socket

import pytest
from sqlalchemy import event, func, select

from listserv.store.models.core import Inbound

from .helpers import LIST, lmtp_send, make_message, smtp_send


def count_inbound(store) -> int:
    with store.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(Inbound))


class Dialogue:
    """A raw LMTP/SMTP client that shows every reply line, as an MTA sees them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self) -> list[str]:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def command(self, line: str) -> list[str]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def replies(self, count: int) -> list[str]:
        return [self.reply()[0] for _ in range(count)]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.mark.both_backends
def test_lmtp_answers_once_per_recipient_and_stores_each(shma, cli, daemon, store):
    cli("lists", "create", "other@lists.example.org", "--owner", "chair@example.org")
    talk = Dialogue(daemon.ports["lmtp"])
    assert talk.command("LHLO mta.example.org")[-1].startswith("250")
    assert talk.command("MAIL FROM:<jane@example.org>")[0].startswith("250")
    assert talk.command(f"RCPT TO:<{LIST}>")[0].startswith("250")
    assert talk.command("RCPT TO:<other-owner@lists.example.org>")[0].startswith("250")
    assert talk.command("DATA")[0].startswith("354")
    talk.sock.sendall(make_message() + b".\r\n")
    replies = talk.replies(2)
    assert all(r.startswith("250") for r in replies), replies
    talk.command("QUIT")
    talk.close()
    with store.unit_of_work() as session:
        roles = sorted((r.rcpt, r.role) for r in session.scalars(select(Inbound)))
    assert roles == [("other-owner@lists.example.org", "owner"), (LIST, "post")]


@pytest.mark.both_backends
def test_unknown_recipient_is_refused_in_the_dialogue(shma, daemon):
    for port, send in ((daemon.ports["lmtp"], lmtp_send), (daemon.ports["smtp"], smtp_send)):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(port, "jane@example.org", ["nobody@lists.example.org"], make_message())
        code, text = refused.value.recipients["nobody@lists.example.org"]
        assert code == 550 and text.startswith(b"5.1.1")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(port, "jane@example.org", ["shma-confirm@lists.example.org"], make_message())


@pytest.mark.both_backends
def test_every_role_address_is_accepted(shma, daemon, store):
    roles = ["shma", "shma-request", "shma-join", "shma-leave", "shma-leave+abc123",
             "shma-owner", "shma-bounces", "shma-bounces+tok", "shma-confirm+tok",
             "shma-column", "shma-peer-input", "SHMA-Request"]
    for local in roles:
        assert smtp_send(daemon.ports["smtp"], "jane@example.org",
                         [f"{local}@Lists.Example.ORG"], make_message()) == {}
    assert count_inbound(store) == len(roles)


@pytest.mark.both_backends
def test_size_cap_is_advertised_and_enforced_with_552(shma, daemon, store):
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"]) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == str(64 * 1024)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("jane@example.org", [LIST], b"x", mail_options=["SIZE=70000"])
        assert refused.value.smtp_code == 552
    # A client that does not declare SIZE is stopped at the end of DATA.
    talk = Dialogue(daemon.ports["smtp"])
    talk.command("EHLO mta.example.org")
    talk.command("MAIL FROM:<jane@example.org>")
    talk.command(f"RCPT TO:<{LIST}>")
    talk.command("DATA")
    talk.sock.sendall(make_message(body=("y" * 70 + "\n") * 1000) + b".\r\n")
    assert talk.reply()[0].startswith("552")
    talk.close()
    assert count_inbound(store) == 0


@pytest.mark.both_backends
def test_store_failure_answers_451_and_leaves_nothing_half_written(shma, daemon, store):
    def fail_after_insert(session, flush_context):
        if any(isinstance(obj, Inbound) for obj in session.new):
            raise RuntimeError("disk on fire")

    event.listen(daemon.store.sessions, "after_flush", fail_after_insert)
    try:
        talk = Dialogue(daemon.ports["lmtp"])
        talk.command("LHLO mta.example.org")
        talk.command("MAIL FROM:<jane@example.org>")
        talk.command(f"RCPT TO:<{LIST}>")
        talk.command("RCPT TO:<shma-owner@lists.example.org>")
        talk.command("DATA")
        talk.sock.sendall(make_message() + b".\r\n")
        replies = talk.replies(2)
        talk.close()
    finally:
        event.remove(daemon.store.sessions, "after_flush", fail_after_insert)
    assert all(r.startswith("451") for r in replies), replies
    assert count_inbound(store) == 0
    # The MTA's retry then succeeds.
    assert lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], make_message()) == {}
    assert count_inbound(store) == 1


@pytest.mark.both_backends
def test_long_lines_and_8bit_are_stored_byte_for_byte(shma, daemon, store):
    line = b"z" * 5000
    raw = (b"From: J\xc3\xa9r\xc3\xb4me <jerome@example.org>\r\nTo: shma@lists.example.org\r\n"
           b"Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + line + b"\r\n\xc3\xa9t\xc3\xa9\r\n")
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"]) as client:
        client.sendmail("jérôme@example.org", [LIST], raw, mail_options=["SMTPUTF8"])
    with store.unit_of_work() as session:
        stored = session.scalars(select(Inbound)).one()
        assert stored.raw == raw
        assert stored.mail_from == "jérôme@example.org"

