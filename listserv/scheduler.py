"""Work due by the clock: held messages that expire, the daily summary of what waits, digests,
pruning, scheduled backups.

Each sending is recorded in the transaction that queues it (a `Once` row under a unique key
where it must happen once), so a restart or a second daemon repeats nothing.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.bounces import steps as bounces
from listserv.chair.actions import may_mail_sender
from listserv.chair.summary import send_daily_summaries
from listserv.column import calls as column
from listserv.config import RetentionSettings
from listserv.delivery.notices import notify
from listserv.digests import sending as digests
from listserv.mail.render import Renderer
from listserv.meetings import series as meetings
from listserv.membership.subscriptions import expire_requests
from listserv.operations.scheduled import ScheduledBackups
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.models.core import Held
from listserv.store.once import beat
from listserv.store.retention import give_back_space, prune

from .clock import Clock

log = logging.getLogger(__name__)

#: Pruning's pace: its queries read whole indexes, so not on every tick.
PRUNE_EVERY = timedelta(hours=1)


def expire_held(session: Session, renderer: Renderer, now: datetime) -> int:
    """Expire held messages past their time, telling each sender; returns how many."""
    due = session.scalars(
        select(Held).where(Held.status == "waiting", Held.expires_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for held in due:
        held.status, held.decided_at, held.decided_by = "expired", now, DAEMON
        audit(session, now, DAEMON, "held-expired", f"#{held.id} from {held.sender}",
              held.list_id)
        if may_mail_sender(held):
            notify(session, renderer, held.mailing_list, "notice-held-expired.txt",
                   [held.sender], now, kind="notice", lang=held.lang, held=held)
    return len(due)


class Pruning:
    """Retention's pruning (SPEC §7), at most once per `PRUNE_EVERY` of the clock."""

    def __init__(self, settings: RetentionSettings) -> None:
        self.settings = settings
        self.last: datetime | None = None

    def __call__(self, store: Store, now: datetime) -> None:
        if self.last is not None and now - self.last < PRUNE_EVERY:
            return
        pruned = prune(store, now, self.settings.inbound_days, self.settings.outgoing_days)
        freed = give_back_space(store)
        self.last = now
        log.info("retention: pruned %s; %d free pages given back", pruned, freed)


def run_due(store: Store, renderer: Renderer, clock: Clock, pruning: Pruning,
            backups: ScheduledBackups | None = None) -> None:
    """Everything due now, each kind of work in its own unit of work.

    The clock is read once: every job of a run sees the same instant (a clock moved during a
    run would otherwise let pruning see a later time than the expiry before it).
    """
    now = clock.now()
    for job in (expire_held, send_daily_summaries):
        with store.unit_of_work() as session:
            job(session, renderer, now)
    with store.unit_of_work() as session:
        expire_requests(session, now)
    meetings.due_work(store, renderer, now)  # series ahead, reminders (own units of work)
    bounces.due_work(store, renderer, now)  # probes, warnings, removals, score decay
    column.due_work(store, renderer, now)  # calls for submissions, deadline summaries
    digests.due_work(store, renderer, now)  # digests due by time or size (own units of work)
    pruning(store, now)  # small batches, each its own unit of work
    with store.unit_of_work() as session:
        beat(session, "scheduler", now)  # `listserv status` shows the last run
    if backups is not None:
        backups(store, now)  # last: the snapshot holds what this run did


class Scheduler(threading.Thread):
    """Runs due work every tick, or when woken (tests move a fake clock, then wake it)."""

    def __init__(self, store: Store, renderer: Renderer, clock: Clock, tick: float,
                 wake: threading.Event, stopping: threading.Event,
                 delivered: threading.Event,
                 retention: RetentionSettings | None = None,
                 backups: ScheduledBackups | None = None) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.backups = backups
        self.pruning = Pruning(retention or RetentionSettings())
        self.store, self.renderer, self.clock, self.tick = store, renderer, clock, tick
        self.wake, self.stopping, self.delivered = wake, stopping, delivered
        # run_now() calls are numbered; a run serves those asked for before it began (one
        # under way when a call comes may have read the clock before it).
        self._asked = self._served = 0
        self._failed = False  # whether the run that served them last failed
        self._done = threading.Condition()

    def run_now(self, timeout: float) -> None:
        """Run the due work now; return once a run that began after this call has finished.

        Raises TimeoutError if none has finished within `timeout` seconds, RuntimeError if
        that run failed (its error is in the log).
        """
        with self._done:
            self._asked += 1
            ticket = self._asked
            self.wake.set()
            if not self._done.wait_for(lambda: self._served >= ticket or self.stopping.is_set(),
                                       timeout):
                raise TimeoutError("the scheduler did not finish a run in time")
            if self._failed:
                raise RuntimeError("the scheduler's run failed (see the log)")

    def run(self) -> None:
        while not self.stopping.is_set():
            with self._done:
                asked = self._asked
            failed = False
            try:
                run_due(self.store, self.renderer, self.clock, self.pruning, self.backups)
                self.delivered.set()
            except Exception:
                log.exception("scheduler run failed; trying again next tick")
                failed = True
            with self._done:
                self._served, self._failed = asked, failed
                self._done.notify_all()
            self.wake.wait(self.tick)
            self.wake.clear()
        with self._done:
            self._done.notify_all()  # a run_now() waiting for a run that will not come
