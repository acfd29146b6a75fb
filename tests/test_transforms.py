"""The members' copy as pure functions: subject prefix, list headers, footer, bytes kept."""

from __future__ import annotations

import dataclasses

import pytest

from listserv.mail.mime.copies import ListHeaders, distribution_copy, personalize
from listserv.mail.mime.footer import append_footer
from listserv.mail.mime.headers import prefix_subject
from listserv.mail.mime.parts import split_multipart
from listserv.mail.mime.raw import RawMessage, header_bytes
from listserv.mail.mime.sender_rewrite import SenderRewrite, display_address
from listserv.mail.render import HeaderInjectionError

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


# -- footers by MIME shape, at the byte level ----------------------------------------------------

FOOTER = "-- \nSHMA <list> & friends"


def mime(content_type: str, body: bytes, *fields: bytes) -> bytes:
    head = b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    return head + b"".join(f + b"\r\n" for f in fields) + (
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)


def texts(copy: bytes) -> list[str]:
    return [str(p.get_content()).replace("\r\n", "\n") for p in parse(copy).walk()
            if p.get_content_maintype() == "text"]


def test_html_footer_is_escaped_and_goes_before_the_last_end_of_body():
    raw = mime("text/html; charset=utf-8",
               b"<html><body><p>Hi</p><!-- </body> --></BODY ></html>\r\n")
    (markup,) = texts(distribution_copy(raw, HEADERS, "", FOOTER))
    assert "SHMA &lt;list&gt; &amp; friends" in markup
    assert markup.index("friends") > markup.index("<!-- </body> -->")
    assert markup.index("friends") < markup.index("</BODY >")


def test_alternative_gets_the_footer_in_text_and_html_and_mixed_in_the_first_text():
    alternative = (b"--a\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
                   b"--a\r\nContent-Type: text/html\r\n\r\n<p>rich</p>\r\n"
                   b"--a\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n--a--\r\n")
    raw = mime('multipart/mixed; boundary="m"',
               b"--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n" + alternative
               + b"\r\n--m\r\nContent-Type: text/plain\r\n\r\nsecond text\r\n--m--\r\n")
    plain, rich, calendar, second = texts(distribution_copy(raw, HEADERS, "", FOOTER))
    assert plain == "plain\n-- \nSHMA <list> & friends\n"
    assert "SHMA &lt;list&gt; &amp; friends" in rich
    assert "SHMA" not in calendar and second == "second text"  # the CRLF is the boundary's


def test_mixed_without_a_text_part_gets_a_footer_part_of_its_own():
    pdf = b"--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\n%PDF"
    raw = mime('multipart/mixed; boundary="m"', pdf + b"\r\n--m--\r\nepilogue\r\n")
    copy = distribution_copy(raw, HEADERS, "", FOOTER)
    assert pdf + b"\r\n--m\r\n" in copy and copy.endswith(b"\r\n--m--\r\nepilogue\r\n")
    kinds = [p.get_content_type() for p in parse(copy).walk()]
    assert kinds == ["multipart/mixed", "application/pdf", "text/plain"]
    assert texts(copy) == ["-- \nSHMA <list> & friends\n"]


def test_related_footer_goes_into_the_start_part():
    raw = mime('multipart/related; boundary="r"; start="<root@x>"; type="text/html"',
               b"--r\r\nContent-Type: image/png\r\nContent-ID: <img@x>\r\n\r\nPNG\r\n"
               b"--r\r\nContent-Type: text/html\r\nContent-ID: <root@x>\r\n\r\n<p>hi</p>\r\n"
               b"--r--\r\n")
    copy = distribution_copy(raw, HEADERS, "", FOOTER)
    assert b"--r\r\nContent-Type: image/png\r\nContent-ID: <img@x>\r\n\r\nPNG\r\n--r\r\n" in copy
    assert "friends" in texts(copy)[0]


