"""IMAP intake: read a hosted mailbox into the store, exactly once (SPEC §1, §7 `[intake.imap]`).

The cursor (mailbox, UIDVALIDITY, last UID) in our store is the only processing state. Each
message is stored in the transaction that moves the cursor past its UID; only then is it marked
on the server, with a private keyword (never `\\Seen`, which the chair's phone sets) or by a move
to `processed_folder`. A crash between the two leaves a row with `marked` false, and the next
connection marks it: nothing is processed twice. When the server changes UIDVALIDITY the cursor
starts again from the first UID, and messages already stored are recognised by their
Message-ID and a hash of their bytes (and by our keyword, which skips fetching them at all).

Network I/O stays here, in the poller thread; `store_fetched` is the unit of work. A few
imapclient internals are used on purpose (the buffered IDLE read, the untagged responses):
pyproject.toml pins imapclient below 5, and the IMAP tests exercise each of them.
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

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from listserv.mail.addresses import Destination, Role, normalize
from listserv.mail.automatic import recognise
from listserv.mail.headers import from_address, header_text
from listserv.mail.message import parse
from listserv.store.engine import Store
from listserv.store.lookup import open_request_for_token
from listserv.store.models.core import Inbound, MailingList
from listserv.store.models.features import ImapCursor, ImapMessage

from ..clock import Clock
from ..config import ImapSettings, Settings
from .roles import ListAddresses, Routed, addresses_of, route

log = logging.getLogger(__name__)

KEYWORD = "ListservProcessed"  # our private mark; a keyword, so no other client's flag
MARK_BATCH = 25  # messages marked per STORE (or MOVE)
MAX_BACKOFF = 30.0  # seconds between reconnection attempts, at most
CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 30.0  # seconds
BYE_TIMEOUT = 2.0  # seconds allowed for DONE and LOGOUT when leaving
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
def connect(conf: ImapSettings) -> Iterator[IMAPClient]:
    """A logged-in connection: implicit TLS, STARTTLS, or plain (loopback tests only)."""
    implicit = conf.tls == "implicit"
    client = IMAPClient(conf.host, conf.port, ssl=implicit,
                        ssl_context=tls_context(conf) if implicit else None,
                        timeout=SocketTimeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT))
    try:
        if conf.tls == "starttls":
            client.starttls(tls_context(conf))
        client.login(conf.username, conf.password)
        yield client
    finally:
        try:
            # A polite LOGOUT, but not a long wait for a server that went silent.
            client.socket().settimeout(BYE_TIMEOUT)
            client.logout()
        except (IMAPClientError, OSError):
            client.shutdown()


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message as read from the server."""

    uid: int
    raw: bytes
    size: int  # of the whole message (the server's RFC822.SIZE when only headers were read)
    headers_only: bool = False  # over the cap: `raw` is its header


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
                  now: datetime, account: str, unreadable: str = "") -> str:
    """Store one message and move the cursor past it, in the caller's transaction.

    Returns what happened, for the log. A UID the cursor has already passed (another
    poller took it) is left alone; a message already stored under an earlier UIDVALIDITY is
    recorded against its new UID, to be marked, and not stored again. With `unreadable` (why
    reading it failed) the message is kept as a failed row for the chair (`listserv queue`).
    """
    cursor = session.scalars(
        select(ImapCursor).where(ImapCursor.mailbox == key).with_for_update()
    ).one()
    if cursor.uidvalidity != uidvalidity or fetched.uid <= cursor.last_uid:
        return "already read"
    digest = hashlib.sha256(fetched.raw).hexdigest()
    message_id = ""
    seen = None
    if not unreadable:
        msg = parse(fetched.raw)
        message_id = header_text(msg, "Message-ID")[:250]
        seen = session.scalar(
            select(ImapMessage.id).where(
                ImapMessage.mailbox == key, ImapMessage.message_id == message_id,
                ImapMessage.content_hash == digest,
            ).limit(1)
        )
    inbound_id = None
    outcome = "read before (same Message-ID and bytes)"
    if seen is None:
        inbound = (_unreadable(session, fetched, account, now, unreadable) if unreadable
                   else _inbound(session, msg, fetched, account, now))
        session.add(inbound)
        session.flush()
        inbound_id = inbound.id
        outcome = f"stored as inbound #{inbound.id} ({inbound.role} of {inbound.rcpt})"
    row = session.scalars(select(ImapMessage).where(
        ImapMessage.mailbox == key, ImapMessage.uidvalidity == uidvalidity,
        ImapMessage.uid == fetched.uid)).first()
    if row is None:  # (a row is there when the server went back to an earlier UIDVALIDITY)
        row = ImapMessage(mailbox=key, uidvalidity=uidvalidity, uid=fetched.uid)
        session.add(row)
    row.message_id, row.content_hash, row.inbound_id = message_id, digest, inbound_id
    row.marked, row.received_at = False, now
    cursor.last_uid = fetched.uid
    cursor.updated_at = now
    return outcome


