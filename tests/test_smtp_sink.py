"""Tests for the SMTP sink used by the test suite and the benchmark: its protocol, and the
strict checks that make it refuse what the strictest real servers refuse."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.smtp_sink import SmtpSink, refusal

# `sink` is the suite's strict sink (tests/conftest.py): a test here that makes it refuse
# something is marked `sink_refusals`, as any test must be.


@pytest.fixture
def lenient() -> Iterator[SmtpSink]:
    """A sink without the strict checks: for the protocol's mechanics with bare messages."""
    with SmtpSink(strict=False) as s:
        yield s


HEAD = (b"From: sender@example.org\r\nTo: list@example.org\r\n"
        b"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n")


def _message(subject: str = "hello", body: bytes = b"Body line.\r\n",
             head: bytes = HEAD) -> bytes:
    return head + b"Subject: " + subject.encode() + b"\r\n\r\n" + body


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
    long_line = b"y" * 998
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


def test_pipelined_burst_over_raw_socket(lenient: SmtpSink) -> None:
    sink = lenient
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
def test_whole_session_in_one_write_or_byte_by_byte(lenient: SmtpSink, bytewise: bool) -> None:
    sink = lenient
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


def test_delay_holds_reply_without_blocking_other_connections(lenient: SmtpSink) -> None:
    sink = lenient
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


def test_transaction_aborted_during_delay_is_not_recorded(lenient: SmtpSink) -> None:
    sink = lenient
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


# -- the strict checks ---------------------------------------------------------------------------

NOTICE_HEAD = HEAD + b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"


def _data_reply(sink: SmtpSink, data: bytes, options: bytes = b"") -> bytes:
    """The sink's reply to `data` sent as it is (dot-stuffed only), over a raw socket."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    script = (b"EHLO c\r\nMAIL FROM:<a@x>" + options + b"\r\nRCPT TO:<b@x>\r\nDATA\r\n"
              + stuffed + b"\r\n.\r\n")
    with socket.create_connection((sink.host, sink.port)) as sock:
        assert _read_replies(sock, 1)[0].startswith(b"220 ")
        sock.sendall(script)
        return _read_replies(sock, 5)[-1]


@pytest.mark.sink_refusals
@pytest.mark.parametrize("data,reply", [
    (_message(body=b"one\nbare LF\r\n"), b"550 5.5.2 Error: bare <LF> received"),
    (_message(body=b"one\rbare CR\r\n"), b"550 5.5.2 Error: bare <CR> received"),
    (_message(body=b"hello\r.\r\nMAIL FROM:<x@y>\r\n"), b"550 5.5.2 Error: bare <CR> received"),
    (_message(subject="a\rBcc: x@y"), b"550 5.5.2 Error: bare <CR> received"),
    (_message(body=b"x" * 999 + b"\r\n"), b"550 5.5.2 Error: a line over 998 octets"),
    (_message(subject="x" * 990), b"550 5.5.2 Error: a line over 998 octets"),
    (_message(body="\u00e9t\u00e9\r\n".encode()),
     b"550 5.6.1 Error: 8-bit data without BODY=8BITMIME"),
    (_message(subject="\u00e9t\u00e9"), b"550 5.6.7 Error: 8-bit header without SMTPUTF8"),
    (_message(head=HEAD.replace(b"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n", b"")),
     b"550 5.6.0 Error: no Date header"),
    (_message(head=HEAD.replace(b"Message-ID: <1@example.org>\r\n", b"")),
     b"550 5.6.0 Error: no Message-ID header"),
    (_message(head=HEAD.replace(b"From: sender@example.org\r\n", b"")),
     b"550 5.6.0 Error: no From header"),
    (_message(head=NOTICE_HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n',
              body=b"--b\r\n\r\nno close delimiter\r\n"),
     b"550 5.6.0 Error: MIME defects in mail we compose: CloseBoundaryNotFoundDefect"),
])
def test_the_strict_sink_refuses_what_strict_servers_refuse(sink, data, reply):
    assert _data_reply(sink, data) == reply
    assert refusal(data) == reply.decode()
    assert [r.reply for r in sink.refusals] == [reply.decode()]
    assert sink.deliveries == []


def test_a_members_defective_mime_passes_and_8bit_needs_its_parameters(sink):
    # A post's copy (no Auto-Submitted) is held to the wire rules only.
    post = _message(head=HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n',
                    body=b"--b\r\n\r\nno close delimiter\r\n")
    assert _data_reply(sink, post) == b"250 2.0.0 Ok: queued"
    # An owner forward of someone's automatic mail is not ours either.
    forward = _message(head=NOTICE_HEAD + b"X-BeenThere: shma-owner@lists.example.org\r\n"
                       + b'Content-Type: multipart/mixed; boundary="b"\r\n',
                       body=b"--b\r\n\r\nno close delimiter\r\n")
    assert _data_reply(sink, forward) == b"250 2.0.0 Ok: queued"
    eight = _message(subject="\u00e9t\u00e9", body="\u00e9t\u00e9\r\n".encode())
    assert _data_reply(sink, eight, b" BODY=8BITMIME SMTPUTF8") == b"250 2.0.0 Ok: queued"
    assert len(sink.deliveries) == 3 and sink.refusals == []


@pytest.mark.sink_refusals
@pytest.mark.parametrize("line,reply", [
    (b"NOOP\n", b"500 5.5.2 Error: bare <LF> received"),
    (b"NO\rOP\r\n", b"500 5.5.2 Error: bare <CR> received"),
])
def test_command_lines_are_read_by_crlf(sink, line, reply):
    codes = _raw_session(sink, b"EHLO c\r\n" + line + b"NOOP\r\nQUIT\r\n", 4)
    assert codes == [b"250", reply[:3], b"250", b"221"]
    assert [r.reply for r in sink.refusals] == [reply.decode()]


@pytest.mark.sink_refusals
def test_smtplib_sending_bare_lf_is_refused_so_the_test_would_fail(sink):
    # What listserv did before the wire serializer: smtplib sends bytes as they are.
    with smtplib.SMTP(sink.host, sink.port) as client, pytest.raises(smtplib.SMTPDataError):
        client.sendmail("a@x", ["b@x"], _message().replace(b"\r\n", b"\n"))
    assert sink.refusals[0].reply == "550 5.5.2 Error: bare <LF> received"


@pytest.mark.sink_refusals
def test_a_refusal_fails_the_test_at_teardown_unless_declared(sink):
    sink.assert_no_refusals()
    _data_reply(sink, _message(body=b"bare\nLF\r\n"))
    with pytest.raises(AssertionError, match="bare <LF> received"):
        sink.assert_no_refusals()  # what the suite's `sink` fixture does at teardown


@pytest.mark.sink_refusals
def test_a_test_may_declare_the_refusals_it_causes(sink):
    with smtplib.SMTP(sink.host, sink.port) as client, pytest.raises(smtplib.SMTPDataError):
        client.sendmail("a@x", ["b@x"], _message(body=b"x" * 2000 + b"\r\n"))
    assert [r.reply for r in sink.refusals] == ["550 5.5.2 Error: a line over 998 octets"]
