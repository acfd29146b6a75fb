"""Reminders across crashes, restarts and a second daemon (SPEC §5, §7): real processes.

Acceptance 2 (the restart half): the 14-day reminder goes out once though two daemons start
together on the same database; a SIGKILL, a restart one day before the meeting, and another
daemon beside it send the 1-day reminder once and nothing again.
Acceptance 6: a daemon down across a reminder's moment and started two hours later sends it
late while the meeting is days away, and records it as missed once the meeting has begun.

A subprocess cannot share the test's FakeClock: each is started through the test-only entry
tests/fake_clock_cli.py, which hands the CLI a clock running from the given time. The scheduler
of each makes one pass as it starts (the tick is an hour); `-v` logs "meeting work done"
after it, which is how the test knows a daemon has had its chance.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listserv.store.engine import Store
from listserv.store.models.features import MeetingReminder
from listserv.store.models.outgoing import OutMessage, OutRecipient

from .daemons import Start, daemons_on_one_database
from .helpers import LIST
from .smtp_sink import SmtpSink
from .test_meetings import meeting_mails

pytestmark = pytest.mark.slow

MEMBERS = ["ann@example.net", "ben@example.net", "cat@example.net"]
TIMEOUT = 20.0
PASS_DONE = "meeting work done"


@pytest.fixture
def start(tmp_path: Path, db_url: str, sink: SmtpSink) -> Iterator[Start]:
    """Start daemon NAME (its own data folder and ports, the shared database); no waiting."""
    with daemons_on_one_database(tmp_path, db_url, sink.port, PASS_DONE, TIMEOUT) as run:
        yield run


@pytest.fixture
def members(cli, shma):
    for member in MEMBERS:
        cli("members", "add", shma, member, "--no-welcome")
    return MEMBERS


def schedule(cli, start: datetime) -> str:
    return cli("meetings", "schedule", LIST, "--at", start.strftime("%Y-%m-%d %H:%M"),
               "--tz", "UTC", "--duration", "60").output.strip()


def reminders(store: Store) -> dict[tuple[int, int], MeetingReminder]:
    with store.unit_of_work() as session:
        return {(r.meeting_id, r.offset_minutes): r
                for r in session.scalars(select(MeetingReminder))}


def queued_meeting_mail(store: Store) -> int:
    with store.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(OutMessage)
                              .where(OutMessage.kind == "meeting")) or 0


def recorded(store: Store) -> Callable[[SmtpSink], bool]:
    """Every delivery recorded. A SIGKILL before that may send a copy again (at least once,
    docs/delivery.md); the reminders themselves must not repeat."""
    def check(_sink: SmtpSink) -> bool:
        with store.unit_of_work() as session:
            return not session.scalar(select(func.count()).select_from(OutRecipient)
                                      .where(OutRecipient.status == "queued"))
    return check


def each_has(sink: SmtpSink, count: int) -> Callable[[SmtpSink], bool]:
    return lambda s: all(len(meeting_mails(s, m)) >= count for m in MEMBERS)


DAY, FORTNIGHT = 24 * 60, 14 * 24 * 60


@pytest.mark.both_backends
def test_kill_restart_and_second_daemon_send_each_reminder_once(cli, members, store, sink,
                                                                start):
    when = (datetime.now(UTC) + timedelta(days=13)).replace(second=0, microsecond=0)
    meeting = int(schedule(cli, when))

    # Two daemons start together, both with the 14-day reminder due: one sends it.
    first, second = start("a"), start("b")
    first.wait_for_pass()
    second.wait_for_pass()
    sink.wait_for(each_has(sink, 1), timeout=TIMEOUT, description="the 14-day reminder")
    assert set(reminders(store)) == {(meeting, FORTNIGHT)}
    assert queued_meeting_mail(store) == 1

    # A crash, then a restart one day before the meeting, with a third daemon beside it.
    sink.wait_for(recorded(store), timeout=TIMEOUT, description="the deliveries recorded")
    assert first.kill() == -signal.SIGKILL
    one_day = when - timedelta(days=1)
    restarted, third = start("a", one_day + timedelta(seconds=1)), start("c", one_day)
    restarted.wait_for_pass()
    third.wait_for_pass()
    sink.wait_for(each_has(sink, 2), timeout=TIMEOUT, description="the 1-day reminder")
    rows = reminders(store)
    assert set(rows) == {(meeting, FORTNIGHT), (meeting, DAY)}
    assert rows[(meeting, DAY)].status == "sent"
    assert one_day <= rows[(meeting, DAY)].at < one_day + timedelta(seconds=TIMEOUT)

    # Killed and started again later that day: nothing is repeated.
    sink.wait_for(recorded(store), timeout=TIMEOUT, description="the deliveries recorded")
    assert restarted.kill() == -signal.SIGKILL
    again = start("a", one_day + timedelta(hours=2))
    again.wait_for_pass()
    for daemon in (again, second, third):
        assert daemon.terminate()[0] == 0, daemon.log_text()
    assert queued_meeting_mail(store) == 2
    for member in MEMBERS:
        subjects = [m["Subject"] for m in meeting_mails(sink, member)]
        assert len(subjects) == 2, subjects
        assert all(s.startswith("[shma] Reminder: SHMA meeting on") for s in subjects)


@pytest.mark.both_backends
def test_late_reminder_sent_while_useful_and_missed_once_the_meeting_began(cli, members,
                                                                          store, sink, start):
    cli("lists", "set", LIST, "meetings.reminders", "14d,1h")
    restart_at = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    # Both reminders' moments are two hours before the restart: one meeting is then still
    # two weeks away, the other began an hour before it.
    far = int(schedule(cli, restart_at - timedelta(hours=2) + timedelta(days=14)))
    near = int(schedule(cli, restart_at - timedelta(hours=1)))

    # Running three hours before: the near meeting's 14-day reminder goes out (late, useful).
    before = start("a", restart_at - timedelta(hours=3))
    before.wait_for_pass()
    sink.wait_for(each_has(sink, 1), timeout=TIMEOUT, description="the near 14-day reminder")
    assert before.terminate()[0] == 0, before.log_text()
    assert set(reminders(store)) == {(near, FORTNIGHT)}

    # Down across both moments, started two hours after them.
    after = start("a", restart_at)
    after.wait_for_pass()
    sink.wait_for(each_has(sink, 2), timeout=TIMEOUT, description="the far 14-day reminder")
    assert after.terminate()[0] == 0, after.log_text()
    rows = reminders(store)
    assert rows[(far, FORTNIGHT)].status == "sent"
    assert "2 hours late" in rows[(far, FORTNIGHT)].detail
    assert rows[(near, 60)].status == "missed"
    assert "the meeting had begun" in rows[(near, 60)].detail
    assert (far, 60) not in rows  # not due yet
    assert queued_meeting_mail(store) == 2
    assert all(len(meeting_mails(sink, m)) == 2 for m in MEMBERS)
    log = json.loads(cli("log", "--json").output)
    missed = [e for e in log if e["action"] == "meeting-reminder-missed"]
    assert len(missed) == 1 and f"meeting #{near}: 1h reminder" in missed[0]["detail"]
    near_info = json.loads(cli("meetings", "show", str(near), "--json").output)
    assert {r["offset"]: r["status"] for r in near_info["reminders"]} == {"14d": "sent",
                                                                          "1h": "missed"}
