"""Every mail we send is clean on the wire (issue 12; SPEC §3, "On the wire").

Acceptance 1: every template in every language it exists in, queued the way the product queues
it, and every kind of mail the product generates, produced by its real code paths and received
by the strict sink, are checked byte by byte: CRLF only, no line over 998 octets, the required
headers, no MIME defect. Acceptance 3: the membership flow in French, Spanish, German and
Portuguese through the strict sink. Acceptance 4 (first half): a post that tries SMTP smuggling
and header injection reaches the members clean. And a non-English notice's 7-bit and 8-bit form,
sent by both SMTP paths and written by the Maildir outbox exactly as queued.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import pytest
from sqlalchemy import select

from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.delivery.claim import claim
from listserv.delivery.notices import notify
from listserv.delivery.outbox import enqueue
from listserv.delivery.transports import MaildirTransport, Outcome, SmtpTransport
from listserv.delivery.worker import send_batch
from listserv.digests.posts import Attachment, Entry
from listserv.mail.render import TEMPLATES, Renderer
from listserv.meetings import reminders
from listserv.meetings.times import zone
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import Meeting
from listserv.store.models.outgoing import OutMessage

from .helpers import LIST, lmtp_send, make_message, parse, write_config
from .smtp_sink import SmtpSink, mime_defects, refusal

CHAIR = "chair@example.org"
REQUEST = "shma-request@lists.example.org"
PARTIALS = {"footer.txt", "dmarc-from-name.txt", "meeting-details.txt"}  # parts of other mail
LANGUAGES = sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())


def assert_clean(data: bytes, *, eightbit: bool = False, ours: bool = True) -> None:
    """What the strictest peers require of `data`, and for mail we compose, clean MIME."""
    reply = refusal(data, body_8bitmime=eightbit, smtputf8=eightbit)
    assert reply is None, f"{reply}: {data[:600]!r}"
    assert data.endswith(b"\r\n")
    msg = parse(data)
    for name in ("Date", "Message-ID", "From", "MIME-Version"):
        assert msg[name], f"no {name}: {data[:600]!r}"
    if ours:
        assert mime_defects(data) == [], data[:600]
    if not eightbit:
        assert data.isascii(), data[:600]


def languages(template: str) -> list[str]:
    return ["en", *(lang for lang in LANGUAGES if (TEMPLATES / lang / template).exists())]


# -- acceptance 1: every template in every language ------------------------------------------------

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
# Realistic values, with the awkward parts real mail brings: names and projects in other
# scripts and accents, a chair's reason written as one very long line.
ZOE = NS(name="Zoë Ñúñez-Müller", email="zoe@example.net")
LONG_REASON = ("Thank you for writing. " * 60).strip()
PROJECT = "Nachbarschaftshilfe für ältere Menschen — Einkaufsdienst und Fahrdienst"
REQUEST_ROW = NS(id=17, token="k3n5q2x7w4r6t8y9u2i4o6p1", email=ZOE.email, name=ZOE.name,
                 kind="subscribe", status="confirming", expires_at=NOW + timedelta(days=7),
                 project=PROJECT, minutes=20, requested_minutes=30, help="Ideas to find "
                 "drivers in the evenings; how other groups insure volunteers.",
                 meeting=NS(id=3, start=NOW + timedelta(days=20), tz="America/Chicago"),
                 py=None, created_at=NOW)
HELD = NS(id=42, sender=ZOE.email, subject="Réunion de jeudi : ordre du jour",
          reason="the sender zoe@example.net is not a member", created_at=NOW,
          expires_at=NOW + timedelta(days=14))
FILES = [NS(name="tool-library.docx", label="Word document", size=48_213, macros=False,
            original="tool library.docx", reason=""),
         NS(name="photo-été.jpg", label="JPEG image", size=1_204_311, macros=False,
            original="photo été.jpg", reason="")]
REFUSED = [NS(original="setup.exe", reason="a program, not a document")]
SUBMISSION = NS(tracking_id="TCP-2026-007", title="How our tool library grew — año dos",
                name=ZOE.name, sender=ZOE.email, member=True, deadline="2026-06-01",
                status="received")
REVISION = NS(id=5, number=2, title=SUBMISSION.title, files=FILES, refused=REFUSED,
              sender=ZOE.email, folder="TCP-2026-007")
STATE = NS(score=5.0, last_reason="550 5.1.1 <zoe@example.net>: Recipient address rejected: "
           "User unknown in virtual mailbox table")
MEETINGS = [{"when": "Thursday 16 July 2026, 12:00 (America/Chicago)",
             "dial_in": "+1 555 0100, code 4321 — or https://meet.example.org/shma"}]
RESULTS = NS(done=[NS(code=code, address=ZOE.email, detail="nomail") for code in (
    "subscribe-confirm-sent", "subscribe-already-member", "unsubscribe-confirm-sent",
    "subscribe-asked", "unsubscribe-asked", "subscribe-third-party-limit",
    "unsubscribe-third-party-limit", "set-done", "set-confirm-sent", "set-capped",
    "confirm-done", "help-sent", "info-sent", "unclear")],
    not_understood=["subscribe adresse=zoe@example.net s'il vous plaît"],
    ignored=["info"] * 12, texts={"help": "Commands: help, info, subscribe, unsubscribe."})
LIST_TEXT = {"is_member": True, "meetings": MEETINGS}
ARCHIVED = [{"number": 3, "date": "2026-05-01", "author": ZOE.name, "subject": HELD.subject},
            {"number": 11, "date": "2026-05-03", "author": "A very long name " * 4,
             "subject": LONG_REASON}]
DECIDE = "shma-confirm+d3c1d3d3c1d3d3c1d3d3c1d3@lists.example.org"
UNCLEAR_ROW = NS(id=18, email=ZOE.email, summary="Pregunta sobre el grupo — ¿horario?",
                 created_at=NOW)
CHAIR_RESULTS = [NS(line="approve 42", outcome="post 42 from zoe@example.net: approved, "
                    "queued for 200 members", done=True),
                 NS(line="reject 43 " + LONG_REASON, outcome="held message 43 was already "
                    "approved", done=False)]


def contexts(meeting_context: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A context for every template we send (a new template needs one here)."""
    column = {"column_name": "The Commons Page", "column_address": "shma-column@lists.example.org",
              "deadline_text": "1 June 2026", "max_file_kb": 10240, "max_total_kb": 25600}
    bounce = {"member": ZOE, "warning": 1, "warnings": 3, "state": STATE, "threshold": 5,
              "next_step": "2026-05-11", "removal": "2026-05-25"}
    peer = {"request": REQUEST_ROW, "meeting_when": "Thursday 16 July 2026, 12:00",
            "max_minutes": 30, "peer_input_address": "shma-peer-input@lists.example.org"}
    meeting = {**meeting_context, "previous": "Thursday 9 July 2026, 12:00"}
    posts = [Entry(1, "Zoë Ångström", f"Zoë Ångström <{ZOE.email}>",
                   "Mon, 04 Jan 2027 10:00:00 +0000", "Café on Friday — " + LONG_REASON,
                   "<cafe@example.net>", "See you at the café.\n- " + "-" * 40,
                   [Attachment("Protokoll_März.pdf", "application/pdf", 12)]),
             Entry(2, "ken@example.net", "ken@example.net", "", "Re: Café on Friday",
                   "", "Yes.")]
    digest = {"volume": 2, "number": 17, "final": True,
              "footer": "shma mailing list -- shma@lists.example.org", "posts": posts}
    return {
        "column-call.txt": {**column, "post_address": LIST},
        "digest.txt": digest,
        "digest-plain.txt": {**digest, "final": False},
        "column-declined.txt": {**column, "submission": SUBMISSION, "reason": LONG_REASON},
        "column-received.txt": {**column, "submission": SUBMISSION, "revision": REVISION,
                                "ack_id": "<ack-7@lists.example.org>"},
        "confirm-sub-request.txt": {"request": REQUEST_ROW, "for_someone_else": True,
                                    "already_member": True,
                                    "confirm_address": "shma-confirm+k3n5@lists.example.org"},
        "confirm-unsub-request.txt": {"request": REQUEST_ROW, "for_someone_else": True,
                                      "confirm_address": "shma-confirm+k3n5@lists.example.org"},
        "confirm-set-request.txt": {"request": NS(**{**vars(REQUEST_ROW), "kind": "set",
                                                     "delivery": "nomail"}),
                                    "confirm_address": "shma-confirm+k3n5@lists.example.org"},
        "deny-post-held.txt": {"held": HELD, "reason": LONG_REASON},
        "deny-post-nonmember.txt": {},
        "deny-request.txt": {"request": REQUEST_ROW, "reason": LONG_REASON},
        "goodbye.txt": {"undo_address": "shma-confirm+u7v8@lists.example.org"},
        "meeting-cancelled.txt": meeting,
        "meeting-moved.txt": meeting,
        "meeting-reminder.txt": meeting,
        "notice-bounce-reenabled.txt": {"member": ZOE, "warning": 2},
        "notice-bounce-removed.txt": {"email": ZOE.email, "reason": STATE.last_reason,
                                      "warnings": 3},
        "notice-bounce-report.txt": {"why": "it names no address of ours", "inbound_id": 981,
                                     "subject": "Undelivered Mail Returned to Sender",
                                     "sender": "MAILER-DAEMON@mx.example.net"},
        "notice-bounce-warning.txt": {**bounce, "warning": 2},
        "notice-delivery-set.txt": {"delivery": "nomail"},
        "notice-column-held.txt": {**column, "submission": SUBMISSION, "revision": REVISION,
                                   "author_unproven": True, "reply_address": DECIDE},
        "column-follow-up-held.txt": {**column, "submission": SUBMISSION, "revision": REVISION,
                                      "received": NOW},
        "confirm-peer-input.txt": {"request": REQUEST_ROW, "minutes": 20, "received": NOW,
                                   "confirm_address": "shma-confirm+k3n5@lists.example.org"},
        "notice-column-submission.txt": {**column, "submission": SUBMISSION,
                                         "revision": REVISION},
        "notice-column-summary.txt": {**column, "deadline_iso": "2026-06-01",
                                      "submissions": [SUBMISSION], "received": 1,
                                      "accepted": 0, "declined": 0, "pending": 1},
        "notice-held-expired.txt": {"held": HELD},
        "notice-held-post.txt": {"held": HELD, "reply_address": DECIDE, "attached": True,
                                 "text_lines": ["Bonjour à tous,", LONG_REASON],
                                 "more_lines": 12},
        "notice-held-summary.txt": {"waiting": [HELD, HELD], "joins": [REQUEST_ROW],
                                    "unclear": [UNCLEAR_ROW], "peer_input": [REQUEST_ROW],
                                    "follow_ups": [NS(id=9, submission=SUBMISSION,
                                                      sender=ZOE.email, received_at=NOW)],
                                    "count": 6, "reply_address": DECIDE},
        "notice-member-disabled.txt": bounce,
        "notice-peer-input-held.txt": {**peer, "expires": NOW + timedelta(days=14),
                                       "reply_address": DECIDE},
        "notice-peer-input-request.txt": peer,
        "notice-request-unclear.txt": {"request": UNCLEAR_ROW, "reply_address": DECIDE,
                                       "text_lines": ["¿Qué hora es allí?", LONG_REASON],
                                       "more_lines": True},
        "notice-request-waiting.txt": {"request": REQUEST_ROW, "reply_address": DECIDE},
        "notice-waiting-for-approval.txt": {},
        "peer-input-approved.txt": peer,
        "peer-input-declined.txt": {**peer, "reason": LONG_REASON},
        "peer-input-expired.txt": peer,
        "peer-input-incomplete.txt": {**peer, "missing": ["the help you would like"]},
        "peer-input-moved.txt": {**peer, "why": "moved-up",
                                 "previous_when": "Thursday 9 July 2026, 12:00"},
        "peer-input-nonmember.txt": peer,
        "peer-input-received.txt": {**peer, "duplicate": False, "note": "capped"},
        "reply-chair-results.txt": {"results": CHAIR_RESULTS, "not_understood": ["¿y eso?"],
                                    "problem": "", "summary": True, "used_by": "",
                                    "subject": "Re: shma: 5 items are waiting"},
        "reply-command-results.txt": {"results": RESULTS, "echo": True,
                                      "subject": "Re: Inscription à la liste, s'il vous plaît"},
        "reply-archive-get.txt": {"posts": ARCHIVED, "missing": [12], "dropped": True,
                                  "max_get": 10},
        "reply-archive-index.txt": {"posts": ARCHIVED, "max_get": 10},
        "reply-help.txt": LIST_TEXT,
        "reply-info.txt": LIST_TEXT,
        "warning-bounce-probe.txt": {**bounce, "reason": STATE.last_reason},
        "welcome.txt": {**LIST_TEXT, "member": ZOE,
                        "leave_token_address": "shma-leave+a1b2c3@lists.example.org"},
    }


