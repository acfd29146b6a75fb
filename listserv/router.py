"""The router: one stored message at a time, one unit of work each, by an explicit table.

A message whose handling fails for a passing reason (`transient`: the database, DNS, a
timeout) is tried again later, 1, 2, 4 … minutes apart and at most an hour, for five days
(as long as an MTA keeps a message it cannot deliver); then it is marked failed. One that
fails through an error in our code is marked failed at once. Failed messages stay in the
store, are shown by `listserv queue`, and `listserv queue retry ID` runs one again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import dns.exception
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy import exc as db_errors
from sqlalchemy.orm import Session

from .addresses import Destination, Role
from .clock import Clock
from .config import Settings
from .db import Store
from .dmarc import DnsFailure, default_lookup, domain_of
from .handlers import bounce, column, confirm, join, leave, owner, peer_input, post, request
from .handlers.context import Context
from .models import Inbound, MailingList
from .posting import parse
from .render import Renderer
from .rules import from_address

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


def transient(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is worth trying again later."""
    cause: BaseException | None = error
    while cause is not None:
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


def warm_dmarc_cache(store: Store, now: datetime) -> None:
    """Look up the next post's author domain before its transaction opens.

    A DMARC lookup can take seconds; done inside the unit of work it would hold the store's
    write lock that long. The lookup's cache then answers at once during handling.
    """
    with store.reading() as session:
        raw = session.scalar(
            select(Inbound.raw)
            .where(_due(now), Inbound.role.in_((Role.POST.value, Role.OWNER.value)))
            .order_by(Inbound.id)
            .limit(1)
        )
    domain = domain_of(from_address(parse(raw))) if raw is not None else ""
    if domain:
        default_lookup()(domain)


def route_one(store: Store, settings: Settings, renderer: Renderer, clock: Clock) -> bool:
    """Handle the oldest message that is due; False when none is.

    A transient error rolls back the whole unit of work; the message is then put off
    (`retry_delay`) in a unit of work of its own.
    """
    claimed: list[int] = []
    try:
        return _route_one(store, settings, renderer, clock, claimed)
    except Exception as exc:
        if not claimed or not transient(exc):
            raise
        with store.unit_of_work() as session:
            _put_off(session, claimed[0], exc, clock.now())
    return True


def _route_one(store: Store, settings: Settings, renderer: Renderer, clock: Clock,
               claimed: list[int]) -> bool:
    """Handle the oldest message that is due, naming it in `claimed`; False when none is.

    The handler runs in a savepoint: if it raises an error of our code, its work is rolled
    back and the message is marked failed (kept, and shown by `listserv queue`), in the same
    transaction; a transient error is raised on.
    """
    with store.unit_of_work() as session:
        now = clock.now()
        inbound = session.scalars(
            select(Inbound)
            .where(_due(now))
            .order_by(Inbound.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if inbound is None:
            return False
        claimed.append(inbound.id)
        inbound.processed_at = now
        mailing_list = session.get(MailingList, inbound.list_id) if inbound.list_id else None
        role = Role(inbound.role)
        if mailing_list is None:
            inbound.status, inbound.outcome = "failed", "the list no longer exists"
            log.info("inbound %s rcpt=%s outcome=failed: no list", inbound.id, inbound.rcpt)
            return True
        try:
            with session.begin_nested():
                ctx = Context(
                    session=session, settings=settings, renderer=renderer, now=now,
                    mailing_list=mailing_list,
                    destination=Destination(mailing_list.address, role, inbound.token),
                    inbound=inbound, msg=parse(inbound.raw),
                )
                outcome = HANDLERS[role](ctx)
        except Exception as exc:
            if transient(exc):
                raise
            log.exception("inbound %s list=%s role=%s failed", inbound.id, mailing_list.address,
                          role.value)
            inbound.status, inbound.error = "failed", f"{type(exc).__name__}: {exc}"
            inbound.next_attempt_at = None
            return True
        inbound.status, inbound.outcome, inbound.error = "done", outcome, ""
        inbound.next_attempt_at = None
        log.info("inbound %s list=%s role=%s outcome=%s", inbound.id, mailing_list.address,
                 role.value, outcome)
    return True


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
                warm_dmarc_cache(self.store, self.clock.now())
                worked = route_one(self.store, self.settings, self.renderer, self.clock)
            except Exception:
                log.exception("router failed; retrying")
                worked = False
            if worked:
                self.delivered.set()
                continue
            self.wake.wait(self.settings.daemon.poll_seconds)
            self.wake.clear()
