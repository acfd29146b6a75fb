"""Pure transforms of a message's bytes into the copies the list sends (SPEC §3).

The original bytes are kept. Added headers are prepended; only Subject, From, Reply-To/Cc and
the one part that carries the footer are rewritten; every other header, part, boundary,
preamble and epilogue is copied byte for byte, so attachments, inline images, signed parts and
the authors' DKIM signatures (on a no-modify list) survive.

MIME structure is read at the byte level: boundaries come from Content-Type, parts are found by
their boundary lines (RFC 2046 §5.1.1, as Python's parser finds them), and a part that is not
changed is never re-serialised. Nesting deeper than `MAX_DEPTH` is left alone.

Where the footer goes, by shape:

- `text/plain`: decoded, footer appended, re-encoded in its own charset and transfer encoding
  (format=flowed kept flowed; a charset that cannot hold the footer becomes UTF-8);
- `text/html`: the footer, escaped, before `</body>`;
- `multipart/alternative`: in every text and HTML alternative (through `related` and nested
  alternatives); `multipart/related`: in its root part;
- `multipart/mixed` (and other multiparts): in the first body text part, or, when there is none
  that can take it, in a text/plain part of its own added at the end;
- `multipart/signed`, `multipart/encrypted`, S/MIME `application/pkcs7-mime`, and anything else
  (a lone attachment, undecodable text): the entity moves untouched into a new
  `multipart/mixed`, followed by the footer part.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import html
import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import formataddr, getaddresses

from listserv.mail.render import one_line, safe_header_value

MAX_DEPTH = 10
"""Multipart nesting past this depth is never entered (the footer then gets a part of its own)."""

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
# Reply markers of many mail clients: Re, AW (de), SV (sv/da/no), RES (pt), RV (es), Antw (nl),
# Odp (pl), VS (fi), with an optional counter as in "Re[2]:" or "Re(2):".
_REPLY = re.compile(
    r"^\s*(?:re|aw|sv|res|rv|antw|odp|vs|r)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE
)
_CTES = ("", "7bit", "8bit", "binary", "quoted-printable", "base64")
_OPAQUE = frozenset({
    "multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
    "application/x-pkcs7-mime",
})
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_HTML_END = re.compile(r"</html\s*>", re.IGNORECASE)
_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})
# What Python's email package may raise on hostile headers (we fall back, never fail).
_EMAIL_ERRORS = (ValueError, LookupError, TypeError, IndexError, binascii.Error, MessageError)
_CHARSET_PARAM = re.compile(r"(;\s*charset\s*=\s*)(\"[^\"]*\"|[^;\s]*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message (or MIME entity) split into header fields (raw, folding kept) and body."""

    fields: tuple[bytes, ...]
    eol: bytes
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> RawMessage:
        if raw.startswith((b"\r\n", b"\n")):  # an entity without headers
            eol = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
            return cls((), eol, raw[len(eol):])
        match = _HEADER_END.search(raw)
        if match is None:
            head, body = raw, b""
        else:
            head, body = raw[: match.start()], raw[match.end() :]
        eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
        fields: list[bytes] = []
        # Lines end at LF only: a bare CR inside a header is no line break (the wire
        # serializer removes it), so it cannot make a field of its own here either.
        for line in re.findall(rb"[^\n]*\n|[^\n]+", head):
            if fields and line[:1] in (b" ", b"\t"):
                fields[-1] += line
            else:
                fields.append(line)
        if fields and not fields[-1].endswith(b"\n"):
            fields[-1] += eol
        return cls(tuple(fields), eol, body)

    def names(self) -> list[str]:
        return [_field_name(field) for field in self.fields]

    def values(self, name: str) -> list[str]:
        """The unfolded raw values of every field `name` (encoded words left encoded; 8-bit
        bytes read as UTF-8, as SMTPUTF8 mail has them, others kept as surrogate escapes)."""
        return [
            _UNFOLD.sub(b"", field).rstrip(b"\r\n").partition(b":")[2].strip()
            .decode("utf-8", "surrogateescape")
            for field in self.fields if _field_name(field) == name.lower()
        ]

    def value(self, name: str) -> str | None:
        """The unfolded raw value of the first field `name`, None when there is none."""
        values = self.values(name)
        return values[0] if values else None

    def without(self, names: Iterable[str]) -> RawMessage:
        """The message with every field of these names (case-insensitive) removed."""
        drop = {name.lower() for name in names}
        kept = tuple(f for f in self.fields if _field_name(f) not in drop)
        return RawMessage(kept, self.eol, self.body)

    def replaced(self, name: str, value: str) -> RawMessage:
        """The message with field `name` set to `value`: in place if present, else prepended."""
        line = header_bytes(name, value, self.eol)
        fields = list(self.fields)
        positions = [i for i, f in enumerate(fields) if _field_name(f) == name.lower()]
        if not positions:
            return RawMessage((line, *fields), self.eol, self.body)
        fields[positions[0]] = line
        for index in reversed(positions[1:]):
            del fields[index]
        return RawMessage(tuple(fields), self.eol, self.body)

    def prepended(self, headers: Iterable[tuple[str, str]]) -> RawMessage:
        lines = tuple(header_bytes(name, value, self.eol) for name, value in headers)
        return RawMessage(lines + self.fields, self.eol, self.body)

    def with_body(self, body: bytes) -> RawMessage:
        return RawMessage(self.fields, self.eol, body)

    def to_bytes(self) -> bytes:
        return b"".join(self.fields) + self.eol + self.body


