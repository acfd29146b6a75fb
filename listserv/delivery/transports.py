"""Where outgoing mail goes: an SMTP server, or a Maildir outbox on disk."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from listserv.config import OutboundSettings
from listserv.files import private_folder, write_new_private


class Outcome(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one recipient in one transaction."""

    outcome: Outcome
    reason: str = ""
    # The relay's reply was about this recipient (to its RCPT TO), not about the transaction
    # or the connection: only such a failure says something about the address.
    about_recipient: bool = False


class Transport(Protocol):
    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
        """Send one transaction; a result for every recipient."""
        ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each transaction as one file in a Maildir (`new/`), envelope in its headers.

    `envelope_from` (hosted mode: the account) replaces every transaction's envelope sender.
    """

    def __init__(self, path: Path, envelope_from: str = "") -> None:
        self.path = path
        self.envelope_from = envelope_from
        for sub in ("tmp", "new", "cur"):
            private_folder(path / sub)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
        envelope_from = self.envelope_from or envelope_from
        eol = b"\r\n" if b"\r\n" in data[:4096] else b"\n"
        envelope = f"Return-Path: <{envelope_from}>".encode() + eol
        envelope += b"".join(f"X-Envelope-To: <{r}>".encode() + eol for r in recipients)
        name = f"{time.time_ns()}.P{os.getpid()}R{uuid.uuid4().hex[:16]}.{self._host}"
        tmp = self.path / "tmp" / name
        write_new_private(tmp, envelope + data)
        os.rename(tmp, self.path / "new" / name)
        return {r: Result(Outcome.SENT) for r in recipients}

    def close(self) -> None:
        return None


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


def _classify(code: int, text: bytes | str) -> Result:
    """The relay's answer to one recipient's RCPT TO."""
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY
    return Result(outcome, _reply(code, text), about_recipient=True)


_SENT = Result(Outcome.SENT)
IDLE_CHECK_SECONDS = 10.0
# Error replies in a row (since the last message the relay took) before the next transaction
# goes over a new connection. Postfix delays every reply by smtpd_error_sleep_time (1 s) once a
# client has made smtpd_soft_error_limit (10) errors without delivering mail, and hangs up at
# smtpd_hard_error_limit (20): a run of dead addresses would otherwise slow the whole batch to
# a crawl. A refused member's transaction costs two errors (its RCPT TO and the DATA after it).
ERRORS_BEFORE_RECONNECT = 5
# Commands written at once with PIPELINING: their replies (under 100 bytes each) fit in any
# socket buffer, so the server never blocks on replies we have not read yet.
PIPELINE_GROUP = 100
_MAX_LINE = 8192  # smtplib's _MAXLINE
_CLOSING = 421  # the server is closing the connection (RFC 5321 §3.8)
# How long the reply to the message's final "." may take (RFC 5321 §4.5.3.2.6: 10 minutes):
# a relay scans the message (a content filter, a milter) before it answers, far longer than a
# command takes. Timing out sooner would make a slow relay's accepted message a second copy.
FINAL_REPLY_TIMEOUT = 600.0
# An address that needs no quoting in MAIL FROM / RCPT TO: no spaces, brackets, quotes.
_PLAIN_ADDRESS = re.compile(r'[^\s<>()\[\]\\,;:"]+@[^\s<>()\[\]\\,;:"@]+')

Reply = tuple[int, bytes]


def _unsendable(address: str, utf8: bool) -> str:
    """Why `address` cannot go into a MAIL FROM or RCPT TO at all ("" when it can)."""
    if "\r" in address or "\n" in address:
        return "553 5.1.3 a line break in the address"
    if not utf8 and not address.isascii():
        return "553 5.6.7 a non-ASCII address, and the relay does not offer SMTPUTF8"
    return ""


def _head(data: bytes) -> bytes:
    """The header section of a message's bytes."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end]


