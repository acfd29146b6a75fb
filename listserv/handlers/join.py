"""Mail to `NAME-join@`: a one-step request to join (the body is ignored)."""

from __future__ import annotations

from ..audit import DAEMON, audit
from ..intent import Command, Kind, Understanding, understand
from ..rules import automatic_mail
from .context import Context
from .request import act


def handle(ctx: Context) -> str:
    """Ask the sender to confirm their subscription."""
    reason = automatic_mail(ctx.msg, ctx.inbound.mail_from)
    if reason:
        audit(ctx.session, ctx.now, DAEMON, "ignored", f"inbound #{ctx.inbound.id}: {reason}",
              ctx.mailing_list.id)
        return f"ignored: {reason}"
    # The language of everything they wrote (a bare "Enviado do meu iPhone" says Portuguese).
    lang = understand(ctx.msg, ctx.mailing_list.name).lang
    return act(ctx, Understanding(lang=lang, commands=(Command(Kind.SUBSCRIBE, line="join"),),
                                  unrecognised=(), ignored=()))
