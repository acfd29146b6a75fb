"""The outgoing queue: what to send to whom, claimed in batches, with per-recipient results.

Mail is queued in the same transaction as the state change that causes it. A worker claims a
batch (one message, up to `max_recipients_per_transaction` recipients) under a lease, sends it,
and records the results; a crash re-sends at most the batches in flight. First attempts are
claimed before retries, so mail accepted now is not held up by old mail that keeps failing.
What the results mean for members is not this module's business: it reports them through
`delivery.feedback.DeliveryFeedback`.

Every message is queued as the bytes that go on the wire: `enqueue` and `enqueue_to_members`
pass it through the one serializer (`listserv.mail.wire`, SPEC §3 "On the wire"), and the
transports send exactly what is stored.

The relay's sending limits (`messages_per_minute`, `recipients_per_day`) are counted at claim
time over the `send_usage` ledger, one row per claimed batch: mail beyond them is not claimed
and waits, still queued (docs/delivery.md, "Sending limits").
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from operator import itemgetter

from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from listserv.clock import Clock
from listserv.config import OutboundSettings
from listserv.delivery.feedback import DeliveryFeedback
from listserv.delivery.transports import Outcome, Result, Transport
from listserv.mail.addresses import Role, role_address
from listserv.mail.mime.copies import personalize
from listserv.mail.wire import to_wire
from listserv.store.engine import Store
from listserv.store.models import MailingList, Member, OutMessage, OutRecipient, SendUsage

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = timedelta(hours=6)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
PRUNE_EVERY = timedelta(hours=1)
# pg_advisory_xact_lock key serialising limited claims across workers and daemons ("lsrv").
SEND_LIMIT_LOCK = 0x6C737276


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
    """
    mailing_list = session.get(MailingList, list_id) if list_id is not None else None
    sender = mailing_list.address if mailing_list is not None else envelope_from
    raw = to_wire(message, sender=sender, now=now, eightbit=eightbit)
    queued = OutMessage(
        list_id=list_id, kind=kind, raw=raw, envelope_from=envelope_from, created_at=now
    )
    session.add(queued)
    session.flush()
    rows = [
        {"message_id": queued.id, "email": r, "next_attempt_at": now}
        for r in dict.fromkeys(recipients)
    ]
    if rows:
        session.execute(OutRecipient.__table__.insert(), rows)
    return queued


def enqueue_to_members(
    session: Session, mailing_list: MailingList, copy: bytes, *, now: datetime,
    kind: str = "post", eightbit: bool = False,
) -> int:
    """Queue a list copy for every active regular member, without loading the roster.

    The copy is stored as its wire bytes (`to_wire`), as `enqueue` stores its message.
    """
    message = OutMessage(
        list_id=mailing_list.id,
        kind=kind,
        raw=to_wire(copy, sender=mailing_list.address, now=now, eightbit=eightbit),
        envelope_from=mailing_list.role_address(Role.BOUNCES),
        personalize=mailing_list.personalize,
        created_at=now,
    )
    session.add(message)
    session.flush()
    due = literal(now, OutRecipient.next_attempt_at.type)
    members = select(literal(message.id), Member.id, Member.email, due).where(
        Member.list_id == mailing_list.id,
        Member.status == "active",
        Member.delivery == "regular",
    )
    insert = OutRecipient.__table__.insert().from_select(
        ["message_id", "member_id", "email", "next_attempt_at"], members
    )
    session.execute(insert)
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT … SELECT.
    queued = select(func.count()).where(OutRecipient.message_id == message.id)
    return int(session.scalar(queued) or 0)


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


@dataclass(frozen=True, slots=True)
class _Message:
    """What a batch needs of its OutMessage."""

    envelope_from: str
    raw: bytes
    personalize: bool
    list_address: str
    created_at: datetime
    public: dict[Role, str]


_RECIPIENTS = OutRecipient.__table__
_R = _RECIPIENTS.c
# The order of the indexes ix_out_recipients_due (status, next_attempt_at, id) and, among
# first attempts, ix_out_recipients_fresh (status, attempts, next_attempt_at, id).
_ORDER = (_R.next_attempt_at, _R.id)


def _due(fresh: bool = False) -> ColumnElement[bool]:
    """A recipient row that may be claimed at `:now`: queued, its time come, no live lease.

    `fresh`: only rows never tried yet (no failed attempt).
    """
    now = bindparam("now", type_=_R.next_attempt_at.type)
    return and_(
        _R.status == "queued",
        *([_R.attempts == 0] if fresh else []),
        _R.next_attempt_at <= now,
        or_(_R.lease_until.is_(None), _R.lease_until < now),
    )


def _first_due(fresh: bool) -> ColumnElement[int]:
    """The message of the first due row (of the first attempts only, with `fresh`)."""
    return (select(_R.message_id).where(_due(fresh)).order_by(*_ORDER).limit(1)
            .scalar_subquery())


