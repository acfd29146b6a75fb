"""IMAP intake: read a hosted mailbox into the store, exactly once (SPEC §1, §7 `[intake.imap]`).

The cursor (mailbox, UIDVALIDITY, last UID) in our store is the only processing state. Each
message is stored in the transaction that moves the cursor past its UID; only then is it marked
on the server, with a private keyword (never `\\Seen`, which the chair's phone sets) or by a move
to `processed_folder`. A crash between the two leaves a row with `marked` false, and the next
connection marks it: nothing is processed twice. When the server changes UIDVALIDITY the cursor
starts again from the first UID, and messages already stored are recognised by their
Message-ID and a hash of their bytes (and by our keyword, which skips fetching them at all).

Network I/O stays here, in the poller thread; `store_fetched` is the unit of work.
"""

from __future__ import annotations

import hashlib
import logging
import selectors
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import bounces
from ..addresses import Destination, Role, normalize
from ..clock import Clock
from ..config import ImapSettings, Settings
from ..db import Store
from ..membership import find_request
from ..models import ImapCursor, ImapMessage, Inbound, MailingList
from ..posting import parse
from ..rules import from_address, header_text
from .roles import Routed, addresses_of, route

log = logging.getLogger(__name__)

KEYWORD = "ListservProcessed"  # our private mark; a keyword, so no other client's flag
CHUNK = 25  # messages fetched per FETCH
MAX_BACKOFF = 30.0  # seconds between reconnection attempts, at most
MAX_ROUNDS = 20  # catch-ups in a row while the server keeps announcing mail
IDLE_RENEW = 25 * 60  # RFC 2177: re-issue IDLE before a server's 30-minute timeout


def mailbox_key(conf: ImapSettings) -> str:
    """The name the cursor is kept under: account, server and folder."""
    return f"imap://{conf.username}@{conf.host}/{conf.folder}"


