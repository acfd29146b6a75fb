"""Header values as text: the author and subject read from raw fields, the subject prefix.

Reading never fails: a value Python's email package cannot decode is taken as it came.
"""

from __future__ import annotations

import binascii
import re
from email import policy
from email.errors import MessageError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from listserv.mail.mime.raw import RawMessage
from listserv.mail.render import one_line

# Reply markers of many mail clients: Re, AW (de), SV (sv/da/no), RES (pt), RV (es), Antw (nl),
# Odp (pl), VS (fi), with an optional counter as in "Re[2]:" or "Re(2):".
_REPLY = re.compile(
    r"^\s*(?:re|aw|sv|res|rv|antw|odp|vs|r)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE
)
# What Python's email package may raise on hostile headers (we fall back, never fail).
EMAIL_ERRORS = (ValueError, LookupError, TypeError, IndexError, binascii.Error, MessageError)


def clean_line(text: str) -> str:
    """`text` as one line of valid Unicode (stray 8-bit bytes become replacement marks)."""
    return one_line(text.encode("utf-8", "replace").decode("utf-8", "replace"))


def decode_words(value: str) -> str:
    """A raw header value with its RFC 2047 encoded words decoded, as one line."""
    try:
        text = str(make_header(decode_header(value)))
    except EMAIL_ERRORS:
        text = value
    return clean_line(text)


def author_of(msg: RawMessage) -> tuple[str, str]:
    """The author's display name and address from From: (one line each; "" when none)."""
    value = msg.value("From")
    if value is None:
        return "", ""
    for name, address in getaddresses([value]):
        address = clean_line(address)
        if "@" in address:
            return decode_words(name), address
    return "", ""


def decoded_subject(msg: RawMessage) -> str:
    """The decoded Subject, as Python's policy reads it (encoded prefixes recognised)."""
    value = msg.value("Subject")
    if value is None:
        return ""
    if not value.isascii():  # 8-bit (SMTPUTF8) text, already read as UTF-8
        return decode_words(value)
    try:
        head = BytesHeaderParser(policy=policy.default).parsebytes(
            b"Subject: " + value.encode("ascii", "surrogateescape") + b"\r\n\r\n")
        return one_line(str(head.get("Subject", "") or ""))
    except EMAIL_ERRORS:
        return decode_words(value)


def prefix_subject(subject: str, prefix: str) -> str:
    """The subject with `prefix` exactly once, in the canonical form `[NAME] Re: topic`."""
    subject = " ".join(subject.split())
    if not prefix:
        return subject
    lowered = prefix.lower()
    is_reply = False
    while True:
        index = subject.lower().find(lowered)
        if index >= 0:
            subject = (subject[:index] + " " + subject[index + len(prefix) :]).strip()
            continue
        match = _REPLY.match(subject)
        if match is None:
            break
        is_reply = True
        subject = subject[match.end() :]
    subject = " ".join(subject.split())
    if is_reply:
        subject = f"Re: {subject}" if subject else "Re:"
    return f"{prefix} {subject}".strip()
