"""Reading what a failure says: a report at the bounces address (an RFC 3464 DSN or one of the
older formats, through flufl.bounce) or a refusal during our own delivery, classified into a
`Kind` with its status and a one-line reason. Pure: bytes or text in, a `Report` out."""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from enum import StrEnum

from flufl.bounce import all_failures

from listserv.mail.addresses import normalize, valid_address
from listserv.mail.automatic import SignKind, signs
from listserv.mail.headers import header_text

log = logging.getLogger(__name__)


# -- what a failure is ------------------------------------------------------------------------


class Kind(StrEnum):
    """What a failure says about the address (only the first two count)."""

    PERMANENT = "permanent"  # the address is dead: +1
    TEMPORARY = "temporary"  # given up on a passing condition (mailbox full, timeouts): +0.5
    DELAYED = "delayed"  # a warning: still being tried
    POLICY = "policy"  # spam, policy or content: the message was refused, not the address
    RATE = "rate"  # a provider's sending limit: about us, never about the member
    AUTOREPLY = "autoreply"  # an automatic reply (out of office), not a delivery report
    UNKNOWN = "unknown"  # nothing recognisable


# A provider's limit on what we send (quota, rate): retry the transaction later.
_RATE = re.compile(
    r"sending (?:limit|quota)|send(?:ing)? rate|rate[- ]?limit|daily (?:user )?(?:sending )?"
    r"(?:limit|quota)|too many (?:messages|e?mails|recipients|connections)|"
    r"submissionquotaexceeded|message (?:submission )?rate|throttl|"
    r"exceeded (?:the |your )?(?:\w+ )?(?:sending|outbound|outgoing) ",
    re.IGNORECASE,
)
# A refusal of the message for what it is or where it came from, not of the address.
_POLICY = re.compile(
    r"\bspam|unsolicited|\bblock(?:ed|list|listed)?\b|black ?list|\brbl\b|spamhaus|spamcop|"
    r"barracuda|reputation|\bpolicy\b|\bdmarc\b|\bvirus|malware|phish|content (?:filter|rejected)|"
    r"not accepted due to",
    re.IGNORECASE,
)
_MAILBOX_FULL = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota exceeded|exceed(?:s|ed)? (?:\w+ )?(?:storage|quota)|"
    r"insufficient (?:system )?storage|quotaexceededexception",
    re.IGNORECASE,
)
_GAVE_UP = re.compile(
    r"retry timeout exceeded|in the queue too long|could not be delivered for (?:more than )?\d+ "
    r"days?|retry time not reached|delivery time expired|message expired|expired after",
    re.IGNORECASE,
)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY = re.compile(r"(?<![\d.])([245]\d\d)(?:[ :-]|$)")


def status_of(status: str, text: str) -> str:
    """The most specific RFC 3463 status: the field's, else the text's, else from a reply code."""
    status = status.strip().split()[0] if status.strip() else ""
    found = _ENHANCED.search(text)
    if found and (not status or status.endswith(".0.0")):
        return found.group(0)
    if status:
        return status
    reply = _REPLY.search(text)
    if reply:
        return f"{reply.group(1)[0]}.0.0"
    return ""


def classify(action: str, status: str, text: str) -> Kind:
    """What a failure report (or refusal) says: `action` is the DSN's (failed, delayed)."""
    if action.lower().startswith("delayed"):
        return Kind.DELAYED
    if _RATE.search(text):
        return Kind.RATE
    klass, _, rest = status.partition(".")
    subject, _, detail = rest.partition(".")
    if subject in ("6", "7") or (subject, detail) == ("3", "4"):  # policy, content, size
        return Kind.POLICY
    if _POLICY.search(text) and subject != "1":
        return Kind.POLICY
    if (subject, detail) in (("2", "2"), ("4", "7")) or _MAILBOX_FULL.search(text):
        return Kind.TEMPORARY
    if _GAVE_UP.search(text) or klass == "4":
        return Kind.TEMPORARY
    return Kind.PERMANENT


def classify_refusal(reply: str) -> tuple[Kind, str]:
    """A refusal during our own delivery (`550 5.1.1 …`): its kind and status."""
    status = status_of("", reply)
    return classify("failed", status, reply), status


