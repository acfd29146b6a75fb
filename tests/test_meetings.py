"""Meetings (SPEC §5): series, reminders at the list's offsets, calendar invites.

Acceptance 1 (series starts), 2 (the reminders' moments, in-process with a fake clock; the
restart and second-daemon half is in test_meetings_daemons.py) and 3 (the .ics).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from listserv.mail.render import Renderer
from listserv.meetings.queries import meetings_of
from listserv.meetings.series import check_rrule, due_work, series_starts
from listserv.meetings.times import parse_at, zone
from listserv.store.models.features import MeetingReminder

from .helpers import LIST, parse

MEMBERS = ["ann@example.net", "ben@example.net"]
OWNER_ADDRESS = "shma-owner@lists.example.org"
QUARTERLY = "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=3TH"
# The third Thursday of January, April, July and October at 12:00 America/Chicago, in UTC
# (CST is UTC-6 until the second Sunday of March, CDT UTC-5 until the first Sunday of November).
QUARTERLY_UTC = [
    datetime(2026, 1, 15, 18, 0, tzinfo=UTC),
    datetime(2026, 4, 16, 17, 0, tzinfo=UTC),
    datetime(2026, 7, 16, 17, 0, tzinfo=UTC),
    datetime(2026, 10, 15, 17, 0, tzinfo=UTC),
    datetime(2027, 1, 21, 18, 0, tzinfo=UTC),
    datetime(2027, 4, 15, 17, 0, tzinfo=UTC),
    datetime(2027, 7, 15, 17, 0, tzinfo=UTC),
    datetime(2027, 10, 21, 17, 0, tzinfo=UTC),
]


def quarterly_noon_chicago(*years: int) -> list[datetime]:
    """QUARTERLY's starts in `years`, counted by hand: a month's third Thursday is its first
    Thursday plus 14 days; 12:00 in Chicago is UTC-6 in winter, UTC-5 in summer."""
    starts = []
    for year in years:
        for month in (1, 4, 7, 10):
            first = date(year, month, 1)
            third_thursday = 1 + (3 - first.weekday()) % 7 + 14
            local = datetime(year, month, third_thursday, 12, tzinfo=ZoneInfo("America/Chicago"))
            starts.append(local.astimezone(UTC))
    return starts


@pytest.fixture
def members(cli, shma):
    for member in MEMBERS:
        cli("members", "add", shma, member, "--no-welcome")
    return MEMBERS


def schedule(cli, start: datetime, tz: str = "UTC", duration: int = 60, *extra: str) -> str:
    local = start.astimezone(zone(tz))
    return cli("meetings", "schedule", LIST, "--at", local.strftime("%Y-%m-%d %H:%M"),
               "--tz", tz, "--duration", str(duration), *extra).output.strip()


def meeting_mails(sink, address: str, word: str = "") -> list[EmailMessage]:
    """Meeting mail (it carries a calendar part) received by `address`, oldest first."""
    found = []
    for delivery in sink.messages_for(address):
        msg = parse(delivery.data)
        if calendar_part(msg) is not None and word in str(msg["Subject"]):
            found.append(msg)
    return found


def calendar_part(msg: EmailMessage) -> EmailMessage | None:
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            return part
    return None


def ics(msg: EmailMessage) -> str:
    part = calendar_part(msg)
    assert part is not None
    content = part.get_content()
    return content if isinstance(content, str) else content.decode("utf-8")


def event(text: str):
    [found] = Calendar.from_ical(text).walk("VEVENT")
    return found


def reminder_rows(store, meeting_id: str) -> dict[int, MeetingReminder]:
    with store.unit_of_work() as session:
        rows = session.scalars(select(MeetingReminder).where(
            MeetingReminder.meeting_id == int(meeting_id)))
        return {r.offset_minutes: r for r in rows}


# -- acceptance 1: the series ------------------------------------------------------------------


def test_quarterly_series_gives_the_third_thursdays_in_utc():
    first = parse_at("2026-01-15 12:00", "America/Chicago")
    rule = check_rrule(QUARTERLY, first)
    starts = [s.astimezone(UTC) for s in list(series_starts(rule, first))[:8]]
    assert starts == QUARTERLY_UTC
    # From any moment on, the series goes on from the next of them.
    after = [s.astimezone(UTC) for s in
             list(series_starts(rule, first, QUARTERLY_UTC[3]))[:4]]
    assert after == QUARTERLY_UTC[4:]


def test_the_starts_counted_by_hand_are_the_table():
    assert quarterly_noon_chicago(2026, 2027) == QUARTERLY_UTC


@pytest.mark.both_backends
def test_series_command_keeps_two_meetings_ahead(cli, shma, store, settings):
    # A series that began this January: this year's and next year's starts hold two ahead.
    this_year = datetime.now(UTC).year
    quarterly_utc = quarterly_noon_chicago(this_year, this_year + 1)
    first = quarterly_utc[0].astimezone(ZoneInfo("America/Chicago"))
    out = cli("meetings", "series", LIST, "--rrule", QUARTERLY, "--at", f"{first:%Y-%m-%d %H:%M}",
              "--tz", "America/Chicago", "--duration", "60", "--dial-in", "+1 555 0100",
              "--json").output
    series = json.loads(out)
    now = datetime.now(UTC)
    expected = [s for s in quarterly_utc if s > now][:2]
    listed = json.loads(cli("meetings", "list", LIST, "--json").output)
    assert [datetime.fromisoformat(m["start"]) for m in listed] == expected
    assert [m["id"] for m in series["meetings"]] == [m["id"] for m in listed]
    assert all(m["tz"] == "America/Chicago" and m["duration"] == 60 and
               m["dial_in"] == "+1 555 0100" and m["start"].endswith(("-06:00", "-05:00"))
               for m in listed)
    # Once the first has begun, the scheduler makes the next one.
    later = expected[0] + timedelta(minutes=1)
    due_work(store, Renderer(settings.templates_dir), later)
    with store.unit_of_work() as session:
        ahead = [m.start for m in meetings_of(session, None, later)
                 if m.start > later]
    third = [s for s in quarterly_utc if s > expected[1]][:1]
    assert ahead == [expected[1], *third] if third else ahead[0] == expected[1]
    # Running it again makes nothing more, and a second series needs --replace.
    due_work(store, Renderer(settings.templates_dir), later)
    assert len(json.loads(cli("meetings", "list", LIST, "--all", "--json").output)) == 3
    again = cli("meetings", "series", LIST, "--rrule", QUARTERLY, "--at",
                f"{first:%Y-%m-%d %H:%M}", "--tz", "America/Chicago", "--duration", "60",
                ok=False)
    assert again.exit_code != 0 and "--replace" in again.output


def test_bad_meeting_input_is_one_clear_line(cli, shma):
    cases = [
        (["--at", "2030-01-01 12:00", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["--at", "tomorrow", "--tz", "UTC"], "YYYY-MM-DD HH:MM"),
        (["--at", "2030-03-10 02:30", "--tz", "America/Chicago"], "does not exist"),
        (["--at", "2001-01-01 12:00", "--tz", "UTC"], "in the past"),
    ]
    for args, message in cases:
        result = cli("meetings", "schedule", LIST, *args, "--duration", "60", ok=False)
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    bad_rule = cli("meetings", "series", LIST, "--rrule", "FREQ=HOURLY", "--at",
                   "2030-01-01 12:00", "--tz", "UTC", "--duration", "60", ok=False)
    assert bad_rule.exit_code != 0 and "FREQ=DAILY" in bad_rule.output
    assert "no meeting 99" in cli("meetings", "show", "99", ok=False).output


def test_meeting_settings_are_checked(cli, shma):
    cli("lists", "set", LIST, "meetings.reminders", "1d, 14d,2h")
    cli("lists", "set", LIST, "meetings.extra_zones", "Europe/Berlin,Asia/Tokyo")
    cli("lists", "set", LIST, "meetings.peer_input_share", "0.25")
    cli("lists", "set", LIST, "meetings.signup_cutoff_days", "3")
    shown = json.loads(cli("lists", "show", LIST, "--json").output)
    assert shown["meetings.reminders"] == ["14d", "1d", "2h"]
    assert shown["meetings.extra_zones"] == ["Europe/Berlin", "Asia/Tokyo"]
    assert shown["meetings.peer_input_share"] == 0.25
    assert shown["meetings.signup_cutoff_days"] == 3
    for key, value in (("meetings.reminders", "soon"), ("meetings.peer_input_share", "2"),
                       ("meetings.extra_zones", "Nowhere/Land"),
                       ("meetings.signup_cutoff_days", "-1")):
        result = cli("lists", "set", LIST, key, value, ok=False)
        assert result.exit_code != 0 and key in result.output, result.output


# -- acceptance 2 (in-process half): the moments of the reminders -------------------------------


@pytest.mark.both_backends
def test_reminder_at_the_next_tick_then_exactly_one_day_before(cli, members, daemon, sink,
                                                               clock, store, settings):
    start = (clock.now() + timedelta(days=13)).replace(second=0, microsecond=0)
    meeting_id = schedule(cli, start, "UTC")
    daemon.wake_scheduler()
    sink.wait_for(lambda s: all(meeting_mails(s, m) for m in MEMBERS),
                  description="the 14-day reminder")
    first = meeting_mails(sink, MEMBERS[0])[0]
    assert first["Subject"].startswith("[shma] Reminder: SHMA meeting on")
    assert first["From"] == LIST and first["List-Id"] == "<shma.lists.example.org>"
    assert set(reminder_rows(store, meeting_id)) == {14 * 24 * 60}

    # Half a minute before the 1-day moment: nothing is due.
    one_day = start - timedelta(days=1)
    clock.advance(one_day - timedelta(seconds=30) - clock.now())
    due_work(store, Renderer(settings.templates_dir), clock.now())
    assert set(reminder_rows(store, meeting_id)) == {14 * 24 * 60}

    clock.advance(timedelta(seconds=31))
    daemon.wake_scheduler()
    sink.wait_for(lambda s: all(len(meeting_mails(s, m)) == 2 for m in MEMBERS),
                  description="the 1-day reminder")
    rows = reminder_rows(store, meeting_id)
    day = rows[24 * 60]
    assert day.status == "sent" and day.due_at == one_day
    assert one_day <= day.at < one_day + timedelta(seconds=30)
    assert rows[14 * 24 * 60].detail.startswith("sent")
    # Waking again sends nothing more.
    daemon.wake_scheduler()
    due_work(store, Renderer(settings.templates_dir), clock.now())
    assert all(len(meeting_mails(sink, m)) == 2 for m in MEMBERS)
    shown = json.loads(cli("meetings", "show", meeting_id, "--json").output)
    assert [(r["offset"], r["status"]) for r in shown["reminders"]] == [("14d", "sent"),
                                                                       ("1d", "sent")]


def test_reminders_due_together_send_only_the_latest(cli, members, daemon, sink, store):
    # Scheduled 12 hours ahead: the 14-day and 1-day moments have both passed.
    start = (datetime.now(UTC) + timedelta(hours=12)).replace(second=0, microsecond=0)
    meeting_id = schedule(cli, start)
    daemon.wake_scheduler()
    sink.wait_for(lambda s: all(meeting_mails(s, m) for m in MEMBERS), description="reminder")
    rows = reminder_rows(store, meeting_id)
    assert rows[24 * 60].status == "sent"
    assert rows[14 * 24 * 60].status == "missed"
    assert "superseded" in rows[14 * 24 * 60].detail
    assert all(len(meeting_mails(sink, m)) == 1 for m in MEMBERS)


def test_a_reminder_says_the_span_once_and_names_the_list_by_its_display_name(
        cli, members, daemon, sink, clock):
    """Issue 16 (texts): "16:00–17:00 UTC" once (start–end, the zone named once), and the
    group called by its display name, in the mail the scheduler sends through the relay."""
    cli("lists", "set", LIST, "display_name", "Self-Help Mutual Aid")
    start = (clock.now() + timedelta(days=20)).replace(hour=16, minute=0, second=0,
                                                       microsecond=0)
    schedule(cli, start, "UTC", 60)
    clock.advance(start - timedelta(days=14) - clock.now())
    daemon.wake_scheduler()
    sink.wait_for(lambda s: all(meeting_mails(s, m) for m in MEMBERS), description="reminder")
    [reminder] = meeting_mails(sink, MEMBERS[0])
    text = reminder.get_body(("plain",)).get_content()
    whole = f"{reminder['Subject']}\n{text}"
    assert whole.count("16:00\u201317:00 UTC") == 1, text
    assert "(UTC)" not in whole and "16:00-17:00" not in whole
    assert "Reminder: Self-Help Mutual Aid meeting on" in str(reminder["Subject"])
    assert "next Self-Help Mutual Aid meeting" in text
    assert "SUMMARY:Self-Help Mutual Aid meeting" in ics(reminder)


# -- acceptance 3: the calendar part --------------------------------------------------------


def second_sunday_of_march(year: int) -> date:
    first = date(year, 3, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7)


def test_ics_has_organizer_dtstamp_vtimezone_and_utc_start_across_dst(cli, members, daemon,
                                                                      sink):
    change = second_sunday_of_march(datetime.now(UTC).year + 1)  # US clocks go forward
    before = datetime(change.year, change.month, change.day, 18, 0, tzinfo=UTC) \
        - timedelta(days=3)  # Thursday 12:00 CST = 18:00Z
    after = datetime(change.year, change.month, change.day, 17, 0, tzinfo=UTC) \
        + timedelta(days=4)  # Thursday 12:00 CDT = 17:00Z
    ids = [schedule(cli, moment, "America/Chicago", 60, "--dial-in", "+1 555 0100, code 42")
           for moment in (before, after)]
    for meeting_id in ids:
        cli("meetings", "remind", meeting_id, "--yes")
    sink.wait_for(lambda s: len(meeting_mails(s, MEMBERS[0])) == 2, description="reminders")
    # the two reminders go out at once: in the order of the meetings they are about
    mails = sorted(meeting_mails(sink, MEMBERS[0]), key=lambda m: event(ics(m)).decoded("DTSTART"))
    for msg, expected in zip(mails, (before, after), strict=True):
        part = calendar_part(msg)
        assert part is not None
        assert part.get_content_type() == "text/calendar"
        assert part.get_param("method") == "PUBLISH"
        text = ics(msg)
        assert "METHOD:PUBLISH" in text and "METHOD:REQUEST" not in text
        cal = Calendar.from_ical(text)
        [tz] = cal.walk("VTIMEZONE")
        assert str(tz["TZID"]) == "America/Chicago"
        found = event(text)
        assert str(found["ORGANIZER"]) == f"mailto:{OWNER_ADDRESS}"
        assert found.decoded("DTSTAMP").tzinfo is not None
        assert "DTSTART;TZID=America/Chicago:" in text
        assert f"{expected.astimezone(zone('America/Chicago')):%Y%m%dT1200}" in text
        # The VTIMEZONE itself gives the right UTC start (renamed, a reader must use it).
        renamed = event(text.replace("America/Chicago", "Test/Listserv"))
        assert renamed.decoded("DTSTART").astimezone(UTC) == expected
        assert found.decoded("DTSTART").astimezone(UTC) == expected
        assert int(found["SEQUENCE"]) == 0 and str(found["STATUS"]) == "CONFIRMED"
        assert "+1 555 0100, code 42" in msg.get_body(("plain",)).get_content()
    utc_lines = [msg.get_body(("plain",)).get_content() for msg in mails]
    assert "12:00\u201313:00 CST (America/Chicago)" in utc_lines[0]
    assert "18:00\u201319:00 UTC" in utc_lines[0]
    assert "12:00\u201313:00 CDT (America/Chicago)" in utc_lines[1]
    assert "17:00\u201318:00 UTC" in utc_lines[1]


def test_move_raises_the_sequence_and_cancel_sends_method_cancel(cli, members, daemon, sink):
    start = (datetime.now(UTC) + timedelta(days=30)).replace(hour=17, minute=0, second=0,
                                                             microsecond=0)
    meeting_id = schedule(cli, start, "America/Chicago")
    cli("meetings", "remind", meeting_id, "--yes")
    sink.wait_for(lambda s: meeting_mails(s, MEMBERS[0]), description="reminder")
    [reminder] = meeting_mails(sink, MEMBERS[0])
    original = event(ics(reminder))

    new_start = start + timedelta(days=7)
    local = new_start.astimezone(zone("America/Chicago"))
    out = cli("meetings", "move", meeting_id, "--yes", "--at",
              local.strftime("%Y-%m-%d %H:%M")).output
    assert "update queued for 2 members" in out
    sink.wait_for(lambda s: meeting_mails(s, MEMBERS[0], "Moved"), description="update")
    [update] = meeting_mails(sink, MEMBERS[0], "Moved")
    moved = event(ics(update))
    assert calendar_part(update).get_param("method") == "PUBLISH"
    assert str(moved["UID"]) == str(original["UID"])
    assert int(moved["SEQUENCE"]) > int(original["SEQUENCE"])
    assert moved.decoded("DTSTART").astimezone(UTC) == new_start
    shown = json.loads(cli("meetings", "show", meeting_id, "--json").output)
    assert datetime.fromisoformat(shown["start"]) == new_start and shown["sequence"] == 1

    cli("meetings", "cancel", meeting_id, "--yes")
    sink.wait_for(lambda s: meeting_mails(s, MEMBERS[0], "Cancelled"), description="cancel")
    [cancelled] = meeting_mails(sink, MEMBERS[0], "Cancelled")
    text = ics(cancelled)
    assert calendar_part(cancelled).get_param("method") == "CANCEL"
    assert "METHOD:CANCEL" in text
    gone = event(text)
    assert str(gone["STATUS"]) == "CANCELLED"
    assert str(gone["UID"]) == str(original["UID"])
    assert int(gone["SEQUENCE"]) > int(moved["SEQUENCE"])
    assert "This meeting has been cancelled" in cancelled.get_body(("plain",)).get_content()
    assert json.loads(cli("meetings", "show", meeting_id, "--json").output)["status"] \
        == "cancelled"
    again = cli("meetings", "cancel", meeting_id, "--yes", ok=False)
    assert again.exit_code != 0 and "already cancelled" in again.output


def test_the_cli_runs_on_the_clock_it_is_given(config_path, store):
    """`main(obj=clock)` is how tests/fake_clock_cli.py starts daemons "days later"; without
    a clock the CLI uses the system clock (no environment variable changes it)."""
    from click.testing import CliRunner

    from cli import main
    from listserv.clock import FakeClock

    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    runner = CliRunner()
    config = ["--config", str(config_path)]
    created = runner.invoke(main, [*config, "lists", "create", LIST, "--owner", "c@example.org"],
                            obj=FakeClock(later, running=True))
    assert created.exit_code == 0, created.output
    runner.invoke(main, [*config, "lists", "set", LIST, "meetings.reminders", "1d"],
                  env={"LISTSERV_TESTING": "1", "LISTSERV_FAKE_NOW": later.isoformat()})
    first, second = json.loads(runner.invoke(main, [*config, "log", "--json"]).output)[-2:]
    assert timedelta(0) <= datetime.fromisoformat(first["at"]) - later < timedelta(seconds=5)
    assert abs(datetime.fromisoformat(second["at"]) - datetime.now(UTC)) < timedelta(seconds=5)
