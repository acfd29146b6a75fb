"""The router: stored messages in batches, one unit of work per batch and a savepoint per
message (`route_due`); for each, the guards once
(listserv/router/guards.py), then the role's handler from an explicit table.

A message whose handling fails for a passing reason (`transient`: the database, DNS, a
timeout) is tried again later, 1, 2, 4 … minutes apart and at most an hour, for five days
(as long as an MTA keeps a message it cannot deliver); then it is marked failed. One that
fails through an error in our code is marked failed at once. Failed messages stay in the
store, are shown by `listserv queue`, and `listserv queue retry ID` runs one again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import dns.exception
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy import exc as db_errors
from sqlalchemy.orm import Session

from listserv.chair import replies
from listserv.chair.actions import before_approving
from listserv.clock import Clock
from listserv.config import Settings
from listserv.delivery.listmail import list_id
from listserv.handlers import bounce, column, confirm, join, leave, owner, peer_input, post, request
from listserv.handlers.context import Context
from listserv.identity import authentication, dkim
from listserv.identity.proof import identify
from listserv.intent.guard import Guard, guard
from listserv.intent.understanding import Understanding
from listserv.mail.addresses import Destination, Role, normalize
from listserv.mail.dns import DnsFailure
from listserv.mail.headers import from_address
from listserv.mail.message import parse
from listserv.mail.render import Renderer
from listserv.membership.bans import patterns_of
from listserv.posting.dmarc import look_up_ahead
from listserv.router import guards
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.models.core import Inbound, InboundRaw, MailingList

log = logging.getLogger(__name__)

Handler = Callable[[Context], str]

HANDLERS: dict[Role, Handler] = {
    Role.POST: post.handle,
    Role.OWNER: owner.handle,
    Role.REQUEST: request.handle,
    Role.JOIN: join.handle,
    Role.LEAVE: leave.handle,
    Role.CONFIRM: confirm.handle,
    Role.COLUMN: column.handle,
    Role.PEER_INPUT: peer_input.handle,
    Role.BOUNCES: bounce.handle,
}


#: The first wait after a transient failure; each next one is twice as long, up to RETRY_MOST.
RETRY_FIRST = timedelta(minutes=1)
RETRY_MOST = timedelta(hours=1)
#: How long a message is retried before it is marked failed.
RETRY_FOR = timedelta(days=5)

#: Failures that pass: the store (a lock, a lost connection, a full disk: SQLAlchemy's
#: OperationalError), DNS and network timeouts.
TRANSIENT: tuple[type[BaseException], ...] = (
    db_errors.OperationalError, db_errors.InterfaceError, db_errors.DisconnectionError,
    db_errors.TimeoutError, dns.exception.Timeout, DnsFailure, TimeoutError, ConnectionError,
)


#: SQLite reports a missing table or column (a migration not run, a query that names the wrong
#: column) as an OperationalError too: those are bugs, which waiting five days does not mend.
SCHEMA_BUGS = ("no such table", "no such column")


def transient(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is worth trying again later."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, db_errors.OperationalError) and any(
                bug in str(cause.orig) for bug in SCHEMA_BUGS):
            return False
        if isinstance(cause, TRANSIENT):
            return True
        cause = cause.__cause__
    return False


def retry_delay(attempts: int) -> timedelta | None:
    """The wait after the `attempts`-th transient failure; None once RETRY_FOR is spent."""
    waits = [min(RETRY_FIRST * 2 ** min(n, 16), RETRY_MOST) for n in range(attempts)]
    if sum(waits, timedelta()) >= RETRY_FOR:
        return None
    return waits[-1]


def _due(now: datetime) -> ColumnElement[bool]:
    return (Inbound.status == "new") & or_(Inbound.next_attempt_at.is_(None),
                                           Inbound.next_attempt_at <= now)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message read before its transaction opens: parsed, and a post's administrivia
    verdict (the CPU-heavy part of the guards)."""

    inbound_id: int
    msg: EmailMessage
    administrivia: tuple[Guard, Understanding] | None