def test_every_template_in_every_language_is_queued_clean_for_the_wire(cli, shma, store,
                                                                       settings):
    start = (datetime.now(UTC) + timedelta(days=60)).astimezone(zone("America/Chicago"))
    cli("meetings", "schedule", LIST, "--at", start.strftime("%Y-%m-%d 12:00"), "--tz",
        "America/Chicago", "--duration", "90", "--dial-in", "+1 555 0100, code 4321")
    renderer = Renderer(settings.templates_dir)
    names = sorted(p.name for p in TEMPLATES.glob("*.txt") if p.name not in PARTIALS)
    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        meeting = session.scalars(select(Meeting)).one()
        context = contexts(reminders.meeting_context(session, ml, meeting, datetime.now(UTC)))
        assert [n for n in names if n not in context] == [], "give these templates a context"
        sent = []
        for name in names:
            for lang in languages(name):
                # An hour apart: the chair's notices are capped at 20 an hour per list.
                when = NOW + timedelta(hours=len(sent))
                queued = notify(session, renderer, ml, name, [CHAIR], when, kind="notice",
                                lang=lang, **context[name])
                assert queued == [CHAIR]
                sent.append(f"{lang}/{name}")
        rows = session.scalars(select(OutMessage).order_by(OutMessage.id)).all()
        assert len(rows) == len(sent) > len(names)
        for what, row in zip(sent, rows, strict=True):
            try:
                assert_clean(row.raw)
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from None


