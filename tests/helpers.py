"""Helpers for tests: messages as clients write them, and MTA-like senders."""

from __future__ import annotations

import smtplib
import socket
import time
import uuid
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

from listserv.intent.model import CLASSES, Model
from listserv.mail.message import parse  # noqa: F401 (the tests parse as the product does)

T = TypeVar("T")

LIST = "shma@lists.example.org"


def write_config(path: Path, data_dir: Path, db_url: str, sink_port: int,
                 **outbound: Any) -> Path:
    """A config file for a test daemon: ports 0, SMTP delivery to the sink, quick polling and
    heartbeats (a worker that dies shows in `listserv status` within seconds).

    `outbound` adds or overrides `[outbound]` keys (a 2 s lease and 1 s retries by default).
    """
    outbound = {"claim_lease_seconds": 2, "retry_base_seconds": 1, **outbound}
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str)
                    else f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n"
                    for k, v in outbound.items())
    path.write_text(
        f'data_dir = "{data_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        "[intake.lmtp]\nport = 0\n"
        "[intake.smtp]\nport = 0\nmax_message_kb = 64\n"
        f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {sink_port}\n' + extra +
        "[daemon]\npoll_seconds = 0.1\nscheduler_tick_seconds = 3600\nheartbeat_seconds = 1\n"
        'hostname = "lists.example.org"\n'
    )
    return path


def make_message(sender: str = "jane@example.org", to: str = LIST, subject: str = "Hello",
                 body: str = "Hello everyone.\n", **headers: str) -> bytes:
    """A simple plain-text message as a mail client sends it (CRLF line ends)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg["Date"] = formatdate()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)


def write_secret(path: Path, text: str) -> Path:
    """A password file as the operator must keep it: readable by its owner only (0600)."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def lmtp_send(port: int, mail_from: str, rcpts: list[str], data: bytes) -> dict[str, Any]:
    """Deliver over LMTP as an MTA would; returns smtplib's refused-recipients dict."""
    with smtplib.LMTP("127.0.0.1", port) as client:
        return client.sendmail(mail_from, rcpts, data)


def smtp_send(port: int, mail_from: str, rcpts: list[str], data: bytes) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        return client.sendmail(mail_from, rcpts, data)



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inbound_outcomes(store: Any) -> list[tuple[str, str]]:
    """(status, outcome) of every stored incoming message, oldest first."""
    from sqlalchemy import select

    from listserv.store.models.core import Inbound

    with store.unit_of_work() as session:
        rows = session.scalars(select(Inbound).order_by(Inbound.id))
        return [(r.status, r.outcome) for r in rows]


def wait_handled(sink: Any, store: Any, count: int, timeout: float = 10.0) -> None:
    """Wait until at least `count` incoming messages have been handled by the router."""
    sink.wait_for(lambda s: sum(1 for st, _ in inbound_outcomes(store) if st != "new") >= count,
                  timeout=timeout, description=f"{count} messages handled")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0,
               what: str = "the condition") -> T:
    """Poll `predicate` until it returns something true, and return that; fail after `timeout`.

    The way a test waits for an event (a file, a database row, a log line) instead of sleeping:
    it returns as soon as the event has happened.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return value


def unfinished_work(store: Any) -> tuple[int, int]:
    """(incoming messages not yet handled, recipients still queued for delivery)."""
    from sqlalchemy import func, select

    from listserv.store.models.core import Inbound
    from listserv.store.models.outgoing import OutRecipient

    with store.reading() as session:  # a read: it never waits for the daemon's write lock
        new = session.scalar(select(func.count()).select_from(Inbound)
                             .where(Inbound.status == "new"))
        queued = session.scalar(select(func.count()).select_from(OutRecipient)
                                .where(OutRecipient.status == "queued"))
    return int(new or 0), int(queued or 0)


def in_flight(store: Any) -> int:
    """Recipients a delivery worker has claimed (a lease) and not yet recorded a result for."""
    from sqlalchemy import func, select

    from listserv.store.models.outgoing import OutRecipient

    with store.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(OutRecipient).where(
            OutRecipient.status == "queued", OutRecipient.lease_until.is_not(None))) or 0)


def wait_settled(store: Any, timeout: float = 10.0) -> None:
    """Until every stored incoming message is handled and no recipient is still queued.

    Then every copy there is going to be has reached the server: a delivery worker records a
    recipient as sent only after the server took the copy. Tests use it before checking that
    nothing more arrived (instead of sleeping "long enough" for a stray copy).
    """
    wait_until(lambda: unfinished_work(store) == (0, 0), timeout,
               "every message handled and every recipient delivered")


def wait_mail(sink: Any, address: str, words: str, timeout: float = 10.0) -> EmailMessage:
    """The first mail the sink received for `address` whose Subject contains `words` (waiting
    for it): a test finds a mail by what it says, never by how many came before it."""

    def found() -> EmailMessage | None:
        for delivery in sink.messages_for(address):
            msg = parse(delivery.data)
            if words in str(msg["Subject"]):
                return msg
        return None

    return wait_until(found, timeout, f"a mail to {address} about {words!r}")


#: A statistical reader that has learnt nothing (every class equally likely): the rules alone.
RULES_ONLY = Model(CLASSES, (0.0, 0.0, 0.0), {})
