"""Digests out (SPEC §3): at the list's moment, early past `digest.max_kb`, or one last time.

A digest is numbered (volume, issue) by a `Digest` row, unique per list, volume and issue, and
its posts are claimed for it (`digest_posts.digest_id`, only where still empty) in one
savepoint, in the transaction that queues it. A second daemon that read the same posts fails
on the number or finds them claimed, and gives way; a restart finds nothing left to send. So
each post enters one digest once, and each digest is queued once.

The digest goes to each group of digest members (mode and language) as list mail: the list
headers, the footer, and through the outbox (`delivery.outbox.enqueue_to_members`, the wire
serializer) personalised like a post's copies. The volume goes up each calendar year (UTC),
and the issue starts again at 1 (GNU Mailman's default).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.delivery.listmail import footer_text, list_headers
from listserv.delivery.notices import list_context
from listserv.delivery.outbox import enqueue_to_members
from listserv.digests.posts import DIGEST_MODES, entry
from listserv.digests.settings import MAX_KB, last_moment, next_moment
from listserv.mail.mime.copies import digest_copy, distribution_copy
from listserv.mail.render import Renderer
from listserv.mail.wire import message_bytes
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import Digest, DigestPost

log = logging.getLogger(__name__)

#: The template of each digest mode: the MIME digest's table of contents, the whole RFC 1153
#: text digest.
TEMPLATES = {"digest": "digest.txt", "digest-plain": "digest-plain.txt"}


class _Taken(Exception):
    """Another daemon numbered a digest with these posts first."""


def next_issue(session: Session, ml: MailingList, now: datetime) -> tuple[int, int]:
    """(volume, issue) of the list's next digest: a new volume each calendar year."""
    last = session.scalars(select(Digest).where(Digest.list_id == ml.id)
                           .order_by(Digest.volume.desc(), Digest.number.desc())
                           .limit(1)).first()
    if last is None:
        return 1, 1
    if now.year > last.sent_at.year:
        return last.volume + 1, 1
    return last.volume, last.number + 1


def compose(renderer: Renderer, ml: MailingList, raws: list[bytes], *, delivery: str,
            lang: str, volume: int, number: int, now: datetime, final: bool = False) -> bytes:
    """One digest of the posts `raws` in `delivery`'s form and `lang`, as list mail (the list
    headers; the footer as its last part, or at the end of the text)."""
    footer = footer_text(renderer, ml)
    context = {**list_context(ml), "volume": volume, "number": number, "final": final,
               "footer": footer.rstrip("\n"),
               "posts": [entry(i, raw, ml.prefix) for i, raw in enumerate(raws, 1)]}
    msg = renderer.mail(TEMPLATES[delivery], domain=ml.domain, now=now, lang=lang, **context)
    raw = (digest_copy(message_bytes(msg), raws, footer) if delivery == "digest"
           else message_bytes(msg))
    # The digest's own Subject names the list: no prefix; the footer is already in place.
    return distribution_copy(raw, list_headers(ml), "", "")


def _groups(session: Session, ml: MailingList,
            where: Sequence[ColumnElement[bool]] = ()) -> list[tuple[str, str]]:
    """(mode, language) of each group of active digest members (language "" = the list's)."""
    return [(d, lang) for d, lang in session.execute(
        select(Member.delivery, Member.language).distinct().where(
            Member.list_id == ml.id, Member.status == "active",
            Member.delivery.in_(DIGEST_MODES), *where).order_by(Member.delivery,
                                                                Member.language))]


def _queue(session: Session, renderer: Renderer, ml: MailingList, raws: list[bytes],
           volume: int, number: int, now: datetime, *, final: bool = False,
           where: Sequence[ColumnElement[bool]] = ()) -> int:
    """Queue the digest of `raws` for each group of digest members; returns how many."""
    count = 0
    for delivery, language in _groups(session, ml, where):
        copy = compose(renderer, ml, raws, delivery=delivery, lang=language or "en",
                       volume=volume, number=number, now=now, final=final)
        count += enqueue_to_members(session, ml, copy, now=now, kind="digest",
                                    eightbit=renderer.eightbit, delivery=delivery,
                                    where=(Member.language == language, *where))
    return count


