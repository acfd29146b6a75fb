"""Real clients' mail through distribution: a footer in every MIME shape, bytes kept (SPEC §3).

Every fixture in tests/data/clients/ is distributed, as a pure function and end to end (LMTP,
the daemon, an SMTP sink). Its copy must parse without defects, show the footer exactly once in
each alternative a client would display, and keep every attachment, inline image and signed
part byte-identical; signatures are verified with openssl, gpg and dkimpy after the trip.
"""

from __future__ import annotations

import base64
import csv
import html
import itertools
import quopri
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listserv.mail.mime.copies import ListHeaders, distribution_copy
from listserv.mail.mime.parts import split_multipart
from listserv.mail.mime.raw import RawMessage
from listserv.mail.mime.sender_rewrite import SenderRewrite

from .dkim_keys import dkim_record_of, new_dkim_key
from .helpers import LIST, lmtp_send, parse

CLIENTS = Path(__file__).parent / "data" / "clients"
FIXTURES = sorted(path.name for path in CLIENTS.glob("*.eml"))
SIGNED = {"thunderbird-smime-signed.eml", "thunderbird-pgp-mime-signed.eml"}

HEADERS = ListHeaders(
    list_id="<shma.lists.example.org>", post=LIST, help="shma-request@lists.example.org",
    subscribe="shma-join@lists.example.org", been_there=LIST,
)
# HTML-special characters and a non-ASCII one, so escaping and re-encoding are exercised.
MARKER = "shma mailing list -- shma@lists.example.org"
HELP_LINE = "Help & commands: <shma-request@lists.example.org> — «subject: help»"
FOOTER = f"_______________________________________________\n{MARKER}\n{HELP_LINE}\n"
# The footer the daemon adds by default (templates/emails/footer.txt).
DEFAULT_MARKER = "shma mailing list -- shma@lists.example.org"

READER = "reader@example.net"


def fixture(name: str) -> bytes:
    return (CLIENTS / name).read_bytes()


# -- what a reader sees --------------------------------------------------------------------------


def _shown(part: Message) -> bool:
    return part.get_content_disposition() != "attachment" and not part.get_filename()


def html_text(markup: str) -> str:
    """What an HTML part reads as: tags dropped, entities resolved."""
    without_style = re.sub(r"(?is)<(style|head)\b.*?</\1\s*>", "", markup)
    return html.unescape(re.sub(r"<[^>]*>", "", without_style))


def renderings(part: EmailMessage) -> list[str]:
    """The texts a client may display for `part`: one per choice among alternatives."""
    ctype = part.get_content_type()
    if part.is_multipart() and ctype != "message/rfc822":
        children = [c for c in part.iter_parts() if isinstance(c, EmailMessage)]
        subtype = part.get_content_subtype()
        if ctype == "multipart/encrypted":
            return [""]
        if subtype == "alternative":
            options = [r for c in children if _shown(c) and (
                c.get_content_type() in ("text/plain", "text/html")
                or c.get_content_maintype() == "multipart") for r in renderings(c)]
            return options or [""]
        if subtype == "related":
            return renderings(children[0]) if children else [""]
        combos = [""]
        for child in children:
            options = renderings(child) if _shown(child) else [""]
            combos = [a + "\n" + b for a, b in itertools.product(combos, options)]
        return combos
    if ctype == "message/rfc822" or not _shown(part):
        return [""]
    if ctype == "text/plain":
        return [str(part.get_content())]
    if ctype == "text/html":
        return [html_text(str(part.get_content()))]
    return [""]


def assert_footer_once(copy: bytes, lines: tuple[str, ...]) -> None:
    for rendering in renderings(parse(copy)):
        text = rendering.replace("\r\n", "\n")
        for line in lines:
            assert text.count(line) == 1, (line, text)


def opaque_leaves(data: bytes) -> list[tuple[object, ...]]:
    """Every part the footer must not touch, as (headers, raw body): attachments, images,
    forwarded messages, and everything inside signed or encrypted parts."""
    found: list[tuple[object, ...]] = []

    def walk(part: Message, protected: bool) -> None:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload(0)
            found.append((tuple(part.items()), inner.as_bytes()))
            return
        if part.is_multipart():
            for child in part.get_payload():
                walk(child, protected or ctype in ("multipart/signed", "multipart/encrypted"))
            return
        if protected or ctype not in ("text/plain", "text/html") or not _shown(part):
            found.append((tuple(part.items()), part.get_payload()))

    walk(message_from_bytes(data, policy=policy.compat32), False)
    return found


