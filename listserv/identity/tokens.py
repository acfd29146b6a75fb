"""Proof by token (SPEC §2): mail to an address whose token we gave one person only.

A member's `-leave+TOKEN` was given only to that member (in the welcome, the footer and the
List-Unsubscribe header of her copies); a `-confirm+TOKEN` of an open request only to the
address the confirmation went to. Whoever writes to such an address has read that person's
mail, so the message proves the token's owner, whatever its From says.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.mail.addresses import Destination, Role
from listserv.store.lookup import open_request_for_token
from listserv.store.models.core import Inbound, Member


def owner(session: Session, inbound: Inbound, destination: Destination,
          now: datetime) -> str:
    """The address whose token `destination` carries on `inbound`'s list; "" when it carries
    none, or one that is unknown, used or expired."""
    token = destination.token
    if not token or inbound.list_id is None:
        return ""
    if destination.role is Role.LEAVE:
        email = session.scalar(select(Member.email).where(
            Member.list_id == inbound.list_id, Member.leave_token == token))
        return email or ""
    if destination.role is Role.CONFIRM:
        request = open_request_for_token(session, token, now)
        if request is not None and request.list_id == inbound.list_id:
            return request.email
    return ""
