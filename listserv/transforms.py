"""Pure transforms of a message's bytes into the copy the members get (SPEC §3).

The original bytes are kept: added headers are prepended, and only the headers and the one
part that change are rewritten, so odd-but-deliverable mail and authors' signatures survive.
"""

from __future__ import annotations

import base64
import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes, policy

from .render import safe_header_value

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
# Reply markers of many mail clients: Re, AW (de), SV (sv/da/no), RES (pt), RV (es), Antw (nl),
# Odp (pl), VS (fi), with an optional counter as in "Re[2]:" or "Re(2):".
_REPLY = re.compile(
    r"^\s*(?:re|aw|sv|res|rv|antw|odp|vs|r)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message split into its header fields (raw bytes, folding kept) and its body."""

    fields: tuple[bytes, ...]
    eol: bytes
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> RawMessage:
        match = _HEADER_END.search(raw)
        if match is None:
            head, body = raw, b""
        else:
            head, body = raw[: match.start()], raw[match.end() :]
        eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
        fields: list[bytes] = []
        for line in head.splitlines(keepends=True):
            if fields and line[:1] in (b" ", b"\t"):
                fields[-1] += line
            else:
                fields.append(line)
        if fields and not fields[-1].endswith(b"\n"):
            fields[-1] += eol
        return cls(tuple(fields), eol, body)

    def names(self) -> list[str]:
        return [_field_name(field) for field in self.fields]

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
    """One header field, folded and RFC 2047-encoded as needed; refuses CR/LF in `value`."""
    safe_header_value(name, value)
    line = f"{name}: {value}"
    if line.isascii() and len(line) <= 998:
        # Kept on one line: folding a URL header leaves readers a value with a leading space.
        return line.encode("ascii") + eol
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


def append_footer(msg: RawMessage, footer: str) -> RawMessage:
    """The message with `footer` after a single-part text/plain body, in its own encoding.

    Other MIME shapes are left unchanged here; the part carrying the footer is the only
    body bytes rewritten.
    """
    if not footer:
        return msg
    parsed = message_from_bytes(msg.to_bytes(), policy=policy.default)
    if parsed.get_content_type() != "text/plain" or parsed.is_multipart():
        return msg
    charset = parsed.get_content_charset() or "us-ascii"
    try:
        text = parsed.get_payload(decode=True).decode(charset, "replace")
    except LookupError:
        return msg
    eol = msg.eol.decode("ascii")
    text = text.replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    text += footer.rstrip("\n") + "\n"
    try:
        encoded = text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
        encoded = text.encode(charset)
    cte = str(parsed.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if cte in ("7bit", "") and not encoded.isascii():
        cte = "quoted-printable"
    if cte == "base64":
        body = base64.encodebytes(encoded)
    elif cte == "quoted-printable":
        body = quopri.encodestring(encoded)
    else:
        body = encoded
    body = body.replace(b"\n", eol.encode("ascii"))
    result = msg.with_body(body)
    content_type = parsed.get_content_type()
    params = dict(parsed["Content-Type"].params) if "Content-Type" in parsed else {}
    if params.get("charset", "us-ascii").lower() != charset or "Content-Type" not in parsed:
        params["charset"] = charset
        value = "; ".join([content_type, *(f"{k}={_quote(v)}" for k, v in params.items())])
        result = result.replaced("Content-Type", value)
    if str(parsed.get("Content-Transfer-Encoding", "")).strip().lower() != cte:
        result = result.replaced("Content-Transfer-Encoding", cte)
    if "MIME-Version" not in parsed:
        result = result.replaced("MIME-Version", "1.0")
    return result


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9._-]+", value) else '"' + value.replace('"', "") + '"'


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


def distribution_copy(raw: bytes, headers: ListHeaders, prefix: str, footer: str) -> bytes:
    """The copy of a post the members get: list headers, prefix once, footer, bytes kept."""
    msg = RawMessage.parse(raw).without(_DROPPED)
    parsed = message_from_bytes(raw, policy=policy.default)
    if prefix:
        subject = str(parsed.get("Subject", "") or "")
        msg = msg.replaced("Subject", prefix_subject(subject, prefix))
    if headers.reply_to:
        msg = msg.replaced("Reply-To", headers.reply_to)
    msg = append_footer(msg, footer)
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


def personalize(copy: bytes, unsubscribe: str) -> bytes:
    """One member's copy: its own List-Unsubscribe prepended to a copy made without one."""
    eol = b"\r\n" if b"\r\n" in copy[:4096] else b"\n"
    return header_bytes("List-Unsubscribe", f"<mailto:{unsubscribe}>", eol) + copy