def _served(session: Session, account: str) -> tuple[list[MailingList], list[ListAddresses]]:
    """All lists and their addresses, the mailbox's own lists first (the chair's default)."""
    lists = list(session.scalars(select(MailingList).order_by(MailingList.id)))
    addresses = [addresses_of(ml.address, ml.role_address) for ml in lists]
    order = sorted(range(len(lists)), key=lambda i: not addresses[i].shares_base(account))
    return [lists[i] for i in order], [addresses[i] for i in order]


def _unreadable(session: Session, fetched: Fetched, account: str, now: datetime,
                why: str) -> Inbound:
    lists, _ = _served(session, account)
    return Inbound(
        received_at=now, mail_from="", rcpt=account[:320],
        list_id=lists[0].id if lists else None, role=Role.OWNER.value, raw=fetched.raw,
        size=fetched.size, status="failed", error=f"could not be read: {why}"[:2000],
    )


def _inbound(session: Session, msg: EmailMessage, fetched: Fetched, account: str,
             now: datetime) -> Inbound:
    lists, addresses = _served(session, account)
    mail_from = envelope_sender(header_text(msg, "Return-Path"), from_address(msg))
    routed = route(msg, addresses, addresses[0],
                   lambda token: open_request_for_token(session, token, now) is not None)
    routed = _reports_to_bounces(msg, routed)
    if fetched.headers_only and routed.destination.role is not Role.BOUNCES:
        # Headers only: held as a post for the chair, whatever it was for (the post
        # handler holds it; nothing would act on a request or forward with no body).
        routed = Routed(routed.rcpt, Destination(routed.destination.list_address, Role.POST),
                        "over the size cap")
    by_address = {ml.address: ml.id for ml in lists}
    destination = routed.destination
    log.info("imap uid %s: for the %s of %s (decided by %s)", fetched.uid,
             destination.role.value, destination.list_address, routed.how)
    return Inbound(
        received_at=now, mail_from=mail_from[:320], rcpt=routed.rcpt[:320],
        list_id=by_address.get(destination.list_address), role=destination.role.value,
        token=destination.token, raw=fetched.raw, size=fetched.size,
    )