@functools.cache
def _claim_statement(limit: int, fresh: bool) -> Update:
    """UPDATE … RETURNING that leases up to `limit` due rows of the first due message.

    `fresh`: of the first message with rows never tried, taking only those. Built once per
    limit (binds `now`, `until`): the hot loop of a large delivery pays neither for building
    nor for compiling it again.
    """
    due = _due(fresh)
    first = _first_due(fresh)
    chosen = (
        select(_R.id)
        .where(due, _R.message_id == first)
        .order_by(*_ORDER)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        update(_RECIPIENTS)
        .where(_R.id.in_(chosen))
        .values(lease_until=bindparam("until", type_=_R.lease_until.type))
        .returning(_R.id, _R.email, _R.member_id, _R.message_id)
    )


def _ids_in(ids: list[int]) -> ColumnElement[bool]:
    """`id IN (…)`, or a few `id BETWEEN lo AND hi` when the ids run in unbroken sequences.

    A claimed batch is nearly always one run of consecutive ids (its rows were queued by one
    INSERT): one BETWEEN instead of 500 bound parameters to render and bind.
    """
    ordered = sorted(ids)
    runs: list[tuple[int, int]] = []
    for rid in ordered:
        if runs and rid == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], rid)
        else:
            runs.append((rid, rid))
            if len(runs) > 4:
                return _R.id.in_(ordered)
    return or_(*(_R.id.between(lo, hi) for lo, hi in runs))


