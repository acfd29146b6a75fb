"""Peer input (SPEC §5): requests by mail, time booked in order of arrival, the chair decides.

Acceptance 4 (booking, cap, decline moves the next one up) and 5 (the approved slot in
`meetings show --json` and in the next reminder, without the help wanted), through LMTP, the
CLI and the SMTP sink.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from listserv.meetings.times import zone

from .helpers import (
    LIST,
    inbound_outcomes,
    lmtp_send,
    make_message,
    parse,
    wait_settled,
    wait_until,
)
from .test_meetings import calendar_part, ics, meeting_mails

PEER_INPUT = "shma-peer-input@lists.example.org"
REQUEST = "shma-request@lists.example.org"
JANE, KEN, LEE = "jane@example.net", "ken@example.net", "lee@example.net"
NAMES = {JANE: "Jane Doe", KEN: "Ken Li", LEE: "Lee Park"}


@pytest.fixture
def members(cli, shma):
    for email, name in NAMES.items():
        cli("members", "add", shma, email, "--name", name, "--no-welcome")
    return list(NAMES)


@pytest.fixture
def two_meetings(cli, shma) -> list[dict]:
    """Two 60-minute meetings, 20 and 50 days ahead (no reminder is due for either)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ids = []
    for days in (20, 50):
        local = (now + timedelta(days=days)).astimezone(zone("Europe/Berlin"))
        ids.append(cli("meetings", "schedule", LIST, "--at", local.strftime("%Y-%m-%d %H:%M"),
                       "--tz", "Europe/Berlin", "--duration", "60").output.strip())
    return [json.loads(cli("meetings", "show", i, "--json").output) for i in ids]


def when_of(meeting: dict) -> str:
    start = datetime.fromisoformat(meeting["start"])
    return f"{start:%A}, {start.day} {start:%B %Y}, {start:%H:%M}"


def replies(sink, address: str) -> list:
    return [parse(d.data) for d in sink.messages_for(address)]


def ask(daemon, sink, sender: str, project: str, body: str, *, to: str = PEER_INPUT,
        expect: int | None = None) -> list:
    """Mail a request as `sender` and wait for their next reply; when it asks to confirm (the
    request proves nothing: SPEC §2), confirm by replying and wait for the acknowledgement.
    Returns all their replies."""
    count = len(sink.messages_for(sender)) + 1 if expect is None else expect
    lmtp_send(daemon.ports["lmtp"], sender, [to],
              make_message(sender=f"{NAMES.get(sender, 'Someone')} <{sender}>", to=to,
                           subject=project, body=body))
    sink.wait_for(lambda s: len(s.messages_for(sender)) >= count,
                  description=f"reply to {sender}")
    if "Please confirm" in str(replies(sink, sender)[-1]["Subject"]):
        confirm(daemon, sink, sender, replies(sink, sender)[-1])
    return replies(sink, sender)


def confirm(daemon, sink, sender: str, confirmation) -> None:
    """Reply "OK" to a confirmation, as a mail client does, and wait for the next mail."""
    count = len(sink.messages_for(sender)) + 1
    lmtp_send(daemon.ports["lmtp"], sender, [confirmation["Reply-To"]],
              make_message(sender=sender, to=confirmation["Reply-To"],
                           subject=f"Re: {confirmation['Subject']}", body="OK\n",
                           In_Reply_To=confirmation["Message-ID"]))
    sink.wait_for(lambda s: len(s.messages_for(sender)) >= count,
                  description=f"the mail after {sender}'s confirmation")


def text_of(msg) -> str:
    """The text part, its lines joined (a phrase may be wrapped anywhere)."""
    return " ".join(msg.get_body(("plain",)).get_content().split())


def requests(cli) -> dict[str, dict]:
    return {r["email"]: r for r in json.loads(cli("peer-input", "list", "--json").output)}


