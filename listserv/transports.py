"""Where outgoing mail goes: an SMTP server, or a Maildir outbox on disk."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

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
    """Writes each transaction as one file in a Maildir (`new/`), envelope in its headers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
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


class SmtpTransport:
    """One SMTP connection, kept open between transactions and reopened after errors."""

    def __init__(self, settings: OutboundSettings, timeout: float = 60.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._client: smtplib.SMTP | None = None

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
        client.ehlo()
        if s.tls == "starttls":
            client.starttls(context=self._tls_context())
            client.ehlo()
        if s.username:
            client.login(s.username, s.password)
        return client

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> dict[str, Result]:
        try:
            if self._client is None:
                self._client = self._connect()
            client = self._client
            options = []
            if client.has_extn("8bitmime") and not data.isascii():
                options.append("BODY=8BITMIME")
            if client.has_extn("smtputf8") and not (envelope_from + "".join(recipients)).isascii():
                options.append("SMTPUTF8")
            refused = client.sendmail(envelope_from, recipients, data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            return {r: _classify(*exc.recipients[r]) for r in recipients}
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # A failure of the whole transaction, never of a recipient: retried later.
            self._reset()
            return {r: Result(Outcome.TEMPORARY, _reply(exc.smtp_code, exc.smtp_error))
                    for r in recipients}
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            return {r: Result(Outcome.TEMPORARY, f"connection: {exc}") for r in recipients}
        results = {r: Result(Outcome.SENT) for r in recipients}
        for address, (code, text) in refused.items():
            results[address] = _classify(code, text)
        return results

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


def make_transport(settings: OutboundSettings, outbox: Path) -> Transport:
    """The transport the operator configured (`outbound.transport`)."""
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    return MaildirTransport(outbox)
