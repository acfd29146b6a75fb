"""Mail for the chair (`NAME-owner@`): forwarded to every owner."""

from __future__ import annotations

from ..addresses import Role
from ..audit import DAEMON, audit
from ..posting import forward_to_owners
from ..rules import own_loop
from .context import Context


def handle(ctx: Context) -> str:
    """Forward to the owners, unless it is our own forward coming back."""
    ml = ctx.mailing_list
    owner = ml.role_address(Role.OWNER)
    if own_loop(ctx.msg, "", owner):
        audit(ctx.session, ctx.now, DAEMON, "discarded",
              f"inbound #{ctx.inbound.id}: owner mail looped back", ml.id)
        return "discarded: owner mail looped back"
    forward_to_owners(ctx.session, ml, ctx.inbound.raw, ctx.now, renderer=ctx.renderer,
                      hosted=ctx.settings.hosted)
    return f"forwarded to {len(ml.owners)} owners"