def assert_parses_cleanly(copy: bytes) -> None:
    msg = parse(copy)
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
        if part.get_content_maintype() == "text":
            part.get_content()


def first_part(data: bytes) -> bytes:
    """The first part of a (top-level) multipart message, exactly as it is in the bytes."""
    msg = RawMessage.parse(data)
    content_type = msg.value("Content-Type") or ""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary is not None, content_type
    mp = split_multipart(msg.body, boundary.group(1).encode())
    assert mp is not None
    return mp.part(0)


def original_entity(data: bytes) -> bytes:
    """A message's MIME entity as a wrapped part carries it: its Content-* fields and body."""
    msg = RawMessage.parse(data)
    fields = [f for f in msg.fields if f.lower().startswith(b"content-")]
    return b"".join(fields) + msg.eol + msg.body


def check_copy(name: str, original: bytes, copy: bytes, lines: tuple[str, ...]) -> None:
    """Everything acceptance point 1 (and 2 for the signed ones) asks of one copy."""
    assert_parses_cleanly(copy)
    assert_footer_once(copy, lines)
    assert opaque_leaves(copy) == opaque_leaves(original)
    if name in SIGNED or "encrypted" in name:
        assert first_part(copy) == original_entity(original)


# -- pure: every fixture, every shape ------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_each_client_shape_gets_the_footer_once_and_keeps_its_parts(name):
    original = fixture(name)
    copy = distribution_copy(original, HEADERS, "[shma]", FOOTER)
    check_copy(name, original, copy, (MARKER, HELP_LINE))
    assert parse(copy)["Message-ID"] == parse(original)["Message-ID"]


@pytest.mark.parametrize("name", FIXTURES)
def test_a_no_modify_list_changes_no_byte_of_any_client_shape(name):
    original = fixture(name)
    copy = distribution_copy(original, HEADERS, "", "")
    assert copy.endswith(original)
    assert b"\r\nList-Id: <shma.lists.example.org>\r\n" in b"\r\n" + copy[: -len(original)]


def test_latin1_quoted_printable_keeps_its_charset_encoding_and_bytes():
    original = fixture("claws-latin1-qp.eml")
    copy = parse(distribution_copy(original, HEADERS, "[shma]", "-- \nLe groupe SHMA, été 2026"))
    assert copy.get_content_charset() == "iso-8859-1"
    assert copy["Content-Transfer-Encoding"] == "quoted-printable"
    body = RawMessage.parse(distribution_copy(original, HEADERS, "", "footer")).body
    assert body.startswith(RawMessage.parse(original).body)
    text = copy.get_content().replace("\r\n", "\n")
    assert text.endswith("H\u00e9l\u00e8ne\n-- \nLe groupe SHMA, \u00e9t\u00e9 2026\n")


def test_gmail_base64_utf8_alternatives_stay_base64_utf8():
    copy = parse(distribution_copy(fixture("gmail-alternative.eml"), HEADERS, "", FOOTER))
    for part in copy.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "base64"
    plain, rich = copy.iter_parts()
    assert plain.get_content().startswith("Olá a todos,")
    assert HELP_LINE in plain.get_content()
    # Gmail's HTML has no <body>: the footer closes it, escaped.
    assert html.escape(HELP_LINE) in rich.get_content()


def test_outlook_html_gets_an_escaped_footer_before_the_end_of_its_body():
    copy = parse(distribution_copy(fixture("outlook-html-inline-images.eml"), HEADERS, "",
                                   FOOTER))
    markup = next(p for p in copy.walk() if p.get_content_type() == "text/html").get_content()
    assert HELP_LINE in html_text(markup)  # escaped (and as character references in ASCII)
    assert markup.index("&lt;shma-request@lists.example.org&gt;") < markup.index("</body>")
    assert markup.count("</body>") == 1


def unflow(text: str) -> list[str]:
    """RFC 3676 reading of format=flowed text (DelSp=no): soft breaks joined."""
    lines, current = [], ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(" "):
            line = line[1:]
        if line.endswith(" ") and line != "-- ":
            current += line
            continue
        lines.append(current + line)
        current = ""
    return lines


def test_format_flowed_footer_lines_stay_lines_of_their_own():
    copy = parse(distribution_copy(fixture("thunderbird-format-flowed.eml"), HEADERS, "[shma]",
                                   FOOTER))
    assert copy.get_param("format") == "flowed"
    lines = unflow(copy.get_content())
    assert lines[-4:] == ["_______________________________________________", MARKER, HELP_LINE,
                          ""]
    assert lines[2].startswith("I've been thinking") and lines[2].endswith("anyone presents.")


