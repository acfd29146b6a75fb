"""Automatic mail (notices, replies, rejections): rendered, capped, queued.

One cap covers all automatic mail to an address (SPEC §2): at most 10 a day and at most 3
confirmations, counted for the address without its `+tag` (`victim+1@` and `victim+2@` share
one). Owners are not capped per address: they are the ones the cap reports to. Instead the
notices to a list's chair are capped per list (SPEC §7): at most 20 an hour; past that a notice
is recorded in the audit log and not sent, and held messages still wait in the daily summary.

A notice that goes with a change removing or muting someone (a goodbye, a delivery set to
nomail) is sent even past the cap (`with_change`): the change never happens unannounced (SPEC
§2). It is still counted, so it uses up the day's cap for other mail. This cannot be used to
flood anyone: each such notice needs the change itself (a member removed, a delivery that was
on switched off), and that needs the member's proof, her confirmation or the chair.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.delivery.outbox import enqueue
from listserv.mail.addresses import Role, normalize, untagged
from listserv.mail.mime.copies import with_attached
from listserv.mail.render import Renderer
from listserv.mail.wire import message_bytes
from listserv.store import chair_tokens
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import OWNER_LANGUAGE, MailingList, Member
from listserv.store.models.outgoing import AutoMail

AUTO_MAIL_PER_DAY = 10
CONFIRMATIONS_PER_DAY = 3
CHAIR_NOTICES_PER_HOUR = 20
CHAIR_NOTICE = "chair-notice"
"""The `AutoMail.kind` of a notice to a list's chair, counted for the list's owner address."""
SUMMARY_TEMPLATE = "notice-held-summary.txt"
"""The daily summary is where capped notices end up, so it is never capped itself."""
RESULTS_TEMPLATE = "reply-chair-results.txt"
"""The answer to the chair's own reply to a notice: she asked for it, so it is never capped."""
PREVIEW_LINES = 40
"""A notice that asks the chair to decide shows this many lines of the text (SPEC §2)."""

log = logging.getLogger(__name__)


def list_context(mailing_list: MailingList) -> dict[str, Any]:
    """What every template may say about its list."""
    return {
        "list": mailing_list,
        "list_name": mailing_list.name,
        "display_name": mailing_list.display,
        "list_address": mailing_list.address,
        "owner_address": mailing_list.role_address(Role.OWNER),
        "request_address": mailing_list.role_address(Role.REQUEST),
        "join_address": mailing_list.role_address(Role.JOIN),
        "leave_address": mailing_list.role_address(Role.LEAVE),
        # Every role's public address, by role ("peer-input", "column", …).
        "addresses": {role.value: mailing_list.role_address(role) for role in Role},
        "description": mailing_list.description,
        "resources": [r for r in mailing_list.resources.splitlines() if r.strip()],
    }


def over_cap(session: Session, address: str, kind: str, now: datetime) -> bool:
    """Whether one more automatic mail of `kind` to `address` would pass the cap."""
    since = now - timedelta(days=1)
    sent = select(func.count()).where(
        AutoMail.address == untagged(address), AutoMail.at > since,
        AutoMail.suppressed.is_(False)
    )
    if session.scalar(sent) >= AUTO_MAIL_PER_DAY:
        return True
    if kind == "confirm":
        confirms = sent.where(AutoMail.kind == "confirm")
        return session.scalar(confirms) >= CONFIRMATIONS_PER_DAY
    return False


def charge_cap(session: Session, address: str, kind: str, now: datetime,
               with_change: bool = False) -> bool:
    """Count one automatic mail of `kind` to `address` against the cap; returns whether it
    is over the cap (then it is recorded as suppressed and must not be sent). A notice that
    goes `with_change` is counted but never over the cap."""
    capped = not with_change and over_cap(session, address, kind, now)
    session.add(AutoMail(address=untagged(address), kind=kind, at=now, suppressed=capped))
    return capped


def charge_chair_notice(session: Session, mailing_list: MailingList, now: datetime) -> bool:
    """Count one notice to the chair of `mailing_list`; returns whether it is over the
    hourly cap (then it is recorded as suppressed and must not be sent)."""
    address = normalize(mailing_list.role_address(Role.OWNER))
    sent = select(func.count()).where(
        AutoMail.address == address, AutoMail.kind == CHAIR_NOTICE,
        AutoMail.at > now - timedelta(hours=1), AutoMail.suppressed.is_(False),
    )
    capped = session.scalar(sent) >= CHAIR_NOTICES_PER_HOUR
    session.add(AutoMail(address=address, kind=CHAIR_NOTICE, at=now, suppressed=capped))
    return capped


