"""What happens to a post: distributed, held for the chair, or forwarded to the owners.

Shared by the handlers and the chair's commands; each writes its mail in the caller's
transaction, beside the state change that causes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy.orm import Session

from listserv.archive.keeping import keep
from listserv.config import Settings
from listserv.delivery.listmail import footer_text, list_headers
from listserv.delivery.notices import PREVIEW_LINES, list_context, notify_chair
from listserv.delivery.outbox import enqueue, enqueue_per_language, enqueue_to_members
from listserv.digests import posts as digests
from listserv.identity.authentication import results, survives
from listserv.intent.language import detect_language
from listserv.mail.addresses import Role, normalize_domain
from listserv.mail.headers import header_text
from listserv.mail.message import parse
from listserv.mail.mime.copies import ListHeaders, distribution_copy, owner_copy, personalize
from listserv.mail.mime.headers import author_of
from listserv.mail.mime.raw import RawMessage
from listserv.mail.mime.sender_rewrite import SenderRewrite
from listserv.mail.render import Renderer, one_line
from listserv.mail.text import body_text, message_text
from listserv.mail.wire import to_wire
from listserv.posting.dmarc import PolicyLookup, default_lookup, domain_of, mitigation
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import Held, Inbound, MailingList


def sender_rewrite(renderer: Renderer, ml: MailingList, raw: bytes, role: Role,
                   dmarc: PolicyLookup | None = None, *,
                   hosted: bool = False) -> SenderRewrite | None:
    """How a copy of `raw` sent from `role`'s address must hide its author's From (DMARC).

    None when the list's `dmarc_mitigation` and the author's domain policy allow the author's
    own From. `dmarc` is the policy lookup; without one, the process-wide cached one.

    `hosted` (a list run on a hosted mailbox, whose provider sends only as its account): every
    copy goes out under the list's From, whatever the mode and the author's policy; a `wrap`
    list still wraps where its mode would.
    """
    name, address = author_of(RawMessage.parse(raw))
    # Hosted, the author's policy only decides whether a `wrap` list wraps or munges.
    consult = ml.dmarc_mitigation == "wrap" if hosted else ml.dmarc_mitigation != "none"
    action: str | None = None
    if address and consult:
        action = mitigation(ml.dmarc_mitigation, domain_of(address),
                            dmarc if dmarc is not None else default_lookup())
    if hosted:
        action = action or "munge"
    if action is None:
        return None
    author_name = name or address.rpartition("@")[0]
    # One From for every copy (the post is never rewritten per reader): the list's language.
    display = one_line(renderer.text("dmarc-from-name.txt", ml.language, author=author_name,
                                     **list_context(ml)))
    # Owners reply to the author; members do too, unless the list takes the replies.
    author_to = "Cc" if role is Role.POST and ml.reply_to == "list" else "Reply-To"
    return SenderRewrite(display, ml.role_address(role), author_to, wrap=action == "wrap")


def distribute(session: Session, renderer: Renderer, ml: MailingList, raw: bytes,
               now: datetime, *, dmarc: PolicyLookup | None = None,
               hosted: bool = False, trusted_authserv_id: str | None = None) -> int:
    """Queue the members' copy of a post and keep it in the archive; returns how many members
    it is queued for (those with regular delivery; the digest members get it in their next
    digest).

    `hosted`: the lists run on a hosted mailbox (`Settings.hosted`), so From is always the
    list's (see `sender_rewrite`). The post's authentication (its DKIM signatures and ARC
    chain checked here, the clauses of the MTA named by `trusted_authserv_id`) is queued
    with the copy for its ARC set (`identity.authentication`); `trusted_authserv_id=None`
    (see `arc_authserv`): the copies get no ARC set, so nothing is checked.
    """
    rewrite = sender_rewrite(renderer, ml, raw, Role.POST, dmarc, hosted=hosted)
    headers = list_headers(ml)
    checked = ("" if trusted_authserv_id is None
               else results(raw, parse(raw), trusted_authserv_id))
    if ml.footer is not None:
        # The chair's own footer (or none) is used as written: one copy for everyone.
        footer = ml.footer
        copy = distribution_copy(raw, headers, ml.prefix, footer, rewrite)
        if rewrite is not None and _signature_may_survive(ml, footer, hosted):
            unchanged = distribution_copy(raw, headers, ml.prefix, footer)
            if survives(_as_sent(ml, unchanged, now, renderer.eightbit)):
                copy, rewrite = unchanged, None
        _keep_for_digest(session, ml, raw, headers, rewrite, now)
        # The wire form once, here: the archive keeps exactly the bytes the members are sent
        # (a Message-ID the serializer adds included); queuing them passes them unchanged.
        wire = to_wire(copy, sender=ml.address, now=now, eightbit=renderer.eightbit)
        keep(session, ml, raw, wire, now)
        return enqueue_to_members(session, ml, wire, now=now, eightbit=renderer.eightbit,
                                  authentication_results=checked)
    _keep_for_digest(session, ml, raw, headers, rewrite, now)
    # The built-in footer reads in each member's language; the post itself never changes.
    # The archive keeps the copy in the list's language, as its members get it.
    archived = to_wire(distribution_copy(raw, headers, ml.prefix,
                                         footer_text(renderer, ml, ml.language), rewrite),
                       sender=ml.address, now=now, eightbit=renderer.eightbit)
    keep(session, ml, raw, archived, now)
    return enqueue_per_language(
        session, ml, lambda lang: archived if lang == ml.language else distribution_copy(
            raw, headers, ml.prefix, footer_text(renderer, ml, lang), rewrite),
        now=now, kind="post", eightbit=renderer.eightbit, authentication_results=checked)


def _keep_for_digest(session: Session, ml: MailingList, raw: bytes, headers: ListHeaders,
                     rewrite: SenderRewrite | None, now: datetime) -> None:
    """Keep the post for the list's next digest when it has digest members: with the From
    its copies have, and without a footer (the digest carries the footer once, at its end)."""
    if digests.has_digest_members(session, ml):
        digests.collect(session, ml, distribution_copy(raw, headers, ml.prefix, "", rewrite),
                        now)


def arc_authserv(settings: Settings, ml: MailingList) -> str | None:
    """`distribute`'s `trusted_authserv_id` for `ml`: `[intake] trusted_authserv_id` when the
    list's domain seals its copies (`[dkim]` with `arc`), else None (nothing to check: a
    post's DKIM check costs a body hash, inside the write transaction)."""
    if not settings.dkim.seals(normalize_domain(ml.domain)):
        return None
    return settings.intake.trusted_authserv_id


