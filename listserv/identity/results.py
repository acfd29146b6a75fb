"""Proof by the receiving MTA's word (SPEC §2): a trusted `Authentication-Results` header.

An MTA in front of listserv that checks DMARC writes its verdict in an `Authentication-Results`
header (RFC 8601) at the top of the message, naming itself by its authserv-id. Anyone can write
such a header too, further down, or at the top when no MTA of ours adds one. So only the
topmost header counts, and only when its authserv-id is `[intake] trusted_authserv_id` (empty:
never). It proves the From address when it records `dmarc=pass` with `header.from` equal to the
From domain. As for a DKIM signature, the message must also name the address it arrived at in
`To`/`Cc`, carry a fresh `Date` and a Message-ID not used before (`listserv.identity.fresh`):
the MTA passes an old signed post sent again just as readily as a new one.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy.orm import Session

from listserv.identity import fresh
from listserv.mail.addresses import normalize_domain
from listserv.mail.headers import header_values

_COMMENT = re.compile(r"\([^()]*\)")


def _without_comments(value: str) -> str:
    while True:  # comments nest: strip the innermost until none is left
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            return value
        value = stripped


def parse(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """An `Authentication-Results` value as (authserv-id, [(method, result, properties)]),
    all lower-cased; properties map `ptype.property` to its value."""
    parts = [part.strip() for part in _without_comments(value).split(";")]
    head = parts[0].split()
    authserv_id = head[0].lower() if head else ""
    found: list[tuple[str, str, dict[str, str]]] = []
    for part in parts[1:]:
        words = part.split()
        if not words or "=" not in words[0]:
            continue
        method, _, result = words[0].lower().partition("=")
        properties: dict[str, str] = {}
        for word in words[1:]:
            key, equals, item = word.partition("=")
            if equals:
                properties.setdefault(key.lower(), item.strip('"').lower())
        found.append((method.partition("/")[0], result, properties))
    return authserv_id, found


def dmarc_pass(msg: EmailMessage, trusted_authserv_id: str, from_domain: str) -> str:
    """Why the topmost Authentication-Results header of `msg` does not vouch for
    `from_domain`; "" when it does."""
    if not trusted_authserv_id:
        return "no trusted authserv-id configured"
    values = header_values(msg, "Authentication-Results")
    if not values:
        return "no Authentication-Results header"
    authserv_id, results = parse(values[0])
    if authserv_id != trusted_authserv_id.lower():
        return f"the topmost header is from {authserv_id or 'nobody'}, not trusted"
    wanted = normalize_domain(from_domain)
    for method, result, properties in results:
        if (method == "dmarc" and result == "pass"
                and normalize_domain(properties.get("header.from", "")) == wanted):
            return ""
    return "the trusted header records no dmarc=pass for the From domain"


def prove(session: Session, msg: EmailMessage, address: str, arrival: fresh.Arrival,
          trusted_authserv_id: str, now: datetime) -> tuple[bool, str]:
    """Whether `msg`'s trusted Authentication-Results header proves its From `address`
    arrived at one of `arrival` (see the module's docstring); and why, for the log."""
    why = dmarc_pass(msg, trusted_authserv_id, address.rpartition("@")[2])
    if why:
        return False, f"authentication-results: {why}"
    if not fresh.names_arrival(header_values(msg, "To") + header_values(msg, "Cc"), arrival):
        why = "To/Cc do not name the address it came to"
    elif not fresh.fresh_date(" ".join(header_values(msg, "Date")[:1]), now):
        why = "its Date is not within 7 days"
    elif (len(header_values(msg, "Message-ID")) != 1
          or not fresh.first_use(session, header_values(msg, "Message-ID")[0], arrival,
                                     now)):
        why = "its Message-ID is missing or proved a sender before (a replay)"
    if why:
        return False, f"authentication-results: {why}"
    return True, f"authentication-results: dmarc=pass by {trusted_authserv_id}"
