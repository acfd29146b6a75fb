"""Digests (SPEC §3 "Delivery modes", issue 17): MIME and RFC 1153 digests, sent once.

Acceptance 1: a digest member gets nothing per post and, once the day turns (the daemon's
clock moved), one MIME digest of every post of the day with its attachments; a digest-plain
member gets an RFC 1153 digest; regular members are unaffected. Acceptance 3: `digest.max_kb`
sends early, an empty day sends nothing, a switch to regular flushes a last digest. The
restart and two-daemon half of acceptance 2 is in test_digests_daemons.py.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli import main
from listserv.digests.sending import due_for_list
from listserv.digests.settings import WEEKDAYS, last_moment, next_moment
from listserv.mail.render import Renderer
from listserv.store.models.core import MailingList
from listserv.store.models.features import Digest, DigestPost
from listserv.store.models.outgoing import OutMessage
from listserv.store.retention import prune

from . import test_forged_mail as forged_mail
from .helpers import LIST, lmtp_send, make_message, parse, wait_until
from .test_forged_mail import JANE, jane, jane_domain, jane_key  # noqa: F401 (fixtures)

REQUEST = "shma-request@lists.example.org"
REGULAR = "rita@example.net"
MIME = "dora@example.net"
PLAIN = "paul@example.net"
POSTER = "Rita Regular <rita@example.net>"
PDF = b"%PDF-1.4\n" + b"0123456789" * 300 + b"\n%%EOF\n"


@pytest.fixture
def members(cli, shma):
    for address, delivery in ((REGULAR, "regular"), (MIME, "digest"), (PLAIN, "digest-plain")):
        cli("members", "add", shma, address, "--no-welcome")
        if delivery != "regular":
            cli("members", "set", shma, address, "--delivery", delivery)
    return [REGULAR, MIME, PLAIN]


def post(daemon, subject: str, body: str = "Hello everyone.\n",
         attachment: bytes | None = None) -> bytes:
    """Post `subject` from the regular member through LMTP."""
    msg = parse(make_message(sender=POSTER, subject=subject, body=body))
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="minutes.pdf")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    assert lmtp_send(daemon.ports["lmtp"], REGULAR, [LIST], raw) == {}
    return raw


def mails(sink, address: str, words: str = "") -> list[EmailMessage]:
    """What `address` received whose Subject contains `words`, each message once (under load
    a delivery worker's lease may lapse and a copy reach the sink twice: the same message,
    the same Message-ID; docs/delivery.md)."""
    found = {str(m["Message-ID"]): m for m in (parse(d.data) for d in sink.messages_for(address))
             if words in str(m["Subject"])}
    return list(found.values())


def wait_for_mail(sink, address: str, words: str) -> EmailMessage:
    sink.wait_for(lambda s: mails(s, address, words), timeout=20,
                  description=f"{words!r} to {address}")
    return mails(sink, address, words)[0]


def after_midnight(clock) -> datetime:
    """Move the daemon's clock one minute past the next midnight (UTC: `digest.send_at`)."""
    now = clock.now()
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0, 0), tzinfo=now.tzinfo)
    clock.advance(midnight + timedelta(minutes=1) - now)
    return clock.now()


def digests(store) -> list[Digest]:
    with store.reading() as session:
        return list(session.scalars(select(Digest).order_by(Digest.id)))


