"""Mail to `NAME-leave@` or `NAME-leave+TOKEN@`: unsubscribe at once, with a goodbye."""

from __future__ import annotations

from sqlalchemy import select

from listserv.intent.request import understand
from listserv.membership import subscriptions as membership
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import Member

from .context import Context
from .request import sender_of


def handle(ctx: Context) -> str:
    """Remove the member the token names, or the sender (automatic mail never gets here)."""
    ml = ctx.mailing_list
    token = ctx.destination.token
    if token:
        member = ctx.session.scalar(
            select(Member).where(Member.list_id == ml.id, Member.leave_token == token))
    else:
        member = membership.find_member(ctx.session, ml, sender_of(ctx))
        if member is None and ctx.inbound.mail_from:
            member = membership.find_member(ctx.session, ml, ctx.inbound.mail_from)
    if member is None:
        audit(ctx.session, ctx.now, DAEMON, "leave-unknown", f"inbound #{ctx.inbound.id}",
              ml.id)
        return "ignored: not a member (or an unknown token)"
    lang = understand(ctx.msg, ml.name).lang
    email = member.email
    membership.unsubscribe(ctx.session, ctx.renderer, ml, member, ctx.now, email, lang=lang)
    return f"unsubscribed {email}"
