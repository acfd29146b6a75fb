"""Full-text search of a list's archive (`listserv archive search`), ranked, on both backends.

SQLite: the FTS5 table `archive_fts` (BM25; a word in the subject weighs 10, in the author 5,
in the text 1). PostgreSQL: the `search` tsvector column (`ts_rank`; subject, author and text
weighted A, B, C). Both rank only the newest `RANK_WINDOW` posts that match, and match every word
given (no stemming, accents ignored on SQLite); the words are taken as words, never as query
syntax, so any text the chair types is safe.
"""

from __future__ import annotations

import re

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.store.models.archive import FTS_TABLE, SEARCH_COLUMN, ArchivedPost
from listserv.store.models.core import MailingList

#: The most results one search gives.
MAX_RESULTS = 50
#: A search ranks at most the newest this many posts that match: ranking costs time per post
#: (BM25 reads each one's positions, `ts_rank` its tsvector), and a word in most posts of a
#: large archive says little about which are the best (docs/archive.md).
RANK_WINDOW = 10_000
_WORD = re.compile(r"\w+", re.UNICODE)


def words_of(query: str) -> list[str]:
    """The words of the chair's query (letters and digits; the rest separates them)."""
    return _WORD.findall(query)


def search(session: Session, ml: MailingList, query: str,
           limit: int = MAX_RESULTS) -> list[ArchivedPost]:
    """The list's posts with every word of `query`, best first (at most `limit`)."""
    words = words_of(query)
    if not words:
        raise ListservError(f"nothing to search for in {query!r}: give one or more words")
    if session.get_bind().dialect.name == "sqlite":
        ids = _sqlite(session, ml, words, limit)
    else:
        ids = _postgresql(session, ml, words, limit)
    posts = {p.id: p for p in session.scalars(select(ArchivedPost).where(
        ArchivedPost.id.in_(ids)))}
    return [posts[i] for i in ids if i in posts]


def _sqlite(session: Session, ml: MailingList, words: list[str], limit: int) -> list[int]:
    # Each word a quoted FTS5 string: together they must all match; no operator can slip in.
    match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
    matching = (f"FROM {FTS_TABLE} AS f JOIN archived_posts AS p ON p.id = f.rowid "
                f"WHERE {FTS_TABLE} MATCH :match AND p.list_id = :list_id")
    # The oldest post of the window: FTS5 reads rowids newest first without ranking them.
    oldest = session.scalar(text(
        f"SELECT min(rowid) FROM (SELECT f.rowid AS rowid {matching} "
        "ORDER BY f.rowid DESC LIMIT :window)"),
        {"match": match, "list_id": ml.id, "window": RANK_WINDOW})
    if oldest is None:
        return []
    rows = session.execute(text(
        f"SELECT f.rowid {matching} AND f.rowid >= :oldest "
        f"ORDER BY bm25({FTS_TABLE}, 10.0, 5.0, 1.0), f.rowid DESC LIMIT :limit"),
        {"match": match, "list_id": ml.id, "oldest": oldest, "limit": limit})
    return [int(row[0]) for row in rows]


def _postgresql(session: Session, ml: MailingList, words: list[str], limit: int) -> list[int]:
    # The window's ids first (from the GIN index, no tsvector read), then each one's rank by
    # its key: ranking in the same scan would rank every match before the window is cut.
    rows = session.execute(text(
        "SELECT w.id FROM (SELECT id FROM archived_posts WHERE list_id = :list_id "
        f"AND {SEARCH_COLUMN} @@ plainto_tsquery('simple'::regconfig, :words) "
        "ORDER BY id DESC LIMIT :window) AS w "
        f"CROSS JOIN LATERAL (SELECT ts_rank(p.{SEARCH_COLUMN}, "
        "plainto_tsquery('simple'::regconfig, :words)) AS rank "
        "FROM archived_posts AS p WHERE p.id = w.id) AS r "
        "ORDER BY r.rank DESC, w.id DESC LIMIT :limit"),
        {"list_id": ml.id, "words": " ".join(words), "window": RANK_WINDOW, "limit": limit})
    return [int(row[0]) for row in rows]
