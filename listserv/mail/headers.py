"""Reading a message's headers: one line each, never raising on a malformed value."""

from __future__ import annotations

import logging
from email.errors import MessageError
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from listserv.mail.addresses import normalize

log = logging.getLogger(__name__)

#: What the email package's header parser raises on some malformed values (besides its own
#: errors: IndexError and friends from its parser, LookupError for an unknown charset).
UNREADABLE = (MessageError, ValueError, LookupError, IndexError, TypeError, AttributeError)


def header_text(msg: EmailMessage, name: str) -> str:
    """A header's decoded value as one line ("" when absent or unreadable)."""
    try:
        text = str(msg.get(name) or "")
    except UNREADABLE:
        log.debug("an unreadable %s header", name, exc_info=True)
        return ""
    return " ".join(text.split())


def wire_message_id(raw: bytes) -> str:
    """The Message-ID of a message's bytes, one line ("" when it has none): read from its
    header alone, so a queued message is not parsed whole."""
    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return " ".join(str(headers.get("Message-ID", "")).split())


def header_values(msg: EmailMessage, name: str) -> list[str]:
    """Every value of header `name`, top first, one line each (the first alone if the others
    cannot be read)."""
    try:
        return [" ".join(str(v).split()) for v in msg.get_all(name, [])]
    except UNREADABLE:
        log.debug("an unreadable %s header among several", name, exc_info=True)
        first = header_text(msg, name)
        return [first] if first else []


def raw_header_values(msg: EmailMessage, name: str) -> list[str]:
    """Every value of header `name` as it came, unfolded but not decoded: what a sender wrote,
    where decoding could fail or hide structure (an encoded CR in a display name)."""
    return [" ".join(str(value).split()) for key, value in msg.raw_items()
            if key.lower() == name.lower()]


def from_address(msg: EmailMessage) -> str:
    """The normalized address of the From: header ("" when there is none)."""
    pairs = getaddresses([header_text(msg, "From")])
    for _, address in pairs:
        if "@" in address:
            return normalize(address)
    return ""


def from_name(msg: EmailMessage) -> str:
    """The display name of the From: header, one line ("" when none)."""
    for name, address in getaddresses([header_text(msg, "From")]):
        if "@" in address:
            return " ".join(name.split())
    return ""