def _field_name(field: bytes) -> str:
    match = _FIELD_NAME.match(field)
    return match.group(1).decode("ascii").lower() if match else ""


def header_bytes(name: str, value: str, eol: bytes = b"\r\n") -> bytes:
    """One header field, folded and RFC 2047-encoded as needed; refuses CR/LF in `value`.

    Every header the list writes goes through here, whether its value came from a template, a
    setting or a sender, so no value can add a header of its own.
    """
    safe_header_value(name, value)
    line = f"{name}: {value}"
    if line.isascii() and len(line) <= 998:
        # Kept on one line: folding a URL header leaves readers a value with a leading space.
        return line.encode("ascii") + eol
    if name.lower() in _ADDRESS_FIELDS and not all(
            address.isascii() for _, address in getaddresses([value])):
        # An internationalised address (SMTPUTF8) is written as UTF-8, never as encoded words.
        folded = policy.SMTPUTF8.header_factory(name, value).fold(policy=policy.SMTPUTF8)
        return folded.replace("\r\n", eol.decode("ascii")).encode("utf-8", "surrogateescape")
    folded = policy.SMTP.header_factory(name, value).fold(policy=policy.SMTP)
    return folded.replace("\r\n", eol.decode("ascii")).encode("ascii", "surrogateescape")


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


# -- reading headers -----------------------------------------------------------------------------


def _clean(text: str) -> str:
    """`text` as one line of valid Unicode (stray 8-bit bytes become replacement marks)."""
    return one_line(text.encode("utf-8", "replace").decode("utf-8", "replace"))


def _decode_words(value: str) -> str:
    """A raw header value with its RFC 2047 encoded words decoded, as one line."""
    try:
        text = str(make_header(decode_header(value)))
    except _EMAIL_ERRORS:
        text = value
    return _clean(text)


def author_of(msg: RawMessage) -> tuple[str, str]:
    """The author's display name and address from From: (one line each; "" when none)."""
    value = msg.value("From")
    if value is None:
        return "", ""
    for name, address in getaddresses([value]):
        address = _clean(address)
        if "@" in address:
            return _decode_words(name), address
    return "", ""


def _info(fields: Iterable[bytes], default_type: str = "text/plain") -> Message:
    """The MIME headers of an entity, parsed for reading (never written back)."""
    info = BytesHeaderParser(policy=policy.compat32).parsebytes(b"".join(fields) + b"\r\n")
    info.set_default_type(default_type)
    return info


def _is_body_text(info: Message) -> bool:
    """Whether a part is shown as the message text (not an attachment)."""
    try:
        return info.get_content_disposition() != "attachment" and not info.get_filename()
    except _EMAIL_ERRORS:
        return False


def _as_bytes(value: str) -> bytes:
    """A header parameter back as the bytes it was read from (as near as it can be)."""
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name.strip().strip('"')).name
    except (LookupError, ValueError):
        return None


def _ascii_compatible(codec: str) -> bool:
    try:
        return "a=\n".encode(codec) == b"a=\n" and b"a=\n".decode(codec) == "a=\n"
    except (UnicodeError, LookupError):
        return False


# -- transfer encodings --------------------------------------------------------------------------