def test_forwarded_message_rfc822_is_untouched_and_the_footer_goes_in_the_note():
    original = fixture("thunderbird-forward-attached.eml")
    copy = distribution_copy(original, HEADERS, "[shma]", FOOTER)
    inner = original[original.index(b"MIME-Version: 1.0\r\nFrom: Food Bank"):]
    inner = inner[: inner.index(b"\r\n--------------0aBcDeFgHiJkLmNoPqRsTuVw--")]
    assert inner in copy
    note = next(parse(copy).iter_parts())
    assert note.get_content().startswith("Forwarding this") and MARKER in note.get_content()


def test_signed_and_encrypted_messages_are_wrapped_with_the_signed_part_untouched():
    for name in ("thunderbird-smime-signed.eml", "thunderbird-pgp-mime-signed.eml",
                 "thunderbird-pgp-mime-encrypted.eml"):
        original = fixture(name)
        copy = distribution_copy(original, HEADERS, "[shma]", FOOTER)
        msg = parse(copy)
        assert msg.get_content_type() == "multipart/mixed"
        wrapped, footer = msg.iter_parts()
        assert wrapped.get_content_type() == parse(original).get_content_type()
        assert footer.get_content_type() == "text/plain" and MARKER in footer.get_content()
        assert first_part(copy) == original_entity(original)


# -- signatures still verify --------------------------------------------------------------------


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, check=False, timeout=60, **kwargs)


def smime_verifies(entity: bytes, ca: Path, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    path = tmp / "signed-part.eml"
    path.write_bytes(entity)
    return run("openssl", "smime", "-verify", "-in", str(path), "-CAfile", str(ca),
               "-purpose", "any", "-out", str(tmp / "signed-content.txt"))


def pgp_verifies(entity: bytes, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    """gpg --verify of a multipart/signed entity's first part against its signature part."""
    mp = split_multipart(RawMessage.parse(entity).body,
                         re.search(rb'boundary="([^"]+)"', entity).group(1))
    assert mp is not None
    tmp = tmp / "pgp"
    home = tmp / "gnupg"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (tmp / "signed.bin").write_bytes(mp.part(0))
    (tmp / "sig.asc").write_bytes(RawMessage.parse(mp.part(1)).body)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    imported = run("gpg", "--batch", "--import", str(CLIENTS / "pgp-test-public-key.asc"),
                   env=env)
    assert imported.returncode == 0, imported.stderr
    return run("gpg", "--batch", "--verify", str(tmp / "sig.asc"), str(tmp / "signed.bin"),
               env=env)


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="no gpg")


def make_smime_post(tmp: Path) -> tuple[bytes, Path]:
    """A Thunderbird-shaped S/MIME-signed post, signed now by a certificate made now."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    made = run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-keyout", str(key),
               "-out", str(cert), "-subj", "/CN=Jane Doe/emailAddress=jane@example.org")
    assert made.returncode == 0, made.stderr
    inner = (b"Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
             b"Content-Language: en-US\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
             b"Signed today, with a certificate made today.\r\n\r\nJane\r\n")
    (tmp / "inner.txt").write_bytes(inner)
    signed = run("openssl", "smime", "-sign", "-binary", "-md", "sha256", "-in",
                 str(tmp / "inner.txt"), "-signer", str(cert), "-inkey", str(key),
                 "-outform", "DER", "-out", str(tmp / "smime.p7s"))
    assert signed.returncode == 0, signed.stderr
    signature = base64.encodebytes((tmp / "smime.p7s").read_bytes()).replace(b"\n", b"\r\n")
    boundary = b"------------ms090807060504030201000908"
    post = (
        b"Message-ID: <fresh-smime@example.org>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0100\r\n"
        b"MIME-Version: 1.0\r\nUser-Agent: Mozilla Thunderbird\r\n"
        b"To: shma@lists.example.org\r\nFrom: Jane Doe <jane@example.org>\r\n"
        b"Subject: Signed today\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b' micalg=sha-256; boundary="' + boundary + b'"\r\n\r\n'
        b"This is a cryptographically signed message in MIME format.\r\n\r\n"
        b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"\r\n"
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n'
        b"Content-Description: S/MIME Cryptographic Signature\r\n\r\n"
        + signature + b"\r\n--" + boundary + b"--\r\n\r\n"
    )
    return post, cert


@needs_openssl
def test_smime_signature_made_now_verifies_after_distribution(tmp_path):
    post, cert = make_smime_post(tmp_path)
    assert smime_verifies(original_entity(post), cert, tmp_path).returncode == 0
    copy = distribution_copy(post, HEADERS, "[shma]", FOOTER)
    result = smime_verifies(first_part(copy), cert, tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"Verification successful" in result.stderr
    # The check is real: one changed byte in the signed text fails it.
    tampered = first_part(copy).replace(b"made today", b"made todaY")
    assert smime_verifies(tampered, cert, tmp_path).returncode != 0


def dkim_signed_post(key_pem: bytes, body: bytes) -> bytes:
    message = (b"Date: Wed, 9 Dec 2026 07:55:31 +0000\r\nFrom: Lee Chen <lee@example.org>\r\n"
               b"To: shma@lists.example.org\r\nSubject: Carpool, signed now\r\n"
               b"Message-ID: <dkim-now@mail.example.org>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body)
    # As Gmail signs: the usual headers, From oversigned.
    signature = dkim.sign(message, b"s2026", b"example.org", key_pem,
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[b"mime-version", b"from", b"date", b"message-id",
                                           b"subject", b"to", b"from"])
    return signature + message


def fixture_dkim_record() -> bytes:
    text = (CLIENTS / "dkim-test-record.txt").read_text()
    return next(line for line in text.splitlines() if line.startswith("v=")).encode()


# -- end to end: LMTP in, the daemon, the SMTP sink out ------------------------------------------


def author(data: bytes) -> str:
    return str(parse(data)["From"].addresses[0].addr_spec).lower()


@pytest.fixture
def posters(cli, shma, tmp_path) -> list[str]:
    """Every fixture's author and a reader, all members."""
    emails = sorted({author(fixture(name)) for name in FIXTURES} | {READER})
    with (tmp_path / "members.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email"])
        writer.writerows([e] for e in emails)
    cli("members", "import", shma, str(tmp_path / "members.csv"))
    return emails