# -- acceptance 1: every kind of mail, by the real code paths, through the strict sink ------------


@pytest.fixture
def rendered(monkeypatch) -> list[str]:
    """The templates the product renders as mail during the test (in whichever process part)."""
    names: list[str] = []
    original = Renderer.mail

    def mail(self: Renderer, name: str, **kwargs: Any):
        names.append(name)
        return original(self, name, **kwargs)

    monkeypatch.setattr(Renderer, "mail", mail)
    return names


def lmtp(daemon, sender: str, to: str, subject: str, body: str, name: str = "") -> None:
    lmtp_send(daemon.ports["lmtp"], sender, [to], make_message(
        sender=f"{name} <{sender}>" if name else sender, to=to, subject=subject, body=body))


def wait_mail(sink: SmtpSink, address: str, count: int) -> None:
    sink.wait_for(lambda s: len(s.messages_for(address)) >= count, timeout=20,
                  description=f"{count} mails to {address}")


def wait_subject(sink: SmtpSink, address: str, words: str) -> None:
    sink.wait_for(lambda s: any(words in str(parse(d.data)["Subject"])
                                for d in s.messages_for(address)), timeout=20,
                  description=f"a mail to {address} about {words!r}")


def reply_to_of(sink: SmtpSink, address: str, words: str) -> str:
    """The Reply-To of the mail to `address` about `words`, once it has come (waiting for the
    subject, not a count: a loaded machine may deliver an earlier mail twice)."""
    wait_subject(sink, address, words)
    return next(str(m["Reply-To"]) for m in map(parse, (d.data for d in sink.messages_for(address)))
                if words in str(m["Subject"]))