def prepare(inbound_id: int, raw: bytes, role: Role, list_name: str) -> Prepared:
    """Parse a stored message and, for a post, run the administrivia guard (pure)."""
    msg = parse(raw)
    return Prepared(inbound_id, msg, guard(msg, list_name) if role is Role.POST else None)


#: At most this many waiting messages are read ahead and routed in one unit of work on
#: PostgreSQL: a burst costs one commit per batch instead of one per message, and intake's
#: inserts do not wait for the router's rows (bench/intake.py, 8 clients: delivered 18 posts/s
#: instead of 9, accepted 198 instead of 134).
ROUTE_BATCH = 16
#: On SQLite, one message per unit of work: its single writer lock makes every DATA wait for
#: the router's whole transaction, and batches measured worse (8 clients: accepted 21 posts/s
#: with 16 per batch, 40 with 4, 72 with 1; delivered no better), since a commit there is
#: cheap next to the routing's CPU (docs/benchmarks.md).
ROUTE_BATCH_SQLITE = 1
#: A unit of work takes no further message once it has been open this long: the write lock is
#: given up often enough for intake and the delivery worker to write between batches.
ROUTE_BATCH_SECONDS = 0.05


def prepare_next(store: Store, now: datetime) -> Prepared | None:
    """The next message that is due, read and prepared (`prepare_due`); None when none is."""
    prepared = prepare_due(store, now, 1)
    return prepared[0] if prepared else None


def prepare_due(store: Store, now: datetime, most: int = ROUTE_BATCH) -> list[Prepared]:
    """Read up to `most` messages that are due, oldest first, and do their slow work before
    their transaction opens.

    The administrivia guard takes CPU time and a DMARC or DKIM key lookup can take seconds;
    done inside the unit of work they would hold the store's write lock that long (the
    lookups' caches then answer at once during handling). A failure here is only logged:
    `route_one` does the work again inside the transaction, where a failure is put off or
    marks the message failed.
    """
    with store.reading() as session:
        rows = session.execute(
            select(Inbound.id, InboundRaw.raw, Inbound.role, Inbound.token, MailingList.name)
            .outerjoin(InboundRaw, InboundRaw.id == Inbound.raw_id)
            .outerjoin(MailingList, MailingList.id == Inbound.list_id)
            .where(_due(now))
            .order_by(Inbound.id)
            .limit(most)
        ).all()
    out = []
    for row in rows:
        if row.name is None:
            continue
        try:
            out.append(_prepare_row(store, row.id, row.raw or b"", Role(row.role), row.name,
                                    row.token))
        except Exception:
            log.warning("inbound %s: reading it before its transaction failed", row.id,
                        exc_info=True)
    return out


def _prepare_row(store: Store, inbound_id: int, raw: bytes, role: Role, list_name: str,
                 token: str | None) -> Prepared:
    prepared = prepare(inbound_id, raw, role, list_name)
    if role in (Role.POST, Role.OWNER):
        look_up_ahead(prepared.msg)
        authentication.look_up_ahead(prepared.msg)
    elif role is Role.CONFIRM and token:
        with store.reading() as session:
            held = replies.posts_it_may_approve(session, token)
        for held_raw in held:
            before_approving(held_raw)
    dkim.look_up_ahead(prepared.msg, from_address(prepared.msg))
    return prepared


def guard_facts(ctx: Context, administrivia: Guard | None) -> guards.Facts:
    """What the guards read about the message in `ctx`."""
    ml = ctx.mailing_list
    return guards.Facts(
        msg=ctx.msg, mail_from=ctx.inbound.mail_from, size=ctx.inbound.size,
        stored=len(ctx.inbound.raw), list_id=list_id(ml), list_address=ml.address,
        owner_address=ml.role_address(Role.OWNER),
        own_addresses=frozenset(request.own_addresses(ml) | {normalize(ml.address)}),
        max_post_kb=ml.max_post_kb, administrivia=administrivia,
        bans=tuple(patterns_of(ctx.session, ml)),
    )


