"""Copies that must not go out under their author's From (DMARC, SPEC §3): From rewritten
to the list's with the author in Reply-To or Cc, or the post wrapped as message/rfc822.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr, getaddresses

from listserv.mail.mime.footer import footer_part
from listserv.mail.mime.headers import author_of, clean_line, decode_words
from listserv.mail.mime.parts import new_boundary
from listserv.mail.mime.raw import RawMessage, field_name, header_bytes
from listserv.mail.render import one_line


@dataclass(frozen=True, slots=True)
class SenderRewrite:
    """A copy that must not go out under its author's From (DMARC, SPEC §3)."""

    from_name: str  # "Jane Doe via SHMA"
    from_address: str  # the list's address
    author_to: str = "Reply-To"  # "Reply-To", or "Cc" when the list's Reply-To is the list
    wrap: bool = False  # send the post as a message/rfc822 attachment instead of munging


def display_address(name: str, address: str) -> str:
    """`"name" <address>`, quoted, or RFC 2047-encoded when not ASCII; one line always."""
    name, address = one_line(name), one_line(address)
    if not name:
        return address
    if name.isascii() or not address.isascii():
        # (an internationalised address travels as UTF-8, so its name may too)
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{address}>'
    return formataddr((name, address))


def munged(msg: RawMessage, author: tuple[str, str], sender: SenderRewrite) -> RawMessage:
    """From replaced by the list's; the author added to Reply-To or Cc."""
    name, address = author
    msg = msg.replaced("From", display_address(sender.from_name, sender.from_address))
    if not address:
        return msg
    if sender.author_to.lower() == "cc":
        pairs = [(decode_words(n), clean_line(a)) for n, a in getaddresses(msg.values("Cc")) if a]
        if not any(a.lower() == address.lower() for _, a in pairs):
            pairs.append((name, address))
        return msg.replaced("Cc", ", ".join(_mailbox(n, a) for n, a in pairs))
    if "reply-to" in msg.names():
        return msg  # the author already said where replies go
    return msg.replaced("Reply-To", _mailbox(name, address))


def _mailbox(name: str, address: str) -> str:
    """A mailbox for a header: `Name <address>` as formataddr writes it, safely."""
    if not name:
        return one_line(address)
    try:
        return formataddr((one_line(name), one_line(address)))
    except UnicodeError:
        return display_address(name, address)


# Headers a DMARC wrapper keeps from the post, so it threads and reads like the post.
_WRAP_KEPT = ("date", "message-id", "to", "cc", "reply-to", "subject", "in-reply-to",
              "references")


def dmarc_wrapped(original: RawMessage, inner: bytes, sender: SenderRewrite,
                  footer: str) -> RawMessage:
    """A message from the list whose first part is the post, as message/rfc822, untouched."""
    eol = original.eol
    outer = RawMessage(tuple(f for f in original.fields if field_name(f) in _WRAP_KEPT),
                       eol, b"")
    attached = RawMessage((), eol, inner).prepended(
        [("Content-Type", "message/rfc822"), ("Content-Disposition", "inline")]
        + ([] if inner.isascii() else [("Content-Transfer-Encoding", "8bit")])
    ).to_bytes()
    parts = [attached] + ([footer_part(footer, eol)] if footer.strip() else [])
    boundary = new_boundary(*parts)
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + eol + part + eol for part in parts) + delimiter + b"--" + eol
    outer = munged(outer, author_of(original), sender)
    mime = (header_bytes("MIME-Version", "1.0", eol),
            header_bytes("Content-Type", f'multipart/mixed; boundary="{boundary}"', eol))
    return RawMessage(outer.fields + mime, eol, body)
