"""A message's identity: the address it claims and whether that claim is proven.

A message proves its sender when it arrives at a token address issued only to that person, when
it replies to a mail we sent only to that address, when a DKIM signature aligned with the From
domain verifies under the conditions of SPEC §2, or when the topmost Authentication-Results header
of our trusted `authserv-id` records `dmarc=pass`. Everything else is unproven: it may post and
ask to join, but what removes, mutes or changes someone waits for a confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.identity import dkim, fresh, results, tokens
from listserv.identity.replies import replied_to
from listserv.mail.addresses import Destination, normalize
from listserv.mail.headers import from_address
from listserv.store.models.core import Inbound


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sent a message: the claimed `address` (normalized), whether it is `proven`, and why
    (the reason goes into the router's log line)."""

    address: str
    proven: bool
    reason: str

    def proves(self, address: str) -> bool:
        """Whether this message proves it comes from `address` (normalized)."""
        return self.proven and self.address == address


UNKNOWN = Identity("", False, "no sender address")


def identify(session: Session, settings: Settings, inbound: Inbound, msg: EmailMessage,
             destination: Destination, now: datetime) -> Identity:
    """The identity of a stored message, computed once by the router (SPEC §2).

    The proofs are tried cheapest first: a token (one query), a reply to our mail to one
    address (one query), the trusted MTA's header (no DNS), a DKIM signature (a key from DNS,
    fetched before the transaction opened).
    """
    owner = tokens.owner(session, inbound, destination, now)
    if owner:
        return Identity(owner, True, f"token of the {destination.role.value} address")
    address = from_address(msg) or normalize(inbound.mail_from)
    if not address:
        return UNKNOWN
    reply = replied_to(session, msg, address, now)
    if reply:
        return Identity(address, True, f"a reply to {reply}, which we sent only to {address}")
    why: list[str] = []
    if from_address(msg):  # a signature or an MTA's DMARC verdict vouches for From only
        arrival = fresh.arrival(session, inbound, destination)
        proven, reason = results.prove(session, msg, address, arrival,
                                       settings.intake.trusted_authserv_id, now)
        if proven:
            return Identity(address, True, reason)
        why.append(reason)
        proven, reason = dkim.prove(session, inbound.raw, msg, address, arrival, now)
        if proven:
            return Identity(address, True, reason)
        why.append(reason)
    return Identity(address, False, "; ".join(
        ["unproven: no token, reply, signature or trusted result", *why]))