def _decode_cte(body: bytes, cte: str) -> bytes | None:
    if cte == "quoted-printable":
        return quopri.decodestring(body)
    if cte == "base64":
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
        data += b"=" * (-len(data) % 4)
        try:
            return base64.b64decode(data)
        except (binascii.Error, ValueError):
            return None
    return body


def _encode_cte(data: bytes, cte: str, eol: bytes) -> bytes:
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", eol)
    if cte == "quoted-printable":
        return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", eol)
    return data


def _newline(payload: bytes, cte: str, eol: bytes) -> str:
    """The line ending a part's text uses (base64 text is canonically CRLF)."""
    if b"\r\n" in payload:
        return "\r\n"
    if b"\n" in payload:
        return "\n"
    return "\r\n" if cte == "base64" else eol.decode("ascii")


# -- footers -------------------------------------------------------------------------------------


def _footer_lines(footer: str) -> list[str]:
    return footer.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")


def _flowed(line: str) -> str:
    """A footer line as a fixed line of format=flowed text (RFC 3676)."""
    if line == "-- ":
        return line
    line = line.rstrip(" ")
    return " " + line if line.startswith((" ", ">", "From ")) else line


def _plain_tail(text: str, footer: str, flowed: bool) -> str:
    """What to append to `text` (with "\\n" line ends) so the footer stands on its own lines."""
    lines = _footer_lines(footer)
    if flowed:
        lines = [_flowed(line) for line in lines]
    tail = ""
    if text and not text.endswith("\n"):
        tail += "\n"
    last = text.rstrip("\r\n").rsplit("\n", 1)[-1]
    if flowed and last.endswith(" ") and last != "-- ":
        tail += "\n"  # the text ended in a soft break: an empty line ends its paragraph
    return tail + "\n".join(lines) + "\n"


def _html_footer(footer: str, nl: str) -> str:
    lines = [html.escape(line) for line in _footer_lines(footer)]
    return f'<div class="listserv-footer">{nl}' + f"<br>{nl}".join(lines) + f"{nl}</div>{nl}"


def _set_charset(part: RawMessage, charset: str) -> RawMessage:
    """`part` with the charset parameter of its Content-Type set (everything else kept)."""
    value = part.value("Content-Type")
    if value is None:
        return part.replaced("Content-Type", f"text/plain; charset={charset}")
    value = _clean(value)
    if _CHARSET_PARAM.search(value):
        value = _CHARSET_PARAM.sub(lambda m: m.group(1) + charset, value, count=1)
    else:
        value = value.rstrip().rstrip(";") + f"; charset={charset}"
    return part.replaced("Content-Type", value)


def _footer_in_text(part: RawMessage, info: Message, footer: str) -> RawMessage | None:
    """A text/plain or text/html part with the footer, in its own encoding; None if it can't."""
    cte = str(info.get("Content-Transfer-Encoding", "")).strip().lower()
    declared = _codec(info.get_content_charset() or "us-ascii")
    payload = _decode_cte(part.body, cte) if cte in _CTES else None
    if declared is None or payload is None:
        return None
    is_html = info.get_content_subtype() == "html"
    decoded = _decoded(payload, declared, info.get_content_charset() is None, is_html)
    if decoded is None:
        return None
    text, codec, label = decoded
    nl = _newline(payload, cte, part.eol)
    if is_html:
        ends = list(_BODY_END.finditer(text)) or list(_HTML_END.finditer(text))
        at = ends[-1].start() if ends else len(text)
        new_text = text[:at] + _html_footer(footer, nl) + text[at:]
        data = new_text.encode(codec, "xmlcharrefreplace")
    else:
        flowed = str(info.get_param("format", "") or "").lower() == "flowed"
        tail = _plain_tail(text, footer, flowed).replace("\n", nl)
        try:
            tail_bytes: bytes | None = tail.encode(codec)
        except UnicodeError:
            tail_bytes = None
        if (tail_bytes is not None and codec == declared and _ascii_compatible(codec)
                and cte != "base64" and (cte not in ("", "7bit") or tail_bytes.isascii())):
            # The original bytes stay as they are; only the encoded footer is added.
            encoded = _encode_cte(tail_bytes, cte, part.eol)
            if cte == "quoted-printable" and part.body.rstrip(b" \t").endswith(b"="):
                encoded = part.eol + encoded  # the body ends in a soft line break
            return part.with_body(part.body + encoded)
        if tail_bytes is None:
            codec = label = "utf-8"
        data = (text + tail).encode(codec)
    charset = codec
    new_cte = cte
    if not _ascii_compatible(charset) and cte not in ("base64", "8bit", "binary"):
        new_cte = "base64"  # UTF-16 and the like: line-based encodings would corrupt it
    elif cte in ("", "7bit") and not data.isascii():
        new_cte = "quoted-printable"
    result = part.with_body(_encode_cte(data, new_cte, part.eol))
    if charset != declared:
        result = _set_charset(result, label)
    if new_cte != cte:
        result = result.replaced("Content-Transfer-Encoding", new_cte)
    return result


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


