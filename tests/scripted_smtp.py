"""An SMTP relay for tests that misbehaves as real ones do: it drops connections and keeps a
Postfix-like error count.

Like Postfix (smtpd_soft_error_limit 10, smtpd_hard_error_limit 20, checked on this machine
against Debian's 3.7.11), it counts the error replies (4xx, 5xx) it gave since the client last
delivered a message: from the soft limit on, Postfix delays each reply by
smtpd_error_sleep_time (1 s), which this server only counts (`tarpitted`, so tests stay quick
and still see a client crawl); at the hard limit it answers `421 4.7.0 Error: too many errors`
and hangs up. It reads lines by CRLF and refuses a bare LF, as a strict server does.

    with ScriptedSmtp() as relay:
        relay.rcpt_replies["gone@example.net"] = "550 5.1.1 User unknown"
        relay.drop_after = 1          # hang up silently after each delivered message
        relay.drop_before_final = True  # keep each message, hang up before its final reply
        relay.final_delay = 2.0       # scan each message that long before the final reply
        ... relay.connections, relay.deliveries, relay.tarpitted, relay.hangups
"""

from __future__ import annotations

import socketserver
import threading
import time
from dataclasses import dataclass

__all__ = ["Delivery", "ScriptedSmtp"]

CRLF = b"\r\n"
TOO_MANY_ERRORS = b"421 4.7.0 relay.test Error: too many errors\r\n"


@dataclass(frozen=True)
class Delivery:
    """One message the relay took."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int  # 1 for the first connection the relay accepted, and so on


def _address(argument: bytes) -> str:
    text = argument.decode("utf-8", "replace").split(":", 1)[1].strip()
    return text.split(">", 1)[0].lstrip("<").strip()


class _Session(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        relay = self.server.relay
        number = relay._connected()
        errors = 0
        delivered = 0
        mail_from: str | None = None
        rcpts: list[str] = []
        self._write(b"220 relay.test ESMTP scripted\r\n")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            if not line.endswith(CRLF):
                self._write(b"500 5.5.2 Error: bare <LF> received\r\n")
                return
            verb, _, argument = line[:-2].partition(b" ")
            verb = verb.upper()
            if errors >= relay.hard_error_limit:
                relay._count("hangups")
                self._write(TOO_MANY_ERRORS)
                return
            if errors >= relay.soft_error_limit:
                relay._count("tarpitted")
            if verb == b"QUIT":
                self._write(b"221 2.0.0 Bye\r\n")
                return
            if verb in (b"EHLO", b"HELO"):
                features = [b"relay.test", *([b"PIPELINING"] if relay.pipelining else []),
                            b"8BITMIME", b"SIZE 10240000"]
                if verb == b"HELO":
                    features = features[:1]
                reply = b"".join(b"250" + (b" " if i == len(features) - 1 else b"-") + f + CRLF
                                 for i, f in enumerate(features))
            elif verb in (b"RSET", b"NOOP"):
                mail_from, rcpts = (None, []) if verb == b"RSET" else (mail_from, rcpts)
                reply = b"250 2.0.0 Ok\r\n"
            elif verb == b"MAIL":
                if relay.mail_reply:
                    reply = relay.mail_reply.encode() + CRLF
                else:
                    mail_from, rcpts = _address(argument), []
                    reply = b"250 2.1.0 Ok\r\n"
            elif verb == b"RCPT":
                address = _address(argument)
                scripted = relay.rcpt_replies.get(address.lower())
                if mail_from is None:
                    reply = b"503 5.5.1 Error: need MAIL command\r\n"
                elif scripted:
                    reply = scripted.encode() + CRLF
                else:
                    rcpts.append(address)
                    reply = b"250 2.1.5 Ok\r\n"
            elif verb == b"DATA":
                if mail_from is None or not rcpts:
                    reply = b"554 5.5.1 Error: no valid recipients\r\n"
                else:
                    self._write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    data = self._read_data()
                    if data is None:
                        return
                    relay._deliver(Delivery(mail_from, rcpts, data, number))
                    if relay.drop_before_final:
                        return  # queued it, then lost the connection before saying so
                    time.sleep(relay.final_delay)  # a content filter scanning the message
                    mail_from, rcpts = None, []
                    errors = 0
                    delivered += 1
                    self._write(b"250 2.0.0 Ok: queued\r\n")
                    if relay.drop_after and delivered >= relay.drop_after:
                        if relay.hangup_reply:
                            # Said to the next command (an idle timeout, say), then gone.
                            if self.rfile.readline(4096):
                                self._write(relay.hangup_reply.encode() + CRLF)
                        return
                    continue
            else:
                reply = b"502 5.5.2 Error: command not recognized\r\n"
            if reply[:1] in (b"4", b"5"):
                errors += 1
            self._write(reply)

    def _read_data(self) -> bytes | None:
        lines = []
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, relay: ScriptedSmtp) -> None:
        self.relay = relay
        super().__init__(("127.0.0.1", 0), _Session)


class ScriptedSmtp:
    """The relay, on a free loopback port, serving in a thread from `start()` to `stop()`.

    Settable at any time: `rcpt_replies` (lower-cased address -> reply line; others are
    accepted), `mail_reply` (a reply to every MAIL FROM instead of 250), `drop_after` (hang
    up after that many delivered messages on a connection; 0 = never), `hangup_reply` (what
    it then says to the next command before hanging up; "" = nothing), `drop_before_final`
    (take each message, then hang up without its final reply), `final_delay` (seconds before
    the final reply), `pipelining`, and the error limits. Counted: `connections`, `tarpitted`
    (replies a Postfix would have delayed), `hangups` (421 too many errors); kept:
    `deliveries`.
    """

    def __init__(self) -> None:
        self.rcpt_replies: dict[str, str] = {}
        self.mail_reply = ""
        self.drop_after = 0
        self.hangup_reply = ""
        self.drop_before_final = False
        self.final_delay = 0.0
        self.pipelining = True
        self.soft_error_limit = 10
        self.hard_error_limit = 20
        self.connections = 0
        self.tarpitted = 0
        self.hangups = 0
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-smtp",
                                        daemon=True)

    def start(self) -> ScriptedSmtp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> ScriptedSmtp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def delivered_to(self) -> list[str]:
        """Every recipient of every message taken, in order."""
        with self._lock:
            return [r for d in self.deliveries for r in d.rcpt_tos]

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def _deliver(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