def _signature_may_survive(ml: MailingList, footer: str, hosted: bool) -> bool:
    """Whether the author's DKIM signature may verify on the list's copy, so From need not
    be munged (SPEC §3): a no-modify list (no prefix, no footer) whose mitigation depends on
    the author's domain; never `always`, never hosted (the provider sends only as itself)."""
    return (not hosted and ml.dmarc_mitigation in ("munge", "wrap") and not ml.prefix
            and not footer)


def _as_sent(ml: MailingList, copy: bytes, now: datetime, eightbit: bool) -> bytes:
    """`copy` as a member gets it: on the wire, with the member's own List-Unsubscribe
    when personalised (the bytes the author's signature must survive)."""
    data = to_wire(copy, sender=ml.address, now=now, eightbit=eightbit)
    return personalize(data, ml.role_address(Role.LEAVE)) if ml.personalize else data


#: A held post larger than this is not attached to its notice (`listserv held show` has it).
MAX_ATTACHED = 5 * 1024 * 1024


def hold(session: Session, renderer: Renderer, ml: MailingList, inbound: Inbound,
         sender: str, reason: str, now: datetime, msg: EmailMessage | None = None) -> Held:
    """Hold a message for the chair, and tell the owners: sender, subject, reason, the first
    lines of its text, and the message itself attached; a reply decides (SPEC §2).

    `msg`: the message already parsed (the router's), else it is parsed here."""
    msg = msg if msg is not None else parse(inbound.raw)
    subject = header_text(msg, "Subject")
    held = Held(
        list_id=ml.id, inbound_id=inbound.id, sender=sender, subject=subject, reason=reason,
        lang=detect_language(f"{subject}\n{message_text(msg)}"), created_at=now,
        expires_at=now + timedelta(days=ml.held_expiry_days),
    )
    session.add(held)
    session.flush()
    audit(session, now, DAEMON, "held", f"#{held.id} from {sender}: {reason}", ml.id)
    lines = body_text(msg).splitlines()
    attached = len(inbound.raw) <= MAX_ATTACHED
    notify_chair(
        session, renderer, ml, "notice-held-post.txt", now, decide="held", item_id=held.id,
        attachment=inbound.raw if attached else None, held=held,
        text_lines=lines[:PREVIEW_LINES], more_lines=max(0, len(lines) - PREVIEW_LINES),
        attached=attached,
    )
    return held


def headers_only(size: int, stored: int) -> str | None:
    """Only the headers were read (a hosted mailbox's message over the intake cap)."""
    if size > stored:
        return (f"only its headers were read: it is {size // 1024} KB, over the intake limit; "
                "the whole message is still in the mailbox")
    return None


def too_big(size: int, max_kb: int) -> str | None:
    """Over the list's size limit for posts."""
    if max_kb and size > max_kb * 1024:
        return f"message is {size // 1024} KB, over the list's limit of {max_kb} KB"
    return None


def forward_to_owners(session: Session, ml: MailingList, raw: bytes, now: datetime, *,
                      renderer: Renderer,
                      dmarc: PolicyLookup | None = None,
                      hosted: bool = False) -> None:
    """Send a message as it came to every owner of the list (From munged as for posts).

    `renderer` names the munged sender from the operator's templates; `hosted` as for
    `distribute`.
    """
    copy = owner_copy(raw, ml.role_address(Role.OWNER),
                      sender_rewrite(renderer, ml, raw, Role.OWNER, dmarc, hosted=hosted))
    enqueue(
        session, copy, [o.email for o in ml.owners],
        envelope_from=ml.role_address(Role.BOUNCES), kind="owner", list_id=ml.id, now=now,
        eightbit=renderer.eightbit,
    )
