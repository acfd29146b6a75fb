"""The archive's table (SPEC §3): every distributed post, as distributed, with its thread ids.

The full-text index beside it is not a model: SQLite keeps an FTS5 table (`archive_fts`, with
`archived_posts` as its content, kept in step by triggers), PostgreSQL a generated `tsvector`
column (`search`) with a GIN index; both are made by the migration and read by
`listserv.archive.search`. `include_name` and `include_object` leave them out when the schema
is compared with the models (Alembic's autogenerate knows neither).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from listserv.store.models.base import Base, utcnow
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList

#: The longest Message-ID kept (as `SentOnlyTo` keeps them); longer ones are cut.
MAX_MESSAGE_ID = 250
#: The SQLite full-text table and the tables FTS5 makes for it are named from this.
FTS_TABLE = "archive_fts"
#: The PostgreSQL full-text column of `archived_posts` and its index.
SEARCH_COLUMN = "search"
SEARCH_INDEX = "ix_archived_posts_search"


class ArchivedPost(Base):
    """One distributed post: the bytes the members got, before personalisation."""

    __tablename__ = "archived_posts"
    __table_args__ = (
        UniqueConstraint("list_id", "number"),
        Index("ix_archived_posts_list_date", "list_id", "date"),
        Index("ix_archived_posts_message_id", "list_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # The post's number in its list (`index`, `get N`): 1, 2, 3 …; a removed post's number is
    # never given again.
    number: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(MAX_MESSAGE_ID))
    # The post it answers (In-Reply-To, else the last of References), and its thread: the
    # Message-ID of the first post of the thread that the archive has, else the oldest
    # reference, else its own Message-ID.
    in_reply_to: Mapped[str] = mapped_column(String(MAX_MESSAGE_ID), default="")
    thread_id: Mapped[str] = mapped_column(String(MAX_MESSAGE_ID))
    references: Mapped[str] = mapped_column(Text, default="")
    # The author's address and name (From of the post as it came, not a DMARC-munged From).
    sender: Mapped[str] = mapped_column(String(320))
    sender_name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default="")
    # The subject as the author wrote it (decoded, without the list's prefix).
    subject: Mapped[str] = mapped_column(Text, default="")
    # The post's text, for search (plain, or taken from HTML; bounded, see archive.keeping).
    text: Mapped[str] = mapped_column(Text, default="")
    # The post's Date (when it has none, or a bad one: when it was distributed).
    date: Mapped[datetime]
    archived_at: Mapped[datetime] = mapped_column(default=utcnow)
    raw: Mapped[bytes]
    size: Mapped[int] = mapped_column(Integer)

    mailing_list: Mapped[MailingList] = relationship()


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's filter: the SQLite full-text tables are not in the models (see above)."""
    return not (type_ == "table" and name is not None and name.startswith(FTS_TABLE))


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Alembic's filter: PostgreSQL's full-text column and index are not in the models."""
    if reflected and compare_to is None:
        return not ((type_ == "column" and name == SEARCH_COLUMN)
                    or (type_ == "index" and name == SEARCH_INDEX))
    return True