def _path(address: str) -> str:
    """`<address>` for MAIL FROM / RCPT TO (smtplib's quoteaddr, without its cost when plain)."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _read_reply(file: BinaryIO) -> Reply:
    """One reply, as `smtplib.SMTP.getreply` reads it, at a fraction of its cost per line."""
    lines = []
    while True:
        line = file.readline(_MAX_LINE + 1)
        if not line:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if len(line) > _MAX_LINE:
            raise smtplib.SMTPResponseException(500, "Line too long.")
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            break
    try:
        code = int(line[:3])
    except ValueError:
        code = -1
    return code, b"\n".join(lines)


class _Hangup(Exception):
    """The relay said 421: it is closing the connection."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(_reply(*reply))


@dataclass(slots=True)
class Dialogue:
    """What the relay answered in one transaction, as far as it got.

    `rcpts` holds one reply per recipient answered, in order; a list shorter than the
    recipients, or a missing `mail`, `data` or `final`, means the dialogue ended there.
    `dropped` says why the connection ended early ("" when it did not); `body_sent`, that
    the whole message was written before it did.
    """

    mail: Reply | None = None
    rcpts: list[Reply] = field(default_factory=list)
    data: Reply | None = None
    final: Reply | None = None
    dropped: str = ""
    body_sent: bool = False

    @classmethod
    def of(cls, replies: list[Reply], recipients: int) -> Dialogue:
        """The replies to MAIL, the RCPTs and DATA, in the order they were read."""
        return cls(replies[0] if replies else None, replies[1 : recipients + 1],
                   replies[recipients + 1] if len(replies) > recipients + 1 else None)

    @property
    def errors(self) -> int:
        """Error replies (4xx, 5xx) in it: what a server counts against its client."""
        replies = [self.mail, *self.rcpts, self.data, self.final]
        return sum(1 for reply in replies if reply is not None and reply[0] >= 400)

    @property
    def delivered(self) -> bool:
        """Whether the relay took the message (250 after the data)."""
        return self.final is not None and self.final[0] == 250

    @property
    def someone(self) -> bool:
        """Whether the sender and at least one recipient were accepted."""
        return self.mail is not None and self.mail[0] == 250 and any(
            code in (250, 251) for code, _ in self.rcpts)

    @property
    def open(self) -> bool:
        """Whether the transaction is still open on the connection (MAIL taken, no data)."""
        return (not self.dropped and self.final is None and self.mail is not None
                and self.mail[0] == 250)


def outcome(recipients: list[str], dialogue: Dialogue) -> tuple[dict[str, Result], list[str]]:
    """Each recipient's result from what the relay answered, and who is to be sent again.

    The second list holds the recipients the dialogue left without an answer about them,
    because the connection dropped (or the relay said 421) before the message was written:
    they go again at once over a new connection, their result not yet known. Once the whole
    message was written, a drop before the final reply may hide a relay that took it (still
    scanning it, say): that is a temporary failure, retried after the backoff, not a second
    copy at once. A refusal of the whole transaction (MAIL FROM, DATA, or the message) is
    temporary and never about a recipient.
    """
    mail = dialogue.mail
    if mail is None or mail[0] == _CLOSING:
        return {}, list(recipients)
    if mail[0] != 250:
        whole = Result(Outcome.TEMPORARY, _reply(*mail))
        return {r: whole for r in recipients}, []
    results: dict[str, Result] = {}
    again: list[str] = []
    accepted: list[str] = []
    for index, r in enumerate(recipients):
        reply = dialogue.rcpts[index] if index < len(dialogue.rcpts) else None
        if reply is None or reply[0] == _CLOSING:
            again.append(r)
        elif reply[0] in (250, 251):
            accepted.append(r)
        else:
            results[r] = _classify(*reply)
    if not accepted:
        return results, again
    data, final = dialogue.data, dialogue.final
    if dialogue.delivered:
        results |= {r: _SENT for r in accepted}
    elif dialogue.body_sent and (final is None or final[0] == _CLOSING):
        unknown = Result(Outcome.TEMPORARY, "message sent, not acknowledged: "
                         + (_reply(*final) if final is not None else dialogue.dropped))
        results |= {r: unknown for r in accepted}
    elif data is None or data[0] == _CLOSING or (data[0] == 354 and (
            final is None or final[0] == _CLOSING)):
        again += accepted
    else:
        refusal = final if data[0] == 354 and final is not None else data
        results |= {r: Result(Outcome.TEMPORARY, _reply(*refusal)) for r in accepted}
    return results, again


