"""The chair's archive (`listserv archive …`): listing, showing, exporting, removing a post.

Each function takes the caller's session (the command line owns the unit of work); one that
changes something audits it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.archive import mboxrd
from listserv.errors import ListservError
from listserv.files import open_private
from listserv.store.audit import audit
from listserv.store.lookup import required
from listserv.store.models.archive import ArchivedPost
from listserv.store.models.core import MailingList

#: Posts read per query while exporting (the bytes of a batch are in memory at once).
BATCH = 200
#: Why a post is removed when the chair gives no reason.
WITHDRAWN = "withdrawn at the author's request"


def parse_when(text: str, option: str, *, end: bool = False) -> datetime:
    """`--since`/`--until` as the chair writes them: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM`, UTC.

    With `end`, a bare day means up to the end of that day (`--until 2026-12-31` includes it).
    """
    cleaned = " ".join(text.replace("T", " ").split())
    for form, day in (("%Y-%m-%d %H:%M", False), ("%Y-%m-%d", True)):
        try:
            when = datetime.strptime(cleaned, form).replace(tzinfo=UTC)
        except ValueError:
            continue
        return when + timedelta(days=1) if day and end else when
    raise ListservError(f'{option} {text!r}: give "YYYY-MM-DD" or "YYYY-MM-DD HH:MM" (UTC)')


def post_row(post: ArchivedPost) -> dict[str, Any]:
    """A post as listings show it (SPEC §4's fixed fields, then ours)."""
    return {"id": str(post.id), "list": post.mailing_list.address,
            "date": post.date.astimezone(UTC).isoformat(), "sender": post.sender,
            "subject": post.subject, "message_id": post.message_id, "number": post.number,
            "name": post.sender_name, "thread": post.thread_id, "in_reply_to": post.in_reply_to,
            "size": post.size}


def _between(ml: MailingList, since: datetime | None, until: datetime | None) -> Any:
    query = select(ArchivedPost).where(ArchivedPost.list_id == ml.id)
    if since is not None:
        query = query.where(ArchivedPost.date >= since)
    if until is not None:
        query = query.where(ArchivedPost.date < until)
    return query


def posts(session: Session, ml: MailingList, since: datetime | None = None,
          until: datetime | None = None) -> list[dict[str, Any]]:
    """The list's archived posts between `since` and `until` (by their Date), oldest first."""
    query = _between(ml, since, until).order_by(ArchivedPost.date, ArchivedPost.number)
    return [post_row(p) for p in session.scalars(query)]


def find_post(session: Session, ref: str) -> ArchivedPost:
    """The archived post numbered `ref` (its id, as listings show it), or a one-line error."""
    post: ArchivedPost = required(session, ArchivedPost, ref, "archived post")
    return post


def show(post: ArchivedPost) -> dict[str, Any]:
    """One post for `archive show`: its fields and the message as the members got it."""
    return {**post_row(post), "references": post.references,
            "message": post.raw.decode("utf-8", "replace")}


def _batches(session: Session, ml: MailingList, since: datetime | None,
             until: datetime | None) -> Iterator[ArchivedPost]:
    """The posts to export, oldest first, BATCH at a time (never the whole archive at once)."""
    last: tuple[datetime, int] | None = None
    while True:
        query = _between(ml, since, until).order_by(ArchivedPost.date, ArchivedPost.id)
        if last is not None:
            query = query.where((ArchivedPost.date > last[0])
                                | ((ArchivedPost.date == last[0]) & (ArchivedPost.id > last[1])))
        rows = list(session.scalars(query.limit(BATCH)))
        for row in rows:
            yield row
            session.expunge(row)
        if len(rows) < BATCH:
            return
        last = (rows[-1].date, rows[-1].id)


def export_mbox(session: Session, ml: MailingList, path: Path, since: datetime | None = None,
                until: datetime | None = None) -> int:
    """Write the list's posts (between `since` and `until`) to `path` as mboxrd, a private
    file (0600); returns how many."""
    try:
        with open_private(path, "wb") as out:
            return mboxrd.write(out, ((p.raw, p.sender, p.date)
                                      for p in _batches(session, ml, since, until)))
    except OSError as exc:
        raise ListservError(f"cannot write {path}: {exc.strerror or exc}") from None


def remove(session: Session, post: ArchivedPost, now: datetime, actor: str,
           reason: str = WITHDRAWN) -> str:
    """Take a post out of the archive for good, with a line in the log; returns what it says."""
    detail = (f"#{post.id} (number {post.number}, {post.message_id}) from {post.sender}: "
              f"{' '.join(reason.split()) or WITHDRAWN}")
    audit(session, now, actor, "archive-removed", detail, post.list_id)
    session.delete(post)
    return detail
