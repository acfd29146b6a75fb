"""A message's header section as raw fields, and every header field the list writes.

`RawMessage` splits a message (or MIME entity) into its header fields, folding kept, and its
body; fields are read, replaced and prepended without re-serialising the others.
`header_bytes` writes one field, folded and RFC 2047-encoded as needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.utils import getaddresses

from listserv.mail.render import safe_header_value

FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
"""A header field's name and its colon, at the start of a line ("Name :" too)."""
_HEADER_LINE = re.compile(rb"From |[!-9;-~]*:|[ \t]")
"""A line that continues the header section: Python's `email.feedparser.headerRE`."""
_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})
"""The header fields that hold addresses (an internationalised one is written as UTF-8)."""
_ADDR_SPEC = re.compile(r'[^\s@<>()\[\],;:"]+@[^\s@<>()\[\],;:"]+')


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message (or MIME entity) split into header fields (raw, folding kept) and body."""

    fields: tuple[bytes, ...]
    eol: bytes
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> RawMessage:
        eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
        head, body = split_head(raw)
        fields = [b"".join(lines) for lines in head]
        if fields and not fields[-1].endswith(b"\n"):
            fields[-1] += eol
        return cls(tuple(fields), eol, body)

    def names(self) -> list[str]:
        return [field_name(field) for field in self.fields]

    def values(self, name: str) -> list[str]:
        """The unfolded raw values of every field `name` (encoded words left encoded; 8-bit
        bytes read as UTF-8, as SMTPUTF8 mail has them, others kept as surrogate escapes)."""
        return [
            _UNFOLD.sub(b"", field).rstrip(b"\r\n").partition(b":")[2].strip()
            .decode("utf-8", "surrogateescape")
            for field in self.fields if field_name(field) == name.lower()
        ]

    def value(self, name: str) -> str | None:
        """The unfolded raw value of the first field `name`, None when there is none."""
        values = self.values(name)
        return values[0] if values else None

    def without(self, names: Iterable[str]) -> RawMessage:
        """The message with every field of these names (case-insensitive) removed."""
        drop = {name.lower() for name in names}
        kept = tuple(f for f in self.fields if field_name(f) not in drop)
        return RawMessage(kept, self.eol, self.body)

    def replaced(self, name: str, value: str) -> RawMessage:
        """The message with field `name` set to `value`: in place if present, else prepended."""
        line = header_bytes(name, value, self.eol)
        fields = list(self.fields)
        positions = [i for i, f in enumerate(fields) if field_name(f) == name.lower()]
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


def split_head(raw: bytes) -> tuple[list[list[bytes]], bytes]:
    """The header section of `raw` as its fields, each the list of its raw lines (line ends
    kept), and the body after it.

    Lines end at LF. Where the header section ends is decided as Python's parser decides it
    (`email.feedparser`), on each line with only its line end removed, so every field here is
    one our guards and the DMARC rewrite saw: an empty line ends it, and so does a line that is
    no field, no continuation and no mbox `From ` line (it is the body's first line). A line
    that starts with a CR ends it too (Python takes a bare CR for an empty line, which it
    consumes), so `\\rFrom: x` or `\\0From: x` can never become a field once a serializer
    removes the CR or NUL. A continuation with no field before it is a field of its own.
    """
    fields: list[list[bytes]] = []
    pos = 0
    while pos < len(raw):
        newline = raw.find(b"\n", pos)
        end = len(raw) if newline < 0 else newline + 1
        if raw.startswith((b"\n", b"\r\n"), pos):
            return fields, raw[end:]
        if raw.startswith(b"\r", pos):
            return fields, raw[pos + 1 :]
        if not _HEADER_LINE.match(raw, pos):
            return fields, raw[pos:]
        line = raw[pos:end]
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
        pos = end
    return fields, b""


def field_name(field: bytes) -> str:
    """The lower-case name of a raw header field ("" when the line is no field)."""
    match = FIELD_NAME.match(field)
    return match.group(1).decode("ascii").lower() if match else ""


def international(name: str, value: str) -> bool:
    """Whether header `name: value` holds an internationalised address: an address field with
    an addr-spec (`local@domain`) that is not ASCII. A non-ASCII display name, or 8-bit text
    that is no address at all, does not count: it can be encoded (RFC 2047)."""
    return name.lower() in ADDRESS_FIELDS and any(
        not address.isascii() and _ADDR_SPEC.fullmatch(address) is not None
        for _, address in getaddresses([value]))


def header_bytes(name: str, value: str, eol: bytes = b"\r\n", *, utf8: bool = True) -> bytes:
    """One header field, folded and RFC 2047-encoded as needed; refuses CR/LF in `value`.

    Every header the list writes goes through here, whether its value came from a template, a
    setting or a sender, so no value can add a header of its own. An internationalised address
    is written as UTF-8 unless `utf8` is false (then it is encoded like any other value).
    """
    safe_header_value(name, value)
    line = f"{name}: {value}"
    if line.isascii() and len(line) <= 998:
        # Kept on one line: folding a URL header leaves readers a value with a leading space.
        return line.encode("ascii") + eol
    if utf8 and international(name, value):
        # An internationalised address (SMTPUTF8) is written as UTF-8, never as encoded words.
        folded = policy.SMTPUTF8.header_factory(name, value).fold(policy=policy.SMTPUTF8)
        return folded.replace("\r\n", eol.decode("ascii")).encode("utf-8", "surrogateescape")
    folded = policy.SMTP.header_factory(name, value).fold(policy=policy.SMTP)
    return folded.replace("\r\n", eol.decode("ascii")).encode("ascii", "surrogateescape")