def _converse(client: smtplib.SMTP, envelope_from: str, recipients: list[str], data: bytes,
              options: list[str]) -> Dialogue:
    """One transaction; with PIPELINING (RFC 2920) commands go in groups, not one by one.

    MAIL, the RCPTs and DATA go out in groups of up to PIPELINE_GROUP commands, each group's
    replies read before the next is written (so neither side's buffers can fill and deadlock):
    a few round trips for 500 recipients instead of 502, which counts on the loopback and far
    more with a relay farther away. Without PIPELINING they go one at a time, stopping when
    MAIL is refused or no recipient is accepted. A dropped connection ends the dialogue
    where it was: this never raises for it.
    """
    pipelining = client.has_extn("pipelining")
    if client.has_extn("size"):
        options = [*options, f"SIZE={len(data)}"]
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    params = "".join(f" {option}" for option in options)
    commands = [f"MAIL FROM:{_path(envelope_from)}{params}\r\n"]
    commands += [f"RCPT TO:{_path(r)}\r\n" for r in recipients]
    commands.append("DATA\r\n")
    group = PIPELINE_GROUP if pipelining else 1
    replies: list[Reply] = []
    final: Reply | None = None
    body_sent = False
    dropped = ""
    try:
        for start in range(0, len(commands), group):
            # One at a time: no RCPT after a refused MAIL, no DATA without a recipient.
            if not pipelining and replies and (replies[0][0] != 250 or (
                    start > len(recipients) and not Dialogue.of(replies, start).someone)):
                break
            chunk = commands[start : start + group]
            client.send("".join(chunk).encode(encoding))
            if client.file is None:
                client.file = client.sock.makefile("rb")
            for _ in chunk:
                replies.append(_read_reply(client.file))
                if replies[-1][0] == _CLOSING:
                    raise _Hangup(replies[-1])
        said = Dialogue.of(replies, len(recipients))
        if said.data is not None and said.data[0] == 354:
            if not said.someone:
                # The server wants a message nobody is to receive: hang up rather than send it.
                client.close()
                return said
            # Dot-stuffing as smtplib does it (a "." starting any line doubled), no regex.
            body = data.replace(b"\n.", b"\n..")
            if body.startswith(b"."):
                body = b"." + body
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            client.send(body + b".\r\n")
            body_sent = True
            client.sock.settimeout(max(client.timeout, FINAL_REPLY_TIMEOUT))
            final = _read_reply(client.file)
            client.sock.settimeout(client.timeout)
            if final[0] == _CLOSING:
                raise _Hangup(final)
    except _Hangup as exc:
        dropped = str(exc)
    except (smtplib.SMTPException, OSError) as exc:
        dropped = f"connection: {exc}"
    said = Dialogue.of(replies, len(recipients))
    said.final, said.dropped, said.body_sent = final, dropped, body_sent
    return said


