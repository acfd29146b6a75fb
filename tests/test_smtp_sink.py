"""Tests for the SMTP sink used by the test suite and the benchmark."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.smtp_sink import SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def _message(subject: str = "hello", body: bytes = b"Body line.\r\n") -> bytes:
    return (
        b"From: sender@example.org\r\nTo: list@example.org\r\nSubject: "
        + subject.encode()
        + b"\r\n\r\n"
        + body
    )


def _read_replies(sock: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    """Read until ``count`` final reply lines ("NNN ...") have arrived."""
    sock.settimeout(timeout)
    data = b""
    while True:
        lines = data.split(b"\r\n")[:-1]
        finals = [line for line in lines if line[3:4] == b" "]
        if len(finals) >= count:
            return finals
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed; got {data!r}")
        data += chunk


def _raw_session(sink: SmtpSink, script: bytes, replies: int, *, bytewise: bool = False):
    with socket.create_connection((sink.host, sink.port)) as sock:
        assert _read_replies(sock, 1)[0].startswith(b"220 ")
        if bytewise:
            for i in range(len(script)):
                sock.sendall(script[i : i + 1])
        else:
            sock.sendall(script)
        return [line[:3] for line in _read_replies(sock, replies)]


def test_multi_recipient_message_is_recorded_with_envelope_and_bytes(sink: SmtpSink) -> None:
    long_line = b"y" * 5000
    body = b"first\r\n.starts with a dot\r\n.\r\n..two dots\r\n" + long_line + b"\r\nlast\r\n"
    msg = _message(body=body)
    rcpts = ["a@example.org", "B@Example.ORG", "c@example.org"]
    with smtplib.SMTP(sink.host, sink.port) as client:
        client.ehlo()
        for extension in ("pipelining", "8bitmime", "smtputf8", "size"):
            assert client.has_extn(extension)
        refused = client.sendmail("sender@example.org", rcpts, msg)
    assert refused == {}
    sink.wait_for_recipients(3)
    assert sink.transactions == 1 and sink.recipients == 3
    [delivery] = sink.deliveries
    assert delivery.mail_from == "sender@example.org"
    assert delivery.rcpt_tos == rcpts
    assert delivery.data == msg
    assert delivery.message["Subject"] == "hello"
    assert sink.messages_for("b@example.org") == [delivery]
    assert sink.messages_for("A@EXAMPLE.ORG") == [delivery]
    assert sink.messages_for("nobody@example.org") == []
    sink.clear()
    assert sink.deliveries == [] and sink.transactions == 0 and sink.recipients == 0


def test_programmed_550_recipient_is_refused_and_other_delivered(sink: SmtpSink) -> None:
    sink.rcpt_responses["nobody@example.org"] = "550 5.1.1 No such user"
    with smtplib.SMTP(sink.host, sink.port) as client:
        refused = client.sendmail(
            "sender@example.org", ["Nobody@example.org", "ok@example.org"], _message()
        )
    assert refused == {"Nobody@example.org": (550, b"5.1.1 No such user")}
    [delivery] = sink.deliveries
    assert delivery.rcpt_tos == ["ok@example.org"]
    assert sink.recipients == 1
    assert sink.messages_for("nobody@example.org") == []


def test_programmed_sender_and_data_failures(sink: SmtpSink) -> None:
    with smtplib.SMTP(sink.host, sink.port) as client:
        sink.mail_from_response = "451 4.3.0 daily user sending limit exceeded"
        with pytest.raises(smtplib.SMTPSenderRefused) as sender_exc:
            client.sendmail("sender@example.org", ["a@example.org"], _message())
        assert sender_exc.value.smtp_code == 451
        sink.mail_from_response = None
        sink.data_response = "452 4.3.1 Insufficient system storage"
        with pytest.raises(smtplib.SMTPDataError) as data_exc:
            client.sendmail("sender@example.org", ["a@example.org"], _message())
        assert data_exc.value.smtp_code == 452
        sink.data_response = None
        client.sendmail("sender@example.org", ["a@example.org"], _message("ok"))
    assert [d.message["Subject"] for d in sink.deliveries] == ["ok"]
    assert sink.transactions == 1


def test_counting_mode_keeps_no_bytes_but_counts() -> None:
    with SmtpSink(keep_messages=False) as sink:
        with smtplib.SMTP(sink.host, sink.port) as client:
            for i in range(3):
                rcpts = [f"r{i}-{j}@example.org" for j in range(50)]
                client.sendmail("sender@example.org", rcpts, _message(f"m{i}"))
        sink.wait_for_recipients(150)
        assert sink.transactions == 3
        assert sink.deliveries == []


def test_pipelined_burst_over_raw_socket(sink: SmtpSink) -> None:
    with socket.create_connection((sink.host, sink.port)) as sock:
        assert _read_replies(sock, 1)[0].startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        assert _read_replies(sock, 1)[0].startswith(b"250 ")
        sock.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
        codes = [line[:3] for line in _read_replies(sock, 3)]
        assert codes == [b"250", b"250", b"354"]
        sock.sendall(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        codes = [line[:3] for line in _read_replies(sock, 2)]
        assert codes == [b"250", b"221"]
        assert sock.recv(100) == b""  # server closed after QUIT
    [delivery] = sink.deliveries
    assert (delivery.mail_from, delivery.rcpt_tos) == ("a@x", ["b@x"])
    assert delivery.data == b"Subject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-by-byte"])
def test_whole_session_in_one_write_or_byte_by_byte(sink: SmtpSink, bytewise: bool) -> None:
    sink.rcpt_responses["bad@x"] = "550 5.1.1 No such user"
    script = (
        b"EHLO client.example\r\n"
        b"MAIL FROM:<> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<bad@x>\r\nDATA\r\n"  # 554
        b"RSET\r\nNOOP\r\nVRFY someone\r\n"
        b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<bad@x>\r\nDATA\r\n"
        b".\r\n"  # empty message
        b"MAIL FROM:<a@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n..\r\n.x\r\n\r\n.\r\n"
        b"QUIT\r\n"
    )
    codes = _raw_session(sink, script, 17, bytewise=bytewise)
    assert codes == [
        b"250",  # EHLO
        *(b"250", b"550", b"554"),
        *(b"250", b"250", b"500"),
        *(b"250", b"250", b"550", b"354", b"250"),
        *(b"250", b"250", b"354", b"250"),
        b"221",
    ]
    assert [(d.mail_from, d.rcpt_tos, d.data) for d in sink.deliveries] == [
        ("a@x", ["b@x"], b""),
        ("a@x", ["c@x"], b".\r\nx\r\n\r\n"),
    ]


def test_protocol_errors(sink: SmtpSink) -> None:
    script = (
        b"MAIL FROM:<a@x>\r\n"  # before EHLO
        b"HELO client.example\r\nRCPT TO:<b@x>\r\nDATA\r\n"  # no transaction
        b"MAIL FROM:<a@x> RET=FULL\r\nMAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\n"  # bad opt, nested
        b"RCPT TO:<>\r\nDATA\r\nQUIT\r\n"
    )
    codes = _raw_session(sink, script, 10)
    assert codes == [
        *(b"503", b"250", b"503", b"503"),
        *(b"555", b"250", b"503"),
        *(b"501", b"554", b"221"),
    ]
    assert sink.transactions == 0


def test_delay_holds_reply_without_blocking_other_connections(sink: SmtpSink) -> None:
    sink.delay_per_transaction = 0.3
    started = time.monotonic()
    with smtplib.SMTP(sink.host, sink.port) as slow:
        slow.ehlo()
        slow.mail("sender@example.org")
        slow.rcpt("slow@example.org")
        slow.putcmd("data")
        assert slow.getreply()[0] == 354
        slow.send(b"Subject: slow\r\n\r\nx\r\n.\r\n")
        sink.wait_for(lambda s: s.pending == 1, description="the slow transaction to be held")
        assert sink.transactions == 0
        with smtplib.SMTP(sink.host, sink.port) as other:  # loop is still serving
            assert other.noop()[0] == 250
        assert slow.getreply()[0] == 250
    assert time.monotonic() - started >= 0.3
    assert sink.pending == 0
    assert [d.rcpt_tos for d in sink.deliveries] == [["slow@example.org"]]


def test_transaction_aborted_during_delay_is_not_recorded(sink: SmtpSink) -> None:
    sink.delay_per_transaction = 5.0
    with socket.create_connection((sink.host, sink.port)) as sock:
        assert _read_replies(sock, 1)[0].startswith(b"220 ")
        sock.sendall(b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
        sink.wait_for(lambda s: s.pending == 1)
    sink.wait_for(lambda s: s.pending == 0, timeout=2.0)
    assert sink.transactions == 0 and sink.deliveries == []


def test_wait_for_timeout_raises_clear_assertion(sink: SmtpSink) -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for 1 recipients"):
        sink.wait_for_recipients(1, timeout=0.05)
