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

**Resolver.** Lookups go through a `TxtLookup` (a callable: name and time budget in, TXT strings
and TTL out), so tests stub DNS and the daemon uses dnspython. `DmarcResolver` adds the cache:
answers live for their TTL (at most an hour), failures for a minute, so a dead resolver costs one
short timeout a minute, not one per post. The process-wide default (`default_lookup()`) reads
`/etc/resolv.conf`, or the nameservers in `LISTSERV_DNS_NAMESERVERS` (`host[:port],…`), which
tests point at a DNS server of their own on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from typing import Protocol

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from listserv.mail.headers import from_address

DEFAULT_TIMEOUT = 2.0
MAX_TTL = 3600.0
NEGATIVE_TTL = 900.0
FAILURE_TTL = 60.0
MAX_LABELS = 8
NAMESERVERS_ENV = "LISTSERV_DNS_NAMESERVERS"


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


class DnsFailure(Exception):
    """A DNS query got no usable answer: timeout, SERVFAIL, refused, no resolver."""


@dataclass(frozen=True, slots=True)
class TxtAnswer:
    """The TXT records at a name (empty when it has none), and how long to believe them."""

    records: tuple[str, ...]
    ttl: float


TxtLookup = Callable[[str, float], TxtAnswer]
"""`(name, seconds) -> TxtAnswer`: TXT records at `name` within the time budget.

Returns an empty answer for NXDOMAIN or no TXT data; raises `DnsFailure` when it cannot tell.
"""


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
        self.txt, self.timeout, self.clock = txt, timeout, clock
        self.max_ttl, self.failure_ttl = max_ttl, failure_ttl
        self._cache: dict[str, tuple[float, TxtAnswer | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, domain: str) -> Policy:
        """The policy for mail whose From is at `domain`; UNKNOWN if DNS cannot tell in time."""
        names = walk_names(domain)
        if not names:
            return Policy.UNKNOWN
        deadline = self.clock() + self.timeout
        for index, name in enumerate(names):
            answer = self._records(f"_dmarc.{name}", deadline)
            if answer is None:
                return Policy.UNKNOWN
            policy = policy_of(answer.records, at_author_domain=index == 0)
            if policy is not None:
                return policy
        return Policy.NONE

    def _records(self, qname: str, deadline: float) -> TxtAnswer | None:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(qname)
        if cached is not None and cached[0] > now:
            return cached[1]
        remaining = deadline - now
        answer: TxtAnswer | None
        if remaining <= 0:
            return None
        try:
            answer = self.txt(qname, remaining)
            ttl = max(0.0, min(float(answer.ttl), self.max_ttl))
        except DnsFailure:
            answer, ttl = None, self.failure_ttl
        with self._lock:
            self._cache[qname] = (self.clock() + ttl, answer)
            if len(self._cache) > 10_000:
                self._cache.clear()
        return answer


def dnspython_txt(resolver: dns.resolver.Resolver) -> TxtLookup:
    """A `TxtLookup` asking `resolver` (dnspython), each query bounded by the caller's budget."""

    def lookup(name: str, seconds: float) -> TxtAnswer:
        try:
            qname = dns.name.from_text(name)
            answer = resolver.resolve(qname, dns.rdatatype.TXT, lifetime=seconds,
                                      raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return TxtAnswer((), NEGATIVE_TTL)
        except (dns.exception.DNSException, UnicodeError, ValueError, OSError) as exc:
            raise DnsFailure(f"{name}: {type(exc).__name__}: {exc}") from exc
        if answer.rrset is None:
            return TxtAnswer((), NEGATIVE_TTL)
        records = tuple(b"".join(rdata.strings).decode("utf-8", "replace")
                        for rdata in answer.rrset)
        return TxtAnswer(records, float(answer.rrset.ttl))

    return lookup


def _nameservers(spec: str) -> list[str | dns.nameserver.Nameserver]:
    servers: list[str | dns.nameserver.Nameserver] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        host, port = item, 53
        bracketed = re.fullmatch(r"\[(.+)\](?::(\d+))?", item)
        if bracketed:
            host, port = bracketed.group(1), int(bracketed.group(2) or 53)
        elif item.count(":") == 1:
            host, _, number = item.partition(":")
            port = int(number)
        servers.append(dns.nameserver.Do53Nameserver(host, port))
    return servers


def make_resolver(nameservers: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> DmarcResolver:
    """A dnspython-backed, caching `DmarcResolver`.

    `nameservers` (`host[:port],…`) replaces the system's resolvers; without it,
    `/etc/resolv.conf` is read. A host without usable resolver configuration gets a resolver
    whose every lookup fails, so the lists munge (the safe side) rather than crash.
    """
    spec = os.environ.get(NAMESERVERS_ENV, "") if nameservers is None else nameservers
    try:
        if spec.strip():
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = _nameservers(spec)
        else:
            resolver = dns.resolver.Resolver()
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        reason = f"no DNS resolver: {exc}"

        def unavailable(name: str, seconds: float) -> TxtAnswer:
            raise DnsFailure(reason)

        return DmarcResolver(unavailable, timeout=timeout)
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return DmarcResolver(dnspython_txt(resolver), timeout=timeout)


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
