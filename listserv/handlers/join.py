"""Mail to `NAME-join@`: a one-step request to join (the body is ignored)."""

from __future__ import annotations

from listserv.intent.request import understand
from listserv.intent.understanding import Command, Kind, Understanding

from .context import Context
from .request import act


def handle(ctx: Context) -> str:
    """Ask the sender to confirm their subscription."""
    # The language of everything they wrote (a bare "Enviado do meu iPhone" says Portuguese).
    lang = understand(ctx.msg, ctx.mailing_list.name).lang
    return act(ctx, Understanding(lang=lang, commands=(Command(Kind.SUBSCRIBE, line="join"),),
                                  unrecognised=(), ignored=()))
