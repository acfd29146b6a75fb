"""Helpers for tests: messages as clients write them, and MTA-like senders."""

from __future__ import annotations

import smtplib
import socket
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

LIST = "shma@lists.example.org"


def write_config(path: Path, data_dir: Path, db_url: str, sink_port: int,
                 **outbound: Any) -> Path:
    """A config file for a test daemon: ports 0, SMTP delivery to the sink, quick polling.

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
        "[daemon]\npoll_seconds = 0.1\nscheduler_tick_seconds = 3600\n"
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


def lmtp_send(port: int, mail_from: str, rcpts: list[str], data: bytes) -> dict[str, Any]:
    """Deliver over LMTP as an MTA would; returns smtplib's refused-recipients dict."""
    with smtplib.LMTP("127.0.0.1", port) as client:
        return client.sendmail(mail_from, rcpts, data)


def smtp_send(port: int, mail_from: str, rcpts: list[str], data: bytes) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        return client.sendmail(mail_from, rcpts, data)


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inbound_outcomes(store: Any) -> list[tuple[str, str]]:
    """(status, outcome) of every stored incoming message, oldest first."""
    from sqlalchemy import select

    from listserv.models import Inbound

    with store.unit_of_work() as session:
        rows = session.scalars(select(Inbound).order_by(Inbound.id))
        return [(r.status, r.outcome) for r in rows]


def wait_handled(sink: Any, store: Any, count: int, timeout: float = 10.0) -> None:
    """Wait until at least `count` incoming messages have been handled by the router."""
    sink.wait_for(lambda s: sum(1 for st, _ in inbound_outcomes(store) if st != "new") >= count,
                  timeout=timeout, description=f"{count} messages handled")
