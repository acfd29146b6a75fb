"""Bounces (issue 8): scoring, disabling, notices that are probes, removal; forged reports and
rate limits that must not cost a live member anything; the chair's commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from listserv.bounces import feedback
from listserv.bounces.reports import Kind, classify_refusal, status_of
from listserv.bounces.scoring import register
from listserv.bounces.settings import (
    DECAY_DAYS,
    PROBE_GRACE_HOURS,
    THRESHOLD,
    WARNING_INTERVAL_DAYS,
    WARNINGS,
)
from listserv.store.models.core import MailingList, Member, Owner
from listserv.store.models.features import BounceEvent, BounceProbe, BounceScore

from .helpers import LIST, lmtp_send, make_message, parse
from .test_bounces_corpus import CORPUS

JANE = "jane@example.org"
BOB = "bob@example.net"
CHAIR = "chair@example.org"
DEAD = ("550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual "
        "mailbox table")


# -- classifying a refusal or a report's status (pure) ----------------------------------------


@pytest.mark.parametrize(("reply", "kind"), [
    ("550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown", Kind.PERMANENT),
    ("550 5.1.1 The email account that you tried to reach does not exist. Please try "
     "5.1.1 double-checking the recipient's email address", Kind.PERMANENT),
    ("550 Requested action not taken: mailbox unavailable", Kind.PERMANENT),
    ("552 5.2.2 <bob@example.net>: Mailbox full", Kind.TEMPORARY),
    ("554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException", Kind.TEMPORARY),
    ("554 5.7.1 Message rejected as spam", Kind.POLICY),
    ("550 5.7.1 Service unavailable, Client host [192.0.2.25] blocked using Spamhaus",
     Kind.POLICY),
    ("554 Message refused: your IP is on our blocklist", Kind.POLICY),
    ("550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy",
     Kind.POLICY),
    ("553 5.6.7 a non-ASCII address, and the relay does not offer SMTPUTF8", Kind.POLICY),
    ("550 5.4.5 Daily user sending limit exceeded.", Kind.RATE),
    ("550 5.4.5 Daily user sending quota exceeded.", Kind.RATE),
    ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", Kind.RATE),
    ("550 5.7.0 Too many messages sent today, rate limit reached", Kind.RATE),
])
def test_a_refusal_is_classified_by_its_status_and_words(reply, kind):
    assert classify_refusal(reply)[0] is kind


def test_status_codes_are_not_read_out_of_ip_addresses():
    assert status_of("", "connect to 10.5.1.1 port 25: timed out") == ""
    assert status_of("", "Sorry, no mailbox here by that name. (#5.1.1)") == "5.1.1"
    assert status_of("5.0.0", "550 5.2.1 Mailbox disabled") == "5.2.1"
    assert status_of("", "554: delivery error: dd This user doesn't have an account") == "5.0.0"


# -- scoring (a store, no daemon) --------------------------------------------------------------


@pytest.fixture
def scored(store):
    """A list with one member, and a way to register failures at given times."""
    with store.unit_of_work() as session:
        ml = MailingList(name="shma", domain="lists.example.org", extra={},
                         created_at=datetime.now(UTC))
        ml.owners = [Owner(email=CHAIR)]
        session.add(ml)
        session.flush()
        session.add(Member(list_id=ml.id, email=BOB, bounce_token="b" * 24,
                           leave_token="l" * 24))
        ids = ml.id

    def bounce(at: datetime, kind: Kind = Kind.PERMANENT, verified: bool = True,
               **extra: object) -> tuple[float, str, bool]:
        with store.unit_of_work() as session:
            ml = session.get(MailingList, ids)
            assert ml is not None
            if extra:
                ml.extra = {**ml.extra, **extra}
            member = session.scalars(select(Member)).one()
            event = register(session, ml, member, kind, f"{kind} reason", at,
                             source="report", verified=verified)
            state = session.get(BounceScore, member.id)
            assert state is not None
            return state.score, member.status, event.counted

    return bounce


DAY0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_a_member_is_counted_at_most_once_a_day_the_worst_of_the_day(scored):
    assert scored(DAY0, Kind.TEMPORARY) == (0.5, "active", True)
    assert scored(DAY0 + timedelta(hours=2), Kind.TEMPORARY) == (0.5, "active", False)
    assert scored(DAY0 + timedelta(hours=3), Kind.PERMANENT) == (1.0, "active", True)
    assert scored(DAY0 + timedelta(hours=4), Kind.PERMANENT) == (1.0, "active", False)
    assert scored(DAY0 + timedelta(days=1), Kind.PERMANENT) == (2.0, "active", True)


def test_only_permanent_and_temporary_verified_failures_count(scored):
    for kind in (Kind.DELAYED, Kind.POLICY, Kind.RATE, Kind.AUTOREPLY, Kind.UNKNOWN):
        assert scored(DAY0, kind) == (0.0, "active", False)
    assert scored(DAY0, Kind.PERMANENT, verified=False) == (0.0, "active", False)


def test_the_score_starts_again_after_seven_quiet_days(scored):
    scored(DAY0)
    scored(DAY0 + timedelta(days=1))
    assert scored(DAY0 + timedelta(days=8))[0] == 3.0  # last bounce 7 days before: kept
    assert scored(DAY0 + timedelta(days=15, hours=1))[0] == 1.0  # more than 7: reset


def test_the_threshold_disables_and_is_a_list_setting(scored, store):
    assert scored(DAY0, **{"bounce.threshold": 2.0})[1] == "active"
    assert scored(DAY0 + timedelta(days=1)) == (2.0, "disabled", True)
    with store.unit_of_work() as session:
        state = session.scalars(select(BounceScore)).one()
        assert state.disabled_at == DAY0 + timedelta(days=1)
        assert state.next_step_at == state.disabled_at and state.warnings_sent == 0
    # A disabled member's further failures are recorded, not counted.
    assert scored(DAY0 + timedelta(days=2)) == (2.0, "disabled", False)


# -- end to end: a daemon delivering to the SMTP sink -----------------------------------------


@pytest.fixture
def members(cli, shma):
    for member in (JANE, BOB):
        cli("members", "add", shma, member, "--no-welcome")


def post(daemon, subject: str) -> bytes:
    message = make_message(sender=JANE, subject=subject)
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], message)
    return message


def events(store, email: str = BOB) -> list[BounceEvent]:
    with store.unit_of_work() as session:
        return list(session.scalars(select(BounceEvent).join(
            Member, Member.id == BounceEvent.member_id).where(Member.email == email)
            .order_by(BounceEvent.id)))


def refusals(store, email: str = BOB) -> list[BounceEvent]:
    """The member's copies of posts refused during delivery (not the probes)."""
    return [e for e in events(store, email) if e.source == "delivery"]


