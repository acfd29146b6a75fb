"""The DMARC policy of an author's domain (RFC 7489), and what a list does about it (SPEC §3).

A list re-sends its members' mail from its own servers, so a copy of a post from a domain that
publishes `p=reject` or `p=quarantine` would fail DMARC at the members' providers and be refused
or filed as spam. Per list `dmarc_mitigation`:

- `munge` (default): when the author's domain publishes `p=reject` or `p=quarantine`, *or the
  lookup fails or times out*, From becomes the list's and the author moves to Reply-To (or Cc);
- `always`: every copy is munged, whatever the domain publishes;
- `wrap`: where `munge` would munge, the post travels unchanged as a message/rfc822 attachment
  of a message from the list;
- `none`: nothing is done.

**Lookup.** The policy is found with a DNS tree walk, without the Public Suffix List: query
`_dmarc.` + the author's domain, then each parent domain down to two labels (a domain of more
than eight labels jumps to its last seven first, as DMARCbis does), and take the first valid
record. A record found at the author's domain itself gives `p`; one found at a parent gives
`sp` (its subdomain policy) when present, else `p`. Walking one label further than the
organisational domain the Public Suffix List would give (`_dmarc.co.uk`) only costs a query that
finds nothing. Several DMARC records at one name mean "no policy" (RFC 7489 §6.6.3).

**Resolver.** Lookups go through a `TxtLookup` and the `TxtCache` of `listserv.mail.dns` (shared
with DKIM key lookups): answers live for their TTL (at most an hour), failures for a minute.
The process-wide default (`default_lookup()`) asks the system's resolvers, or the nameservers in
`LISTSERV_DNS_NAMESERVERS`, which tests point at a DNS server of their own on 127.0.0.1.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from enum import StrEnum
from typing import Protocol

from listserv.mail.dns import (
    DEFAULT_TIMEOUT,
    FAILURE_TTL,
    MAX_TTL,
    TxtCache,
    TxtLookup,
    system_txt,
)
from listserv.mail.headers import from_address

MAX_LABELS = 8


class Policy(StrEnum):
    """What an author's domain asks receivers to do with mail failing DMARC."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    UNKNOWN = "unknown"  # the lookup failed or timed out

    @property
    def protective(self) -> bool:
        """Whether a list must not send this author's mail under the author's own From."""
        return self is not Policy.NONE


class PolicyLookup(Protocol):
    """Anything that gives the DMARC policy for an author's domain."""

    def __call__(self, domain: str) -> Policy: ...


_VERSION = re.compile(r"^\s*v\s*=\s*DMARC1\s*(?:;|$)", re.IGNORECASE)


def parse_record(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record (`{"v": "DMARC1", "p": "reject", …}`), None if not one."""
    if not _VERSION.match(text):
        return None
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, equals, value = item.partition("=")
        if equals:
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def walk_names(domain: str) -> list[str]:
    """The domains whose `_dmarc` records are consulted for `domain`, in order."""
    labels = [label for label in domain.strip().rstrip(".").lower().split(".") if label]
    if len(labels) < 2:
        return [".".join(labels)] if labels else []
    names = [".".join(labels)]
    if len(labels) > MAX_LABELS:
        labels = labels[-(MAX_LABELS - 1):]
        names.append(".".join(labels))
    while len(labels) > 2:
        labels = labels[1:]
        names.append(".".join(labels))
    return list(dict.fromkeys(names))


def _policy_value(value: str | None) -> Policy | None:
    try:
        return Policy((value or "").strip().lower())
    except ValueError:
        return None


def policy_of(records: tuple[str, ...], at_author_domain: bool) -> Policy | None:
    """The policy the TXT `records` at one name give; None when they hold no DMARC record."""
    found = [tags for tags in map(parse_record, records) if tags is not None]
    if not found:
        return None
    if len(found) > 1:
        return Policy.NONE
    tags = found[0]
    main = _policy_value(tags.get("p"))
    if main is None or main is Policy.UNKNOWN:
        main = Policy.NONE  # RFC 7489 §6.6.3: an invalid or missing p= is treated as none
    if at_author_domain:
        return main
    sub = _policy_value(tags.get("sp"))
    return sub if sub is not None and sub is not Policy.UNKNOWN else main


class DmarcResolver:
    """Policy lookups through a `TxtLookup`, with a TTL-bounded cache and one time budget.

    Thread-safe: the router thread and the chair's commands may share one.
    """

    def __init__(self, txt: TxtLookup, *, timeout: float = DEFAULT_TIMEOUT,
                 max_ttl: float = MAX_TTL, failure_ttl: float = FAILURE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout, self.clock = timeout, clock
        self._records = TxtCache(txt, max_ttl=max_ttl, failure_ttl=failure_ttl, clock=clock)

    def __call__(self, domain: str) -> Policy:
        """The policy for mail whose From is at `domain`; UNKNOWN if DNS cannot tell in time."""
        names = walk_names(domain)
        if not names:
            return Policy.UNKNOWN
        deadline = self.clock() + self.timeout
        for index, name in enumerate(names):
            answer = self._records(f"_dmarc.{name}", deadline - self.clock())
            if answer is None:
                return Policy.UNKNOWN
            policy = policy_of(answer.records, at_author_domain=index == 0)
            if policy is not None:
                return policy
        return Policy.NONE


def make_resolver(nameservers: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> DmarcResolver:
    """A dnspython-backed, caching `DmarcResolver`.

    `nameservers` (`host[:port],…`) replaces the system's resolvers; without it,
    `/etc/resolv.conf` is read. A host without usable resolver configuration gets a resolver
    whose every lookup fails, so the lists munge (the safe side) rather than crash.
    """
    return DmarcResolver(system_txt(nameservers, timeout), timeout=timeout)


_default: PolicyLookup | None = None
_default_lock = threading.Lock()


def default_lookup() -> PolicyLookup:
    """The process-wide lookup (made on first use by `make_resolver()`), shared for its cache."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_resolver()
        return _default


def look_up_ahead(msg: EmailMessage) -> None:
    """Look up the policy of `msg`'s author now, so that making its copies later answers from
    the cache: callers do this before opening a write transaction, since a lookup can take
    seconds (the router before handling a post, the chair before approving a held one)."""
    domain = domain_of(from_address(msg))
    if domain:
        default_lookup()(domain)


def set_default_lookup(lookup: PolicyLookup | None) -> None:
    """Replace the process-wide lookup; None makes a fresh one on next use (tests)."""
    global _default
    with _default_lock:
        _default = lookup


def domain_of(address: str) -> str:
    """The domain of an address (after the last `@`), lower-cased; "" when it has none."""
    _, at, domain = address.rpartition("@")
    return domain.strip().strip(">").lower() if at else ""


def mitigation(mode: str, domain: str, lookup: PolicyLookup) -> str | None:
    """What a list with `dmarc_mitigation = mode` does to a post from `domain`.

    "munge" or "wrap" when the copy must not go out under the author's From, None when it may.
    """
    if mode == "none" or not domain:
        return None
    if mode == "always":
        return "munge"
    if not lookup(domain).protective:
        return None
    return "wrap" if mode == "wrap" else "munge"
