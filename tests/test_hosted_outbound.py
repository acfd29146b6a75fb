"""A list run on a hosted mailbox sends through the provider's submission server (STARTTLS and
AUTH) as the account, under the list's own From, and within the provider's sending limits.

The daemon runs in hosted mode (`[intake.imap] enabled`, pointed at a closed port: the poller
only retries its connection); posts come in over LMTP; the submission server requires STARTTLS
and AUTH before it takes any mail (tests/submission_server.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, literal, select

from listserv.config import OutboundSettings
from listserv.delivery import limits as sending_limits
from listserv.delivery.claim import claim
from listserv.delivery.limits import SendLimits, prune_usage
from listserv.delivery.outbox import enqueue, enqueue_to_members
from listserv.delivery.transports import make_transport
from listserv.mail.addresses import Role
from listserv.mail.mime.raw import RawMessage
from listserv.mail.render import Renderer
from listserv.posting.distribute import sender_rewrite
from listserv.posting.dmarc import Policy
from listserv.store.engine import Store
from listserv.store.models.core import MailingList
from listserv.store.models.outgoing import OutRecipient, SendUsage

from .helpers import (
    LIST,
    lmtp_send,
    make_message,
    parse,
    wait_until,
    write_config,
    write_secret,
)
from .submission_server import (  # noqa: F401 (fixtures)
    ACCOUNT,
    PASSWORD,
    WARNING_FILTERS,
    SubmissionServer,
    certificate_fixture,
)

pytestmark = WARNING_FILTERS


@pytest.fixture
def submission(certificate) -> Iterator[SubmissionServer]:
    """The provider's submission port (587): STARTTLS, then AUTH, then mail."""
    server = SubmissionServer(certificate, implicit=False).start()
    yield server
    server.stop()
    assert not server.recorder.refusals, server.recorder.refusals


@pytest.fixture
def limits() -> dict[str, int]:
    """Extra `[outbound]` keys (tests parametrize it with sending limits)."""
    return {}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nobody listens, held (bound, not listening) so no test takes it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, submission: SubmissionServer,
                limits: dict[str, int], closed_port: int) -> Path:
    """Hosted mode: IMAP intake on (a closed port), delivery by authenticated submission."""
    secret = write_secret(tmp_path / "account-password", PASSWORD + "\n")
    path = write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, submission.port,
                        tls="starttls", verify_cert=False, username=ACCOUNT,
                        password_file=str(secret), **limits)
    with path.open("a") as handle:
        handle.write(f'[intake.imap]\nenabled = true\nhost = "127.0.0.1"\nport = {closed_port}\n'
                     f'username = "{ACCOUNT}"\npassword_file = "{secret}"\ntls = "none"\n')
    return path


def import_members(cli, tmp_path: Path, *emails: str) -> None:
    """Members added as the chair imports them: nobody is mailed (a welcome would count)."""
    roster = tmp_path / "members.csv"
    roster.write_text("email,name\n" + "".join(f"{e},\n" for e in emails))
    cli("members", "import", LIST, str(roster))


def copies(submission: SubmissionServer, subject: str) -> list:
    return [s for s in submission.recorder.submissions
            if parse(s.data)["Subject"] == f"[shma] {subject}"]


def recipients_of(submission: SubmissionServer, subject: str) -> list[str]:
    return [r for s in copies(submission, subject) for r in s.rcpt_tos]


def statuses(store) -> dict[str, int]:
    with store.unit_of_work() as session:
        rows = session.execute(select(OutRecipient.status, func.count())
                               .group_by(OutRecipient.status)).all()
    return {status: count for status, count in rows}


def raw_from(data: bytes) -> str | None:
    """The From field exactly as written."""
    return RawMessage.parse(data).value("From")


# -- the account sends, under the list's From ----------------------------------------------------


