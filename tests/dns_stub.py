"""A DNS server on 127.0.0.1 for tests, so DMARC lookups never leave the machine.

Every test runs with `LISTSERV_DNS_NAMESERVERS` pointing at it (in-process daemons and CLI, and
daemons started in subprocesses alike), so the real dnspython resolver is exercised against
records the test chose. A name it holds no TXT records for answers NXDOMAIN ("no DMARC policy");
names in `silent` get no answer at all (a timeout); names in `servfail` get SERVFAIL.
`mx` (name -> (preference, host) pairs) and `hosts` (name -> IPv4 addresses) answer MX and A
queries (`listserv doctor`); a name known to any of the three answers other types with no data.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rrset
import pytest

from listserv.identity import dkim
from listserv.mail import dns as dns_lookups
from listserv.posting import dmarc as dmarc


class LoopbackDns(threading.Thread):
    """A UDP DNS server answering TXT queries from `records` (name -> TXT strings)."""

    def __init__(self) -> None:
        super().__init__(name="loopback-dns", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.records: dict[str, list[str]] = {}
        self.mx: dict[str, list[tuple[int, str]]] = {}
        self.hosts: dict[str, list[str]] = {}
        self.silent: set[str] = set()
        self.servfail: set[str] = set()
        self.queries: list[str] = []
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def clear(self) -> None:
        self.records.clear()
        self.mx.clear()
        self.hosts.clear()
        self.silent.clear()
        self.servfail.clear()
        self.queries.clear()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                reply = self._answer(data)
            except Exception:  # a malformed query gets no answer, like a real server
                continue
            if reply is not None:
                self.sock.sendto(reply, peer)

    def _answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.records and question.rdtype == dns.rdatatype.TXT:
            # A TXT string holds at most 255 bytes: a longer record (a DKIM key) is split.
            rdatas = [dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                              [data[i:i + 255] for i in range(0, len(data), 255)]
                                              or [b""])
                      for data in (text.encode("utf-8") for text in self.records[name])]
            response.answer.append(dns.rrset.from_rdata_list(question.name, 300, rdatas))
        elif name in self.mx and question.rdtype == dns.rdatatype.MX:
            rdatas = [dns.rdtypes.ANY.MX.MX(dns.rdataclass.IN, dns.rdatatype.MX, preference,
                                            dns.name.from_text(host))
                      for preference, host in self.mx[name]]
            response.answer.append(dns.rrset.from_rdata_list(question.name, 300, rdatas))
        elif name in self.hosts and question.rdtype == dns.rdatatype.A:
            rdatas = [dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, address)
                      for address in self.hosts[name]]
            response.answer.append(dns.rrset.from_rdata_list(question.name, 300, rdatas))
        elif name not in self.records and name not in self.mx and name not in self.hosts:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def stop(self) -> None:
        self._stopping.set()
        self.join(2)
        self.sock.close()


@pytest.fixture(scope="session", autouse=True)
def loopback_dns_server() -> Iterator[LoopbackDns]:
    """One DNS server for the session; the environment points every resolver at it."""
    server = LoopbackDns()
    server.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(dns_lookups.NAMESERVERS_ENV, server.address)
        yield server
    server.stop()


@pytest.fixture(autouse=True)
def dns_zone(loopback_dns_server: LoopbackDns) -> Iterator[LoopbackDns]:
    """The loopback DNS server, empty at the start of each test, with a fresh lookup cache."""
    loopback_dns_server.clear()
    dmarc.set_default_lookup(None)
    dkim.set_default_keys(None)
    yield loopback_dns_server
    loopback_dns_server.clear()
    dmarc.set_default_lookup(None)
    dkim.set_default_keys(None)