def copies_for_reader(sink, count: int) -> Iterator[bytes]:
    sink.wait_for(lambda s: len(s.messages_for(READER)) >= count, timeout=30,
                  description=f"{count} copies for {READER}")
    for delivery in sink.messages_for(READER):
        yield delivery.data


@needs_openssl
@needs_gpg
def test_every_client_fixture_survives_the_daemon(posters, daemon, sink, tmp_path):
    fresh, cert = make_smime_post(tmp_path)
    posts = {name: fixture(name) for name in FIXTURES} | {"fresh-smime": fresh}
    for post in posts.values():
        assert lmtp_send(daemon.ports["lmtp"], author(post), [LIST], post) == {}

    by_id = {str(parse(copy)["Message-ID"]): copy
             for copy in copies_for_reader(sink, len(posts))}
    assert len(by_id) == len(posts)
    for name, original in posts.items():
        copy = by_id[str(parse(original)["Message-ID"])]
        check_copy(name, original, copy, (DEFAULT_MARKER,))
        assert parse(copy)["Subject"].startswith("[shma] ")
    smime = smime_verifies(first_part(by_id["<fresh-smime@example.org>"]), cert, tmp_path)
    assert smime.returncode == 0, smime.stderr
    committed = by_id[str(parse(fixture("thunderbird-smime-signed.eml"))["Message-ID"])]
    smime = smime_verifies(first_part(committed), CLIENTS / "smime-test-cert.pem", tmp_path)
    assert smime.returncode == 0, smime.stderr
    pgp_copy = by_id[str(parse(fixture("thunderbird-pgp-mime-signed.eml"))["Message-ID"])]
    pgp = pgp_verifies(first_part(pgp_copy), tmp_path)
    assert pgp.returncode == 0, pgp.stderr
    assert b"Good signature" in pgp.stderr


