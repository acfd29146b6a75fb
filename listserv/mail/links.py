"""The web endpoint's links (SPEC §3): one place builds them, for mail and for the server.

`base` is the endpoint's public URL without a trailing slash; "" means the endpoint is off,
and then every link is "" too, so a template or a header can test the link alone.
"""

from __future__ import annotations

#: The path before a member's leave token: `POST` unsubscribes at once (RFC 8058).
UNSUBSCRIBE_PATH = "/u/"
#: The path before a confirmation token: `GET` shows it, `POST` completes it.
CONFIRM_PATH = "/c/"


def unsubscribe_link(base: str, leave_token: str) -> str:
    """The one-click unsubscribe URL of a member's leave token ("" when `base` is "")."""
    return f"{base}{UNSUBSCRIBE_PATH}{leave_token}" if base and leave_token else ""


def confirm_link(base: str, token: str) -> str:
    """The page that completes a confirmation ("" when `base` is "")."""
    return f"{base}{CONFIRM_PATH}{token}" if base and token else ""
