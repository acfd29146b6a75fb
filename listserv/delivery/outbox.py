"""Into the outgoing queue: what to send to whom, queued with the change that causes it.

Mail is queued in the same transaction as the state change that causes it; the delivery workers
(`delivery.worker`) claim, send and record it (`delivery.claim`). Every message is queued as
the bytes that go on the wire: `enqueue` and `enqueue_to_members` pass it through the one
serializer (`listserv.mail.wire`, SPEC §3 "On the wire"), and the transports send exactly what
is stored.

A message we composed and queue for exactly one address has its Message-ID recorded
(`SentOnlyTo`): a reply to it proves that address (SPEC §2, `listserv.identity.replies`). Only
Message-IDs we generated (`tokens.message_id`, unguessable) count: a forwarded or distributed
copy keeps its author's Message-ID, which its author knows, so it is never recorded, and nor is
list mail to the members in bulk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from listserv.mail.addresses import Role, normalize
from listserv.mail.headers import wire_message_id
from listserv.mail.wire import to_wire
from listserv.store.models.core import MailingList, Member
from listserv.store.models.outgoing import OutMessage, OutRecipient, SentOnlyTo


def enqueue(
    session: Session,
    message: bytes | EmailMessage,
    recipients: Iterable[str],
    *,
    envelope_from: str,
    kind: str,
    now: datetime,
    list_id: int | None = None,
    eightbit: bool = False,
) -> OutMessage:
    """Queue `message` for `recipients` (notices, forwards, replies) in the caller's transaction.

    It is stored as its wire bytes (`to_wire`; 8-bit only with `eightbit`, the relay's
    `eightbitmime`); one without From gets the list's address, else the envelope sender.
    Composed for one address, its Message-ID is recorded for the reply proof (see above).
    """
    mailing_list = session.get(MailingList, list_id) if list_id is not None else None
    sender = mailing_list.address if mailing_list is not None else envelope_from
    # Ours: composed here (Renderer.mail gives it a Message-ID from tokens.message_id), or bytes
    # without a Message-ID, to which to_wire gives one.
    ours = isinstance(message, EmailMessage) or not wire_message_id(message)
    raw = to_wire(message, sender=sender, now=now, eightbit=eightbit)
    recipients = list(dict.fromkeys(recipients))
    if ours and len({normalize(r) for r in recipients}) == 1:
        session.add(SentOnlyTo(message_id=wire_message_id(raw)[:250],
                               address=normalize(recipients[0]), at=now))
    queued = OutMessage(
        list_id=list_id, kind=kind, raw=raw, envelope_from=envelope_from, created_at=now
    )
    session.add(queued)
    session.flush()
    rows = [
        {"message_id": queued.id, "email": r, "next_attempt_at": now}
        for r in recipients
    ]
    if rows:
        session.execute(OutRecipient.__table__.insert(), rows)
    return queued


#: Who gets the list's own announcements (meeting reminders, moves and cancellations, calls for
#: submissions): every member who reads the list, digest members too, since a reminder cannot
#: wait for the next digest. Posts reach digest members in their digest instead.
ANNOUNCED = ("regular", "digest", "digest-plain")


def _receiving(mailing_list: MailingList, delivery: str | Sequence[str] = "regular",
               where: Sequence[ColumnElement[bool]] = ()) -> tuple[ColumnElement[bool], ...]:
    """The members who get a list copy: active, with `delivery` (regular: each post; or one
    of several modes), and matching `where`."""
    modes = (delivery,) if isinstance(delivery, str) else tuple(delivery)
    return (Member.list_id == mailing_list.id, Member.status == "active",
            Member.delivery.in_(modes), *where)


def audience(session: Session, mailing_list: MailingList) -> int:
    """How many members an announcement (`ANNOUNCED`) would reach now (what a command that
    mails the whole list tells the chair before it asks)."""
    return int(session.scalar(select(func.count(Member.id)).where(
        *_receiving(mailing_list, ANNOUNCED))) or 0)


def languages_in_use(session: Session, mailing_list: MailingList,
                     delivery: str | Sequence[str] = "regular") -> dict[str, tuple[str, ...]]:
    """The languages the receiving members (`delivery`) read, each with the stored values that
    mean it (a member without a language of her own, "", reads the list's `language`), sorted."""
    stored = session.scalars(select(Member.language).where(
        *_receiving(mailing_list, delivery)).distinct())
    groups: dict[str, list[str]] = {}
    for value in stored:
        groups.setdefault(value or mailing_list.language, []).append(value)
    return {lang: tuple(groups[lang]) for lang in sorted(groups)}


def enqueue_per_language(
    session: Session, mailing_list: MailingList, copy_in: Callable[[str], bytes], *,
    now: datetime, kind: str, eightbit: bool = False, authentication_results: str = "",
    delivery: str | Sequence[str] = "regular",
) -> int:
    """Queue list mail we write (reminders, calls, a post's built-in footer) once per language
    in use: `copy_in(lang)` renders the copy in that language, rendered once whatever the
    number of its readers, and each member gets the one in hers (SPEC §3, "Languages").
    `delivery`: the members it is for (`ANNOUNCED` for announcements). Returns how many
    members it is queued for."""
    return sum(
        enqueue_to_members(session, mailing_list, copy_in(lang), now=now, kind=kind,
                           eightbit=eightbit, authentication_results=authentication_results,
                           delivery=delivery, languages=stored)
        for lang, stored in languages_in_use(session, mailing_list, delivery).items())


def enqueue_to_members(
    session: Session, mailing_list: MailingList, copy: bytes, *, now: datetime,
    kind: str = "post", eightbit: bool = False, authentication_results: str = "",
    delivery: str | Sequence[str] = "regular", where: Sequence[ColumnElement[bool]] = (),
    languages: tuple[str, ...] | None = None,
) -> int:
    """Queue a list copy for every active member with `delivery` (regular by default; a
    digest for the digest members) matching `where`, without loading the roster.

    The copy is stored as its wire bytes (`to_wire`), as `enqueue` stores its message.
    `authentication_results`: how the post was authenticated when it arrived, for the ARC set
    the delivery worker seals the copies with (`mail.signing`). `languages`: only for the
    members whose stored language is one of these (one language's copy,
    `enqueue_per_language`).
    """
    message = OutMessage(
        list_id=mailing_list.id,
        kind=kind,
        raw=to_wire(copy, sender=mailing_list.address, now=now, eightbit=eightbit),
        envelope_from=mailing_list.role_address(Role.BOUNCES),
        personalize=mailing_list.personalize,
        created_at=now,
        authentication_results=authentication_results,
    )
    session.add(message)
    session.flush()
    due = literal(now, OutRecipient.next_attempt_at.type)
    members = select(literal(message.id), Member.id, Member.email, due).where(
        *_receiving(mailing_list, delivery, where))
    if languages is not None:
        members = members.where(Member.language.in_(languages))
    insert = OutRecipient.__table__.insert().from_select(
        ["message_id", "member_id", "email", "next_attempt_at"], members
    )
    session.execute(insert)
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT … SELECT.
    queued = select(func.count()).where(OutRecipient.message_id == message.id)
    return int(session.scalar(queued) or 0)