def _reports_to_bounces(msg: EmailMessage, routed: Routed) -> Routed:
    """Delivery reports and automatic replies go to the bounce handler, whatever they name."""
    if routed.destination.role is Role.BOUNCES:
        return routed
    why = recognise(msg)
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
        self._warned = False  # about a server that keeps no keywords
        self._keywords = True

    def run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            cycles = self.cycles
            try:
                with connect(self.conf) as client:
                    log.info("imap: connected to %s", self.key)
                    self._serve(client)
            except (IMAPClientError, OSError, OperationalError, InterfaceError) as exc:
                problem = " ".join(str(exc).split())[:300] or type(exc).__name__
            except Exception as exc:
                log.exception("imap: %s failed", self.key)
                problem = type(exc).__name__
            else:
                continue
            if self.cycles > cycles:
                backoff = 1.0  # it worked for a while: a fresh failure, not the same one
            if self.stopping.is_set():
                break
            log.warning("imap: %s: %s; connecting again in %.0f s", self.key, problem, backoff)
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
        self._keywords = b"\\*" in selected.get(b"PERMANENTFLAGS", ())
        if not self._keywords and not self.conf.processed_folder and not self._warned:
            log.warning("imap: %s keeps no keywords of ours: processed mail stays unmarked "
                        "(the cursor still reads each message once); set processed_folder "
                        "to have it moved instead", self.key)
            self._warned = True
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
            if self.stopping.is_set():
                client.socket().settimeout(BYE_TIMEOUT)
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
        done: list[int] = []
        for uid in uids:
            if self.stopping.is_set():
                break
            if self._read_one(client, uidvalidity, uid):
                done.append(uid)
            if len(done) >= MARK_BATCH:
                self._mark(client, uidvalidity, done)
                done = []
        self._mark(client, uidvalidity, done)
        return bool(uids) and not self.stopping.is_set() or "EXISTS" in untagged

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
        with self.store.reading() as session:
            return list(session.scalars(
                select(ImapMessage.uid).where(
                    ImapMessage.mailbox == self.key, ImapMessage.uidvalidity == uidvalidity,
                    ImapMessage.marked.is_(False),
                ).order_by(ImapMessage.uid)
            ))

    def _fetch(self, client: IMAPClient, uid: int, items: list[str]) -> dict[bytes, object]:
        """One message's FETCH items, without the unsolicited FETCHes of other clients.

        imapclient files a FETCH without a UID (another client changed flags) under its
        sequence number, which can equal the UID we ask for; so drop what is waiting first.
        """
        client._imap.untagged_responses.pop("FETCH", None)
        found = client.fetch([uid], items).get(uid, {})
        return found if found.get(b"UID", uid) == uid else {}

    def _read_one(self, client: IMAPClient, uidvalidity: int, uid: int) -> bool:
        """Store message `uid` (or learn it is ours already); True when it needs marking.

        A message the server cannot give us (expunged meanwhile) is passed over. One that
        cannot be read is kept as a failed row for the chair rather than retried forever;
        only a database that cannot be reached makes us stop and try again later.
        """
        info = self._fetch(client, uid, ["FLAGS", "RFC822.SIZE"])
        if not info:
            return False
        if KEYWORD.encode() in info.get(b"FLAGS", ()):
            # Marked by us before the server renumbered the folder: read, nothing to do.
            self._advance(uidvalidity, uid)
            return False
        size = int(str(info.get(b"RFC822.SIZE", 0)))
        headers_only = size > self.cap
        item, key = (("BODY.PEEK[HEADER]", b"BODY[HEADER]") if headers_only
                     else ("BODY.PEEK[]", b"BODY[]"))
        raw = self._fetch(client, uid, [item]).get(key)
        if not isinstance(raw, bytes):
            return False
        if headers_only:
            log.warning("imap: %s uid %s is %d KB, over the %d KB cap; storing its headers "
                        "only", self.key, uid, size // 1024, self.cap // 1024)
        fetched = Fetched(uid, raw, size if headers_only else len(raw), headers_only)
        try:
            with self.store.unit_of_work() as session:
                outcome = store_fetched(session, self.key, uidvalidity, fetched,
                                        self.clock.now(), self.account)
        except (OperationalError, InterfaceError):
            raise  # the store is unreachable: nothing was written; try again later
        except Exception as exc:
            log.exception("imap: %s uid %s could not be read; kept for the chair", self.key,
                          uid)
            with self.store.unit_of_work() as session:
                outcome = store_fetched(session, self.key, uidvalidity, fetched,
                                        self.clock.now(), self.account,
                                        unreadable=f"{type(exc).__name__}: {exc}")
        log.info("imap: %s uid %s: %s", self.key, uid, outcome)
        self.wake_router()
        return True

    def _advance(self, uidvalidity: int, uid: int) -> None:
        with self.store.unit_of_work() as session:
            cursor = session.scalars(
                select(ImapCursor).where(ImapCursor.mailbox == self.key).with_for_update()
            ).one()
            if cursor.uidvalidity == uidvalidity and uid > cursor.last_uid:
                cursor.last_uid = uid

    def _mark(self, client: IMAPClient, uidvalidity: int, uids: list[int]) -> None:
        """Tell the server these are done: our keyword, or a move; then note it.

        A server that refuses the keyword costs only the mark (the cursor is what counts);
        a lost connection is an error like any other.
        """
        if not uids:
            return
        try:
            if not self.conf.processed_folder:
                if self._keywords:
                    client.add_flags(uids, [KEYWORD], silent=True)
            elif client.has_capability("MOVE"):
                client.move(uids, self.conf.processed_folder)
            else:
                # RFC 6851's fallback; without UIDPLUS the originals stay flagged \Deleted,
                # since a plain EXPUNGE would also remove what the chair deleted herself.
                client.copy(uids, self.conf.processed_folder)
                client.add_flags(uids, [KEYWORD, b"\\Deleted"], silent=True)
                if client.has_capability("UIDPLUS"):
                    client.uid_expunge(uids)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            log.warning("imap: %s refused to mark %d message(s): %s", self.key, len(uids), exc)
        with self.store.unit_of_work() as session:
            session.execute(
                update(ImapMessage)
                .where(ImapMessage.mailbox == self.key, ImapMessage.uidvalidity == uidvalidity,
                       ImapMessage.uid.in_(uids), ImapMessage.marked.is_(False))
                .values(marked=True)
            )
