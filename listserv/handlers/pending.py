"""Roles whose own handler is not built yet: nothing accepted is lost meanwhile.

Column mail goes to the owners as it came, so the chair can act by hand;
bounce reports are kept in the store and logged.
"""

from __future__ import annotations

from ..addresses import Role
from ..audit import DAEMON, audit
from .context import Context
from .owner import handle as forward


def handle(ctx: Context) -> str:
    """Keep the message reachable by the chair until its handler exists."""
    role = ctx.destination.role
    if role is Role.BOUNCES:
        audit(ctx.session, ctx.now, DAEMON, "bounce-kept",
              f"inbound #{ctx.inbound.id} from {ctx.inbound.mail_from or '<>'}",
              ctx.mailing_list.id)
        return "kept: bounce report stored"
    return forward(ctx)