# -- acceptance 4 ------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_requests_book_in_order_cap_at_30_and_a_decline_moves_the_next_up(
        cli, members, two_meetings, daemon, sink):
    first, second = two_meetings
    ack_jane = ask(daemon, sink, JANE, "Tool library", "How do we lend tools?\nminutes: 20\n")[-1]
    ack_ken = ask(daemon, sink, KEN, "Food co-op", "Bookkeeping help.\n\nminutes: 20\n")[-1]
    assert ack_jane["Subject"] == "Your peer-input request: Tool library"
    assert "20 minutes are reserved for you, provisionally" in text_of(ack_jane)
    assert when_of(first) in text_of(ack_jane)
    assert when_of(second) in text_of(ack_ken) and when_of(first) not in text_of(ack_ken)
    booked = requests(cli)
    assert (booked[JANE]["meeting_id"], booked[JANE]["status"]) == (first["id"], "reserved")
    assert (booked[KEN]["meeting_id"], booked[KEN]["status"]) == (second["id"], "reserved")
    assert booked[JANE] == {**booked[JANE], "requester": "Jane Doe", "project": "Tool library",
                            "minutes": 20}

    ack_lee = text_of(ask(daemon, sink, LEE, "Tenants union", "Flyers.\nMinutes: 45\n")[-1])
    assert "You asked for 45 minutes" in ack_lee and "most anyone can have is 30" in ack_lee
    assert "your request waits" in ack_lee
    booked = requests(cli)
    assert (booked[LEE]["minutes"], booked[LEE]["status"], booked[LEE]["meeting_id"]) \
        == (30, "waiting", "")
    # The chair hears of each request, with the help wanted.
    notices = [text_of(m) for m in replies(sink, "chair@example.org")]
    assert any("How do we lend tools?" in n and "peer-input approve 1" in n for n in notices)

    out = cli("peer-input", "decline", booked[JANE]["id"], "--reason",
              "This one fits the group's own half better.").output
    assert "moved up" in out
    # (Each has had a confirmation and an acknowledgement before.)
    sink.wait_for(lambda s: len(s.messages_for(JANE)) == 3 and len(s.messages_for(KEN)) == 3
                  and len(s.messages_for(LEE)) == 3, description="decline and moves")
    declined = replies(sink, JANE)[-1]
    assert "This one fits the group's own half better." in text_of(declined)
    moved_ken = replies(sink, KEN)[-1]
    assert "has moved up" in moved_ken["Subject"]
    assert when_of(first) in text_of(moved_ken)
    moved_lee = text_of(replies(sink, LEE)[-1])
    assert "moved up" in moved_lee and when_of(second) in moved_lee
    booked = requests(cli)
    assert JANE not in booked  # declined: no longer open
    assert (booked[KEN]["meeting_id"], booked[LEE]["meeting_id"]) == (first["id"], second["id"])
    everything = {r["email"]: r for r in
                  json.loads(cli("peer-input", "list", "--all", "--json").output)}
    assert everything[JANE]["status"] == "declined"


def test_incomplete_request_gets_a_polite_reply_and_nothing_is_booked(cli, members,
                                                                      two_meetings, daemon,
                                                                      sink):
    reply = ask(daemon, sink, JANE, "", "I would love some help.\n")[-1]
    text = text_of(reply)
    assert "something is missing" in reply["Subject"]
    assert "a subject: the name of your project" in text and "a message" not in text
    reply = text_of(ask(daemon, sink, KEN, "Garden", "")[-1])
    assert "a message: the help you would like" in reply and "a subject" not in reply
    assert requests(cli) == {}


def test_nonmember_request_is_held_until_the_chair_approves(cli, members, two_meetings,
                                                            daemon, sink):
    stranger = "stranger@else.org"
    lmtp_send(daemon.ports["lmtp"], stranger, [PEER_INPUT],
              make_message(sender=f"Sam <{stranger}>", to=PEER_INPUT, subject="Repair cafe",
                           body="Volunteers?\nminutes: 15\n"))
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="held notice")
    notice = replies(sink, "chair@example.org")[-1]
    assert "held for your approval" in notice["Subject"]
    assert not sink.messages_for(stranger)
    [held] = json.loads(cli("peer-input", "list", "--json").output)
    assert (held["status"], held["meeting_id"]) == ("held", "")
    assert "approved" in cli("peer-input", "approve", held["id"]).output
    sink.wait_for(lambda s: s.messages_for(stranger), description="approval")
    assert "Confirmed" in replies(sink, stranger)[-1]["Subject"]
    [booked] = json.loads(cli("peer-input", "list", "--json").output)
    assert (booked["status"], booked["meeting_id"]) == ("approved", two_meetings[0]["id"])


def test_peer_input_asked_for_on_the_request_address(cli, members, two_meetings, daemon, sink):
    reply = ask(daemon, sink, JANE, "Peer input request: Seed swap",
                "I'd like peer input on our seed swap: how to reach more gardeners.\n"
                "minutes: 10\n", to=REQUEST)[-1]
    assert reply["Subject"] == "Your peer-input request: Seed swap"
    [booked] = json.loads(cli("peer-input", "list", "--json").output)
    assert booked == {**booked, "project": "Seed swap", "minutes": 10, "status": "reserved",
                      "meeting_id": two_meetings[0]["id"]}


