"""Mail to `NAME-column@`: a submission to the newsletter column, or a follow-up to one.

The column is open to all: a non-member's submission is stored like a member's, marked as
such; every answer goes through the cap on automatic mail (SPEC §2), and automatic mail
(auto-replies, bounces, our own list mail) is neither stored nor answered (the router's guards
ignore it).
"""

from __future__ import annotations

from listserv.column import submissions as column
from listserv.intent.language import detect_language
from listserv.mail.headers import from_address, from_name
from listserv.mail.text import message_text
from listserv.store.audit import DAEMON, audit

from ..mail.automatic import may_auto_reply
from .context import Context


def handle(ctx: Context) -> str:
    ml = ctx.mailing_list
    sender = from_address(ctx.msg) or ctx.inbound.mail_from.lower()
    if not sender:
        reason = "no sender address"
        audit(ctx.session, ctx.now, DAEMON, "ignored",
              f"inbound #{ctx.inbound.id} (column): {reason}", ml.id)
        return f"ignored: {reason}"
    incoming = column.read(ctx.msg, ctx.inbound.raw, ml, sender, from_name(ctx.msg),
                           detect_language(message_text(ctx.msg)), ctx.inbound.id)
    return column.receive(ctx.session, ctx.renderer, ctx.settings.data_dir, ml, incoming,
                          ctx.now, answerable=may_auto_reply(ctx.msg, ctx.inbound.mail_from,
                                                             sender),
                          proven=ctx.identity.proves(sender))