@pytest.mark.both_backends
def test_a_day_of_posts_reaches_digest_members_once_as_mime_and_rfc1153(members, daemon, sink,
                                                                       clock, store):
    subjects = ["Agenda for Thursday", "Minutes attached", "Re: Agenda for Thursday"]
    post(daemon, subjects[0], "Who brings the tea?\n")
    post(daemon, subjects[1], "The minutes are attached.\n-" + "-" * 40 + "\nEnd.\n",
         attachment=PDF)
    post(daemon, subjects[2], "I will.\n")
    for subject in subjects:
        wait_for_mail(sink, REGULAR, subject)
    daemon.run_scheduler()  # the day has not turned: nothing goes out
    assert not sink.messages_for(MIME) and not sink.messages_for(PLAIN)
    assert digests(store) == []

    after_midnight(clock)
    daemon.run_scheduler()
    mime = wait_for_mail(sink, MIME, "SHMA Digest, Vol 1, Issue 1")
    plain = wait_for_mail(sink, PLAIN, "SHMA Digest, Vol 1, Issue 1")

    # MIME: a table of contents, a multipart/digest of the posts, the footer.
    assert mime.get_content_type() == "multipart/mixed"
    contents, digest, footer = mime.get_payload()
    assert contents.get_content_type() == "text/plain"
    toc = contents.get_content()
    for number, subject in enumerate(subjects, 1):
        assert f"{number}. {subject} (Rita Regular)" in toc
    assert digest.get_content_type() == "multipart/digest"
    parts = digest.get_payload()
    assert [p.get_content_type() for p in parts] == ["message/rfc822"] * 3
    inner = [p.get_payload()[0] for p in parts]
    assert [str(m["Subject"]) for m in inner] == [f"[shma] {s}" for s in subjects]
    [pdf] = list(inner[1].iter_attachments())
    assert pdf.get_filename() == "minutes.pdf" and pdf.get_content() == PDF
    assert "shma mailing list -- shma@lists.example.org" in footer.get_content()
    assert all("shma mailing list" not in m.get_body(("plain",)).get_content() for m in inner)
    # List mail, personalised like a post's copies.
    assert mime["List-Id"] == "<shma.lists.example.org>"
    assert str(mime["List-Unsubscribe"]).startswith("<mailto:shma-leave+")
    assert all(d.mail_from.startswith("shma-bounces+") for d in sink.messages_for(MIME))

    # RFC 1153: one text, topics, messages between separators, attachments only listed.
    assert plain.get_content_type() == "text/plain" and not plain.is_multipart()
    text = plain.get_content().replace("\r\n", "\n")
    assert "Today's Topics:" in text and "\n" + "-" * 70 + "\n" in text
    assert text.count("\n" + "-" * 30 + "\n") == 4  # after each message, and the footer
    assert "Subject: Minutes attached" in text
    assert "minutes.pdf (application/pdf, 3 KB)" in text and "0123456789" not in text
    assert "\n- " + "-" * 41 + "\n" in text  # a line like a separator is stuffed
    assert text.rstrip().endswith("End of SHMA Digest, Vol 1, Issue 1\n"
                                  + "*" * len("End of SHMA Digest, Vol 1, Issue 1"))
    assert str(plain["List-Unsubscribe"]).startswith("<mailto:shma-leave+")

    # Regular members got each post, and no digest.
    assert not mails(sink, REGULAR, "Digest")
    assert sorted(str(m["Subject"]) for m in mails(sink, REGULAR)) \
        == sorted(f"[shma] {s}" for s in subjects)
    # Each member got one digest: running again sends nothing more.
    daemon.run_scheduler()
    assert [(d.volume, d.number, d.posts, d.recipients) for d in digests(store)] \
        == [(1, 1, 3, 2)]
    assert len(mails(sink, MIME)) == 1 and len(mails(sink, PLAIN)) == 1

    # Retention forgets the posts of a digest sent more than `outgoing_days` ago, not the digest.
    assert prune(store, clock.now() + timedelta(days=15), 30, 14).digest_posts == 3
    with store.reading() as session:
        assert session.scalars(select(DigestPost)).all() == []
    assert len(digests(store)) == 1


@pytest.mark.both_backends
def test_max_kb_sends_early_and_an_empty_day_sends_nothing(cli, members, daemon, sink, clock,
                                                           store):
    cli("lists", "set", LIST, "digest.max_kb", "2")
    post(daemon, "A short note")
    wait_for_mail(sink, REGULAR, "A short note")
    daemon.run_scheduler()
    assert digests(store) == []  # under 2 KB: it waits for the day to turn

    post(daemon, "The big file", attachment=PDF)
    wait_for_mail(sink, REGULAR, "The big file")
    daemon.run_scheduler()
    early = wait_for_mail(sink, MIME, "SHMA Digest, Vol 1, Issue 1")
    assert len(early.get_payload()[1].get_payload()) == 2
    [sent] = digests(store)
    assert (sent.reason, sent.posts) == ("size", 2)

    # The day turns with nothing new: no digest.
    after_midnight(clock)
    daemon.run_scheduler()
    after_midnight(clock)
    daemon.run_scheduler()
    assert len(digests(store)) == 1
    assert len(mails(sink, MIME)) == 1 and len(mails(sink, PLAIN)) == 1


