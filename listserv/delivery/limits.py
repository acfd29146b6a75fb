"""The relay's sending limits (`messages_per_minute`, `recipients_per_day`) and their ledger.

The limits are counted at claim time over the `send_usage` ledger, one row per claimed batch:
mail beyond them is not claimed and waits, still queued (docs/delivery.md, "Sending limits").
`claim_size` says how much the next claim may take; `record_usage` writes its ledger row in the
claim's transaction.
"""

from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import Select, case, delete, exists, func, insert, select
from sqlalchemy.orm import Session

from listserv.config import OutboundSettings
from listserv.delivery.due import due, first_due, params
from listserv.store.models.outgoing import OutMessage, SendUsage

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
# pg_advisory_xact_lock key serialising limited claims across workers and daemons ("lsrv").
SEND_LIMIT_LOCK = 0x6C737276

_USAGE = SendUsage.__table__
_U = _USAGE.c
UNLIMITED = 1 << 62


class SendLimits:
    """The relay's limits (`[outbound]`; 0 = none), counted over the `send_usage` ledger.

    It also says, once, when the limits start holding queued mail back: the daemon makes one
    and its delivery workers share it, so the line is not written once per worker.
    """

    def __init__(self, messages_per_minute: int = 0, recipients_per_day: int = 0) -> None:
        self.messages_per_minute = messages_per_minute  # SMTP transactions in any 60 s
        self.recipients_per_day = recipients_per_day  # recipients in any 24 h
        self._lock = threading.Lock()
        self._holding = False

    @classmethod
    def of(cls, settings: OutboundSettings) -> SendLimits | None:
        """The configured limits; None when there are none (then the queue counts nothing)."""
        if max(settings.messages_per_minute, settings.recipients_per_day) <= 0:
            return None
        return cls(settings.messages_per_minute, settings.recipients_per_day)

    def holding(self, session: Session, now: datetime, reason: str) -> None:
        """Log that `reason` holds mail back, unless already said or nothing is due."""
        if self._holding:
            return
        if not session.connection().execute(_anything_due(), {"now": now}).scalar():
            return
        with self._lock:
            if self._holding:
                return
            self._holding = True
        log.info("sending limit reached (%s): queued mail waits until it allows more", reason)

    def drained(self) -> None:
        """Nothing was due: the next time the limits hold mail back is worth a line again."""
        self._holding = False


def allowance(session: Session, now: datetime, limits: SendLimits) -> tuple[int, int]:
    """(SMTP transactions, recipients) the limits still allow at `now` (UNLIMITED for none).

    On PostgreSQL a transaction-level advisory lock is taken first and held until the caller
    commits the claim and its ledger row, so workers and daemons sharing the database count
    one after another (on SQLite every write transaction is serialised already).
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(SEND_LIMIT_LOCK)))
    window = DAY if limits.recipients_per_day > 0 else MINUTE
    this_minute = case((_U.at > now - MINUTE, _U.messages), else_=0)
    used_messages, used_recipients = connection.execute(
        select(func.coalesce(func.sum(this_minute), 0), func.coalesce(func.sum(_U.recipients), 0))
        .where(_U.at > now - window)
    ).one()
    messages = limits.messages_per_minute - int(used_messages)
    recipients = limits.recipients_per_day - int(used_recipients)
    return (messages if limits.messages_per_minute > 0 else UNLIMITED,
            recipients if limits.recipients_per_day > 0 else UNLIMITED)


def prune_usage(session: Session, now: datetime) -> None:
    """Forget ledger rows older than the longest window (a day): they count for nothing."""
    session.connection().execute(delete(_USAGE).where(_U.at <= now - DAY))


def record_usage(session: Session, now: datetime, messages: int, recipients: int) -> None:
    """Write a claimed batch's ledger row: `messages` SMTP transactions for `recipients`."""
    session.connection().execute(insert(_USAGE).values(
        at=now, messages=messages, recipients=recipients,
    ))


@functools.cache
def _first_due_personalized() -> Select[tuple[bool]]:
    """Whether the message the next claim would take is personalized (a row, or none)."""
    first = func.coalesce(first_due(fresh=False, overdue=True), first_due(fresh=True),
                          first_due(fresh=False))
    return select(OutMessage.personalize).where(OutMessage.id == first)


@functools.cache
def _anything_due() -> Select[tuple[bool]]:
    return select(exists().where(due()))


def claim_size(session: Session, now: datetime, limits: SendLimits,
               limit: int) -> tuple[int, int] | None:
    """(the claim's size, the transactions allowed) under `limits`; None when nothing may go.

    A personalized message makes one transaction per recipient, a batched one a single
    transaction: the claim's size depends on which message comes next, looked up only when
    the transactions left are what binds.
    """
    messages, recipients = allowance(session, now, limits)
    if messages <= 0 or recipients <= 0:
        reason = (f"messages_per_minute = {limits.messages_per_minute}" if messages <= 0
                  else f"recipients_per_day = {limits.recipients_per_day}")
        limits.holding(session, now, reason)
        return None
    limit = min(limit, recipients)
    if messages < limit and session.connection().execute(
        _first_due_personalized(), params(now)
    ).scalar():
        limit = messages
    return limit, messages