def member_status(store, email: str = BOB) -> str | None:
    with store.unit_of_work() as session:
        return session.scalar(select(Member.status).where(Member.email == email))


def probes(store) -> list[BounceProbe]:
    with store.unit_of_work() as session:
        return list(session.scalars(select(BounceProbe).order_by(BounceProbe.id)))


def chair_subjects(sink) -> list[str]:
    return [parse(d.data)["Subject"] for d in sink.messages_for(CHAIR)]


def wait(sink, predicate, description: str, timeout: float = 15.0) -> None:
    sink.wait_for(lambda _s: predicate(), timeout=timeout, description=description)


def show(cli, email: str = BOB) -> dict:
    return json.loads(cli("bounces", "show", email, "--json").output)


@pytest.mark.both_backends
def test_refused_on_five_days_disabled_warned_on_schedule_then_removed(cli, members, daemon,
                                                                       sink, store):
    """Acceptance 2: threshold, disabling, three notices a week apart, removal; the chair is
    told at each step."""
    clock = daemon.clock
    sink.rcpt_responses[BOB] = DEAD
    for day in range(1, 6):
        post(daemon, f"Day {day}")
        wait(sink, lambda day=day: len(refusals(store)) == day, f"refusal on day {day}")
        assert [e.counted for e in refusals(store)] == [True] * day
        if day < 5:
            assert member_status(store) == "active"
            clock.advance(timedelta(days=1))
    assert member_status(store) == "disabled"
    assert show(cli)["score"] == 5.0
    assert sink.messages_for(JANE) and len(sink.messages_for(JANE)) == 5

    # The chair is told, and notice 1 (a probe) goes out, at the scheduler's next run (this
    # one, or its own first run if that came late).
    daemon.run_scheduler()
    wait(sink, lambda: len(sink.messages_for(CHAIR)) == 1, "the chair's first notice")
    assert chair_subjects(sink) == ["shma: delivery to bob@example.net disabled (bounces)"]
    body = parse(sink.messages_for(CHAIR)[0].data).get_content()
    assert "5 (the threshold is 5)" in body and "User unknown" in body
    assert f"listserv members enable {LIST} {BOB}" in body
    wait(sink, lambda: [p.status for p in probes(store)] == ["bounced"], "probe 1 refused")
    first = probes(store)[0]

    expected = ["shma: notice 2 of 3 sent to bob@example.net (bounces)",
                "shma: notice 3 of 3 sent to bob@example.net (bounces)"]
    for number, subject in enumerate(expected, start=2):
        clock.advance(timedelta(days=6, hours=23))
        daemon.run_scheduler()  # not yet: a week after the last one
        assert len(probes(store)) == number - 1
        clock.advance(timedelta(hours=1))
        daemon.run_scheduler()
        wait(sink, lambda number=number: len(sink.messages_for(CHAIR)) == number,
             f"the chair told of notice {number}")
        assert chair_subjects(sink)[-1] == subject
        wait(sink, lambda number=number: [p.status for p in probes(store)]
             == ["bounced"] * number, f"probe {number} refused")
    sent = [p.sent_at for p in probes(store)]
    assert [p.warning for p in probes(store)] == [1, 2, 3]
    assert all(timedelta(days=7) <= b - a < timedelta(days=7, minutes=5)
               for a, b in zip(sent, sent[1:], strict=False))
    assert len({p.token for p in probes(store)}) == 3
    assert first.token not in {BOB, ""}

    clock.advance(timedelta(days=6, hours=23))
    daemon.run_scheduler()
    assert member_status(store) == "disabled"
    clock.advance(timedelta(hours=1))
    daemon.run_scheduler()
    wait(sink, lambda: len(sink.messages_for(CHAIR)) == 4, "the chair told of the removal")
    assert chair_subjects(sink)[-1] == "shma: bob@example.net removed (bounces)"
    assert member_status(store) is None
    assert not sink.messages_for(BOB)  # every mail to the address was refused
    actions = [e["action"] for e in json.loads(cli("log", "--json", "--limit", "200").output)]
    assert actions.count("bounce-counted") == 5
    assert actions.count("member-disabled") == 1
    assert actions.count("bounce-warning") == 3
    assert actions[-1] == "member-removed" or "member-removed" in actions
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert BOB not in emails


