"""What a post's authentication was when it arrived, for the ARC set of its copies (RFC 8617).

A list changes a post (its subject, its footer, its From), so the author's DKIM signature may
not verify at the members' providers. The ARC set on each copy records what the list saw
before it changed anything (`ARC-Authentication-Results`), sealed by the list's key, so a
receiver that trusts the list can still see that the post was authentic. `results` gives those
results as `method=result properties` clauses:

- `dkim`: each of the post's DKIM signatures (at most `dkim.MAX_SIGNATURES`, top first)
  verified here, with dkimpy and the keys of the shared DNS cache (`identity.dkim`), as
  `dkim=pass header.d=… header.s=… header.b=…` (or `fail`, or `none` when unsigned);
- `arc`: the chain the post arrived with, if any, verified with dkimpy (`pass`/`fail`): the
  next set's `cv=` comes from it;
- from the topmost `Authentication-Results` of the trusted MTA (`[intake]
  trusted_authserv_id`, `identity.results`): its other clauses (`spf`, `dmarc`, …) as it
  wrote them; its `dkim` and `arc` clauses are ours to say.

`survives` answers the DMARC question for a no-modify list: does one of the author's aligned
signatures still verify on the copy as it will go out?
"""

from __future__ import annotations

import logging
import time
from email.message import EmailMessage

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from listserv.identity.dkim import KEY_TIMEOUT, MAX_SIGNATURES, MIN_KEY_BITS, default_keys
from listserv.identity.dkim import dnsfunc as key_lookup
from listserv.identity.dkim import key_names as aligned_key_names
from listserv.identity.results import parse
from listserv.mail.dns import TxtCache
from listserv.mail.headers import from_address, header_values, raw_header_values
from listserv.mail.message import parse as parse_message

log = logging.getLogger(__name__)

_ARC_SIGNATURES = ("ARC-Seal", "ARC-Message-Signature")
# Characters allowed unquoted in an Authentication-Results property value (RFC 8601 `value`
# is a MIME token or a quoted string); anything else is left out of a copied clause.
_TSPECIALS = set('()<>@,;:\\"/[]?= \t')


def _tags(value: str) -> dict[bytes, bytes]:
    try:
        return parse_tag_value(value.encode("utf-8", "replace"))
    except InvalidTagValueList:
        return {}


def _signatures(msg: EmailMessage) -> list[dict[bytes, bytes]]:
    """The tags of the post's first DKIM signatures, top first."""
    return [_tags(value) for value in raw_header_values(msg, "DKIM-Signature")[:MAX_SIGNATURES]]


def _key_name(tags: dict[bytes, bytes]) -> str:
    selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
    domain = tags.get(b"d", b"").decode("ascii", "replace").strip()
    return f"{selector}._domainkey.{domain}".lower() if selector and domain else ""


def look_up_ahead(msg: EmailMessage, keys: TxtCache | None = None) -> None:
    """Fetch the keys `results` needs (the post's DKIM signatures, its ARC chain) into the
    cache, before a write transaction opens."""
    keys = keys or default_keys()
    deadline = time.monotonic() + KEY_TIMEOUT
    names = [_key_name(tags) for tags in _signatures(msg)]
    for header in _ARC_SIGNATURES:
        names += [_key_name(_tags(value)) for value in raw_header_values(msg, header)[:4]]
    for name in dict.fromkeys(name for name in names if name):
        keys(name, deadline - time.monotonic())


def _dkim_clauses(raw: bytes, msg: EmailMessage, keys: TxtCache) -> list[str]:
    signatures = _signatures(msg)
    if not signatures:
        return ["dkim=none"]
    lookup = key_lookup(keys, time.monotonic() + KEY_TIMEOUT)
    clauses = []
    for index, tags in enumerate(signatures):
        domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
        stamp = "".join(tags.get(b"b", b"").decode("ascii", "replace").split())[:8]
        try:
            checker = dkim.DKIM(raw, logger=log, minkey=MIN_KEY_BITS, timeout=KEY_TIMEOUT)
            result = "pass" if checker.verify(idx=index, dnsfunc=lookup) else "fail"
        except Exception as exc:  # dkimpy raises more than DKIMException on hostile input
            log.debug("dkim signature %d: %s: %s", index, type(exc).__name__, exc)
            result = "permerror"
        properties = [f"header.{name}={value}" for name, value in
                      (("d", domain), ("s", selector), ("b", stamp)) if _token(value)]
        clauses.append(" ".join([f"dkim={result}", *properties]))
    return clauses


def _arc_clause(raw: bytes, msg: EmailMessage, keys: TxtCache) -> list[str]:
    if not any(raw_header_values(msg, header) for header in _ARC_SIGNATURES):
        return []
    try:
        cv, _, reason = dkim.arc_verify(raw, logger=log, minkey=MIN_KEY_BITS,
                                        dnsfunc=key_lookup(keys, time.monotonic() + KEY_TIMEOUT))
    except Exception as exc:
        cv, reason = dkim.CV_Fail, f"{type(exc).__name__}: {exc}"
    log.debug("arc chain of the post: %s (%s)", cv, reason)
    return ["arc=pass" if cv == dkim.CV_Pass else "arc=fail"]


def _token(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and not (
        set(value) & _TSPECIALS)


def _trusted_clauses(msg: EmailMessage, trusted_authserv_id: str) -> list[str]:
    """The trusted MTA's clauses but `dkim` and `arc`, from the topmost header only."""
    values = header_values(msg, "Authentication-Results")
    if not trusted_authserv_id or not values:
        return []
    authserv_id, found = parse(values[0])
    if authserv_id != trusted_authserv_id.lower():
        return []
    clauses = []
    for method, result, properties in found:
        if method in ("dkim", "arc") or not (_token(method) and _token(result)):
            continue
        clauses.append(" ".join([f"{method}={result}", *(
            f"{name}={value}" for name, value in properties.items()
            if _token(name) and _token(value))]))
    return clauses


def results(raw: bytes, msg: EmailMessage, trusted_authserv_id: str,
            keys: TxtCache | None = None) -> str:
    """The post's authentication results, `;`-separated clauses (see the module's docstring),
    with the keys from the cache (fetched before by `look_up_ahead`)."""
    keys = keys or default_keys()
    clauses = (_dkim_clauses(raw, msg, keys) + _arc_clause(raw, msg, keys)
               + _trusted_clauses(msg, trusted_authserv_id))
    return ";\r\n ".join(clauses)


def survives(data: bytes, keys: TxtCache | None = None) -> bool:
    """Whether one of the signatures of `data` aligned with its From domain verifies on
    `data` itself (a copy as it will go out: then DMARC passes at the receiver)."""
    msg = parse_message(data)
    domain = from_address(msg).rpartition("@")[2]
    names = aligned_key_names(msg, domain) if domain else []
    if not names:
        return False
    keys = keys or default_keys()
    lookup = key_lookup(keys, time.monotonic() + KEY_TIMEOUT)
    for index, _ in names:
        try:
            checker = dkim.DKIM(data, logger=log, minkey=MIN_KEY_BITS, timeout=KEY_TIMEOUT)
            if checker.verify(idx=index, dnsfunc=lookup):
                return True
        except Exception as exc:
            log.debug("author signature %d on the copy: %s: %s", index, type(exc).__name__, exc)
    return False