def handle(ctx: Context, administrivia: tuple[Guard, Understanding] | None) -> str:
    """The guards once, then the role's handler; returns the outcome for the log."""
    verdict_of_guard, understood = administrivia or (None, None)
    verdict = guards.check(ctx.destination.role, guard_facts(ctx, verdict_of_guard))
    if verdict is None:
        return HANDLERS[ctx.destination.role](ctx)
    if verdict.action is guards.Action.REQUEST and understood is not None:
        return request.act(ctx, understood)
    if verdict.action is guards.Action.HOLD:  # posts only: a held item is a post
        return post.hold_post(ctx, verdict.reason)
    audit(ctx.session, ctx.now, DAEMON, verdict.action.value,
          f"inbound #{ctx.inbound.id}: {verdict.reason}", ctx.mailing_list.id)
    return f"{verdict.action.value}: {verdict.reason}"


def route_one(store: Store, settings: Settings, renderer: Renderer, clock: Clock,
              prepared: Prepared | None = None) -> bool:
    """Handle the oldest message that is due; False when none is.

    `prepared`: the message `prepare_next` read, used when it is the one claimed.
    """
    return route_due(store, settings, renderer, clock, [prepared] if prepared else [], 1) > 0


def route_due(store: Store, settings: Settings, renderer: Renderer, clock: Clock,
              prepared: Sequence[Prepared] = (), most: int = ROUTE_BATCH) -> int:
    """Handle up to `most` messages that are due, oldest first, in one unit of work (fewer
    once it has been open `ROUTE_BATCH_SECONDS`); returns how many were claimed (0: none is
    due).

    `prepared`: messages `prepare_due` read, used for those claimed. Each message is handled
    in a savepoint of its own: an error of our code marks only it failed. A transient error
    rolls back only its savepoint and ends the batch: the messages before it are committed,
    and it is put off (`retry_delay`) in a unit of work of its own. When the unit of work
    itself fails transiently (the commit), all of it is rolled back and the last message
    claimed is put off; the others are due again at once.
    """
    claimed: list[int] = []
    failure: list[BaseException] = []
    try:
        _route_due(store, settings, renderer, clock, claimed, failure,
                   {p.inbound_id: p for p in prepared}, most)
    except Exception as exc:
        if not claimed or not transient(exc):
            raise
        failure = [exc]
    if failure:
        with store.unit_of_work() as session:
            _put_off(session, claimed[-1], failure[0], clock.now())
    return len(claimed)