# -- reading a report -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One address a report says failed, how, and why (one line)."""

    address: str
    kind: Kind
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    """What a message at the bounces address says."""

    failures: tuple[Failure, ...]
    # The Message-IDs of the original message, as the report quotes them.
    message_ids: tuple[str, ...]
    # Why it is an automatic reply (out of office …) rather than a report ("" when it is not).
    automatic: str
    # A DSN whose every recipient was delivered or relayed (NOTIFY=SUCCESS): nothing failed.
    success_only: bool
    subject: str
    sender: str

    def failure_for(self, address: str) -> Failure | None:
        """The failure naming `address`, else the weightiest one (a forwarded address)."""
        for failure in self.failures:
            if failure.address == normalize(address):
                return failure
        order = [Kind.PERMANENT, Kind.TEMPORARY, Kind.POLICY, Kind.RATE, Kind.DELAYED]
        ranked = sorted(self.failures, key=lambda f: order.index(f.kind)
                        if f.kind in order else len(order))
        return ranked[0] if ranked else None


_COPY_MARKERS = re.compile(
    r"^\s*(?:-{2,}.*(?:copy of the (?:original )?message|original message|returned mail|"
    r"message headers? follow|undelivered message)|.*below this line is a copy|"
    r"original message headers|-{5,} ?original)",
    re.IGNORECASE,
)
_MESSAGE_ID_LINE = re.compile(
    r"^[ \t>]*Message-I[Dd]:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)", re.MULTILINE | re.IGNORECASE
)
_TAGS = re.compile(r"<[^>]*>")
MAX_TEXT = 64 * 1024  # of a report's own text scanned for reasons
MAX_FAILURES = 100  # addresses taken from one report


def _parts(msg: Message) -> Iterator[Message]:
    """The report's own parts, depth first, without entering an attached original message."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        yield part
        if part.get_content_type() in ("message/rfc822", "message/delivery-status",
                                       "text/rfc822-headers"):
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack[0:0] = [p for p in payload if isinstance(p, Message)]


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[:MAX_TEXT].decode(charset, "replace")
    except LookupError:
        return payload[:MAX_TEXT].decode("utf-8", "replace")


def _human_text(msg: Message) -> str:
    """The report's explanation in words (plain text, else HTML stripped), before any copy."""
    plain = [p for p in _parts(msg) if p.get_content_type() == "text/plain"
             and not p.get_filename()]
    if plain:
        body = "\n".join(_decoded(p) for p in plain)
    else:
        html = [p for p in _parts(msg) if p.get_content_type() == "text/html"]
        body = "\n".join(_TAGS.sub(" ", _decoded(p)) for p in html)
    lines = []
    for line in body.splitlines():
        if _COPY_MARKERS.match(line):
            break
        lines.append(line)
    return "\n".join(lines)


