"""A minimal, fast SMTP sink for tests and benchmarks.

It is a plain :class:`asyncio.Protocol` running on its own event loop in a daemon
thread, so synchronous test code (and code under test that uses :mod:`smtplib`) can
talk to it directly.  It is much faster than an aiosmtpd-based sink: it works on a
byte buffer, answers every command found in one TCP read with one write, and finds
the end of message data with a single ``bytes.find`` rather than a per-line loop.

Usage::

    with SmtpSink() as sink:
        smtplib.SMTP(sink.host, sink.port).sendmail("a@x", ["b@x"], b"...")
        sink.wait_for_recipients(1)
        assert sink.messages_for("B@x")[0].data == b"..."

Protocol coverage: greeting, EHLO (PIPELINING, 8BITMIME, SMTPUTF8, SIZE), HELO,
MAIL FROM (parameters SIZE=, BODY=7BIT|8BITMIME, SMTPUTF8), RCPT TO, DATA with
dot-unstuffing, RSET, NOOP, QUIT; anything else gets a 500.  As on a real server,
HELO/EHLO must come before MAIL.  No STARTTLS, AUTH or size limit.

**Strict, as the strictest peers are** (DESIGN, "Strict peers"; SPEC §3, "On the wire").
Lines are read by CRLF: a command line with a bare LF or a bare CR gets ``500``, and
the data ends only at ``CRLF.CRLF``.  A message is refused with ``550`` (see
:func:`refusal`) for a bare LF, a bare CR, a line over 998 octets, 8-bit data
without ``BODY=8BITMIME`` (8-bit header bytes also need ``SMTPUTF8``), or no
``Date``/``Message-ID``/``From``.  Mail that we compose ourselves (notices,
replies, reminders, digests) must also be MIME that Python's ``email`` parser
finds no defect in (headers included, but UTF-8 in headers is no defect in a
transaction with ``SMTPUTF8``, which Python's parser cannot read; an attached
``message/rfc822`` is someone else's and is not checked).  The sink tells our
own mail from copies of members' posts by RFC 3834: every template we send
carries ``Auto-Submitted: auto-generated`` or ``auto-replied``, while a post with
``Auto-Submitted`` is held and never distributed (SPEC §3); a forward to the
owners (``X-BeenThere`` without ``List-Post``) passes on someone else's message
and is held to the wire rules only, as are copies of posts, whose authors'
slightly defective MIME is passed on unchanged.

Every refusal is recorded in ``refusals``; the suite's ``sink`` fixture fails
the test at teardown if there is any, unless the test is marked
``@pytest.mark.sink_refusals`` (it sends something refused on purpose).
``SmtpSink(strict=False)`` turns the checks off.
"""

from __future__ import annotations

import asyncio
import email.message
import email.policy
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser, BytesParser

__all__ = ["Delivery", "Refusal", "SmtpSink", "composed_by_us", "mime_defects", "refusal"]

_CRLF = b"\r\n"
_END_OF_DATA = b"\r\n.\r\n"
_GREETING = b"220 localhost ESMTP listserv test sink\r\n"
_EHLO_REPLY = b"250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE\r\n"
_HELO_REPLY = b"250 localhost\r\n"
_OK = b"250 2.0.0 Ok\r\n"
_OK_MAIL = b"250 2.1.0 Ok\r\n"
_OK_RCPT = b"250 2.1.5 Ok\r\n"
_OK_DATA = b"250 2.0.0 Ok: queued\r\n"
_START_DATA = b"354 End data with <CR><LF>.<CR><LF>\r\n"
_BYE = b"221 2.0.0 Bye\r\n"
_UNKNOWN = b"500 5.5.2 Error: command not recognized\r\n"
_NEED_HELO = b"503 5.5.1 Error: send HELO/EHLO first\r\n"
_NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
_NESTED_MAIL = b"503 5.5.1 Error: nested MAIL command\r\n"
_NO_RECIPIENTS = b"554 5.5.1 Error: no valid recipients\r\n"
_MAIL_SYNTAX = b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
_RCPT_SYNTAX = b"501 5.5.4 Syntax: RCPT TO:<address>\r\n"
_BARE_LF_COMMAND = "500 5.5.2 Error: bare <LF> received"
_BARE_CR_COMMAND = "500 5.5.2 Error: bare <CR> received"

_MAX_LINE = 998
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (_MAX_LINE + 1))
_REQUIRED = ("Date", "Message-ID", "From")