def ken_status(store) -> str | None:
    with store.unit_of_work() as session:
        return session.scalar(select(Member.status).where(Member.email == "ken@example.net"))


def test_every_kind_of_generated_mail_reaches_the_strict_sink_clean(cli, shma, daemon, sink,
                                                                   store, rendered):
    clock = daemon.clock
    jane, ben, ken = "jane@example.net", "ben@example.net", "ken@example.net"
    start = (clock.now() + timedelta(days=3)).astimezone(zone("Europe/Berlin"))
    meeting_id = cli("meetings", "schedule", LIST, "--at", start.strftime("%Y-%m-%d %H:%M"),
                     "--tz", "Europe/Berlin", "--duration", "60", "--dial-in",
                     "+49 30 1234567, PIN 9876").output.strip()
    cli("members", "add", LIST, ben, "--name", "Bénédicte Ørsted")  # welcome
    cli("members", "add", LIST, ken, "--name", "Ken Li", "--no-welcome")
    cli("lists", "set", LIST, "column.name", "The Commons Page")
    cli("lists", "set", LIST, "bounce.threshold", "1")
    wait_mail(sink, ben, 1)

    lmtp(daemon, jane, REQUEST, "Joining", "Hi, could you please add me to the list? Jane")
    wait_mail(sink, jane, 1)  # confirmation
    confirm = str(parse(sink.messages_for(jane)[0].data)["Reply-To"])
    lmtp(daemon, jane, confirm, "Re: confirm", "OK")
    wait_mail(sink, jane, 2)  # welcome
    lmtp(daemon, jane, REQUEST, "help", "help")
    lmtp(daemon, jane, REQUEST, "", "info\nset nomail\nset regular\n")
    wait_mail(sink, jane, 5)  # help, command results with info, confirmation of set nomail
    lmtp(daemon, ben, REQUEST, "", "Please remove me from this mailing list, thank you.")
    confirm = reply_to_of(sink, ben, "Please confirm")  # the confirmation to leave
    lmtp(daemon, ben, "shma-leave@lists.example.org", "", "")  # unproven: the same one waits
    lmtp(daemon, ben, confirm, "Re: confirm", "OK")
    wait_subject(sink, ben, "You have left")  # goodbye

    lmtp(daemon, "visitor@else.example", LIST, "Bonjour à tous", "Je voudrais écrire.\n")
    wait_mail(sink, CHAIR, 1)  # held notice
    lmtp(daemon, jane, "shma-peer-input@lists.example.org", PROJECT,
         "We would like ideas to find drivers.\nminutes: 20\n", name="Jane Doe")
    confirm = reply_to_of(sink, jane, "peer-input request")  # it proves nothing: confirm first
    lmtp(daemon, jane, confirm, "Re: confirm", "OK")
    wait_subject(sink, jane, "Your peer-input request")  # the acknowledgement
    wait_mail(sink, CHAIR, 2)  # and the chair's notice
    lmtp(daemon, ken, "shma-column@lists.example.org", "A story", "Our tool library.\n")
    wait_mail(sink, ken, 1)  # column acknowledgement

    cli("meetings", "remind", meeting_id, "--yes")  # the reminder with its .ics, to every member
    wait_mail(sink, ken, 2)
    deadline = (clock.now() + timedelta(days=10)).date()
    cli("lists", "set", LIST, "column.deadlines", deadline.strftime("%m-%d"))
    sink.rcpt_responses[ken] = "550 5.1.1 <ken@example.net>: User unknown"
    clock.advance(timedelta(days=1, hours=1))
    daemon.run_scheduler()  # the daily summary of what is held, the call for submissions
    wait_subject(sink, jane, "Call for submissions")
    sink.wait_for(lambda _s: ken_status(store) == "disabled", timeout=20,
                  description="ken disabled by his refused copy")
    del sink.rcpt_responses[ken]
    daemon.run_scheduler()  # the chair is told, and notice 1 goes to ken as a probe
    wait_subject(sink, CHAIR, "disabled (bounces)")
    clock.advance(timedelta(days=7, hours=1))  # (the probe may have met the refusal too)
    daemon.run_scheduler()  # notice 2, which ken's mailbox takes
    wait_subject(sink, ken, "is paused")
    wait_subject(sink, CHAIR, "waiting for your decision")

    kinds = {"welcome.txt", "confirm-sub-request.txt", "confirm-unsub-request.txt",
             "confirm-set-request.txt", "goodbye.txt", "reply-command-results.txt",
             "notice-held-post.txt",
             "notice-held-summary.txt", "meeting-reminder.txt", "column-received.txt",
             "column-call.txt", "warning-bounce-probe.txt", "notice-member-disabled.txt",
             "peer-input-received.txt", "notice-peer-input-request.txt", "confirm-peer-input.txt",
             "notice-column-submission.txt"}
    assert kinds <= set(rendered), kinds - set(rendered)
    assert sink.refusals == []
    calendars = 0
    for delivery in sink.deliveries:
        assert_clean(delivery.data)
        calendars += any(p.get_content_type() == "text/calendar"
                         for p in parse(delivery.data).walk())
    assert calendars >= 2  # the reminder, with its .ics, to jane and ken
    with store.unit_of_work() as session:
        for raw in session.scalars(select(OutMessage.raw)):
            assert_clean(raw)


