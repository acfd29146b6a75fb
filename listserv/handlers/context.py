"""What a handler gets: one unit of work's session and everything about the message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy.orm import Session

from listserv.identity.proof import Identity
from listserv.mail.addresses import Destination
from listserv.mail.render import Renderer
from listserv.posting.distribute import MembersCopy
from listserv.store.models.core import Inbound, MailingList

from ..config import Settings


@dataclass(frozen=True, slots=True)
class Context:
    """A message being handled, inside the transaction that records its outcome."""

    session: Session
    settings: Settings
    renderer: Renderer
    now: datetime
    mailing_list: MailingList
    destination: Destination
    inbound: Inbound
    msg: EmailMessage
    #: Who sent it (SPEC §2), computed once by the router.
    identity: Identity
    #: A post's copy for the members, made by the router before the transaction (used by
    #: `distribute` when the list's settings are still those it was made from).
    copy: MembersCopy | None = None
