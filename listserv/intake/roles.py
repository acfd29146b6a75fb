"""Which list and role a message from a hosted mailbox is for, read from its headers (SPEC §1).

IMAP intake has no envelope: the provider delivered every address of the group into one
mailbox. The role comes from the topmost `Delivered-To`, then `X-Original-To`, then `To`/`Cc`,
matched against each list's public addresses, with `+`-prefix matching for the token roles
(`group+confirm+TOKEN@provider`). Providers that drop the `+` part leave only the Subject to
carry a confirmation token; a known token there is the fallback. Pure functions: the caller
brings the lists and the token check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

from listserv.mail.addresses import (
    TOKEN_REQUIRED,
    TOKEN_ROLES,
    Destination,
    Role,
    normalize,
    resolve,
)
from listserv.mail.headers import header_text, header_values

# The token a confirmation's Subject carries: "(confirm TOKEN)" (tokens.new_token's alphabet).
_SUBJECT_TOKEN = re.compile(r"\bconfirm\s+([a-z2-7]{24})\b", re.IGNORECASE)
MAX_TOKEN = 64  # ours are 24 characters; longer ones are no token of ours
# Roles a stripped plus-address falls back to, so a token in the Subject may say otherwise.
_STRIPPED = frozenset({Role.POST, Role.REQUEST})


@dataclass(frozen=True, slots=True)
class ListAddresses:
    """A list's public address for each role (normalized)."""

    list_address: str
    public: dict[Role, str]

    def match(self, address: str) -> Destination | None:
        """The role `address` names on this list: exactly, or as `public+TOKEN` for tokens."""
        for role, public in self.public.items():
            if address == public and role not in TOKEN_REQUIRED:
                return Destination(self.list_address, role)
            if role in TOKEN_ROLES:
                local, _, domain = public.rpartition("@")
                a_local, _, a_domain = address.rpartition("@")
                token = a_local[len(local) + 1:]
                if (a_domain == domain and a_local.startswith(local + "+")
                        and 0 < len(token) <= MAX_TOKEN):
                    return Destination(self.list_address, role, token)
        return None

    def shares_base(self, account: str) -> bool:
        """Whether some public address is `account` or one of its plus-addresses."""
        base_local, _, base_domain = normalize(account).rpartition("@")
        for public in self.public.values():
            local, _, domain = public.rpartition("@")
            if domain == base_domain and local.partition("+")[0] == base_local:
                return True
        return False


def addresses_of(list_address: str, role_address: Callable[[Role], str]) -> ListAddresses:
    """A list's public addresses from its `role_address` (the `address.ROLE` map)."""
    return ListAddresses(list_address, {role: normalize(role_address(role)) for role in Role})


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a message goes: the address it was read for, and the list and role."""

    rcpt: str
    destination: Destination
    how: str  # which header (or fallback) decided, for the log


def route(msg: EmailMessage, lists: Sequence[ListAddresses], default: ListAddresses,
          token_known: Callable[[str], bool]) -> Routed:
    """The one list and role `msg` is for; mail that names none goes to `default`'s chair.

    `lists` are all the lists (their default addresses count too); `token_known` says whether
    a token found in the Subject is a confirmation waiting.
    """
    known = {ml.list_address for ml in lists}
    found: Routed | None = None
    for how, addresses in _candidates(msg):
        matches = [(d, a) for a in addresses if (d := _destination(a, lists, known))]
        if matches:
            destination, address = min(matches, key=lambda m: list(Role).index(m[0].role))
            found = Routed(address, destination, how)
            break
    if found is None or found.destination.role in _STRIPPED:
        token = _subject_token(msg, token_known)
        if token:
            target = found.destination.list_address if found else default.list_address
            rcpt = found.rcpt if found else default.public[Role.POST]
            return Routed(rcpt, Destination(target, Role.CONFIRM, token), "Subject token")
    if found is not None:
        return found
    return Routed(default.public[Role.OWNER], Destination(default.list_address, Role.OWNER),
                  "no list address in the headers")


def _candidates(msg: EmailMessage) -> Iterable[tuple[str, list[str]]]:
    """Addresses to try, header by header, in SPEC §1's order."""
    for name in ("Delivered-To", "X-Original-To"):
        values = header_values(msg, name)
        if values:
            yield name, _addresses(values[:1])  # the topmost: the last hop's own recipient
    yield "To/Cc", _addresses(header_values(msg, "To") + header_values(msg, "Cc"))


def _addresses(values: list[str]) -> list[str]:
    return [normalize(a) for _, a in getaddresses(values) if "@" in a]


def _destination(address: str, lists: Sequence[ListAddresses],
                 known: set[str]) -> Destination | None:
    for ml in lists:
        found = ml.match(address)
        if found is not None:
            return found
    # A list's default addresses still work (an alias or an MTA in front of the mailbox).
    return resolve(address, known.__contains__)


def _subject_token(msg: EmailMessage, token_known: Callable[[str], bool]) -> str:
    for token in _SUBJECT_TOKEN.findall(header_text(msg, "Subject")):
        if token_known(token.lower()):
            return token.lower()
    return ""