def _decoded(payload: bytes, declared: str, undeclared: bool,
             is_html: bool) -> tuple[str, str, str] | None:
    """A part's text, the codec that read it and its MIME name; None if it reads as nothing.

    The declared charset is trusted. A part that declares none and is not ASCII is read by its
    HTML `<meta charset>`, else as UTF-8 when it is valid UTF-8 (the part then says so).
    """
    candidates = [(declared, declared)]
    if undeclared:
        meta = _META_CHARSET.search(payload[:4096]) if is_html else None
        if meta is not None:
            label = meta.group(1).decode("ascii").lower()
            codec = _codec(label)
            if codec is not None:
                candidates.append((codec, label))
        candidates.append(("utf-8", "utf-8"))
    for codec, label in candidates:
        try:
            return payload.decode(codec), codec, label
        except (UnicodeError, LookupError):
            continue
    return None


def _footer_part(footer: str, eol: bytes) -> bytes:
    """A text/plain part of its own carrying the footer."""
    text = "\n".join(_footer_lines(footer)) + "\n"
    if text.isascii():
        charset, cte, body = "us-ascii", "7bit", text.encode("ascii").replace(b"\n", eol)
    else:
        charset, cte = "utf-8", "quoted-printable"
        body = _encode_cte(text.encode("utf-8"), cte, eol)
    part = RawMessage((), eol, body)
    return part.prepended([
        ("Content-Type", f'text/plain; charset="{charset}"'),
        ("Content-Transfer-Encoding", cte),
        ("Content-Disposition", "inline"),
    ]).to_bytes()


# -- multipart at the byte level -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Span:
    """Where one part lies in a multipart body."""

    start: int
    end: int
    glued: bool  # no line end between the part and the next boundary line (an empty part)


@dataclass(frozen=True, slots=True)
class Multipart:
    """A multipart body and where its parts lie in it (the bytes between boundary lines)."""

    body: bytes
    boundary: bytes
    parts: tuple[_Span, ...]
    closed: bool  # the close delimiter was found (else the last part runs to the end)

    def part(self, index: int) -> bytes:
        """The bytes of part `index`, exactly as in the body."""
        span = self.parts[index]
        return self.body[span.start : span.end]


def _line_end_after(body: bytes, index: int) -> int:
    if body.startswith(b"\r\n", index):
        return index + 2
    if body.startswith(b"\n", index):
        return index + 1
    return index


def _line_end_before(body: bytes, index: int) -> int:
    if index >= 2 and body[index - 2 : index] == b"\r\n":
        return index - 2
    if index >= 1 and body[index - 1 : index] == b"\n":
        return index - 1
    return index


def split_multipart(body: bytes, boundary: bytes) -> Multipart | None:
    """The parts of a multipart body by its boundary lines; None when it has none."""
    if not boundary:
        return None
    line = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    matches = line.finditer(body)
    first = next(matches, None)
    if first is None or first.group(1):
        return None
    spans: list[_Span] = []
    previous, closed = first, False
    for match in matches:
        start = _line_end_after(body, previous.end())
        end = _line_end_before(body, match.start())
        spans.append(_Span(start, max(start, end), glued=end < start))
        previous = match
        if match.group(1):
            closed = True
            break
    if not closed:
        start = _line_end_after(body, previous.end())
        spans.append(_Span(start, len(body), glued=False))
    return Multipart(body, boundary, tuple(spans), closed)