# While a reply is being delayed, stop reading from a client that has sent this much.
_PAUSE_READING_AT = 1 << 20


@dataclass(frozen=True)
class Delivery:
    """One completed (250-acknowledged) SMTP transaction."""

    mail_from: str
    """The reverse path without angle brackets ("" for the null sender ``<>``)."""
    rcpt_tos: list[str]
    """Accepted recipients in the order given, exactly as the client spelled them."""
    data: bytes
    """The message after dot-unstuffing, with the line endings as received (CRLF)."""
    options: tuple[str, ...] = ()
    """The MAIL FROM parameters, upper-cased (``BODY=8BITMIME``, ``SMTPUTF8``, ``SIZE=…``)."""

    @property
    def message(self) -> email.message.EmailMessage:
        """``data`` parsed with :data:`email.policy.default`."""
        msg = BytesParser(policy=email.policy.default).parsebytes(self.data)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


@dataclass(frozen=True)
class Refusal:
    """A transaction (or command) the strict sink refused, and why."""

    reply: str
    """The reply sent, e.g. ``"550 5.5.2 Error: bare <LF> received"``."""
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    """The refused message (``b""`` for a refused command line)."""


def composed_by_us(data: bytes) -> bool:
    """Whether a message is one we composed (see the module docstring): held to MIME rules."""
    head = BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    auto = str(head.get("Auto-Submitted", "") or "").strip().lower()
    if not auto or auto == "no":
        return False
    return not ("X-BeenThere" in head and "List-Post" not in head)  # not an owner forward


def _entities(msg: email.message.Message) -> Iterator[email.message.Message]:
    """The message and its parts, not entering attached messages (someone else's mail)."""
    yield msg
    if msg.is_multipart() and msg.get_content_maintype() == "multipart":
        for part in msg.get_payload():
            yield from _entities(part)


# Python's parser reads headers as ASCII: in SMTPUTF8 mail (RFC 6532) it reports UTF-8 as these.
_UTF8_HEADER_DEFECTS = {"UndecodableBytesDefect", "NonASCIILocalPartDefect"}


def mime_defects(data: bytes, smtputf8: bool = False) -> list[str]:
    """What Python's parser finds wrong in a message's MIME and headers (attached mail aside).

    With `smtputf8` (the mail was sent so), UTF-8 in headers is no defect.
    """
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    found = []
    for entity in _entities(msg):
        found += [type(d).__name__ for d in entity.defects]
        for name, value in entity.items():
            found += [f"{name}: {type(d).__name__}" for d in getattr(value, "defects", ())
                      if not (smtputf8 and type(d).__name__ in _UTF8_HEADER_DEFECTS)]
    return found


def refusal(data: bytes, *, body_8bitmime: bool = False, smtputf8: bool = False) -> str | None:
    """The strict sink's reply to a message's data (dot-unstuffed), or None if it is accepted.

    Used by the sink on every transaction, and by tests that check bytes we queue or write.
    """
    if _BARE_LF.search(data):
        return "550 5.5.2 Error: bare <LF> received"
    if _BARE_CR.search(data):
        return "550 5.5.2 Error: bare <CR> received"
    if _LONG_LINE.search(data):
        return f"550 5.5.2 Error: a line over {_MAX_LINE} octets"
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[: end + 2], data[end + 4 :])
    if not body.isascii() and not (body_8bitmime or smtputf8):
        return "550 5.6.1 Error: 8-bit data without BODY=8BITMIME"
    if not head.isascii() and not smtputf8:
        return "550 5.6.7 Error: 8-bit header without SMTPUTF8"
    if b"\0" in head:
        return "550 5.6.0 Error: a NUL in the header"
    fields = BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    for name in _REQUIRED:
        if not str(fields.get(name, "") or "").strip():
            return f"550 5.6.0 Error: no {name} header"
    if composed_by_us(data):
        defects = mime_defects(data, smtputf8)
        if defects:
            return f"550 5.6.0 Error: MIME defects in mail we compose: {', '.join(defects)}"
    return None


def _reply(line: str) -> bytes:
    return line.encode("utf-8") + _CRLF


def _decode(address: bytes) -> str:
    return address.decode("utf-8", "surrogateescape")


