"""Is this mail written by a program? The one detector of automatic mail (SPEC §3, RFC 3834).

Each sign found is a `Sign`: what it says (a delivery report, an automatic reply, or automatic
mail of no known kind), the header or envelope that shows it, whether it is *strong* (set by
software: an RFC 3834 header, a report's MIME type, a mail system's address, a null sender) or
*weak* (words in a Subject, a bulk-mail `Precedence`, which a person's mail can carry too), and
whether it is about the envelope sender (the SMTP one, or the `Return-Path` that records it).

Callers choose which signs count, on purpose:

* the router's guards count every sign: automatic mail is held (a post) or ignored (a request,
  a confirmation), and never answered (`may_auto_reply`);
* IMAP intake sends a message to the bounce handler only on a strong sign
  (`recognise`): words in a Subject must not turn a member's post into a bounce;
* the bounce handler tells an automatic reply from a delivery report
  (`bounces.reports.read_report`):
  any report sign in the message itself means a report.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from enum import StrEnum

from listserv.mail.addresses import normalize
from listserv.mail.headers import header_text

# Local parts of a mail system's own addresses: reports come from them.
MAIL_SYSTEM = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})
# Local parts of addresses that read nothing: no answer goes to them, and mail sent with one
# as its envelope sender is a program's.
NO_REPLY = frozenset({"noreply", "no-reply"})
PRECEDENCE_AUTOMATIC = frozenset({"auto_reply"})
PRECEDENCE_BULK = frozenset({"bulk", "junk"})

# Subjects of out-of-office and vacation replies in the languages we answer in (matched at the
# start, on the Subject with accents removed).
_VACATION = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?reply|out of (?:the )?office|autoreply|"
    r"respuesta automatica|reponse automatique|automatische antwort|resposta automatica|"
    r"abwesenheitsnotiz|fuera de la oficina|absence)\b",
    re.IGNORECASE,
)
# Words of a delivery report's Subject, anywhere in it.
_REPORT_SUBJECT = re.compile(
    r"undeliver|delivery (?:status|failure|has failed|delayed|notification)|returned mail|"
    r"failure notice|mail delivery|could not be delivered|non-?delivery|delayed mail|"
    r"warning: could not send",
    re.IGNORECASE,
)


class SignKind(StrEnum):
    """What a sign says the message is."""

    REPORT = "a delivery report"
    REPLY = "an automatic reply"
    PROGRAM = "automatic mail"


@dataclass(frozen=True, slots=True)
class Sign:
    """One sign that a program wrote the message."""

    kind: SignKind
    detail: str  # the header or envelope that shows it, for the reader of a reason
    strong: bool
    envelope: bool = False  # about the envelope sender (SMTP's, or Return-Path)

    def __str__(self) -> str:
        return f"{self.kind.value} ({self.detail})"


def _local_part(address: str) -> str:
    return normalize(address).rpartition("@")[0]


def machine_address(address: str) -> bool:
    """Whether `address` is a mail system's or a no-reply box: nothing is ever sent to it."""
    local = _local_part(address)
    return local in MAIL_SYSTEM or local in NO_REPLY


def _unaccented(text: str) -> str:
    """`text` without accents ("Réponse automatique" -> "Reponse automatique")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def signs(msg: EmailMessage, mail_from: str | None = None) -> Iterator[Sign]:
    """Every sign that `msg` is automatic mail, strong ones first.

    `mail_from` is the envelope sender ("" for the null sender); None when there is no envelope
    to judge (a report read on its own, a message from a hosted mailbox judged by its headers).
    """
    if msg.get_content_type() == "multipart/report":
        yield Sign(SignKind.REPORT, "multipart/report", strong=True)
    return_path = header_text(msg, "Return-Path")
    if return_path.replace(" ", "") == "<>":
        yield Sign(SignKind.PROGRAM, "null envelope sender in Return-Path", strong=True,
                   envelope=True)
    for field in ("Return-Path", "From", "Sender"):
        address = normalize(parseaddr(header_text(msg, field))[1])
        if _local_part(address) in MAIL_SYSTEM:
            yield Sign(SignKind.REPORT, f"{field}: {address}", strong=True,
                       envelope=field == "Return-Path")
    auto = header_text(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        kind = SignKind.REPLY if auto.startswith("auto-replied") else SignKind.PROGRAM
        yield Sign(kind, f"Auto-Submitted: {auto}", strong=True)
    for field in ("X-Autoreply", "X-Autorespond"):
        if header_text(msg, field):
            yield Sign(SignKind.REPLY, field, strong=True)
    precedence = header_text(msg, "Precedence").lower()
    if precedence in PRECEDENCE_AUTOMATIC:
        yield Sign(SignKind.REPLY, f"Precedence: {precedence}", strong=True)
    elif precedence in PRECEDENCE_BULK:
        yield Sign(SignKind.PROGRAM, f"Precedence: {precedence}", strong=False)
    if mail_from is not None:
        if not mail_from:
            yield Sign(SignKind.PROGRAM, "empty envelope sender", strong=True, envelope=True)
        elif machine_address(mail_from):
            yield Sign(SignKind.PROGRAM, f"sent by {mail_from}", strong=True, envelope=True)
    subject = _unaccented(header_text(msg, "Subject"))
    if _VACATION.match(subject):
        yield Sign(SignKind.REPLY, "an out-of-office subject", strong=False)
    if _REPORT_SUBJECT.search(subject):
        yield Sign(SignKind.REPORT, "a delivery-report subject", strong=False)


def automatic(msg: EmailMessage, mail_from: str | None = None) -> Sign | None:
    """The first sign that `msg` is automatic mail (None for a person's mail).

    Every sign counts, weak ones too: the router's guards hold or ignore such mail, so a real
    post that only looks automatic waits for the chair rather than being lost.
    """
    return next(signs(msg, mail_from), None)


def recognise(msg: EmailMessage) -> str:
    """Why `msg` is surely a delivery report or an automatic reply ("" when not surely one).

    For mail whose role comes from its headers (a hosted mailbox): such mail goes to the bounce
    handler whatever address it names, so that it never becomes a post or a request. Only
    strong signs count (a report's MIME type, the null sender, a mail system's address, RFC
    3834's headers); words in a Subject or a bulk `Precedence` are left to the router's guards,
    which hold rather than drop.
    """
    sign = next((sign for sign in signs(msg) if sign.strong), None)
    return str(sign) if sign is not None else ""


def may_auto_reply(msg: EmailMessage, mail_from: str, recipient: str) -> bool:
    """Whether an automatic answer to `msg` may be sent to `recipient` at all (RFC 3834 §2)."""
    if automatic(msg, mail_from) is not None:
        return False
    return bool(recipient) and not machine_address(recipient)