@pytest.mark.both_backends
def test_switching_to_regular_flushes_one_last_digest(cli, members, daemon, sink, clock, store):
    post(daemon, "Before the switch")
    wait_for_mail(sink, REGULAR, "Before the switch")

    cli("members", "set", LIST, MIME, "--delivery", "regular")
    last = wait_for_mail(sink, MIME, "(your last digest)")
    [message] = last.get_payload()[1].get_payload()
    assert str(message.get_payload()[0]["Subject"]) == "[shma] Before the switch"
    # From now on she gets each post; the others still get theirs in the day's digest.
    post(daemon, "After the switch")
    wait_for_mail(sink, MIME, "After the switch")
    after_midnight(clock)
    daemon.run_scheduler()
    plain = wait_for_mail(sink, PLAIN, "SHMA Digest, Vol 1, Issue 1")
    assert "Before the switch" in plain.get_content()
    assert "After the switch" in plain.get_content()
    assert not mails(sink, MIME, "Issue 1)") and len(mails(sink, MIME, "Digest")) == 1
    log = json.loads(cli("log", "--json").output)
    assert any(e["action"] == "digest-flushed" and MIME in e["detail"] for e in log)


def test_a_list_without_digest_members_keeps_no_posts(cli, shma, daemon, sink, store):
    cli("members", "add", shma, REGULAR, "--no-welcome")
    post(daemon, "Nobody takes digests")
    wait_for_mail(sink, REGULAR, "Nobody takes digests")
    with store.reading() as session:
        assert session.scalars(select(DigestPost)).all() == []


def test_status_shows_the_next_digest(cli, members, daemon, sink, config_path, clock):
    cli("lists", "set", LIST, "digest.send_at", "6:30")
    post(daemon, "Waiting for the digest")
    wait_for_mail(sink, REGULAR, "Waiting for the digest")
    result = CliRunner().invoke(main, ["--config", str(config_path), "status", "--json"],
                                obj=clock)
    digest = json.loads(result.output)["next_digest"]
    assert (digest["list"], digest["posts"], digest["members"]) == (LIST, 1, 2)
    assert digest["due_at"].endswith("T06:30:00+00:00")
    text = CliRunner().invoke(main, ["--config", str(config_path), "status"], obj=clock).output
    assert f"next digest: {digest['due_at']} for {LIST}: 1 post(s)" in text


def test_digest_settings_are_checked_and_a_weekly_digest_waits_for_its_day(cli, shma):
    cli("lists", "set", LIST, "digest.frequency", "weekly")
    cli("lists", "set", LIST, "digest.send_day", "Friday")
    cli("lists", "set", LIST, "digest.send_at", "18:05")
    cli("lists", "set", LIST, "digest.max_kb", "0")
    shown = json.loads(cli("lists", "show", LIST, "--json").output)
    assert (shown["digest.frequency"], shown["digest.send_day"], shown["digest.send_at"],
            shown["digest.max_kb"]) == ("weekly", "friday", "18:05", 0)
    for key, value in (("digest.frequency", "hourly"), ("digest.send_at", "25:00"),
                       ("digest.send_day", "someday"), ("digest.max_kb", "-1")):
        result = cli("lists", "set", LIST, key, value, ok=False)
        assert result.exit_code != 0 and key in result.output, result.output