def test_dkim_signed_posts_still_verify_after_a_no_modify_list(posters, cli, daemon, sink,
                                                               tmp_path):
    cli("lists", "set", LIST, "footer", "")
    cli("lists", "set", LIST, "subject_prefix", "")
    key = new_dkim_key()
    fresh = dkim_signed_post(key, b"Three seats free on the 19th.\r\n")
    records = {b"s2026._domainkey.example.org.": dkim_record_of(key),
               b"mail2026._domainkey.example.org.": fixture_dkim_record()}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name, b"")

    committed = fixture("dkim-signed.eml")
    for post in (fresh, committed):
        assert dkim.verify(post, dnsfunc=dnsfunc)
        assert lmtp_send(daemon.ports["lmtp"], author(post), [LIST], post) == {}
    copies = list(copies_for_reader(sink, 2))
    assert len(copies) == 2
    for copy in copies:
        assert dkim.verify(copy, dnsfunc=dnsfunc), copy[:400]
        original = fresh if b"<dkim-now@" in copy else committed
        assert copy.endswith(original)  # no byte of the post changed
        assert parse(copy)["List-Id"] == "<shma.lists.example.org>"
    # The check is real: a footer (a changed body) breaks it.
    assert not dkim.verify(distribution_copy(fresh, HEADERS, "", "footer"), dnsfunc=dnsfunc)


# -- property: generated MIME trees --------------------------------------------------------------


TEXT = st.text(st.characters(blacklist_characters="=-", blacklist_categories=("Cs",)),
               max_size=120)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, object]:
    return {
        "type": draw(st.sampled_from(["text/plain", "text/plain", "text/html", "image/png",
                                      "application/octet-stream", "message/rfc822"])),
        "charset": draw(st.sampled_from([None, "utf-8", "iso-8859-1", "us-ascii",
                                         "x-unknown", "utf-16"])),
        "cte": draw(st.sampled_from([None, "7bit", "8bit", "quoted-printable", "base64"])),
        "disposition": draw(st.sampled_from([None, "inline", "attachment"])),
        "flowed": draw(st.booleans()),
        "text": draw(TEXT),
    }


def trees() -> st.SearchStrategy[dict[str, object]]:
    return st.recursive(
        leaves(),
        lambda children: st.fixed_dictionaries({
            "type": st.sampled_from(["multipart/mixed", "multipart/alternative",
                                     "multipart/related", "multipart/signed",
                                     "multipart/encrypted", "multipart/digest",
                                     "multipart/report"]),
            "parts": st.lists(children, max_size=4),
            "preamble": TEXT, "epilogue": TEXT,
            "padding": st.booleans(), "closed": st.booleans(),
        }),
        max_leaves=10,
    )


class Serializer:
    """Writes a generated tree as bytes, remembering each leaf's exact bytes."""

    def __init__(self, eol: bytes) -> None:
        self.eol, self.count = eol, 0
        # leaf id -> (the leaf, its exact bytes: headers and body, or the body alone at the top,
        # where a wrapper may take its Content-* fields)
        self.leaves: dict[str, tuple[dict[str, object], bytes]] = {}

    def entity(self, node: dict[str, object], top_fields: bytes = b"") -> bytes:
        eol = self.eol
        self.count += 1
        ident = f"n{self.count}"
        if "parts" in node:
            boundary = f"=_b{self.count}_"
            head = f'Content-Type: {node["type"]}; boundary="{boundary}"'.encode() + eol
            body = str(node["preamble"]).encode() + eol if node["preamble"] else b""
            for part in node["parts"]:  # type: ignore[attr-defined]
                body += b"--" + boundary.encode() + (b" " if node["padding"] else b"") + eol
                body += self.entity(part) + eol
            if node["closed"]:
                body += b"--" + boundary.encode() + b"--" + eol
                body += str(node["epilogue"]).encode() if node["epilogue"] else b""
            return top_fields + head + eol + body
        text = str(node["text"])
        charset = node["charset"]
        data = text.encode("utf-8" if charset in (None, "x-unknown") else str(charset),
                           "replace")
        content_type = str(node["type"])
        if content_type == "message/rfc822":
            data = b"Subject: inner" + eol + eol + data
        params = f"; charset={charset}" if charset else ""
        if node["flowed"] and content_type == "text/plain":
            params += "; format=flowed"
        head = f"Content-Type: {content_type}{params}".encode() + eol
        cte = node["cte"]
        if content_type == "message/rfc822":
            cte = None
        if cte:
            head += f"Content-Transfer-Encoding: {cte}".encode() + eol
        if node["disposition"]:
            head += f"Content-Disposition: {node['disposition']}".encode() + eol
        head += f"X-Leaf: {ident}".encode() + eol
        if cte == "base64":
            body = base64.encodebytes(data).replace(b"\n", eol)
        elif cte == "quoted-printable":
            body = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", eol)
        else:
            body = data
        raw = head + eol + body
        self.leaves[ident] = (node, body if top_fields else raw)
        return top_fields + raw


def may_carry_footer(node: dict[str, object]) -> bool:
    return node["type"] in ("text/plain", "text/html")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees(), crlf=st.booleans(), mode=st.sampled_from(["footer", "munge", "wrap"]))
