"""The members' copy as pure functions: subject prefix, list headers, footer, bytes kept."""

from __future__ import annotations

import dataclasses

import pytest

from listserv.render import HeaderInjectionError
from listserv.transforms import (
    ListHeaders,
    RawMessage,
    distribution_copy,
    header_bytes,
    personalize,
    prefix_subject,
)

from .helpers import parse

HEADERS = ListHeaders(
    list_id="<shma.lists.example.org>", post="shma@lists.example.org",
    help="shma-request@lists.example.org", subscribe="shma-join@lists.example.org",
    been_there="shma@lists.example.org",
)


@pytest.mark.parametrize("subject", [
    "Re: Agenda",
    "RE: [shma] Agenda",
    "AW: Agenda",
    "SV: [shma] Agenda",
    "RES: Agenda",
    "RV: Agenda",
    "Antw: Agenda",
    "Re[2]: Agenda",
    "Re: [shma] Re: [shma] Agenda",
    "[shma] Re: Agenda",
    "[SHMA] AW: Re: Agenda",
    "Re:Agenda",
])
def test_reply_subjects_get_exactly_one_prefix_in_canonical_form(subject):
    assert prefix_subject(subject, "[shma]") == "[shma] Re: Agenda"


@pytest.mark.parametrize("subject,expected", [
    ("Agenda", "[shma] Agenda"),
    ("[shma] Agenda", "[shma] Agenda"),
    ("", "[shma]"),
    ("Fwd: Agenda", "[shma] Fwd: Agenda"),
])
def test_new_subjects_get_the_prefix_once(subject, expected):
    assert prefix_subject(subject, "[shma]") == expected


def test_encoded_prefix_in_the_subject_is_recognised():
    raw = (b"From: a@example.org\r\nSubject: =?utf-8?q?Re=3A_=5Bshma=5D_Caf=C3=A9?=\r\n"
           b"\r\nbody\r\n")
    copy = parse(distribution_copy(raw, HEADERS, "[shma]", ""))
    assert copy["Subject"] == "[shma] Re: Café"


def test_no_prefix_and_no_footer_keep_every_original_byte():
    raw = (b"Received: from x by y; Thu, 26 Nov 2026 09:00:00 +0000\r\n"
           b"From:  odd   spacing <a@example.org>\r\nSubject: =?iso-8859-1?q?Caf=E9?=\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n")
    copy = distribution_copy(raw, HEADERS, "", "")
    assert copy.endswith(raw)
    added = copy[: -len(raw)]
    assert b"List-Id: <shma.lists.example.org>\r\n" in added
    assert b"Precedence: list\r\n" in added


def test_footer_is_appended_in_the_parts_own_encoding():
    raw = (b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 au lait\r\n")
    copy = distribution_copy(raw, HEADERS, "[shma]", "-- \nSHMA list")
    msg = parse(copy)
    assert msg.get_content_charset() == "iso-8859-1"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().replace("\r\n", "\n") == "Café au lait\n-- \nSHMA list\n"
    assert b"Caf=E9 au lait\r\n" in copy


def test_utf8_footer_on_ascii_body_switches_charset_and_encoding():
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\nplain text\r\n"
    msg = parse(distribution_copy(raw, HEADERS, "", "Grupo de ayuda mutua — SHMA"))
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content().replace("\r\n", "\n") == "plain text\nGrupo de ayuda mutua — SHMA\n"


def test_reply_to_list_replaces_the_authors_reply_to():
    raw = b"From: a@example.org\r\nReply-To: b@example.org\r\nSubject: x\r\n\r\nhi\r\n"
    headers = dataclasses.replace(HEADERS, reply_to="shma@lists.example.org")
    msg = parse(distribution_copy(raw, headers, "", ""))
    assert msg.get_all("Reply-To") == ["shma@lists.example.org"]


def test_original_list_headers_and_secrets_are_not_passed_on():
    raw = (b"From: a@example.org\r\nList-Id: <other.example.com>\r\nApproved: hunter2\r\n"
           b"Subject: x\r\n\r\nhi\r\n")
    copy = distribution_copy(raw, HEADERS, "", "")
    assert b"other.example.com" not in copy and b"hunter2" not in copy


def test_personalized_copy_gets_its_own_unsubscribe_first():
    copy = distribution_copy(b"From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n", HEADERS,
                             "", "")
    mine = personalize(copy, "shma-leave+tok@lists.example.org")
    assert mine.startswith(b"List-Unsubscribe: <mailto:shma-leave+tok@lists.example.org>\r\n")
    assert mine.endswith(copy)


@pytest.mark.parametrize("value", ["x\r\nBcc: victim@example.org", "x\nBcc: v@e.org", "x\ry"])
def test_header_values_with_line_breaks_are_refused(value):
    with pytest.raises(HeaderInjectionError):
        header_bytes("Subject", value)


def test_encoded_line_breaks_in_a_subject_cannot_add_a_header():
    raw = (b"From: a@example.org\r\nSubject: =?utf-8?q?Hi=0D=0ABcc=3A_victim=40example.org?=\r\n"
           b"\r\nhi\r\n")
    copy = distribution_copy(raw, HEADERS, "[shma]", "")
    msg = parse(copy)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "[shma] Hi Bcc: victim@example.org"


def test_raw_message_keeps_folded_headers_intact():
    raw = b"Subject: a\r\n b\r\nX-Long: one\r\n\ttwo\r\n\r\nbody"
    msg = RawMessage.parse(raw)
    assert msg.fields == (b"Subject: a\r\n b\r\n", b"X-Long: one\r\n\ttwo\r\n")
    assert msg.to_bytes() == raw
