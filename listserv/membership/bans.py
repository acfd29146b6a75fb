"""Banned senders (`members ban`): patterns whose posts and requests a list discards.

A pattern is, as in GNU Mailman's ban list, either an address (matched exactly, case-
insensitively) or a regular expression starting with `^` (matched against the whole
address, case-insensitively). We add the wildcard `*@domain` for a whole domain, which Mailman
writes as `^.*@domain$`. The router discards a banned sender's mail (router/guards.py); a chair
cannot add a banned address as a member.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.mail.addresses import normalize, normalize_domain, valid_address
from listserv.store.audit import audit
from listserv.store.models.core import Ban, MailingList


def checked_pattern(text: str) -> str:
    """The pattern in its stored form; `ListservError` saying why when it is none."""
    text = text.strip()
    if text.startswith("^"):
        try:
            re.compile(text, re.IGNORECASE)
        except re.error as exc:
            raise ListservError(f"{text!r} is not a regular expression: {exc}") from None
        return text
    if text.startswith("*@"):
        domain = text[2:]
        if valid_address(f"x@{domain}") is None:
            raise ListservError(f"{text!r}: {domain!r} is not a domain")
        return f"*@{normalize_domain(domain)}"
    address = valid_address(text)
    if address is None:
        raise ListservError(f"{text!r} is not an address, *@domain, or a ^regular expression")
    return address


def matches(pattern: str, address: str) -> bool:
    """Whether `address` is one `pattern` bans."""
    address = normalize(address)
    if pattern.startswith("^"):
        return re.match(pattern, address, re.IGNORECASE) is not None
    if pattern.startswith("*@"):
        return address.rpartition("@")[2] == pattern[2:]
    return address == pattern


def banning(patterns: Iterable[str], addresses: Iterable[str]) -> tuple[str, str] | None:
    """The first (address, pattern) where one of `patterns` bans one of `addresses`."""
    for address in addresses:
        for pattern in patterns:
            if address and matches(pattern, address):
                return normalize(address), pattern
    return None


def patterns_of(session: Session, ml: MailingList) -> list[str]:
    """The list's ban patterns, oldest first."""
    return list(session.scalars(select(Ban.pattern).where(Ban.list_id == ml.id)
                                .order_by(Ban.id)))


def is_banned(session: Session, ml: MailingList, address: str) -> bool:
    """Whether the list bans `address`."""
    return banning(patterns_of(session, ml), [address]) is not None


def ban(session: Session, ml: MailingList, text: str, now: datetime, actor: str) -> str:
    """Ban the senders `text` names on `ml`; returns the stored pattern."""
    pattern = checked_pattern(text)
    if pattern in patterns_of(session, ml):
        raise ListservError(f"{pattern} is banned on {ml.address} already")
    session.add(Ban(list_id=ml.id, pattern=pattern, created_at=now, created_by=actor))
    audit(session, now, actor, "member-banned", pattern, ml.id)
    return pattern


def unban(session: Session, ml: MailingList, text: str, now: datetime, actor: str) -> str:
    """Lift the ban `text` (as `members bans` shows it); returns the pattern."""
    pattern = text.strip() if text.strip().startswith("^") else checked_pattern(text)
    row = session.scalar(select(Ban).where(Ban.list_id == ml.id, Ban.pattern == pattern))
    if row is None:
        raise ListservError(f"{pattern} is not banned on {ml.address} (see `members bans`)")
    session.delete(row)
    audit(session, now, actor, "member-unbanned", pattern, ml.id)
    return pattern


def ban_rows(session: Session, ml: MailingList) -> list[dict[str, str]]:
    """The list's bans, for `members bans`."""
    return [{"pattern": b.pattern, "list": ml.address, "since": b.created_at.isoformat(),
             "by": b.created_by}
            for b in session.scalars(select(Ban).where(Ban.list_id == ml.id).order_by(Ban.id))]
