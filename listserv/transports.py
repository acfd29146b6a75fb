"""Where outgoing mail goes: an SMTP server, or a Maildir outbox on disk."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from .config import OutboundSettings


class Outcome(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one recipient in one transaction."""

    outcome: Outcome
    reason: str = ""


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
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
        envelope_from = self.envelope_from or envelope_from
        eol = b"\r\n" if b"\r\n" in data[:4096] else b"\n"
        envelope = f"Return-Path: <{envelope_from}>".encode() + eol
        envelope += b"".join(f"X-Envelope-To: <{r}>".encode() + eol for r in recipients)
        name = f"{time.time_ns()}.P{os.getpid()}R{uuid.uuid4().hex[:16]}.{self._host}"
        tmp = self.path / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(envelope + data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, self.path / "new" / name)
        return {r: Result(Outcome.SENT) for r in recipients}

    def close(self) -> None:
        return None


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


def _classify(code: int, text: bytes | str) -> Result:
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY
    return Result(outcome, _reply(code, text))


_SENT = Result(Outcome.SENT)
IDLE_CHECK_SECONDS = 10.0
# Commands written at once with PIPELINING: their replies (under 100 bytes each) fit in any
# socket buffer, so the server never blocks on replies we have not read yet.
PIPELINE_GROUP = 100
_MAX_LINE = 8192  # smtplib's _MAXLINE
# An address that needs no quoting in MAIL FROM / RCPT TO: no spaces, brackets, quotes.
_PLAIN_ADDRESS = re.compile(r'[^\s<>()\[\]\\,;:"]+@[^\s<>()\[\]\\,;:"@]+')


def _unsendable(address: str, utf8: bool) -> str:
    """Why `address` cannot go into a RCPT TO at all ("" when it can)."""
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


def _read_reply(file: BinaryIO) -> tuple[int, bytes]:
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


def _send_pipelined(
    client: smtplib.SMTP, envelope_from: str, recipients: list[str], data: bytes,
    options: list[str],
) -> dict[str, tuple[int, bytes]]:
    """One transaction with PIPELINING (RFC 2920): commands sent in groups, not one by one.

    MAIL, the RCPTs and DATA go out in groups of up to PIPELINE_GROUP commands, each group's
    replies read before the next is written (so neither side's buffers can fill and deadlock):
    a few round trips for 500 recipients instead of 502, which counts on the loopback and far
    more with a relay farther away. Returns the refused recipients and raises as
    `smtplib.SMTP.sendmail` does, so the caller treats both paths alike.
    """
    if client.has_extn("size"):
        options = [*options, f"SIZE={len(data)}"]
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    params = "".join(f" {option}" for option in options)
    commands = [f"MAIL FROM:{_path(envelope_from)}{params}\r\n"]
    commands += [f"RCPT TO:{_path(r)}\r\n" for r in recipients]
    commands.append("DATA\r\n")
    replies: list[tuple[int, bytes]] = []
    for start in range(0, len(commands), PIPELINE_GROUP):
        group = commands[start : start + PIPELINE_GROUP]
        client.send("".join(group).encode(encoding))
        if client.file is None:
            client.file = client.sock.makefile("rb")
        replies += [_read_reply(client.file) for _ in group]
    (mail_code, mail_reply), (data_code, data_reply) = replies[0], replies[-1]
    refused = {r: reply for r, reply in zip(recipients, replies[1:-1], strict=True)
               if reply[0] != 250 and reply[0] != 251}
    if mail_code != 250 or len(refused) == len(recipients):
        if data_code == 354:
            # The server wants a message nobody is to receive: hang up rather than send it.
            client.close()
        if mail_code != 250:
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, envelope_from)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        raise smtplib.SMTPDataError(data_code, data_reply)
    # Dot-stuffing, as smtplib does it (a "." starting any line is doubled), without a regex.
    body = data.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    client.send(body + b".\r\n")
    code, reply = client.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return refused


class SmtpTransport:
    """One SMTP connection, kept open between transactions and reopened after errors.

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
        return client

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
        envelope_from = self.envelope_from or envelope_from
        results: dict[str, Result] = {}
        try:
            client = self._connection()
            utf8 = client.has_extn("smtputf8")
            sendable = []
            for r in recipients:
                problem = _unsendable(r, utf8)
                if problem:
                    results[r] = Result(Outcome.PERMANENT, problem)
                else:
                    sendable.append(r)
            if not sendable:
                return results
            options = []
            if client.has_extn("8bitmime") and not data.isascii():
                options.append("BODY=8BITMIME")
            if utf8 and not (_head(data).isascii()
                             and (envelope_from + "".join(sendable)).isascii()):
                options.append("SMTPUTF8")  # an internationalised address (RFC 6531)
            if client.has_extn("pipelining"):
                refused = _send_pipelined(client, envelope_from, sendable, data, options)
            else:
                refused = client.sendmail(envelope_from, sendable, data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            return results | {r: _classify(*exc.recipients[r]) for r in recipients
                              if r not in results}
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # A failure of the whole transaction, never of a recipient: retried later.
            self._reset()
            return results | {r: Result(Outcome.TEMPORARY, _reply(exc.smtp_code, exc.smtp_error))
                              for r in recipients if r not in results}
        except (smtplib.SMTPException, OSError, UnicodeError) as exc:
            self.close()
            return results | {r: Result(Outcome.TEMPORARY, f"connection: {exc}")
                              for r in recipients if r not in results}
        finally:
            self._used = time.monotonic()
        results |= {r: _SENT for r in sendable}
        for address, (code, text) in refused.items():
            results[address] = _classify(code, text)
        return results

    def _connection(self) -> smtplib.SMTP:
        """The open connection, checked with NOOP after an idle spell, or a new one.

        Servers drop idle clients (Postfix after 300 s): without the check, the first batch
        after a quiet hour would fail on a dead connection and wait for its retry.
        """
        client = self._client
        if client is not None and time.monotonic() - self._used > IDLE_CHECK_SECONDS:
            try:
                alive = client.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self.close()
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
            self.close()

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
