"""One way to complete a confirmed request, whoever confirms it: a reply to the confirmation,
mail to `-confirm+TOKEN`, `confirm TOKEN` on `-request`, or the button on `/c/TOKEN`.

Here, above the features, because a request may belong to membership (join, leave, set, the
undo of a goodbye) or to meetings (peer input), and a feature imports no other feature.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from listserv.mail.render import Renderer
from listserv.meetings import peer_input
from listserv.membership import subscriptions as membership
from listserv.store.models.core import Request


def complete(session: Session, renderer: Renderer, request: Request, now: datetime,
             confirmer_name: str = "") -> str:
    """Do what a confirmed `request` asked; returns what happened, for the log and replies.

    `confirmer_name` is the display name of a confirming mail's sender ("" from the web): a
    subscription that came without a name takes it.
    """
    if request.kind == peer_input.CONFIRM_KIND:
        return peer_input.confirmed(session, renderer, request, now)
    return membership.confirm(session, renderer, request, now, confirmer_name)