def _parse_path(arg: bytes) -> tuple[bytes, bytes] | None:
    """Split ``<address> PARAMS`` (brackets optional) into (address, params)."""
    arg = arg.lstrip()
    if arg.startswith(b"<"):
        end = arg.find(b">")
        if end < 0:
            return None
        address, params = arg[1:end], arg[end + 1 :]
        if address.startswith(b"@"):  # obsolete source route: <@a,@b:user@host>
            address = address.partition(b":")[2]
    else:
        address, _, params = arg.partition(b" ")
        if not address:
            return None
    return address, params.strip()


def _check_mail_params(params: bytes) -> bytes | None:
    """Return an error reply for an unsupported or malformed MAIL parameter."""
    for param in params.split():
        key, eq, value = param.partition(b"=")
        key = key.upper()
        if key == b"SIZE":
            if not value.isdigit():
                return b"501 5.5.4 Bad SIZE parameter\r\n"
        elif key == b"BODY":
            if value.upper() not in (b"7BIT", b"8BITMIME"):
                return b"501 5.5.4 Bad BODY parameter\r\n"
        elif key == b"SMTPUTF8":
            if eq:
                return b"501 5.5.4 Bad SMTPUTF8 parameter\r\n"
        else:
            return b"555 5.5.4 Unsupported option: " + param + _CRLF
    return None


