"""Mail to `NAME-peer-input@` (and "peer input" asked for on `-request`): a request for time.

A member's request is booked (see `listserv.meetings.peer_input`) when the message proves its
sender (SPEC §2 "Who sent it"); from an unproven sender nothing is reserved: a confirmation
goes to the member, and her confirmation (`meetings.peer_input.confirmed`) books it, queued
by the confirmation's time. One without a subject or a body gets a polite reply saying what
is missing; a non-member's is held, rejected or discarded as the list's `nonmember_action`
says for posts.
Automatic mail gets nothing (the router's guards ignore it).
"""

from __future__ import annotations

from listserv.delivery.notices import notify
from listserv.intent.language import detect_language
from listserv.mail.addresses import Role
from listserv.mail.headers import from_name
from listserv.mail.text import message_text
from listserv.meetings import peer_input as peer_input
from listserv.store.audit import DAEMON, audit

from ..mail.automatic import may_auto_reply
from .context import Context
from .post import sender_member


def handle(ctx: Context) -> str:
    """A request for peer-input time at a meeting."""
    lang = detect_language(message_text(ctx.msg))
    outcome, _ = receive(ctx, lang)
    return outcome


def from_request(ctx: Context, lang: str) -> tuple[str, bool]:
    """ "peer input" asked for on -request; returns the outcome and whether the sender
    was answered (acknowledged, or told what is missing)."""
    return receive(ctx, lang, via_request=True)


def receive(ctx: Context, lang: str, *, via_request: bool = False) -> tuple[str, bool]:
    ml = ctx.mailing_list
    sender, member = sender_member(ctx)
    reading = peer_input.read(ctx.msg, ml.name, via_request=via_request)
    name = (member.name if member is not None else "") or from_name(ctx.msg)
    answerable = may_auto_reply(ctx.msg, ctx.inbound.mail_from, sender)
    if member is None:
        action = ml.nonmember_action
        why = f"the sender {sender or '(none)'} is not a member"
        if action == "hold":
            held = peer_input.hold(ctx.session, ctx.renderer, ml, sender, name, reading, ctx.now,
                                   lang=lang, inbound_id=ctx.inbound.id)
            return f"peer input held #{held.id}: {why}", False
        audit(ctx.session, ctx.now, DAEMON, "rejected" if action == "reject" else "discarded",
              f"inbound #{ctx.inbound.id}: peer input, {why}", ml.id)
        if action == "reject" and answerable:
            notify(ctx.session, ctx.renderer, ml, "peer-input-nonmember.txt", [sender], ctx.now,
                   kind="reject", lang=lang)
            return f"rejected: {why}", True
        return f"{'rejected' if action == 'reject' else 'discarded'}: {why}", False
    if reading.missing:
        audit(ctx.session, ctx.now, DAEMON, "peer-input-incomplete",
              f"inbound #{ctx.inbound.id} from {sender}: no "
              + " and no ".join(m.split(":")[0].removeprefix("a ") for m in reading.missing),
              ml.id)
        if answerable:
            notify(ctx.session, ctx.renderer, ml, "peer-input-incomplete.txt", [sender],
                   ctx.now, kind="reply", lang=lang, missing=reading.missing,
                   via_request=via_request,
                   peer_input_address=ml.role_address(Role.PEER_INPUT),
                   max_minutes=peer_input.MAX_PEER_MINUTES)
        return "peer input incomplete: " + "; ".join(reading.missing), answerable
    if not ctx.identity.proves(sender):
        if not answerable:
            return f"ignored: peer input from {sender}, unproven, and not to be answered", False
        return peer_input.ask_to_confirm(ctx.session, ctx.renderer, ml, sender, reading,
                                         ctx.now, lang=lang, inbound_id=ctx.inbound.id), True
    request = peer_input.submit(ctx.session, ctx.renderer, ml, sender, name, reading, ctx.now,
                                lang=lang, inbound_id=ctx.inbound.id, acknowledge=answerable)
    where = (f"meeting #{request.meeting_id}" if request.meeting_id else "waiting for room")
    return f"peer input #{request.id}: {request.minutes} minutes, {where}", True
