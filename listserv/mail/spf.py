"""SPF evaluation (RFC 7208 `check_host()`), for `listserv doctor`: does a domain's SPF record
let a given IP address send its mail?

Enough of RFC 7208 for the records operators publish: `all`, `ip4`, `ip6`, `a`, `mx` (with
CIDR lengths), `include`, `exists`, the `redirect` modifier, qualifiers, and the limit of ten
DNS-querying terms. Macros (`%{i}` …) are not expanded: a record using them is reported as
`permerror` with that reason, and `ptr` (deprecated by RFC 7208 §5.5) never matches. DNS goes
through `listserv.mail.dns.DnsQueries`, the doctor's one resolver.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from listserv.mail.dns import DnsFailure, DnsQueries

#: Terms that cost a DNS query, at most this many per evaluation (RFC 7208 §4.6.4).
MAX_LOOKUPS = 10
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_VERSION = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)
_CIDR = re.compile(r"^(?P<domain>[^/]*)(?:/(?P<v4>\d+))?(?://(?P<v6>\d+))?$")


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The result (`pass`, `fail`, `softfail`, `neutral`, `none`, `permerror`, `temperror`)
    and why: the term that matched, or what went wrong."""

    result: str
    reason: str


class SpfError(Exception):
    """An SPF record that cannot be evaluated: `result` is `permerror` or `temperror`."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def spf_record(records: list[str]) -> str | None:
    """The one SPF record among a name's TXT records; None when there is none. Raises
    `SpfError` (permerror) for several, which RFC 7208 §4.5 makes an error."""
    found = [r for r in records if _VERSION.match(r.strip())]
    if len(found) > 1:
        raise SpfError("permerror", f"{len(found)} SPF records (there must be one)")
    return found[0].strip() if found else None


def check_host(ip: str, domain: str, queries: DnsQueries) -> SpfResult:
    """Whether `domain`'s SPF record lets `ip` send mail for it."""
    state = {"lookups": 0}
    try:
        return _check(ipaddress.ip_address(ip), domain.rstrip(".").lower(), queries, state)
    except SpfError as exc:
        return SpfResult(exc.result, exc.reason)


def _count(state: dict[str, int]) -> None:
    state["lookups"] += 1
    if state["lookups"] > MAX_LOOKUPS:
        raise SpfError("permerror", f"more than {MAX_LOOKUPS} DNS-querying terms")


def _query(call: str, name: str, queries: DnsQueries) -> list:
    try:
        return getattr(queries, call)(name)
    except DnsFailure as exc:
        raise SpfError("temperror", str(exc)) from exc


def _check(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str,
           queries: DnsQueries, state: dict[str, int]) -> SpfResult:
    record = spf_record(_query("txt", domain, queries))
    if record is None:
        return SpfResult("none", f"{domain} publishes no SPF record")
    redirect = ""
    for term in record.split()[1:]:
        if "%" in term:
            raise SpfError("permerror", f"{domain}: {term!r} uses macros, which this check "
                                      "does not expand")
        name, equals, value = term.partition("=")
        if equals and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
            if name.lower() == "redirect":
                redirect = value
            continue  # exp= and unknown modifiers change no result
        qualifier = _QUALIFIERS.get(term[0])
        mechanism = term[1:] if qualifier else term
        if _matches(ip, domain, mechanism, queries, state):
            return SpfResult(qualifier or "pass", f"{domain}: {term}")
    if redirect:
        _count(state)
        result = _check(ip, redirect.lower(), queries, state)
        if result.result == "none":
            raise SpfError("permerror", f"{domain}: redirect to {redirect}, which has no SPF")
        return result
    return SpfResult("neutral", f"{domain}: no term matches {ip}")


def _matches(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str, mechanism: str,
             queries: DnsQueries, state: dict[str, int]) -> bool:
    kind, _, argument = mechanism.partition(":")
    kind = kind.lower()
    if "/" in kind:  # `a/24`, `mx/24//64`: the lengths follow the name, with no colon
        kind, slash, rest = kind.partition("/")
        argument = f"{argument}{slash}{rest}"
    if kind == "all":
        return True
    if kind in ("ip4", "ip6"):
        try:
            return ip in ipaddress.ip_network(argument, strict=False)
        except ValueError as exc:
            raise SpfError("permerror", f"{domain}: {mechanism!r} is not a network") from exc
    if kind == "include":
        _count(state)
        result = _check(ip, argument.lower(), queries, state)
        if result.result in ("permerror", "temperror"):
            raise SpfError(result.result, result.reason)
        if result.result == "none":
            raise SpfError("permerror", f"{domain}: include:{argument} has no SPF record")
        return result.result == "pass"
    if kind in ("a", "mx"):
        _count(state)
        parts = _CIDR.match(argument)
        if parts is None:
            raise SpfError("permerror", f"{domain}: {mechanism!r} is malformed")
        target = (parts["domain"] or domain).lower()
        hosts = [target] if kind == "a" else [h for _, h in _query("mx", target, queries)]
        length = parts["v4"] if ip.version == 4 else parts["v6"]
        for host in hosts:
            for address in _query("addresses", host, queries):
                network = ipaddress.ip_network(
                    f"{address}/{length}" if length else address, strict=False)
                if ip.version == network.version and ip in network:
                    return True
        return False
    if kind == "exists":
        _count(state)
        return bool(_query("addresses", argument, queries))
    if kind == "ptr":
        _count(state)
        return False  # deprecated (RFC 7208 §5.5): never relied upon here
    raise SpfError("permerror", f"{domain}: unknown mechanism {mechanism!r}")
