"""Mail to `NAME-leave@` or `NAME-leave+TOKEN@`: unsubscribe, with a goodbye.

The member leaves at once when the message proves it comes from her (SPEC §2, "Who sent it"):
her own `-leave+TOKEN`, a DKIM signature, a trusted MTA's `dmarc=pass`. Otherwise anyone could
remove her by forging her address, so she is asked to confirm first (one confirmation waits at
a time, however many such mails arrive).
"""

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
    if not ctx.identity.proves(email):
        sent = membership.ask_to_confirm(ctx.session, ctx.renderer, ml, "unsubscribe", email,
                                         ctx.now, lang=lang, requested_by=email,
                                         inbound_id=ctx.inbound.id)
        return ("unproven sender: " + (f"{email} asked to confirm" if sent
                                       else f"no confirmation to {email} (capped)"))
    membership.unsubscribe(ctx.session, ctx.renderer, ml, member, ctx.now, email, lang=lang)
    return f"unsubscribed {email}"