def notify(
    session: Session,
    renderer: Renderer,
    mailing_list: MailingList,
    template: str,
    recipients: Iterable[str],
    now: datetime,
    *,
    kind: str,
    lang: str = "en",
    with_change: bool = False,
    attachment: bytes | None = None,
    attachments: Sequence[tuple[bytes, str]] = (),
    **context: Any,
) -> list[str]:
    """Render `template` once per recipient and queue it; returns who it was queued for.

    `lang` is the language of the mail it answers (or of the member it is for); the chair
    (owners and moderators) reads it in the chair's language instead (`chair_language`).

    `attachment`: a message to attach, as it came (message/rfc822), to a held post's notice;
    `attachments`: messages to attach so, each with its file name (archived posts sent back).

    Owners of the list are exempt from the per-address cap; anyone else past it gets nothing,
    and the suppression is recorded for the chair to see, unless the notice goes
    `with_change` (a goodbye, a mute: see above). A notice to the owners counts once against
    the list's hourly cap on chair notices; past it they get nothing (see above).
    """
    owners = set(deciders(mailing_list))
    wanted = list(dict.fromkeys(normalize(r) for r in recipients))
    if (template not in (SUMMARY_TEMPLATE, RESULTS_TEMPLATE) and owners.intersection(wanted)
            and charge_chair_notice(session, mailing_list, now)):
        audit(session, now, DAEMON, "chair-notice-capped", template, mailing_list.id)
        log.info("%s: over %d chair notices an hour, %s not sent", mailing_list.address,
                 CHAIR_NOTICES_PER_HOUR, template)
        wanted = [r for r in wanted if r not in owners]
    queued: list[str] = []
    for recipient in wanted:
        if recipient not in owners:
            capped = charge_cap(session, recipient, kind, now, with_change)
            if capped:
                audit(session, now, DAEMON, "cap-suppressed", f"{kind} to {recipient}",
                      mailing_list.id)
                continue
        reads = chair_language(session, mailing_list, recipient) if recipient in owners else lang
        msg = renderer.mail(
            template, domain=mailing_list.domain, now=now, lang=reads, to=recipient,
            **list_context(mailing_list), **context,
        )
        attached = [(attachment, "original.eml")] if attachment is not None else []
        attached += attachments
        message = (with_attached(message_bytes(msg), attached[0][0], name=attached[0][1],
                                 more=attached[1:]) if attached else msg)
        enqueue(
            session, message, [recipient],
            envelope_from=mailing_list.role_address(Role.BOUNCES),
            kind=kind, list_id=mailing_list.id, now=now, eightbit=renderer.eightbit,
        )
        queued.append(recipient)
    return queued


def chair_language(session: Session, mailing_list: MailingList, address: str) -> str:
    """The language of notices to the owner or moderator `address`: her own (`members set
    --language` on her address, as a member of the list or as an owner), else the list's
    `owner_language`, else its `language`."""
    address = normalize(address)
    own = session.scalar(select(Member.language).where(
        Member.list_id == mailing_list.id, Member.email == address))
    as_owner = next((o.language for o in mailing_list.owners if normalize(o.email) == address),
                    "")
    return own or as_owner or str(OWNER_LANGUAGE.get(mailing_list)) or mailing_list.language


def deciders(mailing_list: MailingList) -> list[str]:
    """Who decides for a list and may answer its notices: its owners, then its moderators
    (this is the one place both the notices and the replies ask)."""
    return [normalize(address) for address in mailing_list.deciders]


def notify_chair(session: Session, renderer: Renderer, mailing_list: MailingList,
                 template: str, now: datetime, *, decide: str, item_id: int | None = None,
                 items: dict[str, list[int]] | None = None, attachment: bytes | None = None,
                 **context: Any) -> list[str]:
    """A notice that asks the chair to decide (SPEC §2, "The chair replies"), to everyone in
    `deciders`, with `Reply-To: NAME-confirm+TOKEN@`: a new token for the held item `decide`
    `item_id`, or for the `items` a daily summary lists. The template gets `reply_address`."""
    token = chair_tokens.issue(session, mailing_list, decide, now, item_id=item_id, items=items)
    return notify(session, renderer, mailing_list, template, deciders(mailing_list), now,
                  kind="notice", attachment=attachment,
                  reply_address=mailing_list.role_address(Role.CONFIRM, token.token), **context)