# -- acceptance 3: joining in four languages through the strict sink ------------------------------


@pytest.mark.parametrize("lang,body,confirm_word,welcome_word", [
    ("fr", "Bonjour, pourriez-vous m'inscrire à la liste ? Merci, Anne", "confirmer",
     "bienvenue"),
    ("es", "Hola, ¿me pueden agregar a la lista, por favor? Gracias, Ana", "confirmar",
     "bienvenid"),
    ("de", "Hallo, bitte nehmen Sie mich in die Mailingliste auf. Danke, Anna", "bestätig",
     "willkommen"),
    ("pt", "Olá, gostaria de me inscrever na lista, por favor. Obrigada, Ana", "confirmar",
     "boas-vindas"),
])
def test_joining_by_free_text_in_four_languages_completes_through_the_strict_sink(
        cli, shma, daemon, sink, lang, body, confirm_word, welcome_word):
    ana = f"ana.{lang}@example.net"
    lmtp(daemon, ana, REQUEST, "", body, name="Ana Übel")
    wait_mail(sink, ana, 1)
    confirmation = parse(sink.messages_for(ana)[0].data)
    assert confirm_word in confirmation.get_content().lower()
    token = re.search(r"confirm ([a-z0-9]+)", str(confirmation["Subject"])).group(1)
    lmtp(daemon, ana, str(confirmation["Reply-To"]), f"Re: {confirmation['Subject']}",
         f"OK\n\n> confirm {token}\n", name="Ana Übel")
    wait_mail(sink, ana, 2)
    welcome = parse(sink.messages_for(ana)[1].data)
    assert welcome_word in welcome.get_content().lower()
    assert ana in cli("members", "list", LIST).output
    for delivery in sink.messages_for(ana):
        assert_clean(delivery.data)
        assert b"Content-Transfer-Encoding: quoted-printable" in delivery.data
    assert sink.refusals == []


