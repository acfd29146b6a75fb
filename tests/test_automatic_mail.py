"""The one automatic-mail detector (listserv/mail/automatic.py), table-driven (issue 13, 4).

The table holds every pattern of the four copies it replaced (rules.automatic_mail and
rules.may_auto_reply, intent._automatic, bounces._automatic and bounces.recognise), and the
content signs added with it (a mail system's From, multipart/report): what each sign says,
and whether it is strong (IMAP intake's `recognise` counts only those).
"""

from __future__ import annotations

import pytest

from listserv.bounces.reports import read_report
from listserv.mail.automatic import (
    SignKind,
    automatic,
    machine_address,
    may_auto_reply,
    recognise,
)

from .helpers import make_message, parse

REPORT, REPLY, PROGRAM = SignKind.REPORT, SignKind.REPLY, SignKind.PROGRAM
MEMBER = "jane@example.org"

# (headers of the message, envelope sender or None, kind, strong, words of the reason)
SIGNS = [
    # RFC 3834 and the usual headers (all four copies)
    ({"Auto_Submitted": "auto-replied"}, MEMBER, REPLY, True, "Auto-Submitted: auto-replied"),
    ({"Auto_Submitted": "auto-generated"}, MEMBER, PROGRAM, True, "auto-generated"),
    ({"Auto_Submitted": "auto-notified"}, None, PROGRAM, True, "auto-notified"),
    ({"X_Autoreply": "yes"}, MEMBER, REPLY, True, "X-Autoreply"),
    ({"X_Autorespond": "yes"}, MEMBER, REPLY, True, "X-Autorespond"),
    ({"Precedence": "auto_reply"}, MEMBER, REPLY, True, "Precedence: auto_reply"),
    # rules.automatic_mail only: bulk mail (weak: a newsletter's real post is held, not lost)
    ({"Precedence": "bulk"}, MEMBER, PROGRAM, False, "Precedence: bulk"),
    ({"Precedence": "junk"}, MEMBER, PROGRAM, False, "Precedence: junk"),
    # vacation subjects: rules (all of them), intent (all but the last three), accents optional
    ({"subject": "Automatic reply: Agenda"}, MEMBER, REPLY, False, "out-of-office subject"),
    ({"subject": "Auto-Reply: Agenda"}, MEMBER, REPLY, False, "out-of-office subject"),
    ({"subject": "Auto reply"}, MEMBER, REPLY, False, "out-of-office subject"),
    ({"subject": "AutoReply: Agenda"}, MEMBER, REPLY, False, "out-of-office subject"),
    ({"subject": "Automatic-Reply"}, MEMBER, REPLY, False, "out-of-office subject"),
    ({"subject": "Out of Office: Agenda"}, MEMBER, REPLY, False, "out-of-office subject"),
    ({"subject": "Out of the office until Monday"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Respuesta automática: Agenda"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Respuesta automatica: Agenda"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Réponse automatique : Agenda"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Re\u0301ponse automatique"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Automatische Antwort: Agenda"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Resposta automática: Agenda"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Abwesenheitsnotiz: Agenda"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Fuera de la oficina"}, MEMBER, REPLY, False, "out-of-office"),
    ({"subject": "Absence du bureau"}, MEMBER, REPLY, False, "out-of-office"),
    # the envelope (rules.automatic_mail): the null sender, a mail system, a no-reply box
    ({}, "", PROGRAM, True, "empty envelope sender"),
    ({}, "mailer-daemon@mx.example.org", PROGRAM, True, "sent by mailer-daemon@"),
    ({}, "postmaster@mx.example.org", PROGRAM, True, "sent by postmaster@"),
    ({}, "mail-daemon@mx.example.org", PROGRAM, True, "sent by mail-daemon@"),
    ({}, "noreply@service.example", PROGRAM, True, "sent by noreply@"),
    ({}, "no-reply@service.example", PROGRAM, True, "sent by no-reply@"),
    # the message's own signs of a report (bounces.recognise, bounces._automatic), and the
    # content signs that make a DSN automatic whatever envelope it came with (issue 12)
    ({"sender": "MAILER-DAEMON@mx.example.org"}, MEMBER, REPORT, True,
     "From: mailer-daemon@mx.example.org"),
    ({"sender": "Postmaster <postmaster@mx.example.org>"}, MEMBER, REPORT, True, "From:"),
    ({"sender": "mail-daemon@mx.example.org"}, MEMBER, REPORT, True, "From:"),
    ({"Sender": "MAILER-DAEMON@mx.example.org"}, MEMBER, REPORT, True, "Sender:"),
    ({"Return_Path": "<MAILER-DAEMON@mx.example.org>"}, None, REPORT, True, "Return-Path:"),
    ({"Return_Path": "<>"}, None, PROGRAM, True, "null envelope sender"),
    # words of a report's Subject (bounces._automatic): weak, anywhere in the Subject
    ({"subject": "Undeliverable: Agenda"}, MEMBER, REPORT, False, "delivery-report subject"),
    ({"subject": "Undelivered Mail Returned to Sender"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Delivery Status Notification (Failure)"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Delivery has failed to these recipients"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Delivery delayed: Agenda"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Delivery failure"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Returned mail: see transcript"}, MEMBER, REPORT, False, "report"),
    ({"subject": "failure notice"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Mail delivery failed"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Your message could not be delivered"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Non-delivery report"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Nondelivery: Agenda"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Delayed Mail (still being retried)"}, MEMBER, REPORT, False, "report"),
    ({"subject": "Warning: could not send message for past 4 hours"}, MEMBER, REPORT, False,
     "report"),
]


def _message(headers: dict[str, str]) -> bytes:
    fields = dict(headers)
    return_path = fields.pop("Return_Path", None)
    raw = make_message(**fields)
    return f"Return-Path: {return_path}\r\n".encode() + raw if return_path else raw


@pytest.mark.parametrize("headers,mail_from,kind,strong,words", SIGNS)
def test_each_sign_is_found_with_its_kind_strength_and_reason(headers, mail_from, kind, strong,
                                                              words):
    msg = parse(_message(headers))
    sign = automatic(msg, mail_from)
    assert sign is not None
    assert (sign.kind, sign.strong) == (kind, strong)
    assert words in str(sign) and str(sign).startswith(kind.value)
    # IMAP intake sends to the bounce handler on strong signs of the message itself only.
    assert bool(recognise(msg)) == (strong and bool(headers))


def test_a_multipart_report_is_a_report_whatever_its_envelope():
    raw = (b"From: MAILER-DAEMON@mx.example.org\r\nTo: jane@example.org\r\n"
           b"Subject: Hello\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n")
    sign = automatic(parse(raw), MEMBER)
    assert sign is not None and (sign.kind, sign.detail) == (REPORT, "multipart/report")
    assert recognise(parse(raw)) == "a delivery report (multipart/report)"


@pytest.mark.parametrize("headers", [
    {}, {"Auto_Submitted": "no"}, {"Precedence": "list"}, {"X_Autoreply": ""},
    {"subject": "Re: Automatic reply settings: how?"},
    {"sender": "Mailer Daemon Fan <fan@example.org>"}, {"sender": "noreply-fan@example.org"},
])
def test_a_persons_mail_shows_no_sign(headers):
    assert automatic(parse(make_message(**headers)), MEMBER) is None


def test_without_an_envelope_only_the_message_counts():
    assert automatic(parse(make_message()), None) is None
    assert automatic(parse(make_message()), "") is not None


@pytest.mark.parametrize("recipient,answerable", [
    ("jane@example.org", True), ("", False), ("MAILER-DAEMON@mx.example.org", False),
    ("postmaster@example.org", False), ("mail-daemon@example.org", False),
    ("noreply@example.org", False), ("no-reply@example.org", False),
])
def test_no_answer_goes_to_a_machine(recipient, answerable):
    # rules.may_auto_reply's second use of its pattern: the recipient of an answer.
    assert machine_address(recipient) is (not answerable and bool(recipient))
    assert may_auto_reply(parse(make_message()), MEMBER, recipient) is answerable
    auto = parse(make_message(Auto_Submitted="auto-replied"))
    assert may_auto_reply(auto, MEMBER, "jane@example.org") is False


@pytest.mark.parametrize("headers,automatic_reply", [
    ({"Auto_Submitted": "auto-replied"}, "an automatic reply (Auto-Submitted: auto-replied)"),
    ({"Precedence": "bulk"}, "automatic mail (Precedence: bulk)"),
    ({"subject": "Out of Office: Agenda"}, "an automatic reply (an out-of-office subject)"),
    # a report's own sign makes it a report, never an automatic reply
    ({"Auto_Submitted": "auto-replied", "sender": "MAILER-DAEMON@mx.example.org"}, ""),
    ({"Auto_Submitted": "auto-replied", "subject": "Undeliverable: Agenda"}, ""),
    # the null sender says nothing of which: reports and replies alike come with it
    ({"Return_Path": "<>"}, ""),
])
def test_the_bounce_handler_tells_an_automatic_reply_from_a_report(headers, automatic_reply):
    assert read_report(_message(headers)).automatic == automatic_reply
