"""The `once` table: what must happen once (a daily summary, a call for submissions).

A row is claimed in the transaction that does the work, under a unique (kind, key), so a
restart or a second daemon repeats nothing. A heartbeat (`beat`) is one row per (kind, key)
whose time is moved on each time: when the scheduler last finished a run.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
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


#: The kind of the rows recording a leave token spent by one-click (`web.actions`): a repeated
#: POST (a provider retrying) then answers 200 "already unsubscribed" instead of "unknown link".
#: Retention deletes them after `outgoing_days`: retries come within minutes.
ONE_CLICK_SPENT = "one-click-unsubscribe"

#: The kind of the heartbeat rows (`beat`, `last_beat`).
HEARTBEAT = "heartbeat"


def beat(session: Session, key: str, now: datetime) -> None:
    """Record that `key` (e.g. "scheduler") last ran now: one row, its time moved on.

    The row is updated first and inserted only when missing: a daemon beats every few
    seconds, and an insert refused by the unique key each time would fill PostgreSQL's log.
    """
    moved = update(Once).where(Once.kind == HEARTBEAT, Once.key == key).values(at=now)
    if session.execute(moved).rowcount == 0 and not claim_once(session, HEARTBEAT, key, now):
        session.execute(moved)  # another daemon inserted it just now


def last_beat(session: Session, key: str) -> datetime | None:
    """When `key` last ran (`beat`), or None if it never did."""
    return session.scalar(select(Once.at).where(Once.kind == HEARTBEAT, Once.key == key))