def disable_bob_by_a_report(cli, daemon, sink, store) -> None:
    """Bob gets a post, a Postfix report for it comes back: with threshold 1 he is disabled.

    The report's handler takes the first step at once (the chair's notice, notice 1 as a
    probe), so the probe goes out to a mailbox that works again, whatever the scheduler does.
    """
    cli("lists", "set", LIST, "bounce.threshold", "1")
    message = post(daemon, "Bob's last post for a while")
    wait(sink, lambda: sink.messages_for(BOB), "bob's copy")
    lmtp_send(daemon.ports["lmtp"], "", ["shma-bounces@lists.example.org"],
              _dsn_for_bob(parse(message)["Message-ID"]))
    wait(sink, lambda: member_status(store) == "disabled", "bob disabled")


def test_a_notice_goes_to_the_member_as_a_probe_with_its_own_token(cli, members, daemon, sink,
                                                                   store):
    disable_bob_by_a_report(cli, daemon, sink, store)
    wait(sink, lambda: len(sink.messages_for(BOB)) == 2, "the notice to bob")
    notice = sink.messages_for(BOB)[1]
    [probe] = probes(store)
    assert notice.mail_from == f"shma-bounces+{probe.token}@lists.example.org"
    with store.unit_of_work() as session:
        member = session.scalar(select(Member).where(Member.email == BOB))
        assert member is not None and member.bounce_token != probe.token
    msg = parse(notice.data)
    assert msg["Subject"] == "Your mail from the shma list is paused (notice 1 of 3)"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "User unknown" in msg.get_content()
    # (queued with the probe, it may be delivered a moment after it by another worker)
    wait(sink, lambda: len(sink.messages_for(CHAIR)) == 1, "the chair's notice")
    assert chair_subjects(sink) == ["shma: delivery to bob@example.net disabled (bounces)"]