class SmtpTransport:
    """One SMTP connection, kept open between transactions and reopened after errors.

    A transaction that fails because the relay dropped the connection (or said 421) before
    the message was written goes again at once over a new one, for the recipients it had not
    answered about, when the connection was an old one or the relay answered about some
    recipients before it hung up (docs/delivery.md, "The relay"); after the message was
    written, it is a temporary failure instead (the relay may have the message). After
    ERRORS_BEFORE_RECONNECT error replies with no message taken, the next transaction opens a
    new connection.

    `envelope_from`, when set, is the MAIL FROM of every transaction whatever the queue asks:
    a hosted mailbox's provider sends only as its account (`Settings.hosted_sender`).
    """

    def __init__(self, settings: OutboundSettings, timeout: float = 60.0,
                 envelope_from: str = "") -> None:
        self.settings = settings
        self.timeout = timeout
        self.envelope_from = envelope_from
        self._client: smtplib.SMTP | None = None
        self._used = 0.0  # time.monotonic() of the last transaction
        self._errors = 0  # error replies on this connection since the relay last took a message

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.verify_cert:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        client: smtplib.SMTP
        if s.tls == "implicit":
            client = smtplib.SMTP_SSL(
                s.host, s.port, timeout=self.timeout, context=self._tls_context()
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        try:
            client.ehlo()
            if s.tls == "starttls":
                client.starttls(context=self._tls_context())
                client.ehlo()
            if s.username:
                client.login(s.username, s.password)
        except BaseException:
            client.close()
            raise
        self._errors = 0
        return client

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
        envelope_from = self.envelope_from or envelope_from
        results: dict[str, Result] = {}
        pending = list(recipients)
        try:
            while pending:
                previous = self._client
                try:
                    client = self._connection()
                except (smtplib.SMTPException, OSError, UnicodeError) as exc:
                    self._abandon()
                    return results | {r: Result(Outcome.TEMPORARY, f"connection: {exc}")
                                      for r in pending}
                reused = client is previous
                done, again, dropped = self._transaction(client, envelope_from, pending, data)
                results |= done
                if not again:
                    break
                if not reused and len(again) == len(pending):
                    # A new connection that got nowhere: the relay is in trouble, try later.
                    return results | {r: Result(Outcome.TEMPORARY, dropped) for r in again}
                pending = again
        finally:
            self._used = time.monotonic()
        return results

    def _transaction(self, client: smtplib.SMTP, envelope_from: str, recipients: list[str],
                     data: bytes) -> tuple[dict[str, Result], list[str], str]:
        """Results, the recipients to send again over a new connection, and why."""
        utf8 = client.has_extn("smtputf8")
        problem = _unsendable(envelope_from, utf8)
        if problem:
            # No MAIL FROM can carry it: a failure for good, but about the sender, not the
            # recipients; the connection is left as healthy as it was.
            unsendable = Result(Outcome.PERMANENT, f"envelope sender: {problem}")
            return dict.fromkeys(recipients, unsendable), [], ""
        results: dict[str, Result] = {}
        sendable = []
        for r in recipients:
            problem = _unsendable(r, utf8)
            if problem:
                results[r] = Result(Outcome.PERMANENT, problem, about_recipient=True)
            else:
                sendable.append(r)
        if not sendable:
            return results, [], ""
        options = []
        if client.has_extn("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")
        if utf8 and not (_head(data).isascii()
                         and (envelope_from + "".join(sendable)).isascii()):
            options.append("SMTPUTF8")  # an internationalised address (RFC 6531)
        said = _converse(client, envelope_from, sendable, data, options)
        done, again = outcome(sendable, said)
        self._errors = 0 if said.delivered else self._errors + said.errors
        if said.dropped or client.sock is None:
            self._abandon()
        elif said.open:
            self._reset()  # RSET: the transaction ended without its message
        return results | done, again, said.dropped

    def _connection(self) -> smtplib.SMTP:
        """The open connection, or a new one: after an idle spell (checked with NOOP) or a run
        of refusals.

        Servers drop idle clients (Postfix after 300 s): without the check, the first batch
        after a quiet hour would meet a dead connection.
        """
        client = self._client
        if client is not None and self._errors >= ERRORS_BEFORE_RECONNECT:
            self.close()
            client = None
        if client is not None and time.monotonic() - self._used > IDLE_CHECK_SECONDS:
            try:
                alive = client.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self._abandon()
                client = None
        if client is None:
            client = self._client = self._connect()
        return client

    def _reset(self) -> None:
        if self._client is None:
            return
        try:
            self._client.rset()
        except (smtplib.SMTPException, OSError):
            self._abandon()

    def _abandon(self) -> None:
        """Drop a connection that failed, without the QUIT a dead or slow server won't answer."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.quit()
            except (smtplib.SMTPException, OSError):
                self._client.close()
            self._client = None


def make_transport(settings: OutboundSettings, outbox: Path, envelope_from: str = "") -> Transport:
    """The transport the operator configured (`outbound.transport`).

    `envelope_from` ("" = each message's own) overrides the envelope sender of every
    transaction: in hosted mode, the account's address.
    """
    if settings.transport == "smtp":
        return SmtpTransport(settings, envelope_from=envelope_from)
    return MaildirTransport(outbox, envelope_from)
