"""The router: one stored message at a time, one unit of work each, by an explicit table."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select

from .addresses import Destination, Role
from .clock import Clock
from .config import Settings
from .db import Store
from .dmarc import default_lookup, domain_of
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


def warm_dmarc_cache(store: Store) -> None:
    """Look up the next post's author domain before its transaction opens.

    A DMARC lookup can take seconds; done inside the unit of work it would hold the store's
    write lock that long. The lookup's cache then answers at once during handling.
    """
    with store.reading() as session:
        raw = session.scalar(
            select(Inbound.raw)
            .where(Inbound.status == "new", Inbound.role.in_((Role.POST.value, Role.OWNER.value)))
            .order_by(Inbound.id)
            .limit(1)
        )
    domain = domain_of(from_address(parse(raw))) if raw is not None else ""
    if domain:
        default_lookup()(domain)


def route_one(store: Store, settings: Settings, renderer: Renderer, clock: Clock) -> bool:
    """Handle the oldest new message; False when none waits.

    The handler runs in a savepoint: if it raises, its work is rolled back and the message is
    marked failed (kept, and shown by `listserv queue`), in the same transaction.
    """
    with store.unit_of_work() as session:
        inbound = session.scalars(
            select(Inbound)
            .where(Inbound.status == "new")
            .order_by(Inbound.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if inbound is None:
            return False
        now = clock.now()
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
            log.exception("inbound %s list=%s role=%s failed", inbound.id, mailing_list.address,
                          role.value)
            inbound.status, inbound.error = "failed", f"{type(exc).__name__}: {exc}"
            return True
        inbound.status, inbound.outcome = "done", outcome
        log.info("inbound %s list=%s role=%s outcome=%s", inbound.id, mailing_list.address,
                 role.value, outcome)
    return True


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
                warm_dmarc_cache(self.store)
                worked = route_one(self.store, self.settings, self.renderer, self.clock)
            except Exception:
                log.exception("router failed; retrying")
                worked = False
            if worked:
                self.delivered.set()
                continue
            self.wake.wait(self.settings.daemon.poll_seconds)
            self.wake.clear()