@pytest.mark.both_backends
def test_one_bounce_then_eight_days_of_mail_is_back_to_zero(cli, members, daemon, sink, store):
    """Acceptance 3."""
    clock = daemon.clock
    sink.rcpt_responses[BOB] = DEAD
    post(daemon, "Bounces once")
    wait(sink, lambda: len(events(store)) == 1, "the refusal")
    assert show(cli)["score"] == 1.0
    del sink.rcpt_responses[BOB]
    for day in range(1, 9):
        clock.advance(timedelta(days=1))
        post(daemon, f"Normal day {day}")
        wait(sink, lambda day=day: len(sink.messages_for(BOB)) == day, f"day {day} delivered")
        daemon.run_scheduler()
        if day < 7:  # (on day 7 the bounce is 7 days and a few seconds old: reset, or not)
            assert show(cli)["score"] == 1.0
    info = show(cli)
    assert info["status"] == "active" and info["score"] == 0.0
    assert info["last_reason"].startswith("permanent: 550 5.1.1")
    log = json.loads(cli("log", "--json").output)
    assert [e for e in log if e["action"] == "bounce-score-reset"][0]["detail"] == (
        "bob@example.net: no bounce for 7 days; score 1 -> 0")


@pytest.mark.both_backends
def test_a_probe_delivered_enables_the_member_again(cli, members, daemon, sink, store):
    """Acceptance 4."""
    clock = daemon.clock
    disable_bob_by_a_report(cli, daemon, sink, store)
    post(daemon, "Not for bob while disabled")
    wait(sink, lambda: len(sink.messages_for(JANE)) == 2, "the second post")
    wait(sink, lambda: [p.status for p in probes(store)] == ["accepted"], "probe accepted")
    assert len(sink.messages_for(BOB)) == 2  # the first post, then the notice: not the second
    assert member_status(store) == "disabled"  # until no bounce came in the grace time
    clock.advance(timedelta(hours=24, minutes=1))
    daemon.run_scheduler()
    wait(sink, lambda: member_status(store) == "active", "bob enabled again")
    assert [p.status for p in probes(store)] == ["succeeded"]
    wait(sink, lambda: "shma: delivery to bob@example.net enabled again" in
         chair_subjects(sink), "the chair told")
    info = show(cli)
    assert (info["score"], info["status"], info["warnings_sent"]) == (0.0, "active", 0)
    post(daemon, "Back on the list")
    wait(sink, lambda: len(sink.messages_for(BOB)) == 3, "bob gets posts again")
    assert parse(sink.messages_for(BOB)[2].data)["Subject"] == "[shma] Back on the list"
    actions = [e["action"] for e in json.loads(cli("log", "--json").output)]
    assert "member-enabled" in actions


def test_a_bounce_of_the_probe_keeps_the_member_disabled(cli, members, daemon, sink, store):
    cli("lists", "set", LIST, "bounce.probe_grace_hours", "2")
    disable_bob_by_a_report(cli, daemon, sink, store)
    # The relay took the notice; the far end bounces it later, to the probe's own token.
    wait(sink, lambda: [p.status for p in probes(store)] == ["accepted"], "probe accepted")
    [probe] = probes(store)
    report = (CORPUS / "postfix-permanent-user-unknown.eml").read_bytes()
    lmtp_send(daemon.ports["lmtp"], "", [f"shma-bounces+{probe.token}@lists.example.org"],
              report)
    wait(sink, lambda: [p.status for p in probes(store)] == ["bounced"], "probe bounced")
    daemon.clock.advance(timedelta(hours=3))
    daemon.run_scheduler()
    assert member_status(store) == "disabled"
    assert [(e.source, e.kind, e.counted) for e in events(store)][-1] == (
        "probe", "permanent", False)