def one_line(value: str, limit: int = 300) -> str:
    """`value` folded to one line and cut at `limit` characters (for reasons and the log)."""
    line = " ".join(value.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _paragraph_about(text: str, address: str) -> str:
    """The lines of `text` about `address`: its line and what follows up to a blank line."""
    lines = text.splitlines()
    lowered = address.lower()
    for index, line in enumerate(lines):
        if lowered in line.lower():
            chunk = [line]
            for following in lines[index + 1: index + 12]:
                if not following.strip():
                    if len(chunk) > 1:
                        break
                    continue
                chunk.append(following)
            return "\n".join(chunk)
    return ""


def _reason_in(chunk: str) -> str:
    """From the first SMTP reply code (or status) in `chunk` to its end, as one line."""
    found = _REPLY.search(chunk) or _ENHANCED.search(chunk)
    return one_line(chunk[found.start():] if found else chunk)


def _dsn_blocks(msg: Message) -> list[Message]:
    """The per-recipient field blocks of every message/delivery-status part."""
    blocks: list[Message] = []
    for part in _parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            # The first block is per message (Reporting-MTA …); the rest are per recipient.
            blocks += [b for b in payload if isinstance(b, Message)
                       and (b.get("Final-Recipient") or b.get("Original-Recipient"))]
    return blocks


def _recipient_of(block: Message) -> str:
    """The recipient a DSN block is about: Original-Recipient, else Final-Recipient."""
    for field in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
        value = " ".join(str(block.get(field, "")).split())
        kind, semicolon, address = value.partition(";")
        address = (address if semicolon else kind).strip().strip("<>")
        if "@" in address and (not semicolon or kind.strip().lower() == "rfc822"):
            return normalize(address)
    return ""


def _original_message_ids(msg: Message) -> tuple[str, ...]:
    """The Message-IDs the report quotes of the message it returns (never its own)."""
    own = str(msg.get("Message-ID", "")).strip()
    found: list[str] = []
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(str(payload[0].get("Message-ID", "")))
        elif ctype == "text/rfc822-headers":
            headers = HeaderParser().parsestr(_decoded(part), headersonly=True)
            found.append(str(headers.get("Message-ID", "")))
        elif ctype == "text/plain":
            found += _MESSAGE_ID_LINE.findall(_decoded(part))
    ids = [" ".join(m.split()) for m in found]
    return tuple(dict.fromkeys(m for m in ids if m.startswith("<") and m != own))


def _automatic(msg: EmailMessage) -> str:
    """Why `msg` is an automatic reply and not a delivery report ("" when it is not one).

    Judged on the message alone: a report's sign in it (its MIME type, a mail system's From or
    Sender, a report's Subject) makes it a report; the envelope is no evidence here, since
    reports and automatic replies alike come with the null sender.
    """
    found = [sign for sign in signs(msg) if not sign.envelope]
    if any(sign.kind is SignKind.REPORT for sign in found):
        return ""
    return str(found[0]) if found else ""


#: Reports read lately, by the SHA-256 of their bytes. One transaction to many bounce tokens
#: is one message (stored once) handled once per token: read it once, not once per token.
_RECENT: dict[bytes, Report] = {}
_RECENT_LIMIT = 8
_RECENT_LOCK = threading.Lock()


def read_report(raw: bytes) -> Report:
    """What a message at the bounces address says: failed addresses, how, and for what.

    The same bytes read again give the same report without a second reading (`_RECENT`).
    """
    key = hashlib.sha256(raw).digest()
    with _RECENT_LOCK:
        known = _RECENT.get(key)
    if known is not None:
        return known
    report = _read(raw)
    with _RECENT_LOCK:
        if len(_RECENT) >= _RECENT_LIMIT:
            del _RECENT[next(iter(_RECENT))]
        _RECENT[key] = report
    return report


def _read(raw: bytes) -> Report:
    """`read_report` itself.

    flufl.bounce finds the failed addresses in DSNs and in the non-standard formats (qmail,
    Exim, Yahoo, Exchange, …); the DSN's own fields (Action, Status, Diagnostic-Code) or the
    report's text about the address give the status and reason that decide the kind.
    """
    msg = email.message_from_bytes(raw)  # compat32: what flufl.bounce's detectors expect
    modern = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(modern, EmailMessage)
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping on odd input must not lose the report
        log.exception("flufl.bounce could not read a report")
        temporary, permanent = frozenset(), frozenset()
    human = _human_text(msg)
    failures: dict[str, Failure] = {}
    blocks = _dsn_blocks(msg)
    actions = []
    for block in blocks[:MAX_FAILURES]:
        address = _recipient_of(block)
        action = " ".join(str(block.get("Action", "")).split()).lower()
        actions.append(action)
        if not address or not action.startswith(("fail", "error", "delayed")):
            continue
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        diagnostic = diagnostic.partition(";")[2].strip() if ";" in diagnostic[:12] else diagnostic
        context = diagnostic or _reason_in(_paragraph_about(human, address))
        status = status_of(str(block.get("Status", "")), context)
        failures.setdefault(address, Failure(
            address, classify(action, status, context), status,
            one_line(diagnostic or context or status or action)))
    for found, action in ((permanent, "failed"), (temporary, "delayed")):
        for raw_address in sorted(found):
            address = valid_address(raw_address.decode("ascii", "replace")) or ""
            if not address or address in failures:
                continue
            chunk = _paragraph_about(human, address)
            reason = _reason_in(chunk) if chunk else _reason_in(human[:2000])
            status = status_of("", reason)
            failures[address] = Failure(address, classify(action, status, chunk or reason),
                                        status, reason)
    success = bool(actions) and all(a.startswith(("delivered", "relayed", "expanded"))
                                    for a in actions)
    return Report(
        failures=tuple(failures.values())[:MAX_FAILURES],
        message_ids=_original_message_ids(msg),
        automatic="" if failures else _automatic(modern),
        success_only=success and not failures,
        subject=header_text(modern, "Subject"),
        sender=header_text(modern, "From"),
    )