def test_a_hosted_list_sends_as_the_account_under_the_lists_from(cli, shma, tmp_path, daemon,
                                                                  submission, dns_zone):
    assert dns_zone.records == {}  # example.org publishes no DMARC policy
    assert daemon.settings.hosted and daemon.settings.hosted_sender == ACCOUNT
    # The list's public address is the account (mail for it comes in over IMAP).
    cli("lists", "set", LIST, "address.post", ACCOUNT)
    import_members(cli, tmp_path, "jane@example.org", "ann@example.net", "bob@example.net")
    post = make_message("Jane Doe <jane@example.org>", subject="Hosted")
    assert lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], post) == {}
    submission.recorder.wait_for(lambda r: len(copies(submission, "Hosted")) == 3,
                                 description="every member's copy")

    assert sorted(recipients_of(submission, "Hosted")) == [
        "ann@example.net", "bob@example.net", "jane@example.org"]
    for copy in copies(submission, "Hosted"):
        # Over TLS, authenticated as the account, and the account is the envelope sender
        # (personalized delivery would otherwise say shma-bounces+TOKEN@).
        assert (copy.encrypted, copy.login, copy.mail_from) == (True, ACCOUNT.encode(), ACCOUNT)
        msg = parse(copy.data)
        # example.org publishes no DMARC policy (the stub answers nothing): munged all the same.
        assert raw_from(copy.data) == f'"Jane Doe via SHMA" <{ACCOUNT}>'
        assert msg["Reply-To"] == "Jane Doe <jane@example.org>"
        assert str(msg["List-Unsubscribe"]).startswith("<mailto:shma-leave+")

    # Even a list that says "never change From": the provider would refuse the author's.
    cli("lists", "set", LIST, "dmarc_mitigation", "none")
    post = make_message("Jane Doe <jane@example.org>", subject="Still munged")
    lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST], post)
    submission.recorder.wait_for(lambda r: len(copies(submission, "Still munged")) == 3)
    assert {raw_from(c.data) for c in copies(submission, "Still munged")} == {
        f'"Jane Doe via SHMA" <{ACCOUNT}>'}
    assert {c.mail_from for c in submission.recorder.submissions} == {ACCOUNT}


def test_owner_mail_is_forwarded_as_the_account_under_the_lists_from(shma, daemon, submission):
    owner = "shma-owner@lists.example.org"
    mail = make_message("Joe Bloggs <joe@example.net>", to=owner, subject="For the chair")
    assert lmtp_send(daemon.ports["lmtp"], "joe@example.net", [owner], mail) == {}
    submission.recorder.wait_for(lambda r: r.submissions, description="the forward")
    [forward] = submission.recorder.submissions
    assert (forward.mail_from, forward.rcpt_tos) == (ACCOUNT, ["chair@example.org"])
    assert raw_from(forward.data) == f'"Joe Bloggs via SHMA" <{owner}>'
    assert parse(forward.data)["Reply-To"] == "Joe Bloggs <joe@example.net>"


RAW = b"From: Jane Doe <jane@example.org>\r\nSubject: Hi\r\n\r\nHello.\r\n"


@pytest.mark.parametrize("mode,policy,expected", [
    ("munge", Policy.NONE, "munge"), ("always", Policy.NONE, "munge"),
    ("none", Policy.REJECT, "munge"), ("none", Policy.NONE, "munge"),
    ("wrap", Policy.NONE, "munge"), ("wrap", Policy.REJECT, "wrap"),
    ("wrap", Policy.UNKNOWN, "wrap"),
])
def test_hosted_lists_munge_every_post_and_wrap_where_their_mode_would(mode, policy, expected):
    ml = MailingList(name="shma", domain="lists.example.org", dmarc_mitigation=mode,
                     reply_to="poster", description="", resources="", extra={})
    hosted = sender_rewrite(Renderer(), ml, RAW, Role.POST, lambda domain: policy, hosted=True)
    assert hosted is not None
    assert ("wrap" if hosted.wrap else "munge") == expected
    assert (hosted.from_name, hosted.from_address) == ("Jane Doe via SHMA", LIST)
    # Not hosted, the list's mode and the author's policy decide, as before.
    plain = sender_rewrite(Renderer(), ml, RAW, Role.POST, lambda domain: policy)
    assert (plain is None) == (mode == "none" or (mode != "always" and not policy.protective))


def test_the_envelope_override_belongs_to_the_transport(tmp_path):
    outbox = tmp_path / "outbox"
    maildir = OutboundSettings()  # transport = "maildir"
    make_transport(maildir, outbox, ACCOUNT).send("shma-bounces+tok@lists.example.org",
                                                  ["ann@example.net"], b"Subject: a\r\n\r\nx\r\n")
    make_transport(maildir, outbox).send("shma-bounces+tok@lists.example.org",
                                         ["ann@example.net"], b"Subject: b\r\n\r\nx\r\n")
    paths = {p.read_bytes().split(b"\r\n")[0] for p in (outbox / "new").iterdir()}
    assert paths == {f"Return-Path: <{ACCOUNT}>".encode(),
                     b"Return-Path: <shma-bounces+tok@lists.example.org>"}


def test_the_account_is_the_outbound_username_when_it_is_an_address(settings):
    assert settings.hosted_sender == ACCOUNT
    other = dataclasses.replace(settings, outbound=dataclasses.replace(
        settings.outbound, username="smtp-login-7"))
    assert other.hosted_sender == settings.intake.imap.username == ACCOUNT
    other = dataclasses.replace(settings, outbound=dataclasses.replace(
        settings.outbound, username="relay@provider.example"))
    assert other.hosted_sender == "relay@provider.example"
    off = dataclasses.replace(settings, intake=dataclasses.replace(
        settings.intake, imap=dataclasses.replace(settings.intake.imap, enabled=False)))
    assert settings.hosted and not off.hosted