# -- acceptance 4, first half: smuggling and injected headers do not pass the list --------------


SMUGGLING_POST = (
    b"From: Jane Doe <jane@example.net>\r\n"
    b"To: shma@lists.example.org\r\n"
    b"Subject: Meeting notes\rReply-To: thief@example.com\r\n"
    b"X-Note: a\x00b\r\n"
    b"Message-ID: <smuggle-1@example.net>\r\n"
    b"Date: Mon, 04 May 2026 09:30:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"hello\r.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
    b"Subject: smuggled\nbare LF line\nlast line\r\n"
)


def test_a_smuggling_post_reaches_the_members_crlf_only_without_extra_headers(cli, shma,
                                                                             daemon, sink,
                                                                             store):
    cli("members", "add", LIST, "jane@example.net", "--no-welcome")
    cli("members", "add", LIST, "reader@example.org", "--no-welcome")
    assert lmtp_send(daemon.ports["lmtp"], "jane@example.net", [LIST], SMUGGLING_POST) == {}
    wait_mail(sink, "reader@example.org", 1)
    [copy] = [d.data for d in sink.messages_for("reader@example.org")]
    assert_clean(copy, ours=False)
    assert b"\x00" not in copy
    msg = parse(copy)
    assert msg["Reply-To"] is None and msg["Subject"].startswith("[shma] Meeting notes")
    assert msg["X-Note"] == "ab"
    names = [name.lower() for name in msg.keys()]
    added = {"list-id", "list-post", "list-help", "list-subscribe", "list-unsubscribe",
             "precedence", "x-beenthere"}
    assert set(names) - added == {"from", "to", "subject", "x-note", "message-id", "date",
                                  "mime-version", "content-type"}
    # The body's lines are CRLF lines: the "." stands alone on a line the transport stuffed.
    assert copy.split(b"\r\n\r\n", 1)[1].startswith(
        b"hello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
        b"Subject: smuggled\r\nbare LF line\r\n")
    assert [d.rcpt_tos for d in sink.deliveries if "victim@example.com" in d.rcpt_tos] == []


