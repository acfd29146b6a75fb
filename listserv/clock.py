"""Time, injectable so tests control it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .errors import ListservError


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that jumps when told to (tests; no sleeping).

    Frozen at `start` by default; with `running=True` it runs with real time from `start`
    on, so it never falls behind another process (the CLI) using the real clock.
    """

    def __init__(self, start: datetime, running: bool = False) -> None:
        self._offset = start - datetime.now(UTC)
        self._frozen: datetime | None = None if running else start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._offset += delta
            if self._frozen is not None:
                self._frozen += delta
        return self.now()


#: Test hook: with LISTSERV_TESTING=1, a process starts its clock at LISTSERV_FAKE_NOW.
FAKE_NOW_ENV = "LISTSERV_FAKE_NOW"
TESTING_ENV = "LISTSERV_TESTING"


def clock_from_environment(environ: Mapping[str, str] | None = None) -> Clock:
    """The real clock; or, as a test hook only, one running from LISTSERV_FAKE_NOW.

    LISTSERV_FAKE_NOW (an ISO 8601 time with an offset) is read once, here, and honoured only
    when LISTSERV_TESTING=1 is set too: tests start daemons in subprocesses "days later"
    this way. Anything else gets the system clock.
    """
    env = os.environ if environ is None else environ
    fake = env.get(FAKE_NOW_ENV, "").strip()
    if env.get(TESTING_ENV) != "1" or not fake:
        return SystemClock()
    try:
        start = datetime.fromisoformat(fake)
    except ValueError:
        raise ListservError(f"{FAKE_NOW_ENV}={fake!r} is not an ISO 8601 time") from None
    if start.tzinfo is None:
        raise ListservError(f"{FAKE_NOW_ENV}={fake!r} needs an offset (e.g. +00:00)")
    logging.getLogger(__name__).warning("test hook: the clock runs from %s (%s)",
                                        start.isoformat(), FAKE_NOW_ENV)
    return FakeClock(start.astimezone(UTC), running=True)