# -- the provider's sending limits -----------------------------------------------------------


def jump(daemon, delta: timedelta) -> None:
    """Move the daemon's clock on and let the workers look again at once."""
    daemon.clock.advance(delta)
    daemon.deliver_wake.set()


@pytest.fixture
def held_back(monkeypatch) -> list[datetime]:
    """The clock times at which the daemon's limits held queued mail back from a claim."""
    times: list[datetime] = []
    holding = SendLimits.holding

    def note(limits: SendLimits, session, now: datetime, reason: str) -> None:
        times.append(now)
        holding(limits, session, now, reason)

    monkeypatch.setattr(SendLimits, "holding", note)
    return times


def wait_held_back(daemon, held_back: list[datetime]) -> None:
    """Until a worker's claim from now on was held back by the limits."""
    since = daemon.clock.now()
    wait_until(lambda: any(t >= since for t in held_back),
               what="a claim held back by the limits")


def wait_sent(submission, store, count: int) -> None:
    """Until `count` recipients arrived and their results are recorded (no batch in flight)."""
    submission.recorder.wait_for(lambda r: statuses(store).get("sent", 0) >= count,
                                 description=f"{count} recorded as sent")


@pytest.mark.both_backends
@pytest.mark.parametrize("limits", [{"messages_per_minute": 3}])
def test_messages_per_minute_lets_the_rest_wait_in_the_queue(cli, shma, tmp_path, daemon,
                                                            submission, store, caplog,
                                                            held_back):
    caplog.set_level(logging.INFO, logger="listserv.delivery")
    members = [f"member{n}@example.net" for n in range(7)]
    import_members(cli, tmp_path, *members)
    lmtp_send(daemon.ports["lmtp"], members[0], [LIST], make_message(members[0], subject="Mpm"))

    wait_sent(submission, store, 3)
    wait_held_back(daemon, held_back)  # a later poll: still three
    assert len(recipients_of(submission, "Mpm")) == 3
    assert statuses(store) == {"sent": 3, "queued": 4}
    with store.unit_of_work() as session:
        waiting = session.scalars(select(OutRecipient).where(OutRecipient.status == "queued"))
        assert {(r.attempts, r.last_error) for r in waiting} == {(0, "")}  # not failures
    [item] = json.loads(cli("queue", "--json").output)
    assert (item["kind"], item["recipients"], item["reason"]) == (
        "post", "4", "waiting for delivery")

    jump(daemon, timedelta(seconds=61))
    wait_sent(submission, store, 6)
    wait_held_back(daemon, held_back)
    assert len(recipients_of(submission, "Mpm")) == 6

    jump(daemon, timedelta(seconds=61))
    wait_sent(submission, store, 7)
    assert sorted(recipients_of(submission, "Mpm")) == sorted(members)  # each exactly once
    assert {c.mail_from for c in copies(submission, "Mpm")} == {ACCOUNT}

    outbound = [r for r in caplog.records
                if r.name in ("listserv.delivery.limits", "listserv.delivery.worker")]
    assert [r.getMessage() for r in outbound if "limit" in r.getMessage()] == [
        "sending limit reached (messages_per_minute = 3): queued mail waits until it allows "
        "more"]
    assert not [r for r in outbound if r.levelno >= logging.WARNING]


@pytest.mark.both_backends
@pytest.mark.parametrize("limits", [{"recipients_per_day": 5}])
def test_recipients_per_day_holds_a_batched_list_until_the_day_has_passed(
        cli, shma, tmp_path, daemon, submission, store, held_back):
    cli("lists", "set", LIST, "personalize", "false")
    members = [f"member{n}@example.net" for n in range(8)]
    import_members(cli, tmp_path, *members)
    lmtp_send(daemon.ports["lmtp"], members[0], [LIST], make_message(members[0], subject="Rpd"))

    wait_sent(submission, store, 5)
    [batch] = copies(submission, "Rpd")  # one transaction, five recipients
    assert (batch.mail_from, len(batch.rcpt_tos)) == (ACCOUNT, 5)
    with store.unit_of_work() as session:
        usage = session.execute(select(SendUsage.messages, SendUsage.recipients)).all()
    assert [tuple(u) for u in usage] == [(1, 5)]

    jump(daemon, timedelta(hours=12))
    wait_held_back(daemon, held_back)
    assert len(recipients_of(submission, "Rpd")) == 5
    assert statuses(store) == {"sent": 5, "queued": 3}

    jump(daemon, timedelta(hours=12, minutes=1))  # the first batch is now a day old
    wait_sent(submission, store, 8)
    assert sorted(recipients_of(submission, "Rpd")) == sorted(members)