HIDDEN_HEADER_POSTS = [
    (b"From: Jane Doe <jane@example.net>\r\nTo: shma@lists.example.org\r\nSubject: Nul\r\n"
     b"Message-ID: <hidden-1@example.net>\r\nDate: Mon, 04 May 2026 09:30:00 +0000\r\n"
     b"\x00From: CEO <ceo@bank.com>\r\n\x00Reply-To: evil@evil.org\r\n\r\nbody\r\n"),
    (b"From: Jane Doe <jane@example.net>\nTo: shma@lists.example.org\nSubject: Cr\n"
     b"Message-ID: <hidden-2@example.net>\nDate: Mon, 04 May 2026 09:31:00 +0000\n"
     b"\rFrom: ceo@bank.com\n\rReply-To: evil@evil.org\n"),
]


def test_a_from_hidden_behind_a_nul_or_cr_never_reaches_the_members_as_a_header(cli, shma,
                                                                               daemon, sink):
    # Python's parser (the guards, the DMARC From rewrite) reads such a line as the body's
    # first: the members must get the one From the list wrote, and no Reply-To of the post's.
    cli("lists", "set", LIST, "dmarc_mitigation", "always")
    cli("members", "add", LIST, "jane@example.net", "--no-welcome")
    cli("members", "add", LIST, "reader@example.org", "--no-welcome")
    for post in HIDDEN_HEADER_POSTS:
        assert lmtp_send(daemon.ports["lmtp"], "jane@example.net", [LIST], post) == {}
    wait_mail(sink, "reader@example.org", len(HIDDEN_HEADER_POSTS))
    for delivery in sink.messages_for("reader@example.org"):
        copy = delivery.data
        assert_clean(copy, ours=False)
        head = copy.split(b"\r\n\r\n", 1)[0]
        assert b"ceo@bank.com" not in head and b"evil" not in head
        msg = parse(copy)
        assert msg.get_all("From") == ["Jane Doe via SHMA <shma@lists.example.org>"]
        assert msg.get_all("Reply-To") == ["Jane Doe <jane@example.net>"]


# -- the 7-bit and 8-bit forms of a non-English notice --------------------------------------------


@pytest.fixture
def eightbit_daemon(tmp_path: Path, db_url: str, sink: SmtpSink, clock) -> Iterator[Daemon]:
    """A daemon whose relay takes 8-bit (`[outbound] eightbitmime = true`)."""
    path = write_config(tmp_path / "eightbit.toml", tmp_path / "data", db_url, sink.port,
                        eightbitmime=True)
    running = Daemon(load_settings(path), clock=clock).start()
    yield running
    running.stop()


FRENCH = "Bonjour, pourriez-vous m'inscrire à la liste ? Merci, Anne"