@pytest.mark.parametrize("content_type", [
    'multipart/signed; protocol="application/pgp-signature"; boundary="s"',
    'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="s"',
])
def test_signed_and_encrypted_bodies_are_wrapped_whole(content_type):
    body = (b"--s\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--s\r\nX: y\r\n\r\nsig\r\n"
            b"--s--\r\n")
    raw = mime(content_type, body, b"Content-Description: kept with the part")
    copy = distribution_copy(raw, HEADERS, "", FOOTER)
    entity = (b"Content-Description: kept with the part\r\nContent-Type: " + content_type.encode()
              + b"\r\n\r\n" + body)
    assert b"\r\n" + entity + b"\r\n--=_listserv_" in copy
    msg = parse(copy)
    assert msg.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in msg.iter_parts()][1] == "text/plain"


@pytest.mark.parametrize("raw", [
    # a lone attachment, an unknown charset, 8-bit bytes in a part that declares none,
    # S/MIME opaque signing, a multipart without its boundary
    mime("application/pdf", b"%PDF-1.4\r\n"),
    mime("text/plain; charset=x-klingon", b"qapla'\r\n"),
    mime("text/plain", "Caf\u00e9\r\n".encode("latin-1")),
    mime('application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"', b"MIAGCSqG\r\n"),
    mime('multipart/mixed; boundary="nowhere"', b"no boundary lines at all\r\n"),
])
def test_what_cannot_take_a_footer_is_wrapped_with_a_footer_part(raw):
    copy = distribution_copy(raw, HEADERS, "", FOOTER)
    original = RawMessage.parse(raw)
    assert b"\r\n\r\n" + original.body + b"\r\n--=_listserv_" in copy
    parts = list(parse(copy).iter_parts())
    assert len(parts) == 2
    assert parts[1].get_content().replace("\r\n", "\n") == "-- \nSHMA <list> & friends\n"


def test_a_footer_the_charset_cannot_hold_turns_the_part_into_utf8():
    raw = mime("text/plain; charset=iso-8859-1; format=flowed", b"Caf=E9\r\n",
               b"Content-Transfer-Encoding: quoted-printable")
    msg = parse(distribution_copy(raw, HEADERS, "", "Grupo — SHMA"))
    assert msg.get_content_charset() == "utf-8" and msg.get_param("format") == "flowed"
    assert msg.get_content().replace("\r\n", "\n") == "Café\nGrupo — SHMA\n"


def test_base64_text_is_re_encoded_as_base64():
    raw = mime("text/plain; charset=utf-8", b"w6kK\r\n", b"Content-Transfer-Encoding: base64")
    msg = parse(distribution_copy(raw, HEADERS, "", FOOTER))
    assert msg["Content-Transfer-Encoding"] == "base64"
    assert msg.get_content() == "é\n-- \nSHMA <list> & friends\n"  # the text's own line ends


def test_quoted_printable_ending_in_a_soft_break_still_puts_the_footer_on_its_own_line():
    raw = mime("text/plain; charset=utf-8", b"last words=", b"Content-Transfer-Encoding: "
               b"quoted-printable")
    (text,) = texts(distribution_copy(raw, HEADERS, "", FOOTER))
    assert text == "last words\n-- \nSHMA <list> & friends\n"


def test_flowed_text_ending_in_a_soft_break_ends_its_paragraph_before_the_footer():
    raw = mime("text/plain; charset=us-ascii; format=flowed", b"a paragraph that flows ")
    (text,) = texts(distribution_copy(raw, HEADERS, "", "  indented\nFrom here\n> quoted"))
    assert text == "a paragraph that flows \n\n   indented\n From here\n > quoted\n"


def test_parts_without_headers_empty_parts_and_a_missing_close_delimiter():
    raw = mime('multipart/mixed; boundary="m"',
               b"preamble\r\n--m\r\n\r\nheaderless text\r\n--m\r\n--m\r\nContent-Type: image/gif"
               b"\r\n\r\nGIF")
    copy = distribution_copy(raw, HEADERS, "", FOOTER)
    assert texts(copy)[0] == "headerless text\n-- \nSHMA <list> & friends\n"
    assert copy.endswith(b"--m\r\n--m\r\nContent-Type: image/gif\r\n\r\nGIF")


