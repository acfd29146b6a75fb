"""The queue's two transactions: claim a batch under a lease, record its results.

A worker claims a batch (one message, up to `max_recipients_per_transaction` recipients) under a
lease, sends it, and records the results; a crash re-sends at most the batches in flight. First
attempts are claimed before retries, so mail accepted now is not held up by old mail that keeps
failing; under a sending limit, a retry held back past its time by `due.RETRY_OVERDUE` goes
before them. What the results mean for members is not this module's business: it reports them
through `delivery.feedback.DeliveryFeedback`. With the relay's sending limits, a claim takes
only what they allow (`delivery.limits`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.orm import Session

from listserv.config import OutboundSettings
from listserv.delivery.due import ORDER, RECIPIENTS, due, first_due, ids_in, params
from listserv.delivery.feedback import DeliveryFeedback
from listserv.delivery.limits import UNLIMITED, SendLimits, claim_size, record_usage
from listserv.delivery.transports import Outcome, Result
from listserv.mail.addresses import Role
from listserv.store.models.core import MailingList, Member
from listserv.store.models.outgoing import OutMessage, OutRecipient

MAX_RETRY_DELAY = timedelta(hours=6)

_R = RECIPIENTS.c


@dataclass(frozen=True, slots=True)
class Batch:
    """Claimed recipients of one message."""

    message_id: int
    envelope_from: str
    raw: bytes
    personalize: bool
    list_address: str
    created_at: datetime
    recipients: list[tuple[int, str]]
    # The list's public bounces and leave addresses (SPEC §1 `address.ROLE`; "" = default).
    public: dict[Role, str]
    # For personalized messages: recipient id -> (bounce token, leave token).
    tokens: dict[int, tuple[str, str]]
    # How the post was authenticated when it arrived ("" for mail we composed): the ARC set.
    authentication_results: str = ""

    @property
    def domain(self) -> str:
        """The domain the message is sent for (its signing domain): its list's, else its
        envelope sender's."""
        return (self.list_address or self.envelope_from).rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class _Message:
    """What a batch needs of its OutMessage."""

    envelope_from: str
    raw: bytes
    personalize: bool
    list_address: str
    created_at: datetime
    public: dict[Role, str]
    authentication_results: str


@functools.cache
def _claim_statement(limit: int, fresh: bool, overdue: bool = False) -> Update:
    """UPDATE … RETURNING that leases up to `limit` due rows of the first due message.

    `fresh`: of the first message with rows never tried, taking only those; `overdue`: the
    same for retries overdue (`due`). Built once per limit (binds `params(now)`, `until`): the
    hot loop of a large delivery pays neither for building nor for compiling it again.
    """
    first = first_due(fresh, overdue)
    chosen = (
        select(_R.id)
        .where(due(fresh, overdue), _R.message_id == first)
        .order_by(*ORDER)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        update(RECIPIENTS)
        .where(_R.id.in_(chosen))
        .values(lease_until=bindparam("until", type_=_R.lease_until.type))
        .returning(_R.id, _R.email, _R.member_id, _R.message_id)
    )


def _message(session: Session, message_id: int) -> _Message:
    row = session.execute(
        select(
            OutMessage.envelope_from,
            OutMessage.raw,
            OutMessage.personalize,
            OutMessage.created_at,
            OutMessage.authentication_results,
            MailingList.name,
            MailingList.domain,
            MailingList.extra,
        )
        .outerjoin(MailingList, MailingList.id == OutMessage.list_id)
        .where(OutMessage.id == message_id)
    ).one()
    address = f"{row.name}@{row.domain}" if row.name else ""
    extra = row.extra or {}
    public = {role: str(extra.get(f"address.{role.value}", ""))
              for role in (Role.BOUNCES, Role.LEAVE)}
    return _Message(row.envelope_from, row.raw, row.personalize, address, row.created_at,
                    public, row.authentication_results)