def test_chair_moves_and_edits_a_request(cli, members, two_meetings, daemon, sink):
    first, second = two_meetings
    ask(daemon, sink, JANE, "tool lib", "Help.\nminutes: 20\n")
    [request] = json.loads(cli("peer-input", "list", "--json").output)
    cli("peer-input", "move", request["id"], "--to", second["id"])
    sink.wait_for(lambda s: len(s.messages_for(JANE)) == 3, description="told of the move")
    assert when_of(second) in text_of(replies(sink, JANE)[-1])
    cli("peer-input", "edit", request["id"], "--project", "Tool library", "--name", "J. Doe")
    [edited] = json.loads(cli("peer-input", "list", "--json").output)
    assert edited == {**edited, "project": "Tool library", "requester": "J. Doe",
                      "meeting_id": second["id"]}
    too_much = cli("peer-input", "edit", request["id"], "--minutes", "31", ok=False)
    assert too_much.exit_code != 0 and "from 1 to 30" in too_much.output
    assert "no peer-input request 99" in cli("peer-input", "approve", "99", ok=False).output


def test_cancelled_meeting_moves_its_requests_on(cli, members, two_meetings, daemon, sink):
    first, second = two_meetings
    ask(daemon, sink, JANE, "Tool library", "Help.\nminutes: 20\n")
    cli("meetings", "cancel", first["id"], "--yes")
    sink.wait_for(lambda s: len(s.messages_for(JANE)) >= 4, description="cancel + move")
    told = [m for m in replies(sink, JANE) if "cancelled" in str(m["Subject"])]
    assert told and when_of(second) in text_of(told[0])
    [request] = json.loads(cli("peer-input", "list", "--json").output)
    assert (request["meeting_id"], request["status"]) == (second["id"], "reserved")


# -- acceptance 5 ------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_approved_slot_shows_in_meeting_and_reminder_without_the_help_wanted(
        cli, members, two_meetings, daemon, sink):
    first = two_meetings[0]
    secret = "We owe the landlord money and need advice on negotiating."
    ask(daemon, sink, JANE, "Tenants union", f"{secret}\nminutes: 20\n")
    [request] = json.loads(cli("peer-input", "list", "--json").output)
    assert json.loads(cli("meetings", "show", first["id"], "--json").output)["agenda"] == []
    cli("peer-input", "approve", request["id"])
    sink.wait_for(lambda s: len(s.messages_for(JANE)) == 3, description="confirmation")
    assert "Confirmed" in replies(sink, JANE)[-1]["Subject"]

    shown = json.loads(cli("meetings", "show", first["id"], "--json").output)
    [slot] = shown["agenda"]
    assert slot == {**slot, "requester": "Jane Doe", "project": "Tenants union", "minutes": 20}
    assert shown["peer_input_free"] == 10

    cli("meetings", "remind", first["id"], "--yes")
    sink.wait_for(lambda s: meeting_mails(s, KEN), description="reminder")
    [reminder] = meeting_mails(sink, KEN)
    body = reminder.get_body(("plain",)).get_content()
    assert "Jane Doe: Tenants union (20 minutes)" in body
    assert secret not in body and JANE not in body
    assert secret not in ics(reminder) and "Tenants union" in ics(reminder)
    assert calendar_part(reminder).get_param("method") == "PUBLISH"
    assert "shma-peer-input@lists.example.org" in body  # how to ask for time


def test_held_request_expires_with_a_notice(cli, members, two_meetings, daemon, sink, clock):
    stranger = "stranger@else.org"
    lmtp_send(daemon.ports["lmtp"], stranger, [PEER_INPUT],
              make_message(sender=stranger, to=PEER_INPUT, subject="Repair cafe",
                           body="Volunteers?\n"))
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="held notice")
    clock.advance(timedelta(days=15))
    daemon.wake_scheduler()
    sink.wait_for(lambda s: s.messages_for(stranger), description="expiry notice")
    assert "nobody approved it in time" in text_of(replies(sink, stranger)[-1])
    [expired] = json.loads(cli("peer-input", "list", "--all", "--json").output)
    assert expired["status"] == "expired"


# -- issue 14: a request from an unproven sender waits for the member's confirmation -------------


def send_request(daemon, store, sender: str, project: str, body: str, **headers: str) -> None:
    """Mail a request as `sender` (From and envelope) and wait until the router handled it."""
    handled = sum(1 for status, _ in inbound_outcomes(store) if status != "new")
    lmtp_send(daemon.ports["lmtp"], sender, [PEER_INPUT],
              make_message(sender=sender, to=PEER_INPUT, subject=project, body=body, **headers))
    wait_until(lambda: sum(1 for status, _ in inbound_outcomes(store) if status != "new")
               > handled, what="the request handled")


