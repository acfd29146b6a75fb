"""The one serializer for the wire (SPEC §3, "On the wire"): what every outgoing message becomes.

Everything we send passes through `to_wire` once, where it is queued
(`delivery.outbox.enqueue`, `delivery.outbox.enqueue_to_members`): notices, replies, reminders
and confirmations we compose, and the copies of members' posts. The queue stores its result
and every transport sends (or writes) exactly those bytes. What comes out:

- **CRLF only.** Bare CR and bare LF in a post's body are line ends and become CRLF, so nothing
  like `\\r.\\r\\n` (SMTP smuggling) survives. Parts are found after this, so the MIME structure
  we check is the one every reader sees.
- **Headers repaired, never split.** The header section is the one Python's parser reads
  (`mime.raw.split_head`), so it is the one our guards and the DMARC rewrite saw: it ends at
  the first line that is no field (also `Name :`), and at a line that starts with a NUL or a
  CR, which starts the body. Only then, in the lines taken for fields, a bare CR or a NUL is
  removed (never turned into a line break, so `Subject: x\\rBcc: y` cannot add a header, and
  `\\0From: y` stays in the body). `Bcc`/`Resent-Bcc` fields and mbox `From ` lines are
  dropped.
- **No line over 998 octets.** A long header line is folded at its whitespace, or re-encoded
  (RFC 2047) when it has none; a body part with a long line, a NUL, binary data, or (in 7-bit
  form) 8-bit bytes is re-encoded in its own part, quoted-printable for text and base64 for the
  rest. Lines are never cut. A part with an empty body keeps the empty line after its header
  (so a second pass changes nothing). A preamble or epilogue that breaks a rule is dropped
  (readers never show them).
- **Required headers.** `Date`, `Message-ID` (unguessable, `tokens.message_id`), `From` (the
  sender given) and `MIME-Version` are prepended when missing or empty.
- **7-bit form** unless `eightbit` (`[outbound] eightbitmime = true`): 8-bit parts are
  re-encoded, also inside `message/rfc822` parts, and 8-bit header values become RFC 2047
  encoded words. Only in the message's own header, an address field whose addr-spec is not
  ASCII stays UTF-8 (it needs SMTPUTF8, which the transport asks for); an 8-bit display name
  is encoded, and so is every header of a part or an attached message. An attached message
  with a header that cannot be encoded (or folded) goes whole instead: as it came if it
  fits, else base64 `application/octet-stream`. In the message's own header such a header is
  dropped (logged at debug level). A `multipart/signed` part is treated like any other: an
  8-bit part inside it is re-encoded in 7-bit form, so its signature no longer verifies;
  signers are required to sign 7-bit content (RFC 3156 §3, RFC 8551 §3.1.2), so a correct
  signature is never touched. With `eightbit`, 8-bit parts and headers are kept and mail we
  compose goes out as 8-bit text instead of quoted-printable.

Everything else keeps its bytes (DESIGN, "Bytes"): only the parts and headers that break a rule
are rewritten. The functions are pure; the byte-level MIME helpers are those of `mail.mime`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.header import Header
from email.message import EmailMessage, Message
from email.utils import format_datetime
from functools import partial

from listserv.mail.mime.parts import (
    MAX_DEPTH,
    Multipart,
    ascii_compatible,
    charset_codec,
    decode_cte,
    encode_cte,
    entity_info,
    param_bytes,
    set_charset,
    split_multipart,
    transfer_encoding,
)
from listserv.mail.mime.raw import (
    ADDRESS_FIELDS,
    FIELD_NAME,
    RawMessage,
    field_name,
    header_bytes,
    split_head,
)
from listserv.mail.tokens import message_id

__all__ = ["MAX_LINE", "message_bytes", "to_wire"]

MAX_LINE = 998
"""The longest line allowed on the wire, in octets, without its CRLF (RFC 5322 §2.1.1)."""

CRLF = b"\r\n"
_LINE_END = re.compile(rb"\r\n|\r|\n")
# Anchored at line starts, so a search is linear in the size (unanchored, each of a long line's
# positions would start a scan of up to 999 octets). Only for CRLF-only data: a bare CR would
# start a line it does not see.
_TOO_LONG = re.compile(rb"^[^\r\n]{%d}" % (MAX_LINE + 1), re.MULTILINE)
_DROPPED = frozenset({"bcc", "resent-bcc"})
_REQUIRED = ("date", "message-id", "from")
# A boundary longer than this could not make a delimiter line that fits (RFC 2046: 70).
_MAX_BOUNDARY = 900

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Form:
    eightbit: bool  # the relay takes 8-bit (`[outbound] eightbitmime`)
    composed: bool  # mail we composed (an EmailMessage), not a copy of someone's post


def message_bytes(msg: EmailMessage) -> bytes:
    """A message we composed, as bytes with CRLF line ends (the input `to_wire` also takes).

    A message to or from an internationalised address is written as UTF-8 (SMTPUTF8): the
    ASCII policy would turn `josé@` into an encoded word, which is no address at all.
    """
    international = any(
        not address.addr_spec.isascii()
        for name in ADDRESS_FIELDS for header in msg.get_all(name, [])
        for address in getattr(header, "addresses", ()))
    return msg.as_bytes(policy=policy.SMTPUTF8 if international else policy.SMTP)


def to_wire(message: bytes | EmailMessage, *, sender: str, now: datetime,
            eightbit: bool = False) -> bytes:
    """The bytes to queue and send for `message` (see the module's docstring).

    `message` is a message we composed, or the bytes of a copy of a post. `sender` is the From
    of a message that has none, and gives the domain of a new Message-ID; `now` its Date.
    """
    composed = isinstance(message, EmailMessage)
    raw = message_bytes(message) if composed else message
    form = _Form(eightbit, composed)
    fields, body = _split(raw)
    fields = [f for f in _headers(fields, form, 0) if field_name(f) not in _DROPPED]
    fields = [f for f in fields if field_name(f) not in _REQUIRED or _has_value(f)]
    present = {field_name(f) for f in fields}
    added = []
    if "date" not in present:
        added.append(header_bytes("Date", format_datetime(now)))
    if "message-id" not in present:
        added.append(header_bytes("Message-ID", message_id(sender.rpartition("@")[2])))
    if "from" not in present:
        added.append(header_bytes("From", sender))
    if "mime-version" not in present:
        added.append(header_bytes("MIME-Version", "1.0"))
    data = _entity([*added, *fields], _crlf(body), form, 0)
    return data if data.endswith(CRLF) else data + CRLF


# -- lines ----------------------------------------------------------------------------------------


def _crlf(data: bytes) -> bytes:
    """`data` with every line end (CRLF, bare CR, bare LF) written CRLF."""
    crlf = data.count(CRLF)
    if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
        return data
    return _LINE_END.sub(CRLF, data)


def _fits(data: bytes, eightbit: bool) -> bool:
    """Whether CRLF-only `data` may go as it is: no NUL, no long line, 8-bit only if allowed."""
    return (b"\0" not in data and _TOO_LONG.search(data) is None
            and (eightbit or data.isascii()))


# -- headers --------------------------------------------------------------------------------------


def _has_value(field: bytes) -> bool:
    return bool(field.partition(b":")[2].strip())


def _split(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields of `raw` (each CRLF-terminated, folding kept) and its body.

    The header section is the one Python's parser reads (`mime.raw.split_head`). In a field's
    lines a NUL or a CR that does not end the line is removed, only after the line was taken
    for a field. mbox `From ` lines, fields with no name and a continuation with no field
    before it are dropped.
    """
    head, body = split_head(raw)
    fields = []
    for lines in head:
        if FIELD_NAME.match(lines[0]) is None:
            continue
        fields.append(b"".join(_header_line(line) for line in lines))
    return fields, body


def _header_line(line: bytes) -> bytes:
    """A raw header line with CRLF as its end and no other CR, nor any NUL."""
    return line.rstrip(b"\n").rstrip(b"\r").replace(b"\r", b"").replace(b"\0", b"") + CRLF


def _headers(fields: list[bytes], form: _Form, depth: int) -> list[bytes]:
    """Fields with long lines folded and (in 7-bit form) 8-bit values encoded; none too long.

    `depth` is 0 for the message's own header, more for parts and attached messages."""
    out = []
    for field in fields:
        fixed = _header(field, form, depth)
        if fixed is not None:
            out.append(fixed)
    return out


def _header(field: bytes, form: _Form, depth: int) -> bytes | None:
    """One field that fits the wire; None when it cannot be made to (it is then dropped).

    In 7-bit form a field stays 8-bit only in the message's own header, and only when it holds
    an internationalised address (SMTPUTF8, which the transport then asks for); a display name
    or any other 8-bit value is encoded (RFC 2047), and so is everything in parts and attached
    messages, where no UTF-8 is allowed without SMTPUTF8."""
    eight = not field.isascii()
    if eight and form.eightbit:
        try:
            field.decode("utf-8")
            eight = False  # UTF-8 headers go as they are (SMTPUTF8)
        except UnicodeDecodeError:
            pass
    if not eight and _TOO_LONG.search(field) is None:
        return field
    if not eight:
        folded = _fold(field)
        if folded is not None:
            return folded
    name, _, value = field.partition(b":")
    text = _text(re.sub(rb"\r\n(?=[ \t])", b"", value).rstrip(b"\r\n").strip())
    utf8 = form.eightbit or depth == 0
    for encode in (partial(header_bytes, utf8=utf8), _header_fold):
        try:
            encoded = encode(name.decode("ascii"), text)
        except Exception as exc:  # the email package raises all sorts on hostile values
            log.debug("header %r not encoded one way (%r), trying the next", name, exc)
            continue
        if _folded_well(encoded) and (utf8 or encoded.isascii()):
            return encoded
    log.debug("header %r dropped: no way to make it fit the wire", name)
    return None


def _folded_well(field: bytes) -> bool:
    """No line too long, and each line after the first a continuation (Python's folding of
    control characters can start one without whitespace, which would end the header)."""
    lines = field[:-2].split(CRLF)
    return _TOO_LONG.search(field) is None and all(line[:1] in (b" ", b"\t")
                                                   for line in lines[1:])


def _text(value: bytes) -> str:
    """A raw header value as text: UTF-8, else Windows-1252, else Latin-1 (always works)."""
    for codec in ("utf-8", "cp1252"):
        try:
            return value.decode(codec)
        except UnicodeDecodeError:
            continue
    return value.decode("latin-1")


def _header_fold(name: str, value: str) -> bytes:
    """The fallback for values Python's header policy cannot parse: unstructured folding."""
    folded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n".encode("ascii")


def _fold(field: bytes) -> bytes | None:
    """An ASCII field with each line over the limit folded at whitespace; None if one can't."""
    lines = []
    for line in field[:-2].split(CRLF):
        while len(line) > MAX_LINE:
            at = max(line.rfind(b" ", 1, MAX_LINE + 1), line.rfind(b"\t", 1, MAX_LINE + 1))
            if at <= 0 or not line[:at].strip():
                return None
            lines.append(line[:at])
            line = line[at:]
        lines.append(line)
    return CRLF.join(lines) + CRLF


# -- bodies ---------------------------------------------------------------------------------------


def _entity(fields: list[bytes], body: bytes, form: _Form, depth: int,
            default_type: str = "text/plain") -> bytes:
    """An entity (CRLF-only body) made to fit: multiparts and messages part by part."""
    info = entity_info(fields, default_type)
    ctype = info.get_content_type()
    entity = RawMessage(tuple(fields), CRLF, body)
    if depth < MAX_DEPTH and ctype.startswith("multipart/"):
        boundary = param_bytes(info.get_boundary() or "")
        mp = split_multipart(body, boundary) if len(boundary) <= _MAX_BOUNDARY else None
        if mp is not None:
            inner = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            return _relabelled(entity.with_body(_multipart(mp, form, depth, inner)),
                               transfer_encoding(info)).to_bytes()
    if depth < MAX_DEPTH and ctype == "message/rfc822" and transfer_encoding(info) not in (
            "quoted-printable", "base64"):
        inner_fields, inner_body = _split(body)
        kept = _headers(inner_fields, form, depth + 1)
        if len(kept) == len(inner_fields):
            attached = _entity(kept, inner_body, form, depth + 1)
            return _relabelled(entity.with_body(attached), transfer_encoding(info)).to_bytes()
        # A header of the attached message cannot be made to fit: rather than send the message
        # without it, it goes as it came if it fits, else whole as a base64 attachment.
        log.debug("attached message with a header that cannot fit the wire: kept whole")
    return _leaf(entity, info, form).to_bytes()


def _relabelled(entity: RawMessage, cte: str) -> RawMessage:
    """A composite entity whose transfer encoding label says what its content now is."""
    if entity.body.isascii() and cte in ("8bit", "binary"):
        return entity.replaced("Content-Transfer-Encoding", "7bit")
    if not entity.body.isascii() and cte in ("7bit", "binary"):
        return entity.replaced("Content-Transfer-Encoding", "8bit")
    return entity


def _multipart(mp: Multipart, form: _Form, depth: int, default_type: str) -> bytes:
    """A multipart body with each part made to fit (delimiters kept, as CRLF lines)."""
    delimiter = b"--" + mp.boundary
    out = []
    position = 0
    for index, span in enumerate(mp.parts):
        between = mp.body[position : span.start]
        if not _fits(between, False):
            between = (b"" if index == 0 else CRLF) + delimiter + CRLF
        out.append(between)
        if span.end > span.start:
            part = mp.part(index)
            fields, body = _split(part)
            fixed = _entity(_headers(fields, form, depth + 1), body, form, depth + 1, default_type)
            if (fixed.endswith(CRLF) and not part.endswith(CRLF)
                    and not fixed.endswith(CRLF + CRLF)):
                # The CRLF before the next delimiter belongs to it; but not the one of the
                # empty line after a part's header when its body is empty: without it, the
                # next pass would read the part as all header and add the empty line again.
                fixed = fixed[:-2]
            out.append(fixed)
        position = span.end
    tail = mp.body[position:]
    if not _fits(tail, False):
        tail = CRLF + delimiter + b"--" + CRLF if mp.closed else b""
    out.append(tail)
    return b"".join(out)


def _leaf(entity: RawMessage, info: Message, form: _Form) -> RawMessage:
    """A single part: kept if it fits, else re-encoded (quoted-printable text, base64 else)."""
    cte = transfer_encoding(info)
    encoded = cte in ("quoted-printable", "base64")
    if cte != "binary" and _fits(entity.body, form.eightbit and not encoded):
        if form.composed and form.eightbit and cte == "quoted-printable":
            return _as_8bit(entity, info)
        return entity
    data = decode_cte(entity.body, cte) if encoded else entity.body
    if data is None:
        data = entity.body
    maintype = info.get_content_maintype()
    if maintype in ("multipart", "message"):
        # A composite cannot be base64 (RFC 2046 §5): past repair, it goes as an attachment.
        entity = entity.replaced("Content-Type", "application/octet-stream")
        maintype = "application"
    codec = charset_codec(str(info.get_param("charset") or "us-ascii"))
    if maintype != "text" or (codec is not None and not ascii_compatible(codec)):
        # (text in UTF-16 and the like would be corrupted by a line-based encoding)
        return entity.with_body(encode_cte(data, "base64", CRLF)).replaced(
            "Content-Transfer-Encoding", "base64")
    text = _crlf(data).replace(CRLF, b"\n")
    if not text.isascii() and info.get_param("charset") is None:
        entity = set_charset(entity, _guessed_charset(text))
    if form.eightbit and _fits(_crlf(data), True):
        return entity.with_body(_crlf(data)).replaced("Content-Transfer-Encoding", "8bit")
    return entity.with_body(encode_cte(text, "quoted-printable", CRLF)).replaced(
        "Content-Transfer-Encoding", "quoted-printable")


def _as_8bit(entity: RawMessage, info: Message) -> RawMessage:
    """A quoted-printable text part of ours as 8-bit text, when its text fits the wire."""
    if info.get_content_maintype() != "text":
        return entity
    data = decode_cte(entity.body, "quoted-printable")
    if data is None or data.isascii():
        return entity
    data = _crlf(data)
    if not _fits(data, True):
        return entity
    return entity.with_body(data).replaced("Content-Transfer-Encoding", "8bit")


def _guessed_charset(text: bytes) -> str:
    """The charset of 8-bit text that declares none: UTF-8 if it is, else unknown-8bit."""
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown-8bit"  # RFC 1428
    return "utf-8"