def send(session: Session, renderer: Renderer, ml: MailingList, ids: list[int],
         now: datetime, reason: str) -> Digest | None:
    """Number a digest of the waiting posts `ids` and queue it for the digest members.

    None when another daemon took them first, or when the list has no digest member left
    (then the posts are dropped: nobody is waiting for them).
    """
    if not _groups(session, ml):
        session.execute(delete(DigestPost).where(DigestPost.id.in_(ids),
                                                 DigestPost.digest_id.is_(None)))
        audit(session, now, DAEMON, "digest-dropped",
              f"{len(ids)} posts: no digest member left", ml.id)
        return None
    volume, number = next_issue(session, ml, now)
    digest = Digest(list_id=ml.id, volume=volume, number=number, reason=reason, sent_at=now,
                    posts=len(ids))
    try:
        with session.begin_nested():
            session.add(digest)
            session.flush()
            claimed = session.execute(
                update(DigestPost).where(DigestPost.id.in_(ids), DigestPost.digest_id.is_(None))
                .values(digest_id=digest.id).execution_options(synchronize_session=False))
            if claimed.rowcount != len(ids):
                raise _Taken
    except (IntegrityError, _Taken):
        log.info("%s: digest %d/%d was sent by another daemon", ml.address, volume, number)
        return None
    raws = list(session.scalars(select(DigestPost.raw).where(DigestPost.id.in_(ids))
                                .order_by(DigestPost.id)))
    digest.recipients = _queue(session, renderer, ml, raws, volume, number, now)
    # Queued as wire bytes: the copies kept for it are no longer needed.
    session.execute(update(DigestPost).where(DigestPost.id.in_(ids)).values(raw=b"")
                    .execution_options(synchronize_session=False))
    detail = (f"vol {volume}, issue {number}: {len(ids)} posts to {digest.recipients} "
              f"members ({'over digest.max_kb' if reason == 'size' else 'on schedule'})")
    audit(session, now, DAEMON, "digest-sent", detail, ml.id)
    log.info("%s: digest %s", ml.address, detail)
    return digest


def _waiting(session: Session, ml: MailingList) -> list[tuple[int, int, datetime]]:
    """(id, size, added_at) of the posts waiting for the list's next digest, oldest first."""
    return [(i, size, added) for i, size, added in session.execute(
        select(DigestPost.id, DigestPost.size, DigestPost.added_at)
        .where(DigestPost.list_id == ml.id, DigestPost.digest_id.is_(None))
        .order_by(DigestPost.id))]


def due_for_list(session: Session, renderer: Renderer, ml: MailingList,
                 now: datetime) -> Digest | None:
    """Send the list's digest if due: every waiting post once they pass `digest.max_kb`,
    else those that arrived before the list's last moment (`digest.frequency`, `send_at`).
    An empty period sends nothing."""
    waiting = _waiting(session, ml)
    max_kb = MAX_KB.get(ml)
    if max_kb and sum(size for _, size, _ in waiting) > max_kb * 1024:
        return send(session, renderer, ml, [i for i, _, _ in waiting], now, "size")
    moment = last_moment(ml, now)
    due = [i for i, _, added in waiting if added < moment]
    return send(session, renderer, ml, due, now, "scheduled") if due else None


def due_work(store: Store, renderer: Renderer, now: datetime) -> None:
    """The scheduler's digest work: each list with waiting posts, in a unit of work of its own."""
    with store.reading() as session:
        ids = list(session.scalars(select(DigestPost.list_id).distinct()
                                   .where(DigestPost.digest_id.is_(None))))
    for list_id in ids:
        try:
            with store.unit_of_work() as session:
                ml = session.get(MailingList, list_id)
                if ml is not None:
                    due_for_list(session, renderer, ml, now)
        except Exception:
            log.exception("digest of list %s failed; trying again next tick", list_id)
    log.debug("digest work done at %s", now.isoformat())


def flush(session: Session, renderer: Renderer, ml: MailingList, member: Member,
          now: datetime) -> int:
    """A digest member's last digest, of the posts waiting for the next one, before she
    switches to single messages (called while her delivery is still the digest's); returns
    how many posts it carried. The posts still go into the list's next digest for the
    others; the list's numbering is not used up (her copy carries the next issue's number)."""
    if member.delivery not in DIGEST_MODES:
        return 0
    session.flush()
    ids = [i for i, _, _ in _waiting(session, ml)]
    if not ids:
        return 0
    raws = list(session.scalars(select(DigestPost.raw).where(DigestPost.id.in_(ids))
                                .order_by(DigestPost.id)))
    volume, number = next_issue(session, ml, now)
    _queue(session, renderer, ml, raws, volume, number, now, final=True,
           where=(Member.id == member.id,))
    audit(session, now, DAEMON, "digest-flushed",
          f"{member.email}: last digest of {len(ids)} posts", ml.id)
    return len(ids)


@dataclass(frozen=True, slots=True)
class Upcoming:
    """The list's next digest, for `listserv status`."""

    address: str
    at: datetime
    posts: int
    kb: int
    members: int


def upcoming(session: Session, now: datetime) -> list[Upcoming]:
    """The next digest of every list with a digest member or a post waiting."""
    members = {list_id: count for list_id, count in session.execute(
        select(Member.list_id, func.count()).where(
            Member.status == "active", Member.delivery.in_(DIGEST_MODES))
        .group_by(Member.list_id))}
    waiting = {list_id: (count, size) for list_id, count, size in session.execute(
        select(DigestPost.list_id, func.count(), func.coalesce(func.sum(DigestPost.size), 0))
        .where(DigestPost.digest_id.is_(None)).group_by(DigestPost.list_id))}
    found = []
    for list_id in sorted(set(members) | set(waiting)):
        ml = session.get(MailingList, list_id)
        if ml is None:
            continue
        count, size = waiting.get(list_id, (0, 0))
        found.append(Upcoming(ml.address, next_moment(ml, now), int(count),
                              (int(size) + 1023) // 1024, int(members.get(list_id, 0))))
    return found
