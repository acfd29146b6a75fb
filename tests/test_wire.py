"""The wire serializer (listserv/mail/wire.py): pure, no sockets (SPEC §3, "On the wire")."""

from __future__ import annotations

import base64
import logging
import re
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from listserv.mail.mime.copies import ListHeaders, SenderRewrite, distribution_copy
from listserv.mail.mime.raw import RawMessage
from listserv.mail.wire import MAX_LINE, message_bytes, to_wire

from .helpers import parse
from .smtp_sink import mime_defects, refusal
from .test_mime_fidelity import Serializer, trees

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
SENDER = "shma@lists.example.org"
HEAD = (b"From: Jane <jane@example.org>\r\nTo: shma@lists.example.org\r\n"
        b"Date: Mon, 04 May 2026 09:00:00 +0000\r\nMessage-ID: <p1@example.org>\r\n"
        b"MIME-Version: 1.0\r\nSubject: Hello\r\n")


MIME_HEADERS = ListHeaders(list_id="<shma.lists.example.org>", post=SENDER,
                           help="shma-request@lists.example.org",
                           subscribe="shma-join@lists.example.org", been_there=SENDER)


def wire(raw: bytes | EmailMessage, eightbit: bool = False) -> bytes:
    return to_wire(raw, sender=SENDER, now=NOW, eightbit=eightbit)


def head_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def text_of(part) -> str:
    """A part's text with its line ends as Python reads them from CRLF mail, as `\\n`."""
    return part.get_content().replace("\r\n", "\n")


def assert_wire_rules(data: bytes, eightbit: bool = False) -> None:
    """The invariants: what the strict sink checks, and what the serializer promises besides."""
    head = head_of(data)
    unfolded = re.sub(rb"\r\n(?=[ \t])", b"", head)
    # (the transport asks for SMTPUTF8 when the header is 8-bit and the relay offers it)
    utf8 = eightbit or not head.isascii()
    assert refusal(data, body_8bitmime=eightbit, smtputf8=utf8) is None, data[:300]
    assert b"\0" not in head
    assert not re.search(rb"^(Bcc|Resent-Bcc)[ \t]*:", head, re.IGNORECASE | re.MULTILINE)
    assert not re.search(rb"^From ", head, re.MULTILINE)
    for name in (b"Date", b"Message-ID", b"From", b"MIME-Version"):
        assert re.search(rb"^" + name + rb":[ \t]*\S", unfolded, re.IGNORECASE | re.MULTILINE)
    if not eightbit:
        assert body_of(data).isascii()
        for field in re.split(rb"\r\n(?![ \t])", head):
            # Only an internationalised address may stay 8-bit (it needs SMTPUTF8).
            assert field.isascii() or re.match(rb"(From|To|Cc|Reply-To|Sender):", field,
                                               re.IGNORECASE), field


# -- posts: bytes kept, only what breaks a rule is rewritten --------------------------------------


def test_a_clean_post_keeps_every_byte():
    post = HEAD + b"Content-Type: text/plain\r\n\r\nHello all.\r\n"
    assert wire(post) == post


def test_missing_headers_are_added_and_nothing_else_changes():
    post = b"Subject: bare\r\n\r\nbody\r\n"
    data = wire(post)
    assert data.endswith(post)
    msg = parse(data)
    assert msg["From"] == SENDER and msg["MIME-Version"] == "1.0"
    assert msg["Date"] == "Mon, 04 May 2026 09:30:00 +0000"
    assert re.fullmatch(r"<[a-z2-7]{24}@lists\.example\.org>", msg["Message-ID"])
    assert wire(post) != data  # a new Message-ID each time: unguessable


def test_an_empty_required_header_is_replaced():
    data = wire(b"From:\r\nDate: \r\nSubject: x\r\n\r\nbody\r\n")
    assert parse(data)["From"] == SENDER and parse(data)["Date"]
    assert data.count(b"From:") == 1 and data.count(b"Date:") == 1


def test_mixed_line_endings_become_crlf_and_smuggling_cannot_pass():
    post = HEAD + b"\r\nhello\r.\r\nMAIL FROM:<x@y>\nRCPT TO:<v@z>\r\r\nend"
    data = wire(post)
    assert body_of(data) == b"hello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<v@z>\r\n\r\nend\r\n"
    assert_wire_rules(data)