def test_a_french_confirmation_leaves_7bit_by_default(shma, daemon, sink):
    lmtp(daemon, "anne@example.net", REQUEST, "", FRENCH)
    wait_mail(sink, "anne@example.net", 1)
    [data] = [d.data for d in sink.messages_for("anne@example.net")]
    assert_clean(data)
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    assert "confirmer" in parse(data).get_content()


def test_a_french_confirmation_leaves_8bit_when_the_relay_takes_it(cli, shma, eightbit_daemon,
                                                                  sink):
    lmtp(eightbit_daemon, "anne@example.net", REQUEST, "", FRENCH)
    wait_mail(sink, "anne@example.net", 1)
    [data] = [d.data for d in sink.messages_for("anne@example.net")]
    assert_clean(data, eightbit=True)
    assert b"Content-Transfer-Encoding: 8bit" in data and not data.isascii()
    assert "à" in parse(data).get_content()
    assert refusal(data) == "550 5.6.1 Error: 8-bit data without BODY=8BITMIME"


# -- the transports send exactly what is queued ----------------------------------------------------


def queue_notice(store, *, eightbit: bool, to: str = "Ana <ana@example.net>") -> bytes:
    """A French notice queued through the product's outbox; returns its stored bytes."""
    msg = EmailMessage()
    msg["From"] = "shma-request@lists.example.org"
    msg["To"] = to
    msg["Subject"] = "Merci de confirmer : inscription à la liste shma"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Pour confirmer, répondez simplement à ce message.\n", charset="utf-8",
                    cte="quoted-printable")
    with store.unit_of_work() as session:
        ml = session.scalars(select(MailingList)).one()
        return enqueue(session, msg, ["ana@example.net"], kind="notice", list_id=ml.id,
                       envelope_from="shma-bounces@lists.example.org", now=datetime.now(UTC),
                       eightbit=eightbit).raw


def deliver(store, transport) -> None:
    with store.unit_of_work() as session:
        batch = claim(session, datetime.now(UTC), timedelta(seconds=60), 10)
    assert batch is not None
    try:
        assert [r.outcome for r in send_batch(batch, transport).values()] == [Outcome.SENT]
    finally:
        transport.close()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "smtplib"])
@pytest.mark.parametrize("eightbit", [False, True], ids=["7bit", "8bit"])
def test_the_smtp_transport_sends_the_queued_bytes_with_8bitmime_only_for_8bit(
        shma, store, settings, sink, monkeypatch, pipelining, eightbit):
    if not pipelining:
        connect = SmtpTransport._connect

        def without_pipelining(self: SmtpTransport) -> smtplib.SMTP:
            client = connect(self)
            client.esmtp_features.pop("pipelining", None)
            return client

        monkeypatch.setattr(SmtpTransport, "_connect", without_pipelining)
    raw = queue_notice(store, eightbit=eightbit)
    assert raw.isascii() is not eightbit
    deliver(store, SmtpTransport(settings.outbound))
    [delivery] = sink.deliveries
    assert delivery.data == raw
    assert ("BODY=8BITMIME" in delivery.options) is eightbit
    assert "SMTPUTF8" not in delivery.options


def test_an_international_address_in_a_header_asks_for_smtputf8(shma, store, settings, sink):
    raw = queue_notice(store, eightbit=False, to="José <josé@example.es>")
    assert "To: José <josé@example.es>\r\n".encode() in raw
    assert raw.split(b"\r\n\r\n", 1)[1].isascii()
    deliver(store, SmtpTransport(settings.outbound))
    [delivery] = sink.deliveries
    assert delivery.data == raw and "SMTPUTF8" in delivery.options


def test_the_maildir_outbox_writes_the_queued_bytes(shma, store, tmp_path):
    raw = queue_notice(store, eightbit=False)
    deliver(store, MaildirTransport(tmp_path / "outbox"))
    [written] = (tmp_path / "outbox" / "new").iterdir()
    assert written.read_bytes() == (b"Return-Path: <shma-bounces@lists.example.org>\r\n"
                                    b"X-Envelope-To: <ana@example.net>\r\n" + raw)
    assert_clean(raw)