def _dsn_for_bob(message_id: str) -> bytes:
    """The corpus's Postfix report for bob, returning the message `message_id`."""
    raw = (CORPUS / "postfix-permanent-user-unknown.eml").read_bytes()
    return raw.replace(b"<20261103081522.4F2A1C0042@example.org>", message_id.encode())


@pytest.mark.both_backends
@pytest.mark.parametrize("address", ["shma-bounces@lists.example.org",
                                     "shma-bounces+notatokenofours@lists.example.org"])
def test_a_forged_dsn_changes_nothing_and_is_shown_to_the_chair(cli, members, daemon, sink,
                                                                store, address):
    """Acceptance 5: it names a member, but matches nothing we sent."""
    lmtp_send(daemon.ports["lmtp"], "", [address], _dsn_for_bob("<forged-1@attacker.example>"))
    wait(sink, lambda: sink.messages_for(CHAIR), "the report shown to the chair")
    notice = parse(sink.messages_for(CHAIR)[0].data)
    assert notice["Subject"] == "shma: a bounce report for you to look at"
    assert "matches nothing we sent" in notice.get_body().get_content()
    [attached] = list(notice.iter_attachments())
    assert attached.get_content()["Subject"] == "Undelivered Mail Returned to Sender"
    info = show(cli)
    assert (info["score"], info["status"], info["unverified"]) == (0.0, "active", 1)
    assert [(e.kind, e.counted, e.verified) for e in events(store)] == [
        ("permanent", False, False)]
    [row] = json.loads(cli("bounces", "list", "--json").output)
    assert {k: row[k] for k in ("email", "list", "score", "status", "unverified")} == {
        "email": BOB, "list": LIST, "score": 0.0, "status": "active", "unverified": 1}
    # Nothing answers a report: only the chair got mail.
    assert {r for d in sink.deliveries for r in d.rcpt_tos} == {CHAIR}


def test_the_same_dsn_quoting_a_message_we_sent_bob_counts(cli, members, daemon, sink, store):
    message = post(daemon, "A real post")
    wait(sink, lambda: sink.messages_for(BOB), "bob's copy")
    message_id = parse(message)["Message-ID"]
    lmtp_send(daemon.ports["lmtp"], "", ["shma-bounces@lists.example.org"],
              _dsn_for_bob(message_id))
    wait(sink, lambda: len(events(store)) == 1, "the report handled")
    assert [(e.kind, e.counted, e.verified) for e in events(store)] == [
        ("permanent", True, True)]
    assert show(cli)["score"] == 1.0
    assert not sink.messages_for(CHAIR)


@pytest.mark.both_backends
@pytest.mark.parametrize("where", ["rcpt", "mail_from"])
def test_a_daily_sending_limit_delays_the_queue_and_counts_against_no_member(
        cli, members, daemon, sink, store, where):
    """Acceptance 6: at RCPT TO or at MAIL FROM, the provider's limit is a retry."""
    limit = "550 5.4.5 Daily user sending limit exceeded."
    if where == "rcpt":
        sink.rcpt_responses[BOB] = limit
    else:
        sink.mail_from_response = limit
    post(daemon, "Over the limit")

    def waiting() -> list[dict]:
        return [i for i in json.loads(cli("queue", "--json").output)
                if i["direction"] == "outgoing"]

    wait(sink, lambda: any("Daily user sending limit" in i["reason"] for i in waiting()),
         "the message waiting in the queue")
    assert json.loads(cli("queue", "--failed", "--json").output) == []
    assert events(store) == [] and events(store, JANE) == []
    assert json.loads(cli("bounces", "list", "--json").output) == []
    sink.rcpt_responses.clear()
    sink.mail_from_response = None
    daemon.clock.advance(timedelta(minutes=10))
    daemon.deliver_wake.set()
    wait(sink, lambda: sink.messages_for(BOB), "delivered once the limit lifted")
    wait(sink, lambda: waiting() == [], "the queue empty")
    assert member_status(store) == "active" and events(store) == []