class _SmtpProtocol(asyncio.Protocol):
    """One client connection.  Runs only on the sink's event loop thread."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # Offset in buf from which to resume searching for a line/data terminator,
        # so a long line or message arriving in many reads is scanned only once.
        self.scan = 0
        self.in_data = False
        self.busy = False  # an end-of-DATA reply is being delayed
        self.paused = False
        self.closed = False
        self.greeted = False
        self.mail_from: str | None = None  # None: no transaction in progress
        self.rcpts: list[str] = []
        self.options: tuple[str, ...] = ()  # the MAIL FROM parameters
        self.task: asyncio.Task[None] | None = None

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sink._conns.add(self)
        transport.write(_GREETING)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.sink._conns.discard(self)
        if self.task is not None:
            self.task.cancel()  # a delayed transaction the client never saw acknowledged

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()
        elif len(self.buf) > _PAUSE_READING_AT and not self.paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.paused = True

    # -- processing --------------------------------------------------------------

    def _process(self) -> None:
        """Handle every complete command / message in the buffer; write replies once."""
        transport = self.transport
        assert transport is not None
        buf = self.buf
        out: list[bytes] = []
        quit_ = False
        pos = 0
        while not (self.busy or self.closed or quit_):
            if self.in_data:
                # buf[pos:] starts with the CRLF that ended the DATA command, so an
                # empty message and a leading "." line need no special case.
                idx = buf.find(_END_OF_DATA, max(pos, self.scan))
                if idx < 0:
                    self.scan = max(pos, len(buf) - 4)
                    break
                data = b""
                if self.sink.keep_messages or self.sink.strict:
                    data = bytes(buf[pos : idx + 2]).replace(b"\r\n.", _CRLF)[2:]
                pos = idx + 5
                self.in_data = False
                delay = self.sink.delay_per_transaction
                if delay > 0:
                    self.busy = True
                    self.task = asyncio.get_running_loop().create_task(
                        self._finish_later(data, delay)
                    )
                    break
                out.append(self._finish(data))
                continue

            eol = buf.find(b"\n", max(pos, self.scan))
            if eol < 0:
                self.scan = len(buf)
                break
            crlf = eol > pos and buf[eol - 1] == 13
            line = bytes(buf[pos : eol - 1 if crlf else eol])
            pos = eol + 1
            if self.sink.strict and (not crlf or b"\r" in line):
                reply = _BARE_CR_COMMAND if b"\r" in line else _BARE_LF_COMMAND
                out.append(self.sink._refuse(reply, self.mail_from or "", self.rcpts, b""))
                continue
            verb, _, arg = line.partition(b" ")
            verb = verb.upper()
            if verb == b"RCPT":
                out.append(self._rcpt(arg))
            elif verb == b"MAIL":
                out.append(self._mail(arg))
            elif verb == b"DATA":
                if arg.strip():
                    out.append(b"501 5.5.4 Syntax: DATA\r\n")
                elif self.mail_from is None:
                    out.append(_NEED_MAIL)
                elif not self.rcpts:
                    out.append(_NO_RECIPIENTS)
                else:
                    out.append(_START_DATA)
                    self.in_data = True
                    if crlf:
                        pos = eol - 1  # keep the CRLF: data starts "\r\n..."
                    else:
                        del buf[:pos]
                        buf[0:0] = _CRLF
                        pos = self.scan = 0
            elif verb == b"EHLO" or verb == b"HELO":
                if not arg.strip():
                    out.append(b"501 5.5.4 Syntax: " + verb + b" hostname\r\n")
                else:
                    self.greeted = True
                    self._reset()
                    out.append(_EHLO_REPLY if verb == b"EHLO" else _HELO_REPLY)
            elif verb == b"RSET":
                self._reset()
                out.append(_OK)
            elif verb == b"NOOP":
                out.append(_OK)
            elif verb == b"QUIT":
                out.append(_BYE)
                quit_ = True
            else:
                out.append(_UNKNOWN)

        if pos:
            del buf[:pos]
            self.scan = max(0, self.scan - pos)
        if out and not self.closed:
            transport.write(b"".join(out))
        if quit_:
            transport.close()
            self.closed = True

    def _reset(self) -> None:
        self.mail_from = None
        self.rcpts = []
        self.options = ()

    def _mail(self, arg: bytes) -> bytes:
        if not self.greeted:
            return _NEED_HELO
        if self.mail_from is not None:
            return _NESTED_MAIL
        if arg[:5].upper() != b"FROM:":
            return _MAIL_SYNTAX
        parsed = _parse_path(arg[5:])
        if parsed is None:
            return _MAIL_SYNTAX
        address, params = parsed
        error = _check_mail_params(params)
        if error is not None:
            return error
        response = self.sink.mail_from_response
        if response is None or response.startswith("2"):
            self.mail_from = _decode(address)
            self.options = tuple(params.upper().decode("ascii", "replace").split())
        return _OK_MAIL if response is None else _reply(response)

    def _rcpt(self, arg: bytes) -> bytes:
        if self.mail_from is None:
            return _NEED_MAIL
        if arg[:3].upper() != b"TO:":
            return _RCPT_SYNTAX
        parsed = _parse_path(arg[3:])
        if parsed is None or not parsed[0]:
            return _RCPT_SYNTAX
        address, params = parsed
        if params:
            return b"555 5.5.4 Unsupported option: " + params + _CRLF
        recipient = _decode(address)
        responses = self.sink.rcpt_responses
        response = responses.get(recipient.lower()) if responses else None
        if response is None:
            self.rcpts.append(recipient)
            return _OK_RCPT
        if response.startswith("2"):
            self.rcpts.append(recipient)
        return _reply(response)

    def _finish(self, data: bytes) -> bytes:
        """Complete the transaction whose data has been received; return the reply."""
        mail_from, rcpts, options = self.mail_from, self.rcpts, self.options
        self._reset()
        assert mail_from is not None
        if self.sink.strict:
            refused = refusal(data, body_8bitmime="BODY=8BITMIME" in options,
                              smtputf8="SMTPUTF8" in options)
            if refused is not None:
                return self.sink._refuse(refused, mail_from, rcpts, data)
        response = self.sink.data_response
        if response is None:
            self.sink._record(mail_from, rcpts, data, options)
            return _OK_DATA
        if response.startswith("2"):
            self.sink._record(mail_from, rcpts, data, options)
        return _reply(response)

    async def _finish_later(self, data: bytes, delay: float) -> None:
        sink = self.sink
        with sink._lock:
            sink.pending += 1
        try:
            await asyncio.sleep(delay)
        finally:
            with sink._lock:
                sink.pending -= 1
        # Not reached if the connection was lost meanwhile (the task is cancelled):
        # the transaction was never acknowledged, so it is not recorded.
        if self.closed:
            return
        assert self.transport is not None
        self.task = None
        self.transport.write(self._finish(data))
        self.busy = False
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        self._process()


class SmtpSink:
    """An SMTP server on 127.0.0.1 that records (or just counts) what it receives.

    Public state, safe to read from any thread:

    * ``deliveries`` -- list of :class:`Delivery`, one per acknowledged transaction
      (stays empty when ``keep_messages`` is False);
    * ``refusals`` -- list of :class:`Refusal`: what the strict checks refused;
    * ``transactions`` / ``recipients`` -- counts of acknowledged transactions and of
      their accepted recipients, always maintained;
    * ``pending`` -- transactions whose data has been received but whose reply is
      being held back by ``delay_per_transaction``.

    Programmable behaviour, settable at any time from the test thread:

    * ``rcpt_responses`` -- lower-cased address -> full reply line, e.g.
      ``"550 5.1.1 No such user"``; a 2xx reply accepts the recipient, anything else
      rejects it; unlisted addresses get ``"250 2.1.5 Ok"``;
    * ``mail_from_response`` / ``data_response`` -- replace the reply to MAIL FROM /
      to the end of DATA (a non-2xx reply rejects the sender / the transaction);
    * ``delay_per_transaction`` -- seconds to hold the end-of-DATA reply (the loop keeps
      serving other connections).  A transaction is recorded when its reply is sent; if
      the client disconnects first, it is not recorded.
    """

    host = "127.0.0.1"

    def __init__(self, keep_messages: bool = True, strict: bool = True) -> None:
        self.keep_messages = keep_messages
        self.strict = strict
        self.refusals: list[Refusal] = []
        self.port: int = 0
        self.deliveries: list[Delivery] = []
        self.transactions = 0
        self.recipients = 0
        self.pending = 0
        self.rcpt_responses: dict[str, str] = {}
        self.mail_from_response: str | None = None
        self.data_response: str | None = None
        self.delay_per_transaction: float = 0.0
        self._lock = threading.Lock()
        self._conns: set[_SmtpProtocol] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> SmtpSink:
        """Start serving in a daemon thread; ``self.port`` is set on return."""
        if self._thread is not None:
            raise RuntimeError("SmtpSink already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(loop, ready, errors), name="smtp-sink", daemon=True
        )
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise errors[0]
        self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        """Close all connections and the listening socket; join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # loop already closed
            pass
        thread.join(timeout=10)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        ready: threading.Event,
        errors: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                server = loop.run_until_complete(
                    loop.create_server(lambda: _SmtpProtocol(self), self.host, 0)
                )
                self.port = server.sockets[0].getsockname()[1]
            except BaseException as exc:
                errors.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
            server.close()
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(asyncio.sleep(0))  # let connection_lost run
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    # -- recording and queries ---------------------------------------------------

    def _record(self, mail_from: str, rcpts: list[str], data: bytes,
                options: tuple[str, ...]) -> None:
        with self._lock:
            self.transactions += 1
            self.recipients += len(rcpts)
            if self.keep_messages:
                self.deliveries.append(Delivery(mail_from, rcpts, data, options))

    def _refuse(self, reply: str, mail_from: str, rcpts: list[str], data: bytes) -> bytes:
        with self._lock:
            self.refusals.append(Refusal(reply, mail_from, list(rcpts), data))
        return _reply(reply)

    def assert_no_refusals(self) -> None:
        """AssertionError naming each refusal, if the strict checks refused anything."""
        with self._lock:
            refused = list(self.refusals)
        assert not refused, "the strict SMTP sink refused mail:\n" + "\n".join(
            f"{r.reply} (from {r.mail_from!r} to {r.rcpt_tos!r}): {r.data[:300]!r}"
            for r in refused)

    def messages_for(self, address: str) -> list[Delivery]:
        """Deliveries with ``address`` among the accepted recipients (case-insensitive)."""
        wanted = address.lower()
        with self._lock:
            return [d for d in self.deliveries if any(r.lower() == wanted for r in d.rcpt_tos)]

    def clear(self) -> None:
        """Forget deliveries and reset the counters (programmed responses are kept)."""
        with self._lock:
            self.deliveries.clear()
            self.transactions = 0
            self.recipients = 0

    def wait_for(
        self,
        predicate: Callable[[SmtpSink], object],
        timeout: float = 10.0,
        description: str | None = None,
    ) -> None:
        """Poll until ``predicate(self)`` is true; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                what = description or getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"SmtpSink: timed out after {timeout:g}s waiting for {what}; {self}"
                )
            time.sleep(0.005)

    def wait_for_recipients(self, n: int, timeout: float = 10.0) -> None:
        """Wait until at least ``n`` recipients have been accepted in total."""
        self.wait_for(lambda s: s.recipients >= n, timeout, f"{n} recipients")

    def __repr__(self) -> str:
        with self._lock:
            recent = [
                f"{d.mail_from!r}->{d.rcpt_tos!r} ({len(d.data)} bytes)"
                for d in self.deliveries[-5:]
            ]
            refused = [f"{r.reply!r} for {r.rcpt_tos!r}" for r in self.refusals[-3:]]
        return (
            f"<SmtpSink port={self.port} transactions={self.transactions} "
            f"recipients={self.recipients} pending={self.pending} "
            f"last deliveries={recent} refusals={refused}>"
        )