def _rebuild(mp: Multipart, replaced: dict[int, bytes], added: bytes | None,
             eol: bytes) -> bytes:
    """The multipart body with some parts replaced and maybe one part added at the end."""
    out: list[bytes] = []
    position = 0
    for index, span in enumerate(mp.parts):
        if index in replaced:
            out += [mp.body[position : span.start], replaced[index]]
            if span.glued:
                out.append(eol)
            position = span.end
    if added is not None:
        delimiter = b"--" + mp.boundary
        last = mp.parts[-1]
        if mp.closed:
            out += [mp.body[position : last.end], eol, delimiter, eol, added]
            if last.glued:
                out.append(eol)
            position = last.end
        else:
            rest = mp.body[position:]
            lead = b"" if rest.endswith(b"\n") or not (rest or position) else eol
            out += [rest, lead, delimiter, eol, added, eol, delimiter, b"--", eol]
            position = len(mp.body)
    out.append(mp.body[position:])
    return b"".join(out)


def _new_boundary(*contents: bytes) -> str:
    seed = hashlib.sha256(b"".join(contents)).hexdigest()
    for counter in range(1000):
        boundary = f"=_listserv_{seed[:24]}_{counter}"
        token = b"--" + boundary.encode("ascii")
        if not any(token in content for content in contents):
            return boundary
    raise AssertionError("no free boundary")  # pragma: no cover - 1000 collisions of a hash


def _place(entity: RawMessage, info: Message, footer: str, depth: int) -> RawMessage | None:
    """`entity` with the footer in the part(s) a reader sees; None when it has no place."""
    ctype = info.get_content_type()
    if ctype in ("text/plain", "text/html"):
        return _footer_in_text(entity, info, footer)
    if not ctype.startswith("multipart/") or ctype in _OPAQUE or depth >= MAX_DEPTH:
        return None
    mp = split_multipart(entity.body, _as_bytes(info.get_boundary() or ""))
    if mp is None:
        return None
    subtype = info.get_content_subtype()
    default_type = "message/rfc822" if subtype == "digest" else "text/plain"
    children = []
    for index in range(len(mp.parts)):
        part = RawMessage.parse(mp.part(index))
        children.append((part, _info(part.fields, default_type)))

    def placed(index: int) -> bytes | None:
        part, part_info = children[index]
        if not _is_body_text(part_info):
            return None
        result = _place(part, part_info, footer, depth + 1)
        return None if result is None else result.to_bytes()

    replaced: dict[int, bytes] = {}
    added: bytes | None = None
    if subtype == "alternative":
        for index in range(len(children)):
            result = placed(index)
            if result is not None:
                replaced[index] = result
        if not replaced:
            return None
    elif subtype == "related":
        root = _related_root(info, [part_info for _, part_info in children])
        result = placed(root)
        if result is None:
            return None
        replaced[root] = result
    else:
        for index, (_, part_info) in enumerate(children):
            kind = part_info.get_content_type()
            if _is_body_text(part_info) and (kind in ("text/plain", "text/html") or (
                    kind.startswith("multipart/") and kind not in _OPAQUE)):
                result = placed(index)
                if result is not None:
                    replaced[index] = result
                break
        if not replaced:
            added = _footer_part(footer, entity.eol)
    return entity.with_body(_rebuild(mp, replaced, added, entity.eol))


def _related_root(info: Message, children: list[Message]) -> int:
    """The index of a multipart/related's root part: the `start` parameter's, or the first."""
    start = str(info.get_param("start", "") or "").strip().strip("<>").lower()
    if start:
        for index, part_info in enumerate(children):
            content_id = str(part_info.get("Content-ID", "")).strip().strip("<>").lower()
            if content_id == start:
                return index
    return 0


def _wrap(msg: RawMessage, extra: Iterable[bytes]) -> RawMessage:
    """`msg`'s content, untouched, as the first part of a new multipart/mixed, then `extra`."""
    moved = tuple(f for f in msg.fields if _field_name(f).startswith("content-"))
    kept = tuple(f for f in msg.fields if not _field_name(f).startswith("content-"))
    inner = RawMessage(moved, msg.eol, msg.body).to_bytes()
    extra = list(extra)
    boundary = _new_boundary(inner, *extra)
    delimiter, eol = b"--" + boundary.encode("ascii"), msg.eol
    body = delimiter + eol + inner
    for part in extra:
        body += eol + delimiter + eol + part
    body += eol + delimiter + b"--" + eol
    if not any(_field_name(f) == "mime-version" for f in kept):
        kept += (header_bytes("MIME-Version", "1.0", eol),)
    content_type = header_bytes("Content-Type", f'multipart/mixed; boundary="{boundary}"', eol)
    return RawMessage(kept + (content_type,), eol, body)