def test_split_multipart_finds_parts_as_pythons_parser_does():
    body = (b"pre\r\n--b \t\r\nA: 1\r\n\r\none\r\n--bb\r\nnot a boundary\r\n--b\r\n\r\ntwo"
            b"\r\n--b--\r\nepilogue\r\n--b\r\nignored\r\n")
    mp = split_multipart(body, b"b")
    assert mp is not None and mp.closed
    assert [mp.part(i) for i in range(len(mp.parts))] == [
        b"A: 1\r\n\r\none\r\n--bb\r\nnot a boundary", b"\r\ntwo"]
    assert split_multipart(b"--b--\r\n--b\r\nx\r\n", b"b") is None  # closed before it opened
    assert split_multipart(b"no parts", b"b") is None


def test_raw_message_of_a_part_without_headers():
    part = RawMessage.parse(b"\r\nbody\r\n\r\nmore")
    assert part.fields == () and part.body == b"body\r\n\r\nmore"
    assert part.to_bytes() == b"\r\nbody\r\n\r\nmore"


def test_encoded_line_breaks_in_names_and_subjects_never_reach_a_header():
    raw = (b"From: =?utf-8?q?Eve=0D=0ABcc=3A_v=40example=2Eorg?= <eve@example.org>\r\n"
           b"Cc: =?utf-8?q?Bob=0AX-Injected=3A_1?= <bob@example.org>\r\n"
           b"Subject: =?utf-8?b?SGkNCkJjYzogdkBleGFtcGxlLm9yZw==?=\r\n\r\nhi\r\n")
    for sender in (None, SenderRewrite("Eve via SHMA", "shma@lists.example.org", "Cc")):
        copy = distribution_copy(raw, HEADERS, "[shma]", FOOTER, sender)
        head = copy.split(b"\r\n\r\n", 1)[0]
        names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
                 if line[:1] not in (b" ", b"\t")]
        assert b"bcc" not in names and b"x-injected" not in names
        assert names.count(b"subject") == 1 and names.count(b"from") == 1


def test_display_address_quotes_ascii_and_encodes_the_rest():
    assert display_address('Jane "JD" Doe via SHMA', "l@x.org") == (
        '"Jane \\"JD\\" Doe via SHMA" <l@x.org>')
    assert display_address("Jürgen via SHMA", "l@x.org").startswith("=?utf-8?")
    assert display_address("a\r\nBcc: v@x", "l@x.org") == '"a Bcc: v@x" <l@x.org>'


def test_the_append_footer_entry_point_keeps_a_plain_ascii_body_byte_for_byte():
    msg = RawMessage.parse(b"From: a@x\r\nSubject: s\r\n\r\nline one\r\nline two\r\n")
    result = append_footer(msg, "footer")
    assert result.body == b"line one\r\nline two\r\nfooter\r\n"
    assert append_footer(msg, "") == msg and append_footer(msg, " \n") == msg


def test_undeclared_charsets_are_read_from_html_meta_or_as_utf8_and_then_declared():
    html_part = mime("text/html", b'<meta charset="windows-1252"><body>Caf\xe9</body>')
    msg = parse(distribution_copy(html_part, HEADERS, "", "Grupo \u2014 SHMA"))
    assert msg.get_content_charset() == "windows-1252"
    assert msg.get_content() == '<meta charset="windows-1252"><body>Caf\u00e9' + (
        '<div class="listserv-footer">\r\nGrupo \u2014 SHMA\r\n</div>\r\n</body>')
    assert b"Grupo =97 SHMA" in distribution_copy(html_part, HEADERS, "", "Grupo \u2014 SHMA")
    plain = mime("text/plain", "Caf\u00e9\r\n".encode())
    msg = parse(distribution_copy(plain, HEADERS, "", FOOTER))
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content().replace("\r\n", "\n") == "Caf\u00e9\n-- \nSHMA <list> & friends\n"