@pytest.mark.both_backends
def test_a_forged_request_books_nothing_until_confirmed_and_queues_by_the_confirmation_time(
        cli, members, two_meetings, daemon, sink, store, clock):
    first, second = two_meetings
    # Mallory forges Jane's address, three times: one confirmation goes to Jane, nothing is
    # booked, and the chair hears nothing yet.
    for project in ("Tool library", "Another thing", "A third"):
        send_request(daemon, store, JANE, project, "Help.\nminutes: 20\n")
    wait_settled(store)
    [confirmation] = replies(sink, JANE)
    assert "Please confirm" in confirmation["Subject"]
    assert "20 minutes" in text_of(confirmation) and "no time is reserved" in text_of(confirmation)
    assert "Tool library" not in confirmation.as_string()  # nothing the mail said
    assert requests(cli) == {} and not replies(sink, "chair@example.org")
    # Ken asks an hour later and confirms at once: his request queues first.
    clock.advance(timedelta(hours=1))
    ask(daemon, sink, KEN, "Food co-op", "Bookkeeping help.\nminutes: 20\n")
    assert (requests(cli)[KEN]["meeting_id"], requests(cli)[KEN]["status"]) \
        == (first["id"], "reserved")
    # Jane confirms a day later: her request is read again and booked now, after Ken's (the
    # first meeting has 10 of its 30 minutes left), dated by her confirmation.
    confirmed_at = clock.advance(timedelta(days=1))
    confirm(daemon, sink, JANE, confirmation)
    ack = replies(sink, JANE)[-1]
    assert ack["Subject"] == "Your peer-input request: Tool library"
    assert when_of(second) in text_of(ack)
    booked = requests(cli)
    assert (booked[JANE]["meeting_id"], booked[JANE]["status"]) == (second["id"], "reserved")
    assert datetime.fromisoformat(booked[JANE]["received"]) >= confirmed_at.replace(
        microsecond=0)
    assert int(booked[JANE]["id"]) > int(booked[KEN]["id"])
    # The token is single use: confirming again books nothing more.
    confirm_again = make_message(sender=JANE, to=confirmation["Reply-To"], body="OK\n")
    handled = len(inbound_outcomes(store))
    lmtp_send(daemon.ports["lmtp"], JANE, [confirmation["Reply-To"]], confirm_again)
    wait_until(lambda: len([o for o in inbound_outcomes(store) if o[0] != "new"]) > handled,
               what="the second confirmation handled")
    assert "no such confirmation" in inbound_outcomes(store)[-1][1]
    assert len(json.loads(cli("peer-input", "list", "--all", "--json").output)) == 2


@pytest.mark.both_backends
def test_a_request_that_replies_to_our_mail_to_the_member_is_booked_at_once(
        cli, shma, two_meetings, daemon, sink, store):
    cli("members", "add", shma, "mo@example.net", "--name", "Mo")
    sink.wait_for(lambda s: s.messages_for("mo@example.net"), description="the welcome")
    [welcome] = replies(sink, "mo@example.net")
    send_request(daemon, store, "mo@example.net", "Seed swap", "Gardeners?\nminutes: 10\n",
                 In_Reply_To=welcome["Message-ID"])
    sink.wait_for(lambda s: len(s.messages_for("mo@example.net")) == 2,
                  description="the acknowledgement")
    assert replies(sink, "mo@example.net")[-1]["Subject"] == "Your peer-input request: Seed swap"
    [booked] = json.loads(cli("peer-input", "list", "--json").output)
    assert (booked["status"], booked["meeting_id"]) == ("reserved", two_meetings[0]["id"])


def test_confirm_token_on_the_request_address_books_an_unproven_request(
        cli, members, two_meetings, daemon, sink, store):
    send_request(daemon, store, KEN, "Food co-op", "Bookkeeping help.\nminutes: 15\n")
    sink.wait_for(lambda s: s.messages_for(KEN), description="the confirmation")
    [confirmation] = replies(sink, KEN)
    token = str(confirmation["Reply-To"]).split("+", 1)[1].split("@", 1)[0]
    assert requests(cli) == {}
    lmtp_send(daemon.ports["lmtp"], KEN, [REQUEST],
              make_message(sender=KEN, to=REQUEST, subject="", body=f"confirm {token}\n"))
    sink.wait_for(lambda s: any(str(m["Subject"]).startswith("Your peer-input request")
                                for m in replies(s, KEN)), description="the acknowledgement")
    assert (requests(cli)[KEN]["minutes"], requests(cli)[KEN]["status"]) == (15, "reserved")
