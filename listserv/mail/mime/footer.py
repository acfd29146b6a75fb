"""The list's footer, put where the readers see it (SPEC §3); only the part(s) carrying it
are re-encoded.

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

import html
import re
from collections.abc import Iterable
from email.message import Message

from listserv.mail.mime.headers import EMAIL_ERRORS
from listserv.mail.mime.parts import (
    MAX_DEPTH,
    ascii_compatible,
    charset_codec,
    decode_cte,
    encode_cte,
    entity_info,
    new_boundary,
    param_bytes,
    rebuild_multipart,
    set_charset,
    split_multipart,
    transfer_encoding,
)
from listserv.mail.mime.raw import RawMessage, field_name, header_bytes

_CTES = ("", "7bit", "8bit", "binary", "quoted-printable", "base64")
_OPAQUE = frozenset({
    "multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
    "application/x-pkcs7-mime",
})
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_HTML_END = re.compile(r"</html\s*>", re.IGNORECASE)


def _is_body_text(info: Message) -> bool:
    """Whether a part is shown as the message text (not an attachment)."""
    try:
        return info.get_content_disposition() != "attachment" and not info.get_filename()
    except EMAIL_ERRORS:
        return False


def _newline(payload: bytes, cte: str, eol: bytes) -> str:
    """The line ending a part's text uses (base64 text is canonically CRLF)."""
    if b"\r\n" in payload:
        return "\r\n"
    if b"\n" in payload:
        return "\n"
    return "\r\n" if cte == "base64" else eol.decode("ascii")


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


def _footer_in_text(part: RawMessage, info: Message, footer: str) -> RawMessage | None:
    """A text/plain or text/html part with the footer, in its own encoding; None if it can't."""
    cte = transfer_encoding(info)
    declared = charset_codec(info.get_content_charset() or "us-ascii")
    payload = decode_cte(part.body, cte) if cte in _CTES else None
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
        if (tail_bytes is not None and codec == declared and ascii_compatible(codec)
                and cte != "base64" and (cte not in ("", "7bit") or tail_bytes.isascii())):
            # The original bytes stay as they are; only the encoded footer is added.
            encoded = encode_cte(tail_bytes, cte, part.eol)
            if cte == "quoted-printable" and part.body.rstrip(b" \t").endswith(b"="):
                encoded = part.eol + encoded  # the body ends in a soft line break
            return part.with_body(part.body + encoded)
        if tail_bytes is None:
            codec = label = "utf-8"
        data = (text + tail).encode(codec)
    charset = codec
    new_cte = cte
    if not ascii_compatible(charset) and cte not in ("base64", "8bit", "binary"):
        new_cte = "base64"  # UTF-16 and the like: line-based encodings would corrupt it
    elif cte in ("", "7bit") and not data.isascii():
        new_cte = "quoted-printable"
    result = part.with_body(encode_cte(data, new_cte, part.eol))
    if charset != declared:
        result = set_charset(result, label)
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
            codec = charset_codec(label)
            if codec is not None:
                candidates.append((codec, label))
        candidates.append(("utf-8", "utf-8"))
    for codec, label in candidates:
        try:
            return payload.decode(codec), codec, label
        except (UnicodeError, LookupError):
            continue
    return None


def footer_part(footer: str, eol: bytes) -> bytes:
    """A text/plain part of its own carrying the footer."""
    text = "\n".join(_footer_lines(footer)) + "\n"
    if text.isascii():
        charset, cte, body = "us-ascii", "7bit", text.encode("ascii").replace(b"\n", eol)
    else:
        charset, cte = "utf-8", "quoted-printable"
        body = encode_cte(text.encode("utf-8"), cte, eol)
    part = RawMessage((), eol, body)
    return part.prepended([
        ("Content-Type", f'text/plain; charset="{charset}"'),
        ("Content-Transfer-Encoding", cte),
        ("Content-Disposition", "inline"),
    ]).to_bytes()


def _place(entity: RawMessage, info: Message, footer: str, depth: int) -> RawMessage | None:
    """`entity` with the footer in the part(s) a reader sees; None when it has no place."""
    ctype = info.get_content_type()
    if ctype in ("text/plain", "text/html"):
        return _footer_in_text(entity, info, footer)
    if not ctype.startswith("multipart/") or ctype in _OPAQUE or depth >= MAX_DEPTH:
        return None
    mp = split_multipart(entity.body, param_bytes(info.get_boundary() or ""))
    if mp is None:
        return None
    subtype = info.get_content_subtype()
    default_type = "message/rfc822" if subtype == "digest" else "text/plain"
    children = []
    for index in range(len(mp.parts)):
        part = RawMessage.parse(mp.part(index))
        children.append((part, entity_info(part.fields, default_type)))

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
            added = footer_part(footer, entity.eol)
    return entity.with_body(rebuild_multipart(mp, replaced, added, entity.eol))


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
    moved = tuple(f for f in msg.fields if field_name(f).startswith("content-"))
    kept = tuple(f for f in msg.fields if not field_name(f).startswith("content-"))
    inner = RawMessage(moved, msg.eol, msg.body).to_bytes()
    extra = list(extra)
    boundary = new_boundary(inner, *extra)
    delimiter, eol = b"--" + boundary.encode("ascii"), msg.eol
    body = delimiter + eol + inner
    for part in extra:
        body += eol + delimiter + eol + part
    body += eol + delimiter + b"--" + eol
    if not any(field_name(f) == "mime-version" for f in kept):
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
    info = entity_info(msg.fields)
    result = _place(msg, info, footer, 0) if _is_body_text(info) else None
    if result is None:
        return _wrap(msg, [footer_part(footer, msg.eol)])
    if "mime-version" not in result.names() and result.fields != msg.fields:
        result = result.replaced("MIME-Version", "1.0")
    return result