def _route_due(store: Store, settings: Settings, renderer: Renderer, clock: Clock,
               claimed: list[int], failure: list[BaseException],
               prepared: dict[int, Prepared], most: int) -> None:
    """Handle up to `most` due messages in one unit of work (fewer once it has been open
    `ROUTE_BATCH_SECONDS`), naming each in `claimed`; a transient error of one is put in
    `failure` and ends the batch."""
    started = time.monotonic()
    with store.unit_of_work() as session:
        for _ in range(most):
            if claimed and time.monotonic() - started >= ROUTE_BATCH_SECONDS:
                return
            now = clock.now()
            inbound = session.scalars(
                select(Inbound)
                .where(_due(now), Inbound.id.not_in(claimed))
                .order_by(Inbound.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if inbound is None:
                return
            claimed.append(inbound.id)
            # Handled at the time of its handling, read once it is claimed: the query may have
            # waited for a writer that stored this very message after `now` was read.
            now = clock.now()
            try:
                _route_claimed(session, settings, renderer, now, inbound,
                               prepared.get(inbound.id))
            except Exception as exc:
                if not transient(exc):
                    raise
                failure.append(exc)
                return


def _route_claimed(session: Session, settings: Settings, renderer: Renderer, now: datetime,
                   inbound: Inbound, prepared: Prepared | None) -> None:
    """Handle one claimed message in a savepoint.

    If the guards or the handler raise an error of our code, their work is rolled back and
    the message is marked failed (kept, and shown by `listserv queue`); a transient error
    rolls back the savepoint and is raised on.
    """
    inbound.processed_at = now
    mailing_list = session.get(MailingList, inbound.list_id) if inbound.list_id else None
    role = Role(inbound.role)
    if mailing_list is None:
        inbound.status, inbound.outcome = "failed", "the list no longer exists"
        log.info("inbound %s rcpt=%s outcome=failed: no list", inbound.id, inbound.rcpt)
        return
    try:
        with session.begin_nested():
            if prepared is None:
                prepared = prepare(inbound.id, inbound.raw, role, mailing_list.name)
            destination = Destination(mailing_list.address, role, inbound.token)
            identity = identify(session, settings, inbound, prepared.msg, destination, now)
            log.info("inbound %s sender=%s proven=%s (%s)", inbound.id,
                     identity.address or "-", identity.proven, identity.reason)
            ctx = Context(
                session=session, settings=settings, renderer=renderer, now=now,
                mailing_list=mailing_list, destination=destination,
                inbound=inbound, msg=prepared.msg, identity=identity,
            )
            outcome = handle(ctx, prepared.administrivia)
    except Exception as exc:
        if transient(exc):
            raise
        log.exception("inbound %s list=%s role=%s failed", inbound.id, mailing_list.address,
                      role.value)
        inbound.status, inbound.error = "failed", f"{type(exc).__name__}: {exc}"
        inbound.next_attempt_at = None
        return
    inbound.status, inbound.outcome, inbound.error = "done", outcome, ""
    inbound.next_attempt_at = None
    log.info("inbound %s list=%s role=%s outcome=%s", inbound.id, mailing_list.address,
             role.value, outcome)


def _put_off(session: Session, inbound_id: int, error: BaseException, now: datetime) -> None:
    """Record a transient failure: due again after `retry_delay`, or failed for good."""
    inbound = session.get(Inbound, inbound_id)
    if inbound is None:
        return
    inbound.attempts += 1
    inbound.processed_at = now
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    delay = retry_delay(inbound.attempts)
    if delay is None:
        inbound.status, inbound.next_attempt_at = "failed", None
        inbound.error = f"gave up after {inbound.attempts} attempts: {reason}"
        log.error("inbound %s: %s", inbound.id, inbound.error)
        return
    inbound.next_attempt_at = now + delay
    inbound.error = f"attempt {inbound.attempts} failed: {reason}"
    log.warning("inbound %s: %s; trying again at %s", inbound.id, inbound.error,
                inbound.next_attempt_at.isoformat())


class Router(threading.Thread):
    """Routes stored messages until stopped; woken by intake, with a poll as fallback."""

    def __init__(self, store: Store, settings: Settings, renderer: Renderer, clock: Clock,
                 wake: threading.Event, stopping: threading.Event,
                 delivered: threading.Event) -> None:
        super().__init__(name="router", daemon=True)
        self.store, self.settings, self.renderer, self.clock = store, settings, renderer, clock
        self.wake, self.stopping, self.delivered = wake, stopping, delivered

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                worked = self.route_waiting()
            except Exception:
                log.exception("router failed; retrying")
                worked = False
            if worked:
                self.delivered.set()
                continue
            self.wake.wait(self.settings.daemon.poll_seconds)
            self.wake.clear()

    def route_waiting(self) -> bool:
        """Read ahead up to `ROUTE_BATCH` due messages (`ROUTE_BATCH_SQLITE` on SQLite), then
        route them in as many units of work as their time bound makes; False when none was
        due."""
        most = ROUTE_BATCH_SQLITE if self.store.engine.dialect.name == "sqlite" else ROUTE_BATCH
        prepared = prepare_due(self.store, self.clock.now(), most)
        routed = 0
        while True:
            count = route_due(self.store, self.settings, self.renderer, self.clock,
                              prepared[routed:], most)
            routed += count
            if count == 0 or routed >= len(prepared):
                return routed > 0
