"""The `once` table: what must happen once (a daily summary, a call for submissions).

A row is claimed in the transaction that does the work, under a unique (kind, key), so a
restart or a second daemon repeats nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.store.models.core import Once


def claim_once(session: Session, kind: str, key: str, now: datetime) -> bool:
    """Record that (kind, key) happens now; False if it already did (unique constraint)."""
    try:
        with session.begin_nested():
            session.add(Once(kind=kind, key=key, at=now))
    except IntegrityError:
        return False
    return True