def test_the_moment_of_a_daily_and_a_weekly_digest():
    ml = MailingList(name="shma", domain="lists.example.org", extra={})
    thursday = datetime(2027, 1, 7, 10, 0, tzinfo=UTC)  # a Thursday
    assert last_moment(ml, thursday) == datetime(2027, 1, 7, 0, 0, tzinfo=UTC)
    assert next_moment(ml, thursday) == datetime(2027, 1, 8, 0, 0, tzinfo=UTC)
    ml.extra = {"digest.frequency": "weekly", "digest.send_day": "friday",
                "digest.send_at": "18:05"}
    assert last_moment(ml, thursday) == datetime(2027, 1, 1, 18, 5, tzinfo=UTC)
    assert next_moment(ml, thursday) == datetime(2027, 1, 8, 18, 5, tzinfo=UTC)
    assert last_moment(ml, datetime(2027, 1, 8, 18, 5, tzinfo=UTC)) \
        == datetime(2027, 1, 8, 18, 5, tzinfo=UTC)


# -- `set digest` by mail, under the proof rules (SPEC §2) -----------------------------------


@pytest.mark.both_backends
def test_set_digest_by_mail_at_once_when_signed_after_a_confirmation_when_not(
        cli, jane, jane_domain, daemon, sink, store):  # noqa: F811 (the fixtures imported above)
    lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST],
              forged_mail.signed(jane_domain, forged_mail.mail(REQUEST, "set digest plain")))
    notice = forged_mail.wait_mails_about(sink, "as a digest")[0]
    assert "as plain text" in notice.get_content()
    assert forged_mail.deliveries(cli) == "digest-plain"

    # Unsigned: the same From proves nothing; she is asked, and her reply confirms.
    lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST], forged_mail.mail(REQUEST, "set digest"))
    ask = forged_mail.wait_mails_about(sink, "Please confirm: a digest of")[0]
    assert "together in one digest, instead of each" in " ".join(ask.get_content().split())
    assert forged_mail.deliveries(cli) == "digest-plain"
    confirm = str(ask["Reply-To"])
    lmtp_send(daemon.ports["lmtp"], JANE, [confirm], forged_mail.mail(confirm, "OK"))
    wait_until(lambda: forged_mail.deliveries(cli) == "digest", what="her delivery set")

    lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST],
              forged_mail.signed(jane_domain, forged_mail.mail(REQUEST, "set regular")))
    forged_mail.wait_mails_about(sink, "resumes")
    assert forged_mail.deliveries(cli) == "regular"


def test_members_data_and_forget_show_a_post_still_waiting_for_its_digest(cli, members, daemon,
                                                                          sink):
    post(daemon, "Before she is forgotten")
    wait_for_mail(sink, REGULAR, "Before she is forgotten")
    data = json.loads(cli("members", "data", REGULAR).output)
    assert [(p["id"], p["list"], p["digest"]) for p in data["digest_mentions"]] \
        == [(1, LIST, None)]
    done = json.loads(cli("members", "remove", LIST, REGULAR, "--forget", "--json").output)
    assert [k["rows"] for k in done["kept"] if "waiting for a digest" in k["what"]] \
        == [["digest_posts #1"]]