def test_a_bare_cr_or_nul_in_a_header_is_removed_never_a_line_break():
    post = (b"From: jane@example.org\r\nSubject: Notes\rReply-To: thief@example.com\r\n"
            b"X-Note: a\0b\r\nMessage-ID: <p@x>\r\nDate: Mon, 04 May 2026 09:00:00 +0000\r\n"
            b"\r\nbody\r\n")
    data = wire(post)
    assert b"Subject: NotesReply-To: thief@example.com\r\n" in data
    assert b"X-Note: ab\r\n" in data
    assert parse(data)["Reply-To"] is None


def test_bcc_and_mbox_from_lines_never_go_out():
    post = (b"From jane@example.org Mon May  4 09:00:00 2026\n" + HEAD
            + b"Bcc: secret@example.org\r\nResent-Bcc: x@y\r\n\r\nbody\r\n")
    data = wire(post)
    assert data == HEAD + b"\r\nbody\r\n"


def test_a_name_with_space_before_its_colon_starts_the_body_as_python_reads_it():
    # Python's parser (our guards, the DMARC rewrite) takes "Name :" for the body's first line,
    # so the wire must not make a header of it either.
    data = wire(HEAD + b"bcc : other@example.org\r\nFrom : CEO <ceo@bank.com>\r\n\r\nbody\r\n")
    assert head_of(data) == HEAD
    assert parse(data).get_all("From") == ["Jane <jane@example.org>"]


SMUGGLED = [
    b"From: Jane <jane@yahoo.com>\r\nTo: l@x.org\r\nSubject: hi\r\n\x00From: CEO <ceo@bank.com>\r\n"
    b"\x00Reply-To: evil@evil.org\r\n\r\nbody\r\n",
    b"From: Jane <jane@yahoo.com>\nSubject: hi\n\rFrom: ceo@bank.com\n\rReply-To: evil@evil.org\n",
    b"From: Jane <jane@yahoo.com>\r\nSubject: hi\r\n\r\x00From: ceo@bank.com\r\n\r\nbody\r\n",
]


@pytest.mark.parametrize("post", SMUGGLED)
def test_a_header_line_after_a_nul_or_cr_start_is_body_never_a_second_header(post):
    # Python's parser reads the header section up to the line that starts with NUL or CR: the
    # guards and the DMARC From rewrite see one From; the wire must send no other.
    copy = distribution_copy(post, MIME_HEADERS, "[shma]", "",
                             SenderRewrite("Jane via Shma", "shma@lists.example.org"))
    data = wire(copy)
    assert_wire_rules(data)
    msg = parse(data)
    assert msg.get_all("From") == ["Jane via Shma <shma@lists.example.org>"]
    assert msg.get_all("Reply-To") == ["Jane <jane@yahoo.com>"]
    assert b"evil" not in head_of(data) and b"ceo@bank.com" not in head_of(data)
    assert [RawMessage.parse(copy).names(), RawMessage.parse(data).names()] == [
        [name.lower() for name in parse(copy).keys()],
        [name.lower() for name in msg.keys()]]


def test_a_line_that_is_no_header_starts_the_body_as_readers_take_it():
    data = wire(b"Subject: x\r\nthis is no header\r\nFrom: late@example.org\r\n\r\nbody\r\n")
    msg = parse(data)
    assert msg["From"] == SENDER
    assert body_of(data) == b"this is no header\r\nFrom: late@example.org\r\n\r\nbody\r\n"


def test_a_long_header_is_folded_at_whitespace_and_a_long_word_encoded():
    refs = " ".join(f"<id{n}@example.org>" for n in range(120))
    long_word = "x" * 1500
    post = HEAD + f"References: {refs}\r\nX-Word: {long_word}\r\n\r\nbody\r\n".encode()
    data = wire(post)
    assert_wire_rules(data)
    msg = parse(data)
    assert msg["References"] == refs
    assert msg["X-Word"] == long_word


def test_a_long_line_is_reencoded_quoted_printable_never_cut():
    text = "word " * 400 + "end"
    post = HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text.encode() + b"\r\n"
    data = wire(post)
    assert_wire_rules(data)
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(msg) == text + "\n"


