"""The archive by mail (SPEC §3, LISTSERV's habits): `index` and `get N …` sent to `-request`.

The request handler decides who may read (members of a list that keeps its archive) and
answers through the cap on automatic mail; this module finds the posts and says what the
templates show of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.store.models.archive import ArchivedPost
from listserv.store.models.core import MailingList

#: How many of the newest posts `index` lists.
INDEX_LENGTH = 50
#: How many posts one `get` reply carries (SPEC §3).
MAX_GET = 10


def index_entry(post: ArchivedPost) -> dict[str, Any]:
    """What `index` shows of a post: number, day, author's name, subject."""
    return {"number": post.number, "date": post.date.astimezone(UTC).strftime("%Y-%m-%d"),
            "author": post.sender_name or post.sender.partition("@")[0],
            "subject": post.subject}


def recent(session: Session, ml: MailingList, count: int = INDEX_LENGTH) -> list[dict[str, Any]]:
    """The list's newest `count` posts for `index`, oldest of them first."""
    newest = session.scalars(select(ArchivedPost).where(ArchivedPost.list_id == ml.id)
                             .order_by(ArchivedPost.number.desc()).limit(count))
    return [index_entry(p) for p in reversed(list(newest))]


def by_numbers(session: Session, ml: MailingList,
               numbers: Sequence[int]) -> tuple[list[ArchivedPost], list[int]]:
    """The posts numbered `numbers` (the first MAX_GET, in the order asked) and the numbers
    the archive does not have."""
    wanted = list(dict.fromkeys(numbers))[:MAX_GET]
    found = {p.number: p for p in session.scalars(select(ArchivedPost).where(
        ArchivedPost.list_id == ml.id, ArchivedPost.number.in_(wanted)))}
    return [found[n] for n in wanted if n in found], [n for n in wanted if n not in found]
