"""Proof by DKIM signature (SPEC §2, "Who sent it"), verified with dkimpy.

A message proves its From address when one of its DKIM signatures

- verifies against the key its domain publishes (`s._domainkey.d`, at least 1024 bits);
- is *aligned* with the From domain: `d=` is the From domain or a parent of it (mail from
  `jane@mail.example.org` signed `d=example.org` aligns). This is DMARC's relaxed alignment
  without the Public Suffix List, which we do not ship: a parent of at least two labels stands
  in for the organisational domain. A signature by a child domain (`d=mail.example.org` on
  `From: …@example.org`) does not align here, so we are never looser than DMARC, at worst
  stricter (such mail gets a confirmation instead);
- signs `From`, `Date` and `Message-ID`, and `To` or `Cc`, and the signed `To`/`Cc` name the
  address the message arrived at; the signed `Date` is fresh and the Message-ID new
  (`listserv.identity.fresh`).

Keys are looked up through the `TxtCache` of `listserv.mail.dns` (a time budget of
`KEY_TIMEOUT` per message, answers cached for their TTL); the router fetches them before its
transaction opens (`look_up_ahead`), so handling reads them from the cache. At most
`MAX_SIGNATURES` aligned signatures are tried per message: each costs a lookup and an RSA check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import getaddresses

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value
from sqlalchemy.orm import Session

from listserv.identity import fresh
from listserv.mail.addresses import normalize, normalize_domain
from listserv.mail.dns import DEFAULT_TIMEOUT, TxtCache, system_txt
from listserv.mail.headers import raw_header_values

log = logging.getLogger(__name__)

KEY_TIMEOUT = DEFAULT_TIMEOUT
MAX_SIGNATURES = 3
MIN_KEY_BITS = 1024

_default: TxtCache | None = None
_default_lock = threading.Lock()


def default_keys() -> TxtCache:
    """The process-wide key lookup (the system's resolvers, or `LISTSERV_DNS_NAMESERVERS`),
    made on first use and shared for its cache."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TxtCache(system_txt(timeout=KEY_TIMEOUT))
        return _default


def set_default_keys(keys: TxtCache | None) -> None:
    """Replace the process-wide key lookup; None makes a fresh one on next use (tests)."""
    global _default
    with _default_lock:
        _default = keys


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Whether a signature by `signing_domain` aligns with mail from `from_domain`: the same
    domain or a parent of it, of at least two labels (see the module's docstring)."""
    d, f = normalize_domain(signing_domain), normalize_domain(from_domain)
    return d.count(".") >= 1 and (f == d or f.endswith("." + d))


def key_names(msg: EmailMessage, from_domain: str) -> list[tuple[int, str]]:
    """(index, key name) of the signatures of `msg` aligned with `from_domain`, at most
    MAX_SIGNATURES, top first (dkimpy counts signatures in the same order)."""
    found: list[tuple[int, str]] = []
    for index, value in enumerate(raw_header_values(msg, "DKIM-Signature")):
        try:
            tags = parse_tag_value(value.encode("utf-8", "replace"))
        except InvalidTagValueList:
            continue
        domain = tags.get(b"d", b"").decode("ascii", "replace").strip()
        selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
        if selector and aligned(domain, from_domain):
            found.append((index, f"{selector}._domainkey.{domain}".lower()))
        if len(found) == MAX_SIGNATURES:
            break
    return found


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def look_up_ahead(msg: EmailMessage, from_address: str,
                  keys: TxtCache | None = None) -> None:
    """Fetch the keys of `msg`'s aligned signatures into the cache, before a transaction."""
    keys = keys or default_keys()
    deadline = time.monotonic() + KEY_TIMEOUT
    for _, name in key_names(msg, _domain(from_address)):
        keys(name, deadline - time.monotonic())


def dnsfunc(keys: TxtCache, deadline: float) -> Callable[..., bytes | None]:
    """dkimpy's `dnsfunc(name, timeout=…)`: the first TXT record at `name`, or None."""

    def lookup(name: bytes | str, timeout: float = KEY_TIMEOUT) -> bytes | None:
        qname = (name.decode("ascii", "replace") if isinstance(name, bytes) else name)
        remaining = min(float(timeout), deadline - time.monotonic())
        answer = keys(qname.rstrip(".").lower(), remaining)
        if answer is None or not answer.records:
            return None  # dkimpy then finds no key: the signature does not verify
        return answer.records[0].encode("utf-8", "replace")

    return lookup


def _signed(checker: dkim.DKIM, name: str) -> list[str]:
    """The values of header `name` the last verified signature covered, one line each."""
    return [" ".join(value.decode("utf-8", "replace").split())
            for key, value in checker.signed_headers if key.lower() == name.encode()]


def _fresh_proof(session: Session, checker: dkim.DKIM, address: str,
                 arrival: fresh.Arrival, now: datetime) -> str:
    """Why a verified signature does not prove `address`; "" when it does (then its
    Message-ID is recorded as used)."""
    froms = [a for _, a in getaddresses(_signed(checker, "from")) if "@" in a]
    if [normalize(a) for a in froms] != [address]:
        return "the signed From is not the sender"
    dates, ids = _signed(checker, "date"), _signed(checker, "message-id")
    if len(dates) != 1 or len(ids) != 1:
        return "Date or Message-ID not signed"
    if not fresh.names_arrival(_signed(checker, "to") + _signed(checker, "cc"), arrival):
        return "the signed To/Cc do not name the address it came to"
    if not fresh.fresh_date(dates[0], now):
        return "its Date is not within 7 days"
    if not fresh.first_use(session, ids[0], arrival, now):
        return "its Message-ID proved a sender before (a replay)"
    return ""


def prove(session: Session, raw: bytes, msg: EmailMessage, address: str,
          arrival: fresh.Arrival, now: datetime, keys: TxtCache | None = None,
          ) -> tuple[bool, str]:
    """Whether `raw` (parsed: `msg`) carries a DKIM signature proving its From `address`
    arrived at one of `arrival` (see the module's docstring); and why, for the log."""
    names = key_names(msg, _domain(address))
    if not names:
        return False, "dkim: no signature aligned with the From domain"
    keys = keys or default_keys()
    lookup = dnsfunc(keys, time.monotonic() + KEY_TIMEOUT)
    why = ""
    for index, name in names:
        try:
            checker = dkim.DKIM(raw, logger=log, minkey=MIN_KEY_BITS, timeout=KEY_TIMEOUT)
            verified = checker.verify(idx=index, dnsfunc=lookup)
        except Exception as exc:  # dkimpy raises more than DKIMException on hostile input
            why = f"dkim: {name}: {type(exc).__name__}: {exc}"
            continue
        if not verified:
            why = f"dkim: {name}: the signature does not verify"
            continue
        why = _fresh_proof(session, checker, address, arrival, now)
        if not why:
            return True, f"dkim: signed by {name.partition('._domainkey.')[2]}"
        why = f"dkim: {why}"
    return False, why