def append_footer(msg: RawMessage, footer: str) -> RawMessage:
    """The message with `footer` where its readers see it (see the module's docstring).

    Only the part(s) carrying the footer are re-encoded; a message whose shape has no place
    for it (signed, encrypted, a lone attachment) is wrapped whole in a multipart/mixed.
    """
    if not footer.strip():
        return msg
    info = _info(msg.fields)
    result = _place(msg, info, footer, 0) if _is_body_text(info) else None
    if result is None:
        return _wrap(msg, [_footer_part(footer, msg.eol)])
    if "mime-version" not in result.names() and result.fields != msg.fields:
        result = result.replaced("MIME-Version", "1.0")
    return result


# -- From munging (DMARC) ------------------------------------------------------------------------


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


def _munged(msg: RawMessage, author: tuple[str, str], sender: SenderRewrite) -> RawMessage:
    """From replaced by the list's; the author added to Reply-To or Cc."""
    name, address = author
    msg = msg.replaced("From", display_address(sender.from_name, sender.from_address))
    if not address:
        return msg
    if sender.author_to.lower() == "cc":
        pairs = [(_decode_words(n), _clean(a)) for n, a in getaddresses(msg.values("Cc")) if a]
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


def _dmarc_wrapped(original: RawMessage, inner: bytes, sender: SenderRewrite,
                   footer: str) -> RawMessage:
    """A message from the list whose first part is the post, as message/rfc822, untouched."""
    eol = original.eol
    outer = RawMessage(tuple(f for f in original.fields if _field_name(f) in _WRAP_KEPT),
                       eol, b"")
    attached = RawMessage((), eol, inner).prepended(
        [("Content-Type", "message/rfc822"), ("Content-Disposition", "inline")]
        + ([] if inner.isascii() else [("Content-Transfer-Encoding", "8bit")])
    ).to_bytes()
    parts = [attached] + ([_footer_part(footer, eol)] if footer.strip() else [])
    boundary = _new_boundary(*parts)
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + eol + part + eol for part in parts) + delimiter + b"--" + eol
    outer = _munged(outer, author_of(original), sender)
    mime = (header_bytes("MIME-Version", "1.0", eol),
            header_bytes("Content-Type", f'multipart/mixed; boundary="{boundary}"', eol))
    return RawMessage(outer.fields + mime, eol, body)


# -- the copies ----------------------------------------------------------------------------------


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


def _subject(msg: RawMessage) -> str:
    """The decoded Subject, as Python's policy reads it (encoded prefixes recognised)."""
    value = msg.value("Subject")
    if value is None:
        return ""
    if not value.isascii():  # 8-bit (SMTPUTF8) text, already read as UTF-8
        return _decode_words(value)
    try:
        head = BytesHeaderParser(policy=policy.default).parsebytes(
            b"Subject: " + value.encode("ascii", "surrogateescape") + b"\r\n\r\n")
        return one_line(str(head.get("Subject", "") or ""))
    except _EMAIL_ERRORS:
        return _decode_words(value)


def distribution_copy(raw: bytes, headers: ListHeaders, prefix: str, footer: str,
                      sender: SenderRewrite | None = None) -> bytes:
    """The copy of a post the members get: list headers, prefix once, footer, bytes kept.

    With `sender`, the copy goes out under the list's From (or wraps the post) for DMARC.
    """
    original = RawMessage.parse(raw)
    msg = original.without(_DROPPED)
    if sender is not None and sender.wrap:
        inner = raw if msg.fields == original.fields else msg.to_bytes()
        msg = _dmarc_wrapped(original, inner, sender, footer)
    else:
        if sender is not None:
            msg = _munged(msg, author_of(original), sender)
        msg = append_footer(msg, footer)
    if prefix:
        msg = msg.replaced("Subject", prefix_subject(_subject(original), prefix))
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
            msg = _dmarc_wrapped(msg, raw, sender, "")
        else:
            msg = _munged(msg, author_of(msg), sender)
    return msg.prepended([("X-BeenThere", been_there)]).to_bytes()


def personalize(copy: bytes, unsubscribe: str) -> bytes:
    """One member's copy: its own List-Unsubscribe prepended to a copy made without one."""
    eol = b"\r\n" if b"\r\n" in copy[:4096] else b"\n"
    return header_bytes("List-Unsubscribe", f"<mailto:{unsubscribe}>", eol) + copy
