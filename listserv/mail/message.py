"""Parsing stored mail: the one way our code reads bytes into a message."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage


def parse(raw: bytes) -> EmailMessage:
    """The parsed form of stored bytes (for reading only: we never re-serialise it; what goes
    out is built from the bytes, or composed and serialized by `listserv.mail.wire`)."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
