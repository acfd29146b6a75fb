"""The copies the list sends of a message (SPEC §3): the members' copy, the owners' copy,
one member's personalised copy, and a notice with the message attached for the chair.

The original bytes are kept. Added headers are prepended; only Subject, From, Reply-To/Cc and
the one part that carries the footer are rewritten; every other header, part, boundary,
preamble and epilogue is copied byte for byte, so attachments, inline images, signed parts and
the authors' DKIM signatures (on a no-modify list) survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from listserv.mail.mime.footer import append_footer, footer_part
from listserv.mail.mime.headers import author_of, decoded_subject, prefix_subject
from listserv.mail.mime.parts import new_boundary
from listserv.mail.mime.raw import RawMessage, field_name, header_bytes
from listserv.mail.mime.sender_rewrite import SenderRewrite, dmarc_wrapped, munged


@dataclass(frozen=True, slots=True)
class ListHeaders:
    """What a distributed copy says about its list (SPEC §3)."""

    list_id: str
    post: str
    help: str
    subscribe: str
    been_there: str
    # "" when each member's copy gets its own (personalized delivery).
    unsubscribe: str = ""
    archive: str = ""
    reply_to: str = ""


# Headers of the original that the list replaces or must not pass on.
_DROPPED = (
    "List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe",
    "List-Unsubscribe-Post", "List-Archive", "List-Owner", "Precedence", "Return-Path",
    "Delivered-To", "X-Original-To", "Approved", "Approve",
)


def distribution_copy(raw: bytes, headers: ListHeaders, prefix: str, footer: str,
                      sender: SenderRewrite | None = None) -> bytes:
    """The copy of a post the members get: list headers, prefix once, footer, bytes kept.

    With `sender`, the copy goes out under the list's From (or wraps the post) for DMARC.
    """
    original = RawMessage.parse(raw)
    msg = original.without(_DROPPED)
    if sender is not None and sender.wrap:
        inner = raw if msg.fields == original.fields else msg.to_bytes()
        msg = dmarc_wrapped(original, inner, sender, footer)
    else:
        if sender is not None:
            msg = munged(msg, author_of(original), sender)
        msg = append_footer(msg, footer)
    if prefix:
        msg = msg.replaced("Subject", prefix_subject(decoded_subject(original), prefix))
    if headers.reply_to:
        msg = msg.replaced("Reply-To", headers.reply_to)
    added = [
        ("List-Id", headers.list_id),
        ("List-Post", f"<mailto:{headers.post}>"),
        ("List-Help", f"<mailto:{headers.help}?subject=help>"),
        ("List-Subscribe", f"<mailto:{headers.subscribe}>"),
    ]
    if headers.unsubscribe:
        added.append(("List-Unsubscribe", f"<mailto:{headers.unsubscribe}>"))
    if headers.archive:
        added.append(("List-Archive", f"<{headers.archive}>"))
    added += [("Precedence", "list"), ("X-BeenThere", headers.been_there)]
    return msg.prepended(added).to_bytes()


def owner_copy(raw: bytes, been_there: str, sender: SenderRewrite | None = None) -> bytes:
    """A message for the owners as it came, marked; under the list's From if DMARC needs it."""
    msg = RawMessage.parse(raw)
    if sender is not None:
        if sender.wrap:
            msg = dmarc_wrapped(msg, raw, sender, "")
        else:
            msg = munged(msg, author_of(msg), sender)
    return msg.prepended([("X-BeenThere", been_there)]).to_bytes()


def personalize(copy: bytes, unsubscribe: str, one_click: str = "") -> bytes:
    """One member's copy: its own List-Unsubscribe prepended to a copy made without one.

    With `one_click` (the member's HTTPS unsubscribe URL), the URL comes first and the mailto
    second, and `List-Unsubscribe-Post` says a POST unsubscribes at once (RFC 8058).
    """
    eol = b"\r\n" if b"\r\n" in copy[:4096] else b"\n"
    if not one_click:
        return header_bytes("List-Unsubscribe", f"<mailto:{unsubscribe}>", eol) + copy
    return (header_bytes("List-Unsubscribe", f"<{one_click}>, <mailto:{unsubscribe}>", eol)
            + header_bytes("List-Unsubscribe-Post", "List-Unsubscribe=One-Click", eol) + copy)


# The fields of a composed notice that describe its body: they move into its text part.
_CONTENT = ("content-type", "content-transfer-encoding", "mime-version")


def _split_composed(notice: bytes) -> tuple[RawMessage, bytes, tuple[bytes, ...]]:
    """A single-part message we composed, split for a multipart around it: the message, its
    text as a part of its own, and the outer fields that stay (all but the content fields)."""
    msg = RawMessage.parse(notice)
    text = RawMessage(tuple(f for f in msg.fields if field_name(f) in _CONTENT
                            and field_name(f) != "mime-version"), msg.eol, msg.body).to_bytes()
    return msg, text, tuple(f for f in msg.fields if field_name(f) not in _CONTENT)


def _multipart(subtype: str, parts: Sequence[bytes], eol: bytes) -> tuple[str, bytes]:
    """(boundary, body) of a multipart of `parts` (whole entities, each header and body)."""
    boundary = new_boundary(*parts)
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + eol + part + eol for part in parts) + delimiter + b"--" + eol
    return f'multipart/{subtype}; boundary="{boundary}"', body


def _message_part(original: bytes, eol: bytes, *extra: tuple[str, str]) -> bytes:
    """`original` as a message/rfc822 part, byte for byte (the wire serializer re-encodes an
    8-bit part inside it where the relay needs 7-bit)."""
    return RawMessage((), eol, original).prepended(
        [("Content-Type", "message/rfc822"), *extra]
        + ([] if original.isascii() else [("Content-Transfer-Encoding", "8bit")])
    ).to_bytes()


def with_attached(notice: bytes, original: bytes, *, name: str = "original.eml",
                  more: Sequence[tuple[bytes, str]] = ()) -> bytes:
    """`notice` (a single-part text message we composed) as multipart/mixed: its text, then
    `original` attached as message/rfc822 named `name`, byte for byte; then each of `more`
    ((bytes, file name)) likewise."""
    msg, text, outer = _split_composed(notice)
    eol = msg.eol
    attached = [_message_part(data, eol,
                              ("Content-Disposition", f'attachment; filename="{filename}"'))
                for data, filename in [(original, name), *more]]
    ctype, body = _multipart("mixed", [text, *attached], eol)
    mime = (header_bytes("MIME-Version", "1.0", eol), header_bytes("Content-Type", ctype, eol))
    return RawMessage(outer + mime, eol, body).to_bytes()


def digest_copy(contents: bytes, posts: Sequence[bytes], footer: str) -> bytes:
    """A MIME digest (RFC 2046 §5.1.5, SPEC §3): multipart/mixed of the text of `contents` (a
    single-part message we composed: the table of contents, whose headers the digest keeps),
    a multipart/digest with each post as a message/rfc822 part, byte for byte (attachments
    and all), and the footer as a text/plain part (none when `footer` is "")."""
    msg, text, outer = _split_composed(contents)
    eol = msg.eol
    digest_type, digest_body = _multipart(
        "digest", [_message_part(post, eol) for post in posts], eol)
    digest = RawMessage((), eol, digest_body).prepended([("Content-Type", digest_type)])
    parts = [text, digest.to_bytes()] + ([footer_part(footer, eol)] if footer else [])
    ctype, body = _multipart("mixed", parts, eol)
    mime = (header_bytes("MIME-Version", "1.0", eol), header_bytes("Content-Type", ctype, eol))
    return RawMessage(outer + mime, eol, body).to_bytes()
