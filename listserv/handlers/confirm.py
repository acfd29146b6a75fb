"""Replies to `NAME-confirm+TOKEN@`: complete the confirmation or the undo the token names, or,
for a chair token, the chair's decision on a notice or a daily summary (`chair.replies`).

Automatic mail (an out-of-office answer to a confirmation or a goodbye) never confirms, undoes
or decides anything: the router's guards ignore it before it gets here.
"""

from __future__ import annotations

from listserv.chair import replies
from listserv.confirmations.complete import complete as complete_request
from listserv.mail.headers import from_name
from listserv.posting.distribute import arc_authserv
from listserv.store import chair_tokens
from listserv.store.audit import DAEMON, audit
from listserv.store.lookup import open_request_for_token
from listserv.store.models.core import Request

from .context import Context


def handle(ctx: Context) -> str:
    """A human reply to a confirmation, a goodbye or a chair notice: do what it says."""
    ml = ctx.mailing_list
    chair_token = chair_tokens.find(ctx.session, ctx.destination.token)
    if chair_token is not None:
        return replies.answer(ctx.session, ctx.renderer, ml, chair_token, ctx.msg,
                              ctx.identity.address, ctx.now, hosted=ctx.settings.hosted,
                              trusted_authserv_id=arc_authserv(ctx.settings, ml))
    request = open_request_for_token(ctx.session, ctx.destination.token, ctx.now)
    if request is None or request.list_id != ml.id:
        audit(ctx.session, ctx.now, DAEMON, "confirm-unknown", f"inbound #{ctx.inbound.id}",
              ml.id)
        return "ignored: no such confirmation waiting (used, expired or unknown)"
    return complete(ctx, request)


def complete(ctx: Context, request: Request) -> str:
    """Do what a confirmed request asked (by reply, mail to its address, or `confirm TOKEN`)."""
    return complete_request(ctx.session, ctx.renderer, request, ctx.now, from_name(ctx.msg))
