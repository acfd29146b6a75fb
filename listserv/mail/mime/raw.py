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

_HEADER_END = re.compile(rb"\r?\n\r?\n")
FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
"""A header field's name and its colon, at the start of a line ("Name :" too)."""
_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})
"""The header fields that hold addresses (an internationalised one is written as UTF-8)."""


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


def field_name(field: bytes) -> str:
    """The lower-case name of a raw header field ("" when the line is no field)."""
    match = FIELD_NAME.match(field)
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
    if name.lower() in ADDRESS_FIELDS and not all(
            address.isascii() for _, address in getaddresses([value])):
        # An internationalised address (SMTPUTF8) is written as UTF-8, never as encoded words.
        folded = policy.SMTPUTF8.header_factory(name, value).fold(policy=policy.SMTPUTF8)
        return folded.replace("\r\n", eol.decode("ascii")).encode("utf-8", "surrogateescape")
    folded = policy.SMTP.header_factory(name, value).fold(policy=policy.SMTP)
    return folded.replace("\r\n", eol.decode("ascii")).encode("ascii", "surrogateescape")
