"""The addresses of a list (SPEC §1): which list and role an address names, and back."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What arrives at an address; the order is SPEC §1's table (first match wins)."""

    POST = "post"
    REQUEST = "request"
    JOIN = "join"
    LEAVE = "leave"
    OWNER = "owner"
    BOUNCES = "bounces"
    CONFIRM = "confirm"
    COLUMN = "column"
    PEER_INPUT = "peer-input"


# Roles whose address may carry "+TOKEN", and those that need one.
TOKEN_ROLES = frozenset({Role.LEAVE, Role.BOUNCES, Role.CONFIRM})
TOKEN_REQUIRED = frozenset({Role.CONFIRM})


@dataclass(frozen=True, slots=True)
class Destination:
    """Where an address leads: the list (`name@domain`), the role and any token."""

    list_address: str
    role: Role
    token: str = ""


def normalize_domain(domain: str) -> str:
    """Lower-case, IDNA-encoded form of a domain, for comparison."""
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def normalize(address: str) -> str:
    """An address in the form addresses compare in: case-folded, IDNA domain."""
    address = address.strip().strip("<>")
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    return f"{local.lower()}@{normalize_domain(domain)}"


def untagged(address: str) -> str:
    """`address` normalized and without its `+tag` ("victim+1@x" → "victim@x"): the one
    mailbox the cap on automatic mail counts for (SPEC §2)."""
    local, at, domain = normalize(address).rpartition("@")
    if not at or not local:
        return normalize(address)
    return f"{local.partition('+')[0] or local}@{domain}"


def resolve(address: str, is_list: Callable[[str], bool]) -> Destination | None:
    """The list and role `address` names, or None; `is_list` knows the lists' addresses."""
    address = normalize(address)
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    base, plus, token = local.partition("+")
    if not plus and is_list(address):
        return Destination(address, Role.POST)
    for role in Role:
        if role is Role.POST:
            continue
        suffix = f"-{role.value}"
        if not base.endswith(suffix) or len(base) == len(suffix):
            continue
        if plus and (role not in TOKEN_ROLES or not token):
            continue
        if role in TOKEN_REQUIRED and not token:
            continue
        list_address = f"{base[: -len(suffix)]}@{domain}"
        if is_list(list_address):
            return Destination(list_address, role, token)
    return None


def role_address(list_address: str, role: Role, token: str = "", public: str = "") -> str:
    """The address of `role` for a list: its public address if set, else the default."""
    name, _, domain = list_address.partition("@")
    if public:
        local, _, domain = public.rpartition("@")
    else:
        local = name if role is Role.POST else f"{name}-{role.value}"
    return f"{local}+{token}@{domain}" if token else f"{local}@{domain}"


_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$|^[^\s@<>()\[\],;:\"]+$")


def valid_address(address: str) -> str | None:
    """The normalized address if it looks deliverable (local@domain.tld), else None."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or len(address) > 320 or not _LOCAL.match(local):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    labels = normalize_domain(domain).split(".")
    if len(labels) < 2 or not all(re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", x)
                                  for x in labels):
        return None
    return normalize(address)