def queue_reasons(cli, *flags: str) -> list[str]:
    return [i["reason"] for i in json.loads(cli("queue", *flags, "--json").output)]


@pytest.mark.both_backends
def test_a_mailbox_full_that_reaches_the_give_up_raises_the_members_score(cli, members, daemon,
                                                                          sink, store):
    """Acceptance 7 (issue 12): a 450 at RCPT TO, retried until the give-up, then +0.5."""
    full = "450 4.2.2 <bob@example.net>: Mailbox full"
    sink.rcpt_responses[BOB] = full
    post(daemon, "For a full mailbox")
    wait(sink, lambda: full in queue_reasons(cli), "the first temporary failure")
    assert events(store) == []  # still being retried: nothing said about the address yet
    daemon.clock.advance(timedelta(days=6))
    daemon.deliver_wake.set()
    wait(sink, lambda: len(events(store)) == 1, "the give-up scored", timeout=30)
    [event] = events(store)
    assert (event.source, event.kind, event.counted, event.weight) == (
        "delivery", "temporary", True, 0.5)
    info = show(cli)
    assert info["score"] == 0.5 and info["last_reason"] == f"temporary: gave up: {full}"
    assert queue_reasons(cli, "--failed") == [f"gave up after 5 days: {full}"]
    assert events(store, JANE) == []


def test_a_transaction_refused_until_the_give_up_counts_against_no_member(cli, members, daemon,
                                                                          sink, store):
    """Only a refusal of the recipient says anything about the address (docs/bounces.md)."""
    sink.data_response = "451 4.3.0 Error: queue file write error"
    post(daemon, "Never taken")
    wait(sink, lambda: "451 4.3.0 Error: queue file write error" in queue_reasons(cli),
         "the first temporary failure")
    daemon.clock.advance(timedelta(days=6))
    daemon.deliver_wake.set()
    wait(sink, lambda: len(queue_reasons(cli, "--failed")) == 2, "both given up", timeout=30)
    assert events(store) == [] and events(store, JANE) == []
    assert json.loads(cli("bounces", "list", "--json").output) == []


def test_a_spam_refusal_is_recorded_with_its_reason_but_not_counted(cli, members, daemon, sink,
                                                                    store):
    sink.rcpt_responses[BOB] = "554 5.7.1 <bob@example.net>: Message rejected as spam"
    post(daemon, "Looks like spam to them")
    wait(sink, lambda: len(events(store)) == 1, "the refusal recorded")
    [event] = events(store)
    assert (event.source, event.kind, event.counted) == ("delivery", "policy", False)
    info = show(cli)
    assert info["score"] == 0.0
    assert info["last_reason"] == "policy: 554 5.7.1 <bob@example.net>: Message rejected as spam"
    failed = json.loads(cli("queue", "--failed", "--json").output)
    assert [i["recipients"] for i in failed] == [BOB]


def test_a_report_to_a_members_token_counts_and_an_auto_reply_does_not(cli, members, daemon,
                                                                       sink, store):
    with store.unit_of_work() as session:
        token = session.scalar(select(Member.bounce_token).where(Member.email == BOB))
    to = f"shma-bounces+{token}@lists.example.org"
    # Reports for another address (a forward) still count for the member whose token it is.
    lmtp_send(daemon.ports["lmtp"], "", [to],
              (CORPUS / "gmail-temporary-out-of-storage.eml").read_bytes())
    lmtp_send(daemon.ports["lmtp"], "grace@gmail.com", [to],
              (CORPUS / "gmail-vacation-responder.eml").read_bytes())
    wait(sink, lambda: len(events(store)) == 2, "both handled")
    assert [(e.kind, e.counted) for e in events(store)] == [("temporary", True),
                                                           ("autoreply", False)]
    assert show(cli)["score"] == 0.5
    assert not sink.deliveries  # no answer to either, nothing for the chair


# -- the chair's commands ---------------------------------------------------------------------