def test_generated_mime_trees_survive_the_transform(tree, crlf, mode):
    eol = b"\r\n" if crlf else b"\n"
    writer = Serializer(eol)
    top = (b"From: Jane Doe <jane@example.org>" + eol + b"To: shma@lists.example.org" + eol
           + b"Subject: generated" + eol + b"MIME-Version: 1.0" + eol)
    raw = writer.entity(tree, top)
    sender = None if mode == "footer" else SenderRewrite("Jane Doe via SHMA", LIST,
                                                         wrap=mode == "wrap")

    copy = distribution_copy(raw, HEADERS, "[shma]", FOOTER, sender)

    parsed = message_from_bytes(copy, policy=policy.default)
    seen = {str(p["X-Leaf"]): p for p in parsed.walk() if p["X-Leaf"] is not None}
    if mode == "wrap":
        assert raw in copy  # the whole post, untouched, as message/rfc822
        return
    before = {str(p["X-Leaf"]) for p in message_from_bytes(raw, policy=policy.default).walk()
              if p["X-Leaf"] is not None}
    assert set(seen) == before
    for ident, (node, leaf_bytes) in writer.leaves.items():
        if leaf_bytes in copy:
            continue
        # Only a text part the footer went into may differ, and it must now carry it.
        assert may_carry_footer(node), (ident, node)
        part = seen[ident]
        text = part.get_payload(decode=True).decode(part.get_content_charset() or "ascii",
                                                    "replace")
        if part.get_content_type() == "text/html":
            text = html_text(text)
        assert MARKER in text


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_make_the_transform_raise(data):
    for sender in (None, SenderRewrite("X via SHMA", LIST), SenderRewrite("X", LIST, wrap=True)):
        copy = distribution_copy(data, HEADERS, "[shma]", FOOTER, sender)
        message_from_bytes(copy, policy=policy.default)


def test_nesting_past_the_limit_is_not_entered():
    depth = 500
    body = b""
    for level in reversed(range(depth)):
        inner = body or b"Content-Type: text/plain\r\n\r\ndeep text\r\n"
        body = (f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'
                .encode() + inner + f"\r\n--b{level}--\r\n".encode())
    raw = b"From: a@example.org\r\nSubject: deep\r\n" + body
    started = time.monotonic()
    copy = distribution_copy(raw, HEADERS, "", FOOTER)
    assert time.monotonic() - started < 2
    # Past the limit nothing is entered: the deepest levels are kept as they are, and the
    # footer gets a part of its own in the last multipart/mixed looked at.
    deep = body[body.index(b'Content-Type: multipart/mixed; boundary="b10"'):
                body.index(b"\r\n--b9--")]
    assert deep in copy
    assert copy.count(MARKER.encode()) == 1


DAMAGE = st.one_of(st.binary(max_size=6), st.sampled_from([
    b"\r\n", b"\n", b"--", b"\r\n\r\n", b'"', b";", b"=", b"\xff\xfe", b"\r\n--",
    b"Content-Type: multipart/mixed; boundary=x\r\n", b"charset=utf-16",
    b"Content-Transfer-Encoding: base64\r\n", b"=?utf-8?q?=0D=0A?=",
]))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(FIXTURES),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 12), DAMAGE),
                      max_size=5))
def test_damaged_client_mail_never_makes_the_transform_raise(name, edits):
    data = bytearray(fixture(name))
    for at, cut, insert in edits:
        at %= len(data) + 1
        data[at : at + cut] = insert
    for sender in (None, SenderRewrite("X via SHMA", LIST, "Cc"),
                   SenderRewrite("X via SHMA", LIST, wrap=True)):
        copy = distribution_copy(bytes(data), HEADERS, "[shma]", FOOTER, sender)
        for part in message_from_bytes(copy, policy=policy.default).walk():
            part.get_content_type()


def test_boundary_lines_are_found_only_at_line_starts() -> None:
    body = (b"preamble x--BND not a boundary\r\n--BND\r\nfirst, with --BND inside\r\n"
            b"--BNDX is not one either\r\n--BND  \r\nsecond\r\n--BND--\r\nepilogue\r\n")
    mp = split_multipart(body, b"BND")
    assert mp is not None and mp.closed
    assert [body[p.start:p.end] for p in mp.parts] == [
        b"first, with --BND inside\r\n--BNDX is not one either", b"second"]
    assert split_multipart(b"x--BND\r\n", b"BND") is None
