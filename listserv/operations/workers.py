"""Whether a daemon's workers are alive: heartbeats it writes, `listserv status` reads.

A daemon runs threads (the router, the scheduler, `max_connections` delivery workers, the IMAP
poller when enabled) beside the asyncio loop that serves LMTP and SMTP ("intake"). Its
`Heartbeats` thread writes, every `[daemon] heartbeat_seconds`, one `once` row (kind
`heartbeat`) per part still alive: a thread that is running, the intake loop when it answers
a call in time. A part that died stops beating; `listserv status` calls a part not alive once
its last beat is older than `STALE_BEATS` periods, and exits non-zero.

The rows are keyed by the daemon's identity (this machine's name and the data folder), so
that several daemons on one PostgreSQL database each have their own, and `status`, run with a
daemon's config on its machine, looks at that daemon's workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.clock import Clock
from listserv.config import Settings
from listserv.store.engine import Store
from listserv.store.models.core import Once
from listserv.store.once import HEARTBEAT, beat

log = logging.getLogger(__name__)

#: A part is not alive once its last beat is older than this many heartbeat periods.
STALE_BEATS = 3
#: How often a heartbeat looks whether the intake loop has run its call, or the daemon stops.
ANSWER_POLL_SECONDS = 0.05
#: The name of the asyncio loop that serves LMTP and SMTP, among the workers.
INTAKE = "intake"


def daemon_identity(settings: Settings) -> str:
    """A short, stable name for the daemon of these settings on this machine."""
    where = f"{socket.gethostname()}\0{settings.data_dir.resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def _key(identity: str, worker: str) -> str:
    return f"worker/{identity}/{worker}"


def expected_workers(settings: Settings) -> list[str]:
    """The parts a daemon with these settings runs, by their thread names."""
    workers = ["router", "scheduler",
               *(f"delivery-{n}" for n in range(settings.outbound.max_connections))]
    if settings.intake.lmtp.enabled or settings.intake.smtp.enabled:
        workers.append(INTAKE)
    if settings.intake.imap.enabled:
        workers.append("imap")
    return workers


class Heartbeats(threading.Thread):
    """Writes a beat for each live part of the daemon, every `heartbeat_seconds`."""

    def __init__(self, store: Store, settings: Settings, clock: Clock,
                 workers: Sequence[threading.Thread],
                 loop: asyncio.AbstractEventLoop | None, stopping: threading.Event) -> None:
        """`loop`: the intake's event loop (None without intake)."""
        super().__init__(name="heartbeats", daemon=True)
        self.store, self.clock, self.stopping = store, clock, stopping
        self.every = settings.daemon.heartbeat_seconds
        self.identity = daemon_identity(settings)
        self.workers, self.loop = workers, loop

    def beat_now(self, intake_alive: bool) -> None:
        """One beat for every thread alive, and for intake when `intake_alive`."""
        alive = [w.name for w in self.workers if w.is_alive()]
        if intake_alive:
            alive.append(INTAKE)
        now = self.clock.now()
        with self.store.unit_of_work() as session:
            for name in alive:
                beat(session, _key(self.identity, name), now)

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                self.beat_now(self._loop_answers())
            except Exception:
                log.exception("could not write the workers' heartbeats; trying again")

    def _loop_answers(self) -> bool:
        """Whether the intake loop runs a call within a heartbeat period (not blocked).

        It gives up at once when the daemon stops: a stopped loop never runs the call, and
        the stop must not wait a period for it.
        """
        if self.loop is None or not self.loop.is_running():
            return False
        answered = threading.Event()
        try:
            self.loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # the loop closed meanwhile
            return False
        deadline = time.monotonic() + self.every
        while not answered.wait(ANSWER_POLL_SECONDS):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return False
        return True


def workers_state(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Each part the daemon of these settings runs: its last beat, and whether it is alive."""
    identity = daemon_identity(settings)
    stale = timedelta(seconds=STALE_BEATS * settings.daemon.heartbeat_seconds)
    workers = expected_workers(settings)
    beats = dict(session.execute(
        select(Once.key, Once.at).where(Once.kind == HEARTBEAT,
                                        Once.key.in_([_key(identity, w) for w in workers]))
    ).all())
    result = []
    for worker in workers:
        last = beats.get(_key(identity, worker))
        result.append({"name": worker, "last_beat": last,
                       "alive": last is not None and now - last <= stale})
    return result
