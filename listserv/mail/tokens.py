"""Unguessable tokens for addresses: lower-case (addresses compare case-insensitively)."""

from __future__ import annotations

import base64
import secrets

#: Confirmation and chair-decision tokens expire after this many days (SPEC §2).
TOKEN_DAYS = 14


def new_token() -> str:
    """120 random bits as 24 lower-case base32 characters, safe in an address's local part."""
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()


def message_id(domain: str) -> str:
    """A new Message-ID, `<TOKEN@domain>`: unguessable, so no one can forge a reply to it."""
    return f"<{new_token()}@{domain or 'localhost'}>"
