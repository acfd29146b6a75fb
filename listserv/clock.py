"""Time, injectable so tests control it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


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
