"""LMTP and SMTP intake on aiosmtpd: check recipients, store, then acknowledge."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from listserv.config import IntakeSettings
from listserv.mail.addresses import normalize
from listserv.store.engine import Store

from ..clock import Clock
from .group_commit import GroupCommit
from .store import Accepted, Received, lookup, messages_since

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure storing the message; please try again later"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
SENDER_RATE_LIMITED = "451 4.7.1 Too many messages from this sender; please try again later"


class IntakeHandler:
    """aiosmtpd handler: database work runs in threads, never on the event loop.

    It logs as `listserv.intake.lmtp` or `listserv.intake.smtp`, the protocol it serves.
    Messages are stored through `committer`, shared by the LMTP and SMTP handlers so that
    DATA commands arriving together on either share one commit.
    """

    def __init__(self, store: Store, clock: Clock, on_stored: Callable[[], None],
                 lmtp: bool, limits: IntakeSettings, committer: GroupCommit) -> None:
        self.store = store
        self.committer = committer
        self.clock = clock
        self.on_stored = on_stored
        self.lmtp = lmtp
        self.limits = limits
        self.log = logging.getLogger(f"{__package__}.{'lmtp' if lmtp else 'smtp'}")

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """Refuse a sender past its hourly limit (`451 4.7.1`, SPEC §7); the null sender of
        delivery reports is exempt."""
        limit = self.limits.max_messages_per_sender_per_hour
        if limit and normalize(address):  # `MAIL FROM:<>` arrives as "<>"
            since = self.clock.now() - timedelta(hours=1)
            try:
                sent = await asyncio.to_thread(messages_since, self.store, address, since)
            except Exception:
                self.log.exception("counting the messages from %s failed", address)
                return "451 4.3.0 Temporary failure checking the sender"
            if sent >= limit:
                self.log.warning("refused <%s>: %d messages in the last hour", address, sent)
                return SENDER_RATE_LIMITED
        # A handler that answers MAIL records the sender itself (aiosmtpd's contract).
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        accepted: list[Accepted] = getattr(envelope, "accepted", [])
        if any(normalize(a.rcpt) == normalize(address) for a in accepted):
            # A repeated recipient is one recipient, stored once; LMTP still owes it a reply.
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK (duplicate)"
        if len(accepted) >= self.limits.max_recipients:
            return TOO_MANY_RECIPIENTS
        try:
            destination = await asyncio.to_thread(lookup, self.store, address)
        except Exception:
            self.log.exception("recipient lookup failed for %s", address)
            return "451 4.3.0 Temporary failure looking up the recipient"
        if destination is None:
            return f"550 5.1.1 <{address}>: no such list or address here"
        envelope.rcpt_tos.append(address)
        accepted.append(Accepted(address, destination))
        envelope.accepted = accepted  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        accepted: list[Accepted] = getattr(envelope, "accepted", [])
        raw = envelope.original_content or b""
        try:
            ids = await self.committer.store_message(
                Received(self.clock.now(), envelope.mail_from or "", accepted, raw))
        except Exception:
            self.log.exception("storing a message from %s failed", envelope.mail_from)
            return self._reply(TEMPORARY_FAILURE, len(envelope.rcpt_tos))
        self.log.info("stored %d bytes from <%s> as inbound %s", len(raw), envelope.mail_from,
                 ",".join(map(str, ids)))
        self.on_stored()
        return self._reply("250 2.0.0 OK: stored", len(envelope.rcpt_tos))

    def _reply(self, line: str, recipients: int) -> str:
        # LMTP answers once per RCPT that got 250, duplicates included (RFC 2033); SMTP once.
        return "\r\n".join([line] * max(recipients, 1)) if self.lmtp else line

    async def handle_exception(self, error: Exception) -> str:
        self.log.exception("intake session error", exc_info=error)
        return "451 4.3.0 Temporary server error"


class ListservSMTP(SMTP):
    """SMTP with lines as long as the size cap allows (real mail has 1,000+ byte lines)."""

    def __init__(self, handler: Any, *, line_length_limit: int, **kwargs: Any) -> None:
        self.line_length_limit = line_length_limit
        super().__init__(handler, **kwargs)


class ListservLMTP(ListservSMTP, LMTP):
    """LMTP (LHLO, one reply per recipient) with the same line allowance."""


async def start_server(loop: asyncio.AbstractEventLoop, handler: IntakeHandler, host: str,
                       port: int, max_bytes: int, hostname: str,
                       connections: weakref.WeakSet[SMTP]) -> asyncio.Server:
    """Serve LMTP or SMTP on host:port (0 = a free port) with `max_bytes` as the SIZE cap.

    Each connection's protocol joins `connections`, so a stopping daemon can close them.
    """
    cls = ListservLMTP if handler.lmtp else ListservSMTP

    def factory() -> SMTP:
        protocol = cls(handler, data_size_limit=max_bytes, line_length_limit=max_bytes,
                       enable_SMTPUTF8=True, hostname=hostname or None, loop=loop)
        connections.add(protocol)
        return protocol

    return await loop.create_server(factory, host=host, port=port)
