"""MIME entities at the byte level: their MIME headers, charsets and transfer encodings,
and multipart bodies split by their boundary lines and rebuilt.

Boundaries come from Content-Type, parts are found by their boundary lines (RFC 2046 §5.1.1,
as Python's parser finds them), and a part that is not changed is never re-serialised.
Nesting deeper than `MAX_DEPTH` is left alone.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

from listserv.mail.mime.headers import clean_line
from listserv.mail.mime.raw import RawMessage

MAX_DEPTH = 10
"""Multipart nesting past this depth is never entered (the footer then gets a part of its own)."""

_CHARSET_PARAM = re.compile(r"(;\s*charset\s*=\s*)(\"[^\"]*\"|[^;\s]*)", re.IGNORECASE)


def entity_info(fields: Iterable[bytes], default_type: str = "text/plain") -> Message:
    """The MIME headers of an entity, parsed for reading (never written back)."""
    info = BytesHeaderParser(policy=policy.compat32).parsebytes(b"".join(fields) + b"\r\n")
    info.set_default_type(default_type)
    return info


def param_bytes(value: str) -> bytes:
    """A header parameter back as the bytes it was read from (as near as it can be)."""
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def charset_codec(name: str) -> str | None:
    """Python's codec for a MIME charset name, None when it has none."""
    try:
        return codecs.lookup(name.strip().strip('"')).name
    except (LookupError, ValueError):
        return None


def ascii_compatible(codec: str) -> bool:
    """Whether `codec` writes ASCII as ASCII (line-based transfer encodings then work)."""
    try:
        return "a=\n".encode(codec) == b"a=\n" and b"a=\n".decode(codec) == "a=\n"
    except (UnicodeError, LookupError):
        return False


def set_charset(part: RawMessage, charset: str) -> RawMessage:
    """`part` with the charset parameter of its Content-Type set (everything else kept)."""
    value = part.value("Content-Type")
    if value is None:
        return part.replaced("Content-Type", f"text/plain; charset={charset}")
    value = clean_line(value)
    if _CHARSET_PARAM.search(value):
        value = _CHARSET_PARAM.sub(lambda m: m.group(1) + charset, value, count=1)
    else:
        value = value.rstrip().rstrip(";") + f"; charset={charset}"
    return part.replaced("Content-Type", value)


# -- transfer encodings --------------------------------------------------------------------------


def transfer_encoding(info: Message) -> str:
    """An entity's Content-Transfer-Encoding, lower case ("" when it has none)."""
    return str(info.get("Content-Transfer-Encoding", "")).strip().lower()


def decode_cte(body: bytes, cte: str) -> bytes | None:
    """A body decoded from transfer encoding `cte`; None when its base64 is broken."""
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


def encode_cte(data: bytes, cte: str, eol: bytes) -> bytes:
    """`data` in transfer encoding `cte`, its lines ended with `eol`."""
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", eol)
    if cte == "quoted-printable":
        return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", eol)
    return data


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


def _boundary_lines(body: bytes, boundary: bytes) -> Iterator[re.Match[bytes]]:
    """The boundary lines of `body` (`--BOUNDARY`, maybe `--` after, at a line start), found
    with `bytes.find` and then matched: a multiline regex tried at every line start of a 35 MB
    attachment cost the router 0.17 s per pass."""
    marker = b"--" + boundary
    line = re.compile(re.escape(marker) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    position = body.find(marker)
    while position >= 0:
        if position == 0 or body[position - 1] == 0x0A:  # at a line start
            match = line.match(body, position)
            if match is not None:
                yield match
        position = body.find(marker, position + 1)


def split_multipart(body: bytes, boundary: bytes) -> Multipart | None:
    """The parts of a multipart body by its boundary lines; None when it has none."""
    if not boundary:
        return None
    matches = _boundary_lines(body, boundary)
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


def rebuild_multipart(mp: Multipart, replaced: dict[int, bytes], added: bytes | None,
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


def new_boundary(*contents: bytes) -> str:
    """A boundary that occurs in none of `contents` (derived from them: reproducible)."""
    seed = hashlib.sha256(b"".join(contents)).hexdigest()
    for counter in range(1000):
        boundary = f"=_listserv_{seed[:24]}_{counter}"
        token = b"--" + boundary.encode("ascii")
        if not any(token in content for content in contents):
            return boundary
    raise AssertionError("no free boundary")  # pragma: no cover - 1000 collisions of a hash