def test_an_8bit_post_goes_into_both_digests_in_7bit_form(members, daemon, sink, clock):
    raw = ("From: Rita Regular <rita@example.net>\r\nTo: shma@lists.example.org\r\n"
           "Subject: =?utf-8?q?Caf=C3=A9_on_Friday?=\r\nMessage-ID: <cafe@example.net>\r\n"
           "Date: Mon, 04 Jan 2027 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           "\r\nSee you at the café, Zoë.\r\n").encode()
    assert lmtp_send(daemon.ports["lmtp"], REGULAR, [LIST], raw) == {}
    wait_for_mail(sink, REGULAR, "Café on Friday")
    after_midnight(clock)
    daemon.run_scheduler()
    mime = wait_for_mail(sink, MIME, "Digest")
    plain = wait_for_mail(sink, PLAIN, "Digest")
    # The strict sink took both (it refuses 8-bit data the client did not declare).
    for address in (MIME, PLAIN):
        assert all(d.data.isascii() for d in sink.messages_for(address))
    [inner] = [p.get_payload()[0] for p in mime.get_payload()[1].get_payload()]
    assert inner.get_content().rstrip() == "See you at the café, Zoë."
    assert "1. Café on Friday (Rita Regular)" in mime.get_payload()[0].get_content()
    assert "See you at the café, Zoë." in plain.get_content()


@pytest.mark.both_backends
def test_two_schedulers_racing_for_one_digest_number_it_once(members, store, settings):
    """Two daemons' scheduler passes at the same moment: the second, started while the first
    has not committed, gives way (PostgreSQL: the unique issue number or the claimed posts;
    SQLite: the write lock, then nothing left)."""
    now = datetime.now(UTC)
    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        for n in range(3):
            raw = make_message(sender=POSTER, subject=f"Post {n}")
            session.add(DigestPost(list_id=ml.id, added_at=now - timedelta(days=1),
                                   size=len(raw), raw=raw))
    renderer = Renderer(settings.templates_dir)
    outcome: dict[str, bool] = {}

    def scheduler_pass(name: str) -> None:
        with store.unit_of_work() as session:
            ml = session.scalars(select(MailingList)).one()
            outcome[name] = due_for_list(session, renderer, ml, now) is not None

    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        outcome["first"] = due_for_list(session, renderer, ml, now) is not None
        second = threading.Thread(target=scheduler_pass, args=("second",))
        second.start()
    second.join(30)
    assert outcome == {"first": True, "second": False}
    assert [(d.number, d.posts, d.recipients) for d in digests(store)] == [(1, 3, 2)]
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(OutMessage)
                              .where(OutMessage.kind == "digest")) == 2


def test_each_member_gets_the_digest_in_her_language(cli, members, daemon, sink, clock):
    cli("members", "set", LIST, PLAIN, "--language", "es")
    cli("members", "set", LIST, MIME, "--language", "de")
    post(daemon, "Tea on Thursday")
    wait_for_mail(sink, REGULAR, "Tea on Thursday")
    after_midnight(clock)
    daemon.run_scheduler()
    plain = wait_for_mail(sink, PLAIN, "Resumen de SHMA, vol. 1, número 1")
    text = plain.get_content()
    assert "Temas de este número:" in text and "Fin del resumen de SHMA, vol. 1, número 1" in text
    mime = wait_for_mail(sink, MIME, "SHMA-Sammelnachricht, Jahrgang 1, Ausgabe 1")
    assert "Themen dieser Ausgabe:" in mime.get_payload()[0].get_content()


def test_a_weekly_digest_waits_for_its_day(cli, members, daemon, sink, clock, store):
    day_after_tomorrow = WEEKDAYS[(clock.now().weekday() + 2) % 7]
    cli("lists", "set", LIST, "digest.frequency", "weekly")
    cli("lists", "set", LIST, "digest.send_day", day_after_tomorrow)
    post(daemon, "Plans for the week")
    wait_for_mail(sink, REGULAR, "Plans for the week")
    after_midnight(clock)  # tomorrow: not the digest's day
    daemon.run_scheduler()
    assert digests(store) == [] and not mails(sink, MIME)
    after_midnight(clock)  # the day after: its day
    daemon.run_scheduler()
    weekly = wait_for_mail(sink, MIME, "SHMA Digest, Vol 1, Issue 1")
    assert "1. Plans for the week (Rita Regular)" in weekly.get_payload()[0].get_content()


def test_a_meeting_reminder_reaches_digest_members_at_once_and_nomail_members_not(
        members, cli, shma, daemon, sink, clock, store):
    """The list's announcements do not wait for the digest: a reminder goes to every member
    who reads the list, in either digest mode too; a member on nomail gets none."""
    from .helpers import wait_settled
    from .test_meetings import meeting_mails, schedule

    muted = "mo@example.net"
    cli("members", "add", shma, muted, "--no-welcome")
    cli("members", "set", shma, muted, "--delivery", "nomail")
    meeting_id = schedule(cli, clock.now() + timedelta(days=20), "Europe/Berlin", 60)
    out = cli("meetings", "remind", meeting_id, "--yes").output
    sink.wait_for(lambda s: all(meeting_mails(s, m) for m in (REGULAR, MIME, PLAIN)),
                  description="the reminder to the regular and both digest members")
    wait_settled(store)
    assert not meeting_mails(sink, muted)
    assert "queued for 3 members" in out  # the three who read the list
