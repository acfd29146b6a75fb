"""The scheduler's `run_now`: waits for a run that began after it was asked, without polling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from listserv import scheduler
from listserv.clock import FakeClock
from listserv.scheduler import Scheduler

WAIT = 10.0


class Runs:
    """Stands in for run_due: counts runs; the first one blocks until released."""

    def __init__(self) -> None:
        self.started: list[threading.Event] = [threading.Event() for _ in range(3)]
        self.release_first = threading.Event()
        self.finished = 0
        self.fail = False

    def __call__(self, *_args: object) -> None:
        number = self.finished
        self.started[min(number, 2)].set()
        if number == 0:
            assert self.release_first.wait(WAIT)
        self.finished += 1
        if self.fail:
            raise RuntimeError("a bug in due work")


@pytest.fixture
def runs(monkeypatch) -> Runs:
    fake = Runs()
    monkeypatch.setattr(scheduler, "run_due", fake)
    return fake


@pytest.fixture
def running(runs: Runs) -> Iterator[Scheduler]:
    stopping, wake = threading.Event(), threading.Event()
    worker = Scheduler(None, None, FakeClock(datetime.now(UTC)), 3600,  # type: ignore[arg-type]
                       wake, stopping, threading.Event())
    worker.start()
    yield worker
    stopping.set()
    wake.set()
    worker.join(WAIT)


def test_run_now_waits_for_a_run_that_began_after_it_was_asked(running, runs):
    assert runs.started[0].wait(WAIT)  # the first run (at start) is under way
    seen: list[int] = []
    caller = threading.Thread(target=lambda: (running.run_now(WAIT),
                                              seen.append(runs.finished)))
    caller.start()
    assert running.wake.wait(WAIT)  # run_now has asked (the loop clears it only after a run)
    runs.release_first.set()
    assert runs.started[1].wait(WAIT)  # woken at once for a second run, not at the tick
    caller.join(WAIT)
    assert seen == [2]  # not returned when the run that was under way finished


def test_run_now_reports_a_failed_run(running, runs):
    runs.release_first.set()
    running.run_now(WAIT)
    runs.fail = True
    with pytest.raises(RuntimeError, match="run failed"):
        running.run_now(WAIT)