def test_members_enable_clears_the_score_and_stops_the_notices(cli, members, daemon, sink,
                                                               store):
    cli("lists", "set", LIST, "bounce.threshold", "1")
    sink.rcpt_responses[BOB] = DEAD
    post(daemon, "Refused")
    wait(sink, lambda: member_status(store) == "disabled", "bob disabled")
    daemon.run_scheduler()
    wait(sink, lambda: [p.status for p in probes(store)] == ["bounced"], "probe 1 refused")
    text = cli("bounces", "list").output
    assert "bob@example.net" in text and "1/1" in text and "disabled" in text
    shown = cli("bounces", "show", BOB).output
    assert "permanent  delivery  counted  550 5.1.1" in shown and "notices (probes):" in shown
    result = cli("members", "enable", LIST, BOB)
    assert result.output.strip() == f"enabled delivery to {BOB} on {LIST}"
    info = show(cli)
    assert (info["status"], info["score"], info["next_step"]) == ("active", 0.0, "")
    again = cli("members", "enable", LIST, BOB, ok=False)
    assert again.exit_code != 0 and "is active, not disabled" in again.output
    assert "Traceback" not in again.output
    daemon.clock.advance(timedelta(days=8))
    daemon.run_scheduler()
    assert len(probes(store)) == 1 and member_status(store) == "active"
    log = json.loads(cli("log", "--json").output)
    assert log[-1]["action"] == "member-enabled" and log[-1]["actor"].startswith("chair")


def test_bounce_commands_explain_mistakes_in_one_line(cli, shma):
    cli("members", "add", shma, JANE, "--no-welcome")
    for args, words in [
        (("bounces", "show", "nobody@example.org"), "is not a member"),
        (("members", "enable", LIST, "nobody@example.org"), "is not a member"),
        (("lists", "set", LIST, "bounce.threshold", "0"), "a number above 0"),
        (("lists", "set", LIST, "bounce.warnings", "many"), "a whole number from 0 to 10"),
        (("lists", "set", LIST, "bounce.decay_days", "-1"), "a number above 0"),
        (("bounces", "list", "nolist"), "no list named nolist"),
    ]:
        result = cli(*args, ok=False)
        assert result.exit_code != 0 and words in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    info = json.loads(cli("lists", "show", LIST, "--json").output)
    defaults = {s.key: s.default for s in (THRESHOLD, WARNINGS, WARNING_INTERVAL_DAYS,
                                           DECAY_DAYS, PROBE_GRACE_HOURS)}
    assert {k: info[k] for k in defaults} == defaults
    cli("lists", "set", LIST, "bounce.warnings", "0")
    assert json.loads(cli("lists", "show", LIST, "--json").output)["bounce.warnings"] == 0
    assert cli("bounces", "list").output.strip() == "(none)"
    assert json.loads(cli("bounces", "show", JANE, "--json").output)["events"] == []


def test_no_warnings_means_removal_at_once(cli, members, daemon, sink, store):
    cli("lists", "set", LIST, "bounce.threshold", "1")
    cli("lists", "set", LIST, "bounce.warnings", "0")
    sink.rcpt_responses[BOB] = DEAD
    post(daemon, "Refused")
    wait(sink, lambda: member_status(store) != "active", "bob refused")
    daemon.run_scheduler()  # (unless the scheduler's own first run already did it)
    wait(sink, lambda: chair_subjects(sink) == ["shma: bob@example.net removed (bounces)"],
         "the removal")
    assert member_status(store) is None and probes(store) == []


def test_a_fault_in_scoring_never_costs_the_delivery_its_result(cli, members, daemon, sink,
                                                                store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("scoring bug")

    monkeypatch.setattr(feedback, "register", broken)
    sink.rcpt_responses[BOB] = DEAD
    post(daemon, "Refused while scoring is broken")
    wait(sink, lambda: json.loads(cli("queue", "--failed", "--json").output),
         "bob's copy failed")
    daemon.clock.advance(timedelta(minutes=5))
    daemon.deliver_wake.set()
    post(daemon, "Next")
    wait(sink, lambda: len(sink.messages_for(JANE)) == 2, "the next post")
    # Each copy refused once, recorded (a batch's results are written with the next claim).
    wait(sink, lambda: [i["recipients"] for i in json.loads(
        cli("queue", "--failed", "--json").output)] == [BOB, BOB], "both refusals recorded")
    assert events(store) == [] and member_status(store) == "active"
