"""Posts to the list address: loop and automatic-mail guards, size, membership (SPEC §2, §3)."""

from __future__ import annotations

from sqlalchemy import select

from ..audit import DAEMON, audit
from ..intent import Guard, guard
from ..models import Member
from ..notices import notify
from ..posting import distribute, hold, list_id
from ..rules import (
    automatic_mail,
    from_address,
    headers_only,
    may_auto_reply,
    own_loop,
    too_big,
)
from .context import Context
from .request import act


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
    """Distribute a member's post; hold, reject or discard the rest, with reasons.

    A short post that is really a request ("please add me") is handled as one
    (the administrivia guard); when that is unclear, the post is held for the chair.
    """
    ml = ctx.mailing_list
    loop = own_loop(ctx.msg, list_id(ml), ml.address)
    if loop:
        audit(ctx.session, ctx.now, DAEMON, "discarded", f"inbound #{ctx.inbound.id}: {loop}",
              ml.id)
        return f"discarded: {loop}"
    sender, member = sender_member(ctx)
    reason = automatic_mail(ctx.msg, ctx.inbound.mail_from)
    if not reason:
        verdict, understood = guard(ctx.msg, ml.name)
        if verdict is Guard.REQUEST:
            return act(ctx, understood)
        if verdict is Guard.UNSURE:
            reason = "it may be a request to join or leave rather than a post"
    reason = reason or headers_only(ctx.inbound.size, len(ctx.inbound.raw)) \
        or too_big(ctx.inbound.size, ml.max_post_kb)
    if reason:
        held = hold(ctx.session, ctx.renderer, ml, ctx.inbound, sender, reason, ctx.now)
        return f"held #{held.id}: {reason}"
    if member is None:
        return _nonmember(ctx, sender)
    count = distribute(ctx.session, ctx.renderer, ml, ctx.inbound.raw, ctx.now,
                       hosted=ctx.settings.hosted)
    return f"distributed to {count} members"


def _nonmember(ctx: Context, sender: str) -> str:
    ml = ctx.mailing_list
    reason = f"the sender {sender or '(none)'} is not a member"
    action = ml.nonmember_action
    if action == "hold":
        held = hold(ctx.session, ctx.renderer, ml, ctx.inbound, sender, reason, ctx.now)
        return f"held #{held.id}: {reason}"
    audit(ctx.session, ctx.now, DAEMON, f"{action}ed" if action == "reject" else "discarded",
          f"inbound #{ctx.inbound.id}: {reason}", ml.id)
    if action == "reject" and may_auto_reply(ctx.msg, ctx.inbound.mail_from, sender):
        notify(ctx.session, ctx.renderer, ml, "deny-post-nonmember.txt", [sender], ctx.now,
               kind="reject")
    return f"{action}ed: {reason}" if action == "reject" else f"discarded: {reason}"
