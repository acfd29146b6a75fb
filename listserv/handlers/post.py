"""Posts to the list address: distributed to the members, or held for the chair (SPEC §2, §3).

The router's guards (listserv/router/guards.py) have already discarded loops, held malformed
and automatic mail and oversized posts, and handed requests sent to the list to the request handler.
"""

from __future__ import annotations

from sqlalchemy import select

from listserv.delivery.notices import notify
from listserv.mail.headers import from_address
from listserv.posting.distribute import arc_authserv, distribute, hold
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import Member

from ..mail.automatic import may_auto_reply
from .context import Context


def sender_member(ctx: Context) -> tuple[str, Member | None]:
    """The sender's address and membership: the From: address, then the envelope sender."""
    candidates = [a for a in (from_address(ctx.msg), ctx.inbound.mail_from.lower()) if a]
    for address in candidates:
        member = ctx.session.scalar(
            select(Member).where(
                Member.list_id == ctx.mailing_list.id,
                Member.email == address,
                Member.status.in_(("active", "disabled")),
            )
        )
        if member is not None:
            return address, member
    return (candidates[0] if candidates else ""), None


def handle(ctx: Context) -> str:
    """Distribute a member's post; hold, reject or discard a non-member's, with reasons."""
    ml = ctx.mailing_list
    sender, member = sender_member(ctx)
    if member is None:
        return _nonmember(ctx, sender)
    count = distribute(ctx.session, ctx.renderer, ml, ctx.inbound.raw, ctx.now,
                       hosted=ctx.settings.hosted,
                       trusted_authserv_id=arc_authserv(ctx.settings, ml))
    return f"distributed to {count} members"


def hold_post(ctx: Context, reason: str) -> str:
    """Hold the post for the chair with `reason` (a guard's), and tell the owners."""
    sender, _ = sender_member(ctx)
    held = hold(ctx.session, ctx.renderer, ctx.mailing_list, ctx.inbound, sender, reason,
                ctx.now)
    return f"held #{held.id}: {reason}"


def _nonmember(ctx: Context, sender: str) -> str:
    ml = ctx.mailing_list
    reason = f"the sender {sender or '(none)'} is not a member"
    action = ml.nonmember_action
    if action == "hold":
        return hold_post(ctx, reason)
    audit(ctx.session, ctx.now, DAEMON, f"{action}ed" if action == "reject" else "discarded",
          f"inbound #{ctx.inbound.id}: {reason}", ml.id)
    if action == "reject" and may_auto_reply(ctx.msg, ctx.inbound.mail_from, sender):
        notify(ctx.session, ctx.renderer, ml, "deny-post-nonmember.txt", [sender], ctx.now,
               kind="reject")
    return f"{action}ed: {reason}" if action == "reject" else f"discarded: {reason}"
