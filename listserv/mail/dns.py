"""DNS TXT lookups with a time budget and a TTL-bounded cache, for mail authentication.

Two features ask DNS about an author's domain: DMARC policies (`listserv.posting.dmarc`) and
DKIM keys (`listserv.identity.dkim`). Both go through a `TxtLookup` (a callable: name and time
budget in, TXT strings and TTL out), so tests stub DNS and the daemon uses dnspython, and both
cache through `TxtCache`: answers live for their TTL (at most an hour), failures for a minute,
so a dead resolver costs one short timeout a minute, not one per message. `system_txt()` reads
`/etc/resolv.conf`, or the nameservers in `LISTSERV_DNS_NAMESERVERS` (`host[:port],…`), which
tests point at a DNS server of their own on 127.0.0.1. `DnsQueries` asks the same resolvers
for TXT, MX and address records without a cache, for `listserv doctor`'s checks.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

DEFAULT_TIMEOUT = 2.0
MAX_TTL = 3600.0
NEGATIVE_TTL = 900.0
FAILURE_TTL = 60.0
NAMESERVERS_ENV = "LISTSERV_DNS_NAMESERVERS"
#: Names a cache holds before it starts afresh (a flood of new domains cannot grow it forever).
MAX_CACHED = 10_000


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


class TxtCache:
    """A `TxtLookup` behind a cache: answers for their TTL (at most `max_ttl`), failures for
    `failure_ttl`. Thread-safe: the router thread and the chair's commands may share one."""

    def __init__(self, txt: TxtLookup, *, max_ttl: float = MAX_TTL,
                 failure_ttl: float = FAILURE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.txt, self.clock = txt, clock
        self.max_ttl, self.failure_ttl = max_ttl, failure_ttl
        self._cache: dict[str, tuple[float, TxtAnswer | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, qname: str, seconds: float) -> TxtAnswer | None:
        """The TXT records at `qname`, asked within `seconds` unless cached; None when DNS
        could not tell (in time, or now, or a minute ago)."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(qname)
        if cached is not None and cached[0] > now:
            return cached[1]
        if seconds <= 0:
            return None
        answer: TxtAnswer | None
        try:
            answer = self.txt(qname, seconds)
            ttl = max(0.0, min(float(answer.ttl), self.max_ttl))
        except DnsFailure:
            answer, ttl = None, self.failure_ttl
        with self._lock:
            self._cache[qname] = (self.clock() + ttl, answer)
            if len(self._cache) > MAX_CACHED:
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
                  timeout: float = DEFAULT_TIMEOUT) -> dns.resolver.Resolver:
    """A dnspython resolver with a time budget per query.

    `nameservers` (`host[:port],…`) replaces the system's resolvers; without it,
    `LISTSERV_DNS_NAMESERVERS` or else `/etc/resolv.conf` is read. Raises `DnsFailure` when
    the host has no usable resolver configuration.
    """
    spec = os.environ.get(NAMESERVERS_ENV, "") if nameservers is None else nameservers
    try:
        if spec.strip():
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = _nameservers(spec)
        else:
            resolver = dns.resolver.Resolver()
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        raise DnsFailure(f"no DNS resolver: {exc}") from exc
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def system_txt(nameservers: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> TxtLookup:
    """A dnspython-backed `TxtLookup` on `make_resolver(nameservers, timeout)`.

    A host without usable resolver configuration gets a lookup that always fails (callers
    then take the safe side).
    """
    try:
        resolver = make_resolver(nameservers, timeout)
    except DnsFailure as exc:
        reason = str(exc)

        def unavailable(name: str, seconds: float) -> TxtAnswer:
            raise DnsFailure(reason)

        return unavailable
    return dnspython_txt(resolver)


class DnsQueries:
    """TXT, MX and address queries, uncached, for checks a person runs and reads
    (`listserv doctor`): each answers the records at a name, an empty list when the name or
    the type does not exist, and raises `DnsFailure` when DNS cannot tell."""

    def __init__(self, nameservers: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self._resolver: dns.resolver.Resolver | None = None
        self._problem = ""
        try:
            self._resolver = make_resolver(nameservers, timeout)
        except DnsFailure as exc:
            self._problem = str(exc)

    def _answer(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[Any]:
        if self._resolver is None:
            raise DnsFailure(self._problem)
        try:
            answer = self._resolver.resolve(dns.name.from_text(name), rdtype,
                                            raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.DNSException, UnicodeError, ValueError, OSError) as exc:
            raise DnsFailure(f"{name}: {type(exc).__name__}: {exc}") from exc
        return list(answer.rrset) if answer.rrset is not None else []

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each with its strings joined."""
        return [b"".join(rdata.strings).decode("utf-8", "replace")
                for rdata in self._answer(name, dns.rdatatype.TXT)]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, host) of the MX records at `name`, most preferred first."""
        return sorted((int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True))
                      for rdata in self._answer(name, dns.rdatatype.MX))

    def addresses(self, name: str) -> list[str]:
        """The IPv4 and IPv6 addresses of `name` (A, then AAAA records)."""
        return [rdata.address for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                for rdata in self._answer(name, rdtype)]