def _message(session: Session, message_id: int) -> _Message:
    row = session.execute(
        select(
            OutMessage.envelope_from,
            OutMessage.raw,
            OutMessage.personalize,
            OutMessage.created_at,
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
                    public)


# -- the relay's sending limits --------------------------------------------------------------


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


@functools.cache
def _first_due_personalized() -> Select[tuple[bool]]:
    """Whether the message the next claim would take is personalized (a row, or none)."""
    first = func.coalesce(_first_due(fresh=True), _first_due(fresh=False))
    return select(OutMessage.personalize).where(OutMessage.id == first)


@functools.cache
def _anything_due() -> Select[tuple[bool]]:
    return select(exists().where(_due()))


def _limit_claim(session: Session, now: datetime, limits: SendLimits,
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
        _first_due_personalized(), {"now": now}
    ).scalar():
        limit = messages
    return limit, messages


def claim(session: Session, now: datetime, lease: timedelta, limit: int,
          limits: SendLimits | None = None) -> Batch | None:
    """Claim up to `limit` due recipients of the oldest due message, under a lease.

    First attempts go first: the rows never tried of the message first due among them; only
    when there are none, the rows of the message first due of all (the retries). A post
    accepted now thus goes out now, however many old retries are due, and the retries keep
    their order among themselves.

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
        limited = _limit_claim(session, now, limits, limit)
        if limited is None:
            return None
        limit, transactions = limited
    if postgres:
        # Right after a large post is queued the planner's statistics still say "few queued
        # rows", and it picks a bitmap scan of every queued row plus a sort: 65 ms per claim
        # at the start of a 100,000-member delivery instead of 6. Ask for the index's order.
        connection.exec_driver_sql("SET LOCAL enable_sort = off")
    params = {"now": now, "until": now + lease}
    rows = connection.execute(_claim_statement(limit, True), params).all()
    if not rows:
        rows = connection.execute(_claim_statement(limit, False), params).all()
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
                update(_RECIPIENTS)
                .where(_R.id.in_(gone))
                .values(status="dropped", lease_until=None, last_error="no longer a member")
            )
            recipients = [(rid, email) for rid, email in recipients if rid in tokens]
        if len(recipients) > transactions:
            # The next message was not the one looked at (another worker took it): give back
            # what the transactions left cannot carry.
            recipients, excess = recipients[:transactions], recipients[transactions:]
            connection.execute(
                update(_RECIPIENTS)
                .where(_ids_in([rid for rid, _ in excess]))
                .values(lease_until=None)
            )
    if limits is not None and recipients:
        connection.execute(insert(_USAGE).values(
            at=now, messages=len(recipients) if message.personalize else 1,
            recipients=len(recipients),
        ))
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
            update(_RECIPIENTS)
            .where(_ids_in(sent))
            .values(status="sent", sent_at=now, lease_until=None, last_error="")
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
        row.lease_until = None
        row.last_error = result.reason
        # Refused at RCPT TO: final, unless the feedback says to retry (a provider's rate or
        # quota limit is no one's bounce).
        if result.outcome is Outcome.PERMANENT and feedback.refused(session, row, result.reason,
                                                                    now):
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


def send_batch(
    batch: Batch, transport: Transport, renew: Callable[[], None] | None = None
) -> dict[int, Result]:
    """Hand a claimed batch to the transport: one transaction, or one per member.

    `renew` is called after each transaction of a personalized batch, so that its holder can
    keep the lease from lapsing while it is still sending.
    """
    if not batch.personalize:
        emails = [email for _, email in batch.recipients]
        by_email = transport.send(batch.envelope_from, emails, batch.raw)
        return {rid: by_email[email] for rid, email in batch.recipients}
    results: dict[int, Result] = {}
    for rid, email in batch.recipients:
        bounce_token, leave_token = batch.tokens[rid]
        data = personalize(batch.raw, role_address(batch.list_address, Role.LEAVE, leave_token,
                                                   batch.public[Role.LEAVE]))
        sender = role_address(batch.list_address, Role.BOUNCES, bounce_token,
                              batch.public[Role.BOUNCES])
        results[rid] = transport.send(sender, [email], data)[email]
        if renew is not None:
            renew()
    return results


class DeliveryWorker(threading.Thread):
    """One connection's worth of delivery: claim, send, record, until stopped."""

    def __init__(
        self,
        store: Store,
        settings: OutboundSettings,
        transport: Transport,
        clock: Clock,
        wake: threading.Event,
        stopping: threading.Event,
        poll_seconds: float,
        name: str,
        limits: SendLimits | None = None,
        *,
        feedback: DeliveryFeedback,
    ) -> None:
        """`limits`: the relay's limits, one object shared by a daemon's workers; `feedback`:
        who hears of the results (the daemon's bounce scoring)."""
        super().__init__(name=name, daemon=True)
        self.feedback = feedback
        self.store = store
        self.settings = settings
        self.transport = transport
        self.clock = clock
        self.wake = wake
        self.stopping = stopping
        self.poll_seconds = poll_seconds
        self.limits = limits
        self._prune_at: datetime | None = None  # when the ledger is next pruned (limits only)

    def run(self) -> None:
        """Claim, send, record, until stopped; then record what was sent, claim nothing more.

        The results of a batch are written in the same transaction as the next claim: one
        commit (one fsync on SQLite) per batch instead of two. A crash loses at most that one
        unrecorded batch per worker, as before: it is sent again when its lease lapses.
        """
        lease = timedelta(seconds=self.settings.claim_lease_seconds)
        limit = self.settings.max_recipients_per_transaction
        done: tuple[Batch, dict[int, Result]] | None = None  # sent, not yet recorded
        failures = 0
        try:
            while True:
                stopping = self.stopping.is_set()
                if stopping and done is None:
                    break
                try:
                    batch = self._record_and_claim(done, None if stopping else (lease, limit))
                    done, failures = None, 0
                except Exception:
                    log.exception("delivery worker %s failed; retrying", self.name)
                    failures += 1
                    if stopping or failures > 1:
                        # Unrecorded results: those recipients are sent again once the
                        # lease lapses (as after a crash).
                        done = None
                    if stopping:
                        break
                    batch = None
                if batch is None:
                    if not stopping:
                        self.wake.wait(self.poll_seconds)
                        self.wake.clear()
                    continue
                if batch.recipients:
                    done = (batch, self._send(batch))
        finally:
            self.transport.close()

    def step(self, lease: timedelta, limit: int) -> bool:
        """Deliver one batch and record it; False when nothing was due."""
        batch = self._record_and_claim(None, (lease, limit))
        if batch is None:
            return False
        if batch.recipients:
            self._record_and_claim((batch, self._send(batch)), None)
        return True

    def _record_and_claim(
        self, done: tuple[Batch, dict[int, Result]] | None, claiming: tuple[timedelta, int] | None
    ) -> Batch | None:
        """In one unit of work: record `done`'s results, then claim the next batch."""
        with self.store.unit_of_work() as session:
            if done is not None:
                batch, results = done
                record(session, results, self.clock.now(), self.settings, batch.created_at,
                       self.feedback)
            if claiming is None:
                return None
            lease, limit = claiming
            now = self.clock.now()
            if self.limits is not None and (self._prune_at is None or now >= self._prune_at):
                prune_usage(session, now)
                self._prune_at = now + PRUNE_EVERY
            return claim(session, now, lease, limit, self.limits)

    def _send(self, batch: Batch) -> dict[int, Result]:
        results = send_batch(batch, self.transport, self._renewer(batch))
        sent = sum(1 for r in results.values() if r.outcome is Outcome.SENT)
        log.info(
            "delivered message %s: %d sent, %d not", batch.message_id, sent, len(results) - sent
        )
        return results

    def _renewer(self, batch: Batch) -> Callable[[], None]:
        """Extends the batch's lease once a third of it has passed, while sending goes on.

        Without it a personalized batch slower than its lease (500 transactions to a slow
        relay) would be claimed again by another worker and sent twice. A worker that makes
        no progress renews nothing, so a hung one still loses its batch to the others.
        """
        lease = timedelta(seconds=self.settings.claim_lease_seconds)
        every = lease.total_seconds() / 3
        ids = [rid for rid, _ in batch.recipients]
        renewed = time.monotonic()

        def renew() -> None:
            nonlocal renewed
            if time.monotonic() - renewed < every:
                return
            renewed = time.monotonic()
            try:
                with self.store.unit_of_work() as session:
                    session.execute(
                        update(_RECIPIENTS)
                        .where(_ids_in(ids), _R.status == "queued")
                        .values(lease_until=self.clock.now() + lease)
                    )
            except Exception:
                log.exception("delivery worker %s could not extend its lease", self.name)

        return renew
