"""`listserv mta postfix`: the Postfix settings that hand every list address to the daemon and
make Postfix itself refuse every other address at the lists' domains (SPEC §1, issue 18).

The lists' domains become relay domains (`relay_domains`): `transport_maps` sends each list
address to the daemon's LMTP port (its SMTP port when LMTP is off), and `relay_recipient_maps`
lists the same addresses, so an unknown recipient gets `550 5.1.1` at RCPT TO from Postfix,
before any mail is taken (no bounce to a forged sender). `recipient_delimiter = +` makes
Postfix look `shma-bounces+TOKEN@` (and `-leave+TOKEN`, `-confirm+TOKEN`) up as its base
address, and the daemon still receives the full address with its token.

The output is blocks headed `# ==> FILE <==` (as `head` shows several files): `main.cf`
lines first, then each map file. Maps default to `texthash:` tables, read when Postfix starts
or reloads, so they need no `postmap`; `--map-type hash` (or `lmtp`, `btree`) prints the
`postmap` step. docs/doctor.md shows the whole procedure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.errors import ListservError
from listserv.mail.addresses import Role, role_address
from listserv.operations.status import bound_ports
from listserv.store.models.core import MailingList

#: Map types that `postmap` must compile (texthash, inline and the rest are read as text).
COMPILED_MAP_TYPES = ("hash", "btree", "lmdb", "cdb", "dbm", "sdbm")
TRANSPORT_MAP = "listserv-transport"
RECIPIENT_MAP = "listserv-recipients"
#: Where a wildcard listening address is reached from the MTA on this machine.
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class PostfixConfig:
    """What to add to Postfix: `main.cf` parameters in order, and each map file's lines, for
    the `lists` whose mail goes to `nexthop`."""

    lists: list[str]
    nexthop: str
    main_cf: list[tuple[str, str]]
    maps: dict[Path, list[str]]
    postmap: bool

    def text(self) -> str:
        """The blocks `listserv mta postfix` prints."""
        out = [f"# listserv mta postfix: every address of {', '.join(self.lists)} goes to "
               f"the daemon ({self.nexthop});",
               "# Postfix refuses every other address at these domains at RCPT TO.",
               "# ==> main.cf <==",
               "# add these lines (a parameter you already set, such as relay_domains or",
               "# transport_maps: put both values in one line, ours first)",
               *(f"{name} = {value}" for name, value in self.main_cf)]
        for path, lines in self.maps.items():
            out += [f"# ==> {path} <==", *lines]
        files = " ".join(str(path) for path in self.maps)
        out += ["# ==> then <==",
                (f"# postmap {files} && postfix reload" if self.postmap
                 else "# postfix reload"),
                "# (again with new maps whenever a list is created or deleted)"]
        return "\n".join(out) + "\n"


def list_addresses(session: Session, ml: MailingList | None) -> dict[str, list[str]]:
    """Each list's addresses (all of SPEC §1's roles), for `ml` or every list.

    The default addresses, not the `address.ROLE` public ones: these are what the daemon's
    LMTP intake accepts (a public address elsewhere, a hosted mailbox's, is not Postfix's).
    """
    lists = [ml] if ml is not None else list(
        session.scalars(select(MailingList).order_by(MailingList.id)))
    return {m.address: [role_address(m.address, role) for role in Role] for m in lists}


def daemon_nexthop(settings: Settings) -> str:
    """The Postfix next hop of the daemon: `lmtp:inet:HOST:PORT`, or `smtp:[HOST]:PORT` when
    only SMTP intake is on. A port of 0 is read from the running daemon's `run/ports.json`."""
    bound = bound_ports(settings.run_dir / "ports.json")
    for name, server in (("lmtp", settings.intake.lmtp), ("smtp", settings.intake.smtp)):
        if not server.enabled:
            continue
        port = server.port or bound.get(name, 0)
        if not port:
            raise ListservError(f"[intake.{name}] port = 0 and no running daemon has written "
                                f"{settings.run_dir / 'ports.json'}: give the port a number")
        host = _WILDCARD.get(server.host, server.host)
        if name == "lmtp":
            return f"lmtp:inet:{f'[{host}]' if ':' in host else host}:{port}"
        return f"smtp:[{host}]:{port}"  # brackets: no MX lookup for the daemon's host
    raise ListservError("[intake.lmtp] and [intake.smtp] are both off: Postfix has no way to "
                        "hand mail to the daemon")


def postfix_config(settings: Settings, addresses: dict[str, list[str]], maps_dir: Path,
                   map_type: str) -> PostfixConfig:
    """The `main.cf` lines and maps routing `addresses` (list -> its addresses) to the daemon."""
    if settings.hosted:
        raise ListservError("[intake.imap] is on: the lists live on a hosted mailbox, and no "
                            "MTA of yours receives their mail")
    if not addresses:
        raise ListservError("there is no list yet: create one first (listserv lists create)")
    nexthop = daemon_nexthop(settings)
    every = [address for of_list in addresses.values() for address in of_list]
    domains = list(dict.fromkeys(address.rpartition("@")[2] for address in every))
    width = max(len(address) for address in every) + 1
    transport = maps_dir / TRANSPORT_MAP
    recipients = maps_dir / RECIPIENT_MAP
    return PostfixConfig(
        lists=list(addresses),
        nexthop=nexthop,
        main_cf=[
            ("recipient_delimiter", "+"),
            ("relay_domains", " ".join(domains)),
            ("transport_maps", f"{map_type}:{transport}"),
            ("relay_recipient_maps", f"{map_type}:{recipients}"),
        ],
        maps={
            transport: [f"{address:{width}}{nexthop}" for address in every],
            recipients: [f"{address:{width}}OK" for address in every],
        },
        postmap=map_type in COMPILED_MAP_TYPES,
    )