@pytest.mark.both_backends
@pytest.mark.parametrize("limits", [{"messages_per_minute": 5, "recipients_per_day": 12}])
def test_workers_of_two_daemons_claiming_at_once_stay_within_the_limits(settings, store):
    """Eight workers, half on a second Store (a second daemon on the same database), claim
    together: the counting is serialised, so exactly what the limits allow is claimed."""
    now = datetime.now(UTC)
    with store.unit_of_work() as session:
        # One batched message for 30: claimed two at a time, by several workers at once.
        enqueue(session, b"Subject: n\r\n\r\nx\r\n", [f"{n}@example.net" for n in range(30)],
                envelope_from="shma-bounces@lists.example.org", kind="notice", now=now)
    other = Store(settings.database.url)
    limits = [SendLimits.of(settings.outbound) for _ in (store, other)]
    start = threading.Barrier(8)
    claimed: list[tuple[int, int]] = []

    def worker(index: int) -> None:
        db = (store, other)[index % 2]
        start.wait()
        while True:
            with db.unit_of_work() as session:
                batch = claim(session, now, timedelta(minutes=5), 2, limits[index % 2])
                time.sleep(0.05)  # a slow commit: the others must still wait to count
            if batch is None:
                return
            claimed.append((batch.message_id, len(batch.recipients)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    other.dispose()
    # Five transactions this minute, of two recipients each: ten recipients of the day's twelve.
    assert len(claimed) == 5 and sum(n for _, n in claimed) == 10
    with store.unit_of_work() as session:
        assert session.scalar(select(func.sum(SendUsage.messages))) == 5
    later = now + timedelta(seconds=61)
    with store.unit_of_work() as session:  # a minute on: the day's last two recipients
        batch = claim(session, later, timedelta(minutes=5), 2, limits[0])
    assert batch is not None and len(batch.recipients) == 2
    with store.unit_of_work() as session:
        assert claim(session, later, timedelta(minutes=5), 2, limits[0]) is None
        prune_usage(session, now + timedelta(days=1, seconds=62))
        assert session.scalar(select(func.count()).select_from(SendUsage)) == 0


def test_a_personalized_batch_larger_than_the_minute_allows_gives_the_rest_back(
        cli, shma, tmp_path, store, monkeypatch):
    """The claim looks at the next message to size itself; if another worker took that one
    meanwhile and the message claimed is personalized, what the minute cannot carry is given
    back at once, unleased."""
    import_members(cli, tmp_path, *(f"m{n}@example.net" for n in range(5)))
    now = datetime.now(UTC)
    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        assert enqueue_to_members(session, ml, b"Subject: p\r\n\r\nx\r\n", now=now) == 5
    # As if the message looked at had been a batched one.
    monkeypatch.setattr(sending_limits, "_first_due_personalized", lambda: select(literal(False)))
    with store.unit_of_work() as session:
        batch = claim(session, now, timedelta(minutes=5), 500, SendLimits(messages_per_minute=2))
    assert batch is not None and batch.personalize and len(batch.recipients) == 2
    with store.unit_of_work() as session:
        leased = session.scalars(select(OutRecipient).where(OutRecipient.lease_until.is_not(None)))
        assert sorted(r.id for r in leased) == sorted(rid for rid, _ in batch.recipients)
        usage = session.execute(select(SendUsage.messages, SendUsage.recipients)).all()
        assert [tuple(u) for u in usage] == [(2, 2)]


@pytest.mark.both_backends
def test_without_limits_the_claim_counts_nothing(store):
    """Limits of 0 (the default): the same statements as before, no ledger, no lock."""
    now = datetime.now(UTC)
    with store.unit_of_work() as session:
        enqueue(session, b"Subject: n\r\n\r\nx\r\n", ["a@example.net", "b@example.net"],
                envelope_from="shma-bounces@lists.example.org", kind="notice", now=now)
    assert SendLimits.of(OutboundSettings()) is None
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.unit_of_work() as session:
            batch = claim(session, now, timedelta(minutes=5), 500)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert batch is not None and len(batch.recipients) == 2
    claims = [s for s in statements if "enable_sort" not in s and not s.startswith("BEGIN")]
    assert len(claims) == 2  # UPDATE … RETURNING, and the message's bytes
    assert not [s for s in statements if "send_usage" in s or "advisory" in s]