def test_8bit_text_is_quoted_printable_in_7bit_form_and_kept_in_8bit_form():
    body = "Ça va très bien, merci.\r\n".encode()
    post = (HEAD + b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
    seven = wire(post)
    assert_wire_rules(seven)
    assert parse(seven)["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(parse(seven)) == "Ça va très bien, merci.\n"
    assert wire(post, eightbit=True) == post


def test_undeclared_8bit_text_gets_a_charset():
    data = wire(HEAD + b"\r\n" + "Grüße\r\n".encode())
    assert text_of(parse(data)) == "Grüße\n"
    latin = wire(HEAD + b"\r\nGr\xfc\xdfe\r\n")
    assert parse(latin).get_content_charset() == "unknown-8bit"
    assert_wire_rules(latin)


def test_only_the_part_that_breaks_a_rule_is_reencoded():
    attachment = base64.encodebytes(bytes(range(256)) * 4).replace(b"\n", b"\r\n")
    post = (HEAD + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Olá\r\n".encode() +
            b"\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\n" + attachment + b"\r\n--b1--\r\nepilogue\r\n")
    data = wire(post)
    assert_wire_rules(data)
    assert attachment in data and b"preamble\r\n--b1\r\n" in data and data.endswith(
        b"--b1--\r\nepilogue\r\n")
    parts = list(parse(data).iter_parts())
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(parts[0]) == "Olá\n"
    assert mime_defects(data) == []


def test_binary_and_nul_parts_become_base64_or_quoted_printable():
    post = (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\xfe"
            b"\r\n--b\r\nContent-Type: text/plain\r\n\r\na\x00b\r\n--b--\r\n")
    data = wire(post, eightbit=True)
    assert_wire_rules(data, eightbit=True)
    binary, text = parse(data).iter_parts()
    assert binary["Content-Transfer-Encoding"] == "base64"
    assert binary.get_content() == b"\x00\x01\xff\xfe"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert b"a=00b" in data


def test_an_attached_message_is_made_7bit_inside_and_its_label_follows():
    inner = ("From: x@example.org\r\nSubject: Olá\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: 8bit\r\n\r\nAté logo\r\n").encode()
    post = (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
            b"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + inner + b"--b--\r\n")
    data = wire(post)
    assert_wire_rules(data)
    attached = list(parse(data).iter_parts())[1]
    assert attached["Content-Transfer-Encoding"] == "7bit"
    message = attached.get_content()
    assert message["Subject"] == "Olá" and text_of(message) == "Até logo"
    assert wire(post, eightbit=True) == post


def test_an_8bit_signed_part_is_reencoded_in_7bit_form_and_kept_in_8bit_form():
    signed = ("--s\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Transfer-Encoding: 8bit\r\n\r\nSigné\r\n--s\r\n"
              "Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n"
              "abc\r\n-----END PGP SIGNATURE-----\r\n--s--\r\n").encode()
    post = (HEAD + b'Content-Type: multipart/signed; boundary="s"; '
            b'protocol="application/pgp-signature"\r\n\r\n' + signed)
    assert wire(post, eightbit=True) == post
    seven = wire(post)
    assert_wire_rules(seven)
    assert b"Sign=C3=A9" in seven and b"-----BEGIN PGP SIGNATURE-----\r\nabc\r\n" in seven


def test_8bit_headers_are_encoded_in_7bit_form_except_international_addresses():
    post = ("From: José <josé@example.es>\r\nSubject: Réunion\r\nDate: Mon, 04 May 2026 "
            "09:00:00 +0000\r\nMessage-ID: <p@x>\r\nMIME-Version: 1.0\r\n\r\nbody\r\n").encode()
    data = wire(post)
    assert_wire_rules(data)
    assert b"Subject: =?utf-8?q?R=C3=A9union?=\r\n" in data
    assert "From: José <josé@example.es>\r\n".encode() in data
    assert parse(data)["Subject"] == "Réunion"
    assert wire(post, eightbit=True) == post


def test_an_8bit_display_name_or_garbage_in_an_address_field_is_encoded_in_7bit_form():
    post = ("From: José <jose@example.es>\r\nTo: Jösé\r\nCc: a@b.org, Zoë <zoe@b.org>\r\n"
            "Date: Mon, 04 May 2026 09:00:00 +0000\r\nMessage-ID: <p@x>\r\n"
            "MIME-Version: 1.0\r\n\r\nbody\r\n").encode()
    data = wire(post)
    assert_wire_rules(data)
    assert head_of(data).isascii()  # nothing here needs SMTPUTF8
    msg = parse(data)
    assert (msg["From"], msg["To"], msg["Cc"]) == ("José <jose@example.es>", "Jösé",
                                                   "a@b.org, Zoë <zoe@b.org>")


def test_an_international_address_in_an_attached_message_is_encoded_in_7bit_form():
    inner = ("From: José <josé@example.es>\r\nReply-To: Zoë <zoe@b.org>\r\n"
             "Subject: Olá\r\n\r\nhello\r\n").encode()
    post = (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n")
    data = wire(post)
    assert_wire_rules(data)
    assert data.isascii()  # no raw 8-bit inside the attachment: it is a 7-bit body
    message = list(parse(data).iter_parts())[0].get_content()
    assert message["Reply-To"] == "Zoë <zoe@b.org>" and message["Subject"] == "Olá"
    assert "josé@example.es" in str(message["From"])  # (as an encoded word: readable)
    assert wire(post, eightbit=True) == post  # 8-bit form keeps it
    assert wire(data) == data


def test_an_attached_message_with_a_header_past_repair_goes_whole_as_base64():
    inner = b"From: x@example.org\r\n" + b"X" * 1000 + ": Olá\r\n\r\nhello\r\n".encode()
    post = (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n")
    data = wire(post)
    assert_wire_rules(data)
    [part] = parse(data).iter_parts()
    assert part.get_content_type() == "application/octet-stream"
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == inner[:-2]  # (its last CRLF is the delimiter's)
    assert wire(data) == data


def test_a_header_past_repair_is_dropped_and_logged(caplog):
    post = HEAD + b"X" * 1000 + ": Olá\r\n\r\nbody\r\n".encode()
    with caplog.at_level(logging.DEBUG, logger="listserv.mail.wire"):
        data = wire(post)
    assert data == HEAD + b"\r\nbody\r\n"
    assert any("dropped" in record.getMessage() and "XXX" in record.getMessage()
               for record in caplog.records)


def test_a_preamble_that_breaks_a_rule_is_dropped():
    post = (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"p" * 1200 + b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"
            + "épilogue\r\n".encode())
    data = wire(post)
    assert_wire_rules(data)
    assert body_of(data) == (b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n")


# -- mail we compose --------------------------------------------------------------------------


def notice(text: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "shma-request@lists.example.org"
    msg["To"] = "ana@example.net"
    msg["Subject"] = "Merci de confirmer : inscription à la liste"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    return msg


def test_a_composed_notice_is_crlf_and_7bit_or_8bit_as_the_relay_takes():
    msg = notice("Pour confirmer, répondez à ce message.\n" + "é" * 1200 + "\n")
    seven = wire(msg)
    assert_wire_rules(seven)
    assert mime_defects(seven) == []
    short = notice("Pour confirmer, répondez à ce message.\n")
    eight = wire(short, eightbit=True)
    assert_wire_rules(eight, eightbit=True)
    assert b"Content-Transfer-Encoding: 8bit" in eight
    assert "répondez à ce message.\r\n".encode() in eight
    assert mime_defects(eight) == []
    # A line too long for 8-bit stays quoted-printable even then.
    long = wire(msg, eightbit=True)
    assert b"Content-Transfer-Encoding: quoted-printable" in long
    assert_wire_rules(long, eightbit=True)


def test_a_notice_to_an_international_address_keeps_the_address():
    msg = notice("Pour confirmer, répondez à ce message.\n")
    msg.replace_header("To", "José <josé@example.es>")
    data = wire(msg)
    assert "To: José <josé@example.es>\r\n".encode() in data  # never an encoded word
    assert b"Subject: Merci de confirmer : inscription =?utf-8?q?=C3=A0?= la" in data  # 7-bit
    assert_wire_rules(data)
    assert mime_defects(data, smtputf8=True) == []


def test_a_distributed_copy_of_a_composed_reminder_is_clean():
    msg = notice("Rappel : réunion jeudi.\n")
    msg.add_attachment(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", maintype="text",
                       subtype="calendar", cte="base64", filename="m.ics")
    copy = distribution_copy(message_bytes(msg), MIME_HEADERS, "[shma]", "Pied de page — shma")
    data = wire(copy)
    assert_wire_rules(data)
    assert mime_defects(data) == []


# -- anything at all: the invariants hold ----------------------------------------------------------

_LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r"])
_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"From ", b"From: a@b", b"Bcc: x@y", b"Subject: ", b"Date: x",
                     b"Message-ID: <m@x>", b"MIME-Version: 1.0", b"\0", b"\r", b"\n", b".",
                     b"Content-Transfer-Encoding: 8bit", b"Content-Transfer-Encoding: binary",
                     b"Content-Transfer-Encoding: base64", b"Content-Type: message/rfc822",
                     b'Content-Type: multipart/mixed; boundary="b"', b"--b", b"--b--",
                     b"Content-Type: multipart/digest; boundary=b", b" folded", b"\t",
                     "é".encode(), b"\xff", b"x" * 1100, b"=?utf-8?q?=C3=A9?="]),
    _LINE_ENDS,
)
_MESSAGES = st.lists(_PIECES, max_size=60).map(b"".join)


_EMPTY_PARTS = [
    b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n--B--',
    b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n'
    b"\r\n--B--\r\n",
    b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n\x00\r\n--B--\r\n",
    b'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\n--B\n'
    b"X-Empty: yes\n--B--\n",
]


@pytest.mark.parametrize("raw", _EMPTY_PARTS)
@pytest.mark.parametrize("eightbit", [False, True])
def test_a_part_with_an_empty_body_keeps_its_empty_line_and_gains_none(raw, eightbit):
    data = wire(raw, eightbit)
    assert wire(data, eightbit) == data
    parts = list(parse(data).iter_parts())
    assert all(part.get_payload() == "" for part in parts)
    assert mime_defects(data) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_MESSAGES, eightbit=st.booleans())
@example(raw=_EMPTY_PARTS[0], eightbit=False)
@example(raw=_EMPTY_PARTS[2], eightbit=False)
@example(raw=_EMPTY_PARTS[3], eightbit=True)
def test_arbitrary_bytes_and_line_endings_always_leave_by_the_wire_rules(raw, eightbit):
    data = wire(raw, eightbit)
    assert_wire_rules(data, eightbit)
    assert wire(data, eightbit) == data  # what fits the wire is left as it is


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=3000), eightbit=st.booleans())
def test_any_composed_text_leaves_clean(text, eightbit):
    msg = EmailMessage()
    msg["From"] = "shma-owner@lists.example.org"
    msg["Subject"] = "Notice"
    msg["Auto-Submitted"] = "auto-generated"
    safe = text.replace("\r", "").replace("\x00", "")
    plain = safe.isascii() and all(len(line) < MAX_LINE for line in safe.splitlines())
    msg.set_content(safe, charset="utf-8", cte="7bit" if plain else "quoted-printable")
    data = wire(msg, eightbit)
    assert_wire_rules(data, eightbit)
    assert mime_defects(data) == []
    assert text_of(parse(data)) == text_of(parse(message_bytes(msg)))


def crlf_only(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees(), crlf=st.booleans(), eightbit=st.booleans())
def test_copies_of_generated_mime_trees_keep_every_part_that_fits(tree, crlf, eightbit):
    eol = b"\r\n" if crlf else b"\n"
    writer = Serializer(eol)
    top = (b"From: Jane Doe <jane@example.org>" + eol + b"Subject: generated" + eol
           + b"MIME-Version: 1.0" + eol)
    copy = distribution_copy(writer.entity(tree, top), MIME_HEADERS, "[shma]",
                             "shma -- shma@lists.example.org")
    data = wire(copy, eightbit)
    assert_wire_rules(data, eightbit)
    assert wire(data, eightbit) == data
    for _node, leaf in writer.leaves.values():
        kept = crlf_only(leaf)
        # (a leaf at the top is its body alone, which may share its part with the footer)
        fits = b"\0" not in kept and not re.search(rb"[^\r\n]{999}", kept) and (
            eightbit or kept.isascii())
        # Kept means kept whole: the leaf's bytes followed by its closing delimiter (a part
        # the footer went into starts with the same bytes but goes on with the footer).
        whole = leaf + eol + b"--" in copy or copy.rstrip(b"\r\n").endswith(leaf)
        if b"X-Leaf:" in leaf and whole and fits:
            assert kept in data  # a part that fits keeps its bytes
