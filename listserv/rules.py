"""Pure predicates about a message, each returning a readable reason or None."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import getaddresses

from .addresses import normalize

# Subjects of out-of-office and vacation replies in the languages we answer in.
_VACATION = re.compile(
    r"^\s*(automatic reply|auto(?:matic)?[- ]?reply|out of (?:the )?office|autoreply|"
    r"respuesta autom[aá]tica|r[ée]ponse automatique|automatische antwort|"
    r"resposta autom[aá]tica|abwesenheitsnotiz|fuera de la oficina|absence)\b",
    re.IGNORECASE,
)
_DAEMON_SENDERS = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply)@", re.IGNORECASE)


def header_text(msg: EmailMessage, name: str) -> str:
    """A header's decoded value as one line ("" when absent or unreadable)."""
    try:
        text = str(msg.get(name) or "")
    except Exception:  # the email package's header parser trips on some malformed values
        return ""
    return " ".join(text.split())


def from_address(msg: EmailMessage) -> str:
    """The normalized address of the From: header ("" when there is none)."""
    pairs = getaddresses([header_text(msg, "From")])
    for _, address in pairs:
        if "@" in address:
            return normalize(address)
    return ""


def from_name(msg: EmailMessage) -> str:
    """The display name of the From: header, one line ("" when none)."""
    for name, address in getaddresses([header_text(msg, "From")]):
        if "@" in address:
            return " ".join(name.split())
    return ""


def own_loop(msg: EmailMessage, list_id: str, list_address: str) -> str | None:
    """This list's own List-Id or X-BeenThere: the message came back to us."""
    for value in msg.get_all("List-Id", []) or []:
        if list_id and f"<{list_id}>".lower() in str(value).lower():
            return f"carries this list's own List-Id <{list_id}>"
    for value in msg.get_all("X-BeenThere", []) or []:
        if normalize(str(value)) == normalize(list_address):
            return f"carries X-BeenThere: {list_address}"
    return None


def automatic_mail(msg: EmailMessage, mail_from: str) -> str | None:
    """Mail written by a program (RFC 3834 and the usual signs), which gets no answer."""
    auto = header_text(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return f"automatic mail (Auto-Submitted: {auto})"
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return "automatic mail (X-Autoreply)"
    precedence = header_text(msg, "Precedence").lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        return f"automatic mail (Precedence: {precedence})"
    if _VACATION.search(header_text(msg, "Subject")):
        return "automatic mail (an out-of-office subject)"
    if not mail_from:
        return "automatic mail (empty envelope sender)"
    if _DAEMON_SENDERS.match(mail_from):
        return f"automatic mail (sent by {mail_from})"
    return None


def too_big(size: int, max_kb: int) -> str | None:
    """Over the list's size limit for posts."""
    if max_kb and size > max_kb * 1024:
        return f"message is {size // 1024} KB, over the list's limit of {max_kb} KB"
    return None


def headers_only(size: int, stored: int) -> str | None:
    """Only the headers were read (a hosted mailbox's message over the intake cap)."""
    if size > stored:
        return (f"only its headers were read: it is {size // 1024} KB, over the intake limit; "
                "the whole message is still in the mailbox")
    return None


def may_auto_reply(msg: EmailMessage, mail_from: str, recipient: str) -> bool:
    """Whether an automatic answer to this message may be sent to `recipient` at all."""
    if automatic_mail(msg, mail_from) is not None:
        return False
    return bool(recipient) and not _DAEMON_SENDERS.match(recipient)
