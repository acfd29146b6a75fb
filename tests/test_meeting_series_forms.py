"""A series as the chair says it, and a wrong series replaced (SPEC §5, issue 16 acceptance 5):
`--every "third thursday" --months 2,5,8,11 --at 16:00 --tz UTC --replace` leaves no
duplicate and mails nobody about meetings never announced; an `--at` off the rule is refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from listserv.errors import ListservError
from listserv.meetings.rules import every_rule

from .helpers import LIST, wait_settled

EVERY = ["--every", "third thursday", "--months", "2,5,8,11"]


@pytest.mark.parametrize(("words", "months", "rule"), [
    ("third thursday", "2,5,8,11", "FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH"),
    ("Third Thursday", "feb, may, aug, nov", "FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH"),
    ("the last friday", None, "FREQ=MONTHLY;BYDAY=-1FR"),
    ("first mon", "1,4,7,10", "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=1MO"),
    ("2nd tuesday of the month", None, "FREQ=MONTHLY;BYDAY=2TU"),
    ("every wednesday", None, "FREQ=WEEKLY;BYDAY=WE"),
    ("second last sunday", None, "FREQ=MONTHLY;BYDAY=-2SU"),
])
def test_every_in_words_is_an_rrule(words, months, rule):
    assert every_rule(words, months) == rule


@pytest.mark.parametrize(("words", "months"), [("third blursday", None),
                                               ("sixth thursday", None),
                                               ("third thursday", "2,13")])
def test_words_that_are_no_rule_are_refused(words, months):
    with pytest.raises(ListservError):
        every_rule(words, months)


def third_thursdays(count: int) -> list[datetime]:
    """The next third Thursdays of Feb, May, Aug and Nov at 16:00 UTC, counted by hand."""
    found: list[datetime] = []
    year = datetime.now(UTC).year
    while len(found) < count:
        for month in (2, 5, 8, 11):
            first = date(year, month, 1)
            day = 1 + (3 - first.weekday()) % 7 + 14
            start = datetime(year, month, day, 16, tzinfo=UTC)
            if start > datetime.now(UTC) and len(found) < count:
                found.append(start)
        year += 1
    return found


def scheduled(cli) -> list[dict[str, str]]:
    return [m for m in json.loads(cli("meetings", "list", LIST, "--json").output)
            if m["status"] == "scheduled"]


def series(cli, *args: str, ok: bool = True):
    return cli("meetings", "series", LIST, *args, ok=ok)


@pytest.mark.both_backends
def test_a_wrong_series_replaced_in_words_leaves_no_duplicate_and_mails_nobody(
        cli, shma, store, daemon, sink):
    for member in ("ann@example.net", "ben@example.net"):
        cli("members", "add", shma, member, "--no-welcome")
    # The wrong series: the right days at the wrong hour (its meetings never announced).
    series(cli, "--rrule", "FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH", "--at", "15:00",
           "--tz", "UTC", "--duration", "60", "--dial-in", "+1 555 0100")
    wrong = scheduled(cli)
    assert len(wrong) == 2
    out = series(cli, *EVERY, "--at", "16:00", "--tz", "UTC", "--replace").output
    assert "FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH" in out
    for meeting in wrong:
        assert f"removed meeting {meeting['id']} " in out and "nobody mailed" in out
    now_scheduled = scheduled(cli)
    starts = [datetime.fromisoformat(m["start"]) for m in now_scheduled]
    assert starts == third_thursdays(2)
    assert len({s.date() for s in starts}) == len(starts)  # no day twice
    assert {m["duration"] for m in now_scheduled} == {60}  # kept from the replaced series
    assert {m["dial_in"] for m in now_scheduled} == {"+1 555 0100"}
    assert json.loads(cli("meetings", "list", LIST, "--all", "--json").output) == now_scheduled
    wait_settled(store)
    assert sink.deliveries == []  # nobody was mailed about meetings never announced


@pytest.mark.both_backends
def test_an_announced_meeting_is_kept_once_and_the_rest_replaced(cli, shma, store, daemon,
                                                                 sink):
    cli("members", "add", shma, "ann@example.net", "--no-welcome")
    series(cli, "--rrule", "FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH", "--at", "16:00",
           "--tz", "UTC", "--duration", "90")
    first, second = scheduled(cli)
    cli("meetings", "remind", first["id"], "--yes")  # the members now know of the first
    sink.wait_for(lambda s: s.messages_for("ann@example.net"), description="the reminder")
    out = series(cli, *EVERY, "--at", "16:00", "--tz", "UTC", "--duration", "60",
                 "--replace").output
    assert f"kept meeting {first['id']} " in out and f"removed meeting {second['id']} " in out
    now_scheduled = scheduled(cli)
    assert [datetime.fromisoformat(m["start"]) for m in now_scheduled] == third_thursdays(2)
    assert now_scheduled[0]["id"] == first["id"]  # the same meeting, not a second one
    wait_settled(store)
    assert len(sink.messages_for("ann@example.net")) == 1  # only the reminder


def test_an_at_date_off_the_rule_is_refused(cli, shma):
    thursday = third_thursdays(1)[0]
    friday = thursday + timedelta(days=1)
    refused = series(cli, *EVERY, "--at", f"{friday:%Y-%m-%d} 16:00", "--tz", "UTC",
                     "--duration", "60", ok=False)
    assert refused.exit_code == 1
    assert "is not an occurrence" in refused.output and f"{thursday:%Y-%m-%d}" in refused.output
    refused = series(cli, "--rrule", "FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH", "--at",
                     f"{friday:%Y-%m-%d} 16:00", "--tz", "UTC", "--duration", "60", ok=False)
    assert "is not an occurrence" in refused.output
    assert scheduled(cli) == []
    # On the rule, the date is the first meeting.
    series(cli, *EVERY, "--at", f"{thursday:%Y-%m-%d} 16:00", "--tz", "UTC", "--duration", "60")
    assert datetime.fromisoformat(scheduled(cli)[0]["start"]) == thursday
    usage = series(cli, "--at", "16:00", "--tz", "UTC", "--duration", "60", ok=False)
    assert usage.exit_code == 2
