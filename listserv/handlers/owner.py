"""Mail for the chair (`NAME-owner@`): forwarded to every owner."""

from __future__ import annotations

from listserv.posting.distribute import forward_to_owners

from .context import Context


def handle(ctx: Context) -> str:
    """Forward to the owners (our own forward coming back was discarded by the guards)."""
    ml = ctx.mailing_list
    forward_to_owners(ctx.session, ml, ctx.inbound.raw, ctx.now, renderer=ctx.renderer,
                      hosted=ctx.settings.hosted)
    return f"forwarded to {len(ml.owners)} owners"