def tls_context(conf: ImapSettings) -> ssl.SSLContext:
    """Certificate and host name verified, unless `verify_cert = false` (a test server)."""
    context = ssl.create_default_context()
    if not conf.verify_cert:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def connect(conf: ImapSettings, timeout: float = 30.0) -> Iterator[IMAPClient]:
    """A logged-in connection: implicit TLS, STARTTLS, or plain (loopback tests only)."""
    implicit = conf.tls == "implicit"
    client = IMAPClient(conf.host, conf.port, ssl=implicit,
                        ssl_context=tls_context(conf) if implicit else None, timeout=timeout)
    try:
        if conf.tls == "starttls":
            client.starttls(tls_context(conf))
        client.login(conf.username, conf.password)
        yield client
    finally:
        try:
            client.logout()
        except (IMAPClientError, OSError):
            client.shutdown()


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message as read from the server."""

    uid: int
    raw: bytes
    size: int  # the server's RFC822.SIZE (raw holds only the header when over the cap)


def envelope_sender(raw_return_path: str, msg_from: str) -> str:
    """The envelope sender the delivering server recorded (`Return-Path`), normalized.

    `<>` is the empty sender of a delivery report; without the header, the From address
    stands in (no envelope is not the same as an empty one).
    """
    value = raw_return_path.strip()
    if not value:
        return msg_from
    address = parseaddr(value)[1]
    return normalize(address) if address else ""


def store_fetched(session: Session, key: str, uidvalidity: int, fetched: Fetched,
                  now: datetime, account: str) -> str:
    """Store one message and move the cursor past it, in the caller's transaction.

    Returns what happened, for the log. A UID the cursor has already passed (another
    poller took it) is left alone; a message already stored under an earlier UIDVALIDITY is
    recorded against its new UID, to be marked, and not stored again.
    """
    cursor = session.scalars(
        select(ImapCursor).where(ImapCursor.mailbox == key).with_for_update()
    ).one()
    if cursor.uidvalidity != uidvalidity or fetched.uid <= cursor.last_uid:
        return "already read"
    msg = parse(fetched.raw)
    message_id = header_text(msg, "Message-ID")[:250]
    digest = hashlib.sha256(fetched.raw).hexdigest()
    seen = session.scalar(
        select(ImapMessage.id).where(
            ImapMessage.mailbox == key, ImapMessage.message_id == message_id,
            ImapMessage.content_hash == digest,
        ).limit(1)
    )
    inbound_id = None
    outcome = "read before (same Message-ID and bytes)"
    if seen is None:
        inbound = _inbound(session, msg, fetched, account, now)
        session.add(inbound)
        session.flush()
        inbound_id = inbound.id
        outcome = f"stored as inbound #{inbound.id} ({inbound.role} of {inbound.rcpt})"
    session.add(ImapMessage(
        mailbox=key, uidvalidity=uidvalidity, uid=fetched.uid, message_id=message_id,
        content_hash=digest, inbound_id=inbound_id, marked=False, received_at=now,
    ))
    cursor.last_uid = fetched.uid
    cursor.updated_at = now
    return outcome


def _inbound(session: Session, msg: EmailMessage, fetched: Fetched, account: str,
             now: datetime) -> Inbound:
    lists = session.scalars(select(MailingList).order_by(MailingList.id)).all()
    addresses = [addresses_of(ml.address, ml.role_address) for ml in lists]
    served = [a for a in addresses if a.shares_base(account)] or addresses
    mail_from = envelope_sender(header_text(msg, "Return-Path"), from_address(msg))
    routed = route(msg, addresses, served[0],
                   lambda token: find_request(session, token, now) is not None)
    routed = _reports_to_bounces(msg, mail_from, routed)
    if fetched.size > len(fetched.raw) and routed.destination.role is not Role.BOUNCES:
        # Headers only: held as a post for the chair, whatever it was for (the post
        # handler holds it; nothing would act on a request or forward with no body).
        routed = Routed(routed.rcpt, Destination(routed.destination.list_address, Role.POST),
                        "over the size cap")
    by_address = {ml.address: ml.id for ml in lists}
    destination = routed.destination
    log.info("imap uid %s: for the %s of %s (decided by %s)", fetched.uid,
             destination.role.value, destination.list_address, routed.how)
    return Inbound(
        received_at=now, mail_from=mail_from, rcpt=routed.rcpt,
        list_id=by_address.get(destination.list_address), role=destination.role.value,
        token=destination.token, raw=fetched.raw, size=fetched.size,
    )


def _reports_to_bounces(msg: EmailMessage, mail_from: str, routed: Routed) -> Routed:
    """Delivery reports and automatic replies go to the bounce handler, whatever they name."""
    if routed.destination.role is Role.BOUNCES:
        return routed
    why = bounces.recognise(msg, mail_from)
    if not why:
        return routed
    return Routed(routed.rcpt, Destination(routed.destination.list_address, Role.BOUNCES), why)


def _idle_news(client: IMAPClient, seconds: float) -> bool:
    """Whether the server sent anything during IDLE within `seconds` (new mail, most often).

    `IMAPClient.idle_check` only polls the socket: an `EXISTS` that came in the same packet as
    the IDLE continuation already sits in imaplib's buffer (or the TLS layer's), where a poll
    never sees it. So look there first, without blocking, then wait on the socket. Any line
    counts; the catch-up that follows finds out what changed.
    """
    sock = client.socket()
    sock.setblocking(False)
    try:
        try:
            ready = bool(client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            ready = False
        if not ready:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                ready = bool(selector.select(seconds))
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
    if ready:
        client._imap._get_line()
    return ready


class ImapPoller(threading.Thread):
    """Reads the mailbox until stopped: IDLE where offered, else a poll every `poll_seconds`.

    Any network or server error closes the connection; it is opened again after a backoff
    (1 s, doubling, at most MAX_BACKOFF). Nothing is lost meanwhile: the mail waits on the
    server and the cursor says where to go on.
    """

    def __init__(self, store: Store, settings: Settings, clock: Clock,
                 wake_router: Callable[[], None], stopping: threading.Event) -> None:
        super().__init__(name="imap", daemon=True)
        self.store, self.clock = store, clock
        self.conf = settings.intake.imap
        self.cap = settings.intake.smtp.max_message_kb * 1024
        self.account = self.conf.username
        self.key = mailbox_key(self.conf)
        self.wake_router, self.stopping = wake_router, stopping
        self.cycles = 0  # finished catch-ups, for tests and the log
        self._no_lists_logged = False

    def run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                with connect(self.conf) as client:
                    log.info("imap: connected to %s", self.key)
                    backoff = 1.0
                    self._serve(client)
            except (IMAPClientError, OSError) as exc:
                log.warning("imap: %s: %s; connecting again in %.0f s", self.key,
                            " ".join(str(exc).split()) or type(exc).__name__, backoff)
            except Exception:
                log.exception("imap: %s failed; connecting again in %.0f s", self.key, backoff)
            if self.stopping.wait(backoff):
                break
            backoff = min(backoff * 2, MAX_BACKOFF)
        log.info("imap: stopped")

    # -- one connection ----------------------------------------------------------------------

    def _serve(self, client: IMAPClient) -> None:
        """Catch up, then wait for news (IDLE or poll) and catch up again, until stopped."""
        selected = client.select_folder(self.conf.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        if self.conf.processed_folder and not client.folder_exists(self.conf.processed_folder):
            client.create_folder(self.conf.processed_folder)
        idle = self.conf.idle and client.has_capability("IDLE")
        while not self.stopping.is_set():
            for _ in range(MAX_ROUNDS):
                if not self._catch_up(client, uidvalidity):
                    break
            self.cycles += 1
            if idle:
                self._idle(client)
            elif not self.stopping.wait(self.conf.poll_seconds):
                client.noop()

    def _idle(self, client: IMAPClient) -> None:
        """Wait in IDLE until the server says anything, the poll interval passes, or a stop."""
        client.idle()
        deadline = time.monotonic() + min(self.conf.poll_seconds, IDLE_RENEW)
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                if _idle_news(client, 1.0):
                    break
        finally:
            client.idle_done()

    def _catch_up(self, client: IMAPClient, uidvalidity: int) -> bool:
        """Mark what was stored but not marked, then store and mark what is new.

        True when it is worth looking again: something was read, or the server announced new
        mail while we searched (an `EXISTS` that came with a search result not yet holding
        the message; IDLE would not announce it a second time).
        """
        last = self._cursor(uidvalidity)
        if last is None:
            return False
        self._mark(client, uidvalidity, self._unmarked(uidvalidity))
        untagged = client._imap.untagged_responses
        untagged.pop("EXISTS", None)
        uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
        for start in range(0, len(uids), CHUNK):
            if self.stopping.is_set():
                return False
            chunk = uids[start:start + CHUNK]
            self._mark(client, uidvalidity,
                       list(self._fetch_and_store(client, uidvalidity, chunk)))
        return bool(uids) or "EXISTS" in untagged

    def _cursor(self, uidvalidity: int) -> int | None:
        """The last UID read under `uidvalidity` (a new cursor, or a reset one, says 0).

        None when there is no list yet to give the mail to: it waits on the server.
        """
        with self.store.unit_of_work() as session:
            if session.scalar(select(MailingList.id).limit(1)) is None:
                if not self._no_lists_logged:
                    log.warning("imap: no list exists yet; mail waits in %s", self.key)
                    self._no_lists_logged = True
                return None
            cursor = session.scalars(
                select(ImapCursor).where(ImapCursor.mailbox == self.key).with_for_update()
            ).first()
            now = self.clock.now()
            if cursor is None:
                session.add(ImapCursor(mailbox=self.key, uidvalidity=uidvalidity, last_uid=0,
                                       updated_at=now))
                return 0
            if cursor.uidvalidity != uidvalidity:
                log.warning("imap: %s changed UIDVALIDITY (%s -> %s); reading it again, "
                            "recognising what was read by Message-ID and content",
                            self.key, cursor.uidvalidity, uidvalidity)
                # The old UIDs name nothing now; their messages are found again by content.
                session.execute(
                    update(ImapMessage)
                    .where(ImapMessage.mailbox == self.key,
                           ImapMessage.uidvalidity == cursor.uidvalidity)
                    .values(marked=True)
                )
                cursor.uidvalidity, cursor.last_uid, cursor.updated_at = uidvalidity, 0, now
            return cursor.last_uid

    def _unmarked(self, uidvalidity: int) -> list[int]:
        with self.store.unit_of_work() as session:
            return list(session.scalars(
                select(ImapMessage.uid).where(
                    ImapMessage.mailbox == self.key, ImapMessage.uidvalidity == uidvalidity,
                    ImapMessage.marked.is_(False),
                ).order_by(ImapMessage.uid)
            ))

    def _fetch_and_store(self, client: IMAPClient, uidvalidity: int,
                         chunk: list[int]) -> Iterator[int]:
        """Store each message of `chunk` in UID order; yields the UIDs to mark."""
        info = client.fetch(chunk, ["FLAGS", "RFC822.SIZE"])
        ours = [u for u in chunk if KEYWORD.encode() in info.get(u, {}).get(b"FLAGS", ())]
        if ours:
            # Marked by us before the server renumbered the folder: read, nothing to do.
            self._skip(uidvalidity, ours)
        wanted = [u for u in chunk if u in info and u not in ours]
        whole = [u for u in wanted if int(info[u].get(b"RFC822.SIZE", 0)) <= self.cap]
        heads = [u for u in wanted if u not in whole]
        bodies = client.fetch(whole, ["BODY.PEEK[]"]) if whole else {}
        if heads:
            log.warning("imap: %d message(s) over the %d KB cap; storing their headers only",
                        len(heads), self.cap // 1024)
            bodies.update(client.fetch(heads, ["BODY.PEEK[HEADER]"]))
        for uid in wanted:
            data = bodies.get(uid, {})
            raw = data.get(b"BODY[]") or data.get(b"BODY[HEADER]")
            if raw is None:
                continue  # expunged by another client meanwhile
            fetched = Fetched(uid, bytes(raw), int(info[uid].get(b"RFC822.SIZE", len(raw))))
            with self.store.unit_of_work() as session:
                outcome = store_fetched(session, self.key, uidvalidity, fetched,
                                        self.clock.now(), self.account)
            log.info("imap: %s uid %s: %s", self.key, uid, outcome)
            self.wake_router()
            yield uid

    def _skip(self, uidvalidity: int, uids: list[int]) -> None:
        with self.store.unit_of_work() as session:
            cursor = session.scalars(
                select(ImapCursor).where(ImapCursor.mailbox == self.key).with_for_update()
            ).one()
            if cursor.uidvalidity == uidvalidity:
                cursor.last_uid = max(cursor.last_uid, *uids)

    def _mark(self, client: IMAPClient, uidvalidity: int, uids: list[int]) -> None:
        """Tell the server these are done: our keyword, or a move; then note it."""
        if not uids:
            return
        if not self.conf.processed_folder:
            client.add_flags(uids, [KEYWORD], silent=True)
        elif client.has_capability("MOVE"):
            client.move(uids, self.conf.processed_folder)
        else:
            # RFC 6851's fallback; without UIDPLUS the originals stay flagged \Deleted, since a
            # plain EXPUNGE would also remove what the chair marked deleted herself.
            client.copy(uids, self.conf.processed_folder)
            client.add_flags(uids, [KEYWORD, b"\\Deleted"], silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
        with self.store.unit_of_work() as session:
            session.execute(
                update(ImapMessage)
                .where(ImapMessage.mailbox == self.key, ImapMessage.uidvalidity == uidvalidity,
                       ImapMessage.uid.in_(uids), ImapMessage.marked.is_(False))
                .values(marked=True)
            )