def claim(session: Session, now: datetime, lease: timedelta, limit: int,
          limits: SendLimits | None = None) -> Batch | None:
    """Claim up to `limit` due recipients of the oldest due message, under a lease.

    First attempts go first: the rows never tried of the message first due among them; only
    when there are none, the rows of the message first due of all (the retries). A post
    accepted now thus goes out now, however many old retries are due, and the retries keep
    their order among themselves. Under `limits`, though, retries overdue by more than
    RETRY_OVERDUE (`due`) go first: held back that long by newer mail (the limit and a steady
    stream of posts), they would otherwise wait until they are given up.

    One statement takes the lease and returns the rows (UPDATE … RETURNING, on SQLite and on
    PostgreSQL, where the inner SELECT skips rows other workers hold locked). Its SELECTs walk
    the index ix_out_recipients_fresh (first attempts) or ix_out_recipients_due (all) in its
    own order, so none sorts the whole queue: claiming costs the same at the start of a
    100,000-member delivery as at its end.

    With `limits`, the batch is what the relay's limits still allow (None, claiming nothing,
    when they allow nothing now), and a `send_usage` row records it in the same transaction.
    """
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    transactions = UNLIMITED
    if limits is not None:
        limited = claim_size(session, now, limits, limit)
        if limited is None:
            return None
        limit, transactions = limited
    if postgres:
        # Right after a large post is queued the planner's statistics still say "few queued
        # rows", and it picks a bitmap scan of every queued row plus a sort: 65 ms per claim
        # at the start of a 100,000-member delivery instead of 6. Ask for the index's order.
        connection.exec_driver_sql("SET LOCAL enable_sort = off")
    binds = {**params(now), "until": now + lease}
    rows = []
    if limits is not None:
        # Only a limit starves retries for long (without one the workers send as fast as the
        # relay takes mail): the unlimited hot path keeps its two statements.
        rows = connection.execute(_claim_statement(limit, False, True), binds).all()
    if not rows:
        rows = connection.execute(_claim_statement(limit, True), binds).all()
    if not rows:
        rows = connection.execute(_claim_statement(limit, False), binds).all()
    if postgres:
        connection.exec_driver_sql("SET LOCAL enable_sort TO DEFAULT")
    if not rows:
        if limits is not None:
            limits.drained()
        return None
    rows.sort(key=itemgetter(0))
    message_id = rows[0][3]
    message = _message(session, message_id)
    tokens: dict[int, tuple[str, str]] = {}
    recipients = [(rid, email) for rid, email, _, _ in rows]
    if message.personalize:
        member_ids = {member_id: rid for rid, _, member_id, _ in rows if member_id is not None}
        m = Member.__table__.c
        found = connection.execute(
            select(m.id, m.bounce_token, m.leave_token).where(
                m.id.in_(member_ids), m.status == "active"
            )
        ).all()
        tokens = {member_ids[mid]: (bounce, leave) for mid, bounce, leave in found}
        gone = [rid for rid, _ in recipients if rid not in tokens]
        if gone:
            # The member left or was disabled after the post was queued: not theirs any more.
            connection.execute(
                update(RECIPIENTS)
                .where(_R.id.in_(gone))
                .values(status="dropped", lease_until=None, last_error="no longer a member")
            )
            recipients = [(rid, email) for rid, email in recipients if rid in tokens]
        if len(recipients) > transactions:
            # The next message was not the one looked at (another worker took it): give back
            # what the transactions left cannot carry.
            recipients, excess = recipients[:transactions], recipients[transactions:]
            connection.execute(
                update(RECIPIENTS)
                .where(ids_in([rid for rid, _ in excess]))
                .values(lease_until=None)
            )
    if limits is not None and recipients:
        record_usage(session, now, messages=len(recipients) if message.personalize else 1,
                     recipients=len(recipients))
    return Batch(
        message_id=message_id,
        envelope_from=message.envelope_from,
        raw=message.raw,
        personalize=message.personalize,
        list_address=message.list_address,
        created_at=message.created_at,
        recipients=recipients,
        public=message.public,
        tokens=tokens,
        authentication_results=message.authentication_results,
    )


def record(
    session: Session,
    results: dict[int, Result],
    now: datetime,
    settings: OutboundSettings,
    created_at: datetime,
    feedback: DeliveryFeedback,
) -> None:
    """Write each recipient's result: sent, failed for good, or due again after a backoff.

    `feedback` hears of every recipient sent, refused for good, or given up on after a
    temporary failure about the recipient (not one of the transaction or the connection).
    """
    sent = [rid for rid, result in results.items() if result.outcome is Outcome.SENT]
    if sent:
        session.connection().execute(
            update(RECIPIENTS)
            .where(ids_in(sent))
            .values(status="sent", sent_at=now, attempted_at=now, lease_until=None,
                    last_error="")
        )
        feedback.delivered(session, sent, now)  # a probe accepted: its member may be enabled
    if len(sent) == len(results):
        return
    failed = {rid: r for rid, r in results.items() if r.outcome is not Outcome.SENT}
    give_up = created_at + timedelta(days=settings.give_up_days)
    rows = session.scalars(select(OutRecipient).where(OutRecipient.id.in_(failed))).all()
    for row in rows:
        result = failed[row.id]
        row.attempts += 1
        row.attempted_at = now
        row.lease_until = None
        row.last_error = result.reason
        # Refused at RCPT TO: final, unless the feedback says to retry (a provider's rate or
        # quota limit is no one's bounce). A permanent failure that is not about the recipient
        # (an envelope sender no relay command can carry) is final and scores nobody.
        if result.outcome is Outcome.PERMANENT and (
                not result.about_recipient
                or feedback.refused(session, row, result.reason, now)):
            row.status = "failed"
            continue
        delay = timedelta(seconds=settings.retry_base_seconds * 2 ** (row.attempts - 1))
        row.next_attempt_at = now + min(delay, MAX_RETRY_DELAY)
        if row.next_attempt_at > give_up:
            row.status = "failed"
            row.last_error = f"gave up after {settings.give_up_days:g} days: {result.reason}"
            if result.about_recipient:
                feedback.gave_up(session, row, result.reason, now)
    # Written now: a claim in the same transaction (Core, no autoflush) must see these rows
    # as they are (the bounce scoring above may already have flushed a cleared lease).
    session.flush()
