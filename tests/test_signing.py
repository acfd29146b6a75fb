"""DKIM signing and ARC sealing of outgoing mail (SPEC §3 "Signing", §7 `[dkim]`; issue 18).

The list's key comes from `listserv dkim keygen`, its record is published on the loopback DNS
server (tests/dns_stub.py), and what reaches the strict sink is checked with dkimpy's own
verifiers, as a receiving provider would.
"""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import datetime, time, timedelta
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from dkim.crypto import parse_pem_private_key
from dkim.util import parse_tag_value

from cli import main
from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.errors import ConfigError
from listserv.mail import signing
from listserv.mail.message import parse
from listserv.mail.signing import dkim_headers
from listserv.posting.distribute import arc_authserv
from listserv.store.models.core import MailingList

from .dkim_keys import dkim_record_of, new_dkim_key
from .helpers import LIST, lmtp_send, make_message, wait_until, write_config

JANE = "jane@example.org"
BOB = "bob@example.net"
ANA = "ana@example.net"
REQUEST = "shma-request@lists.example.org"
LIST_KEY = "s2027._domainkey.lists.example.org"


def keygen(config: Path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["--config", str(config), "dkim", "keygen", *args,
                                       "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


@pytest.fixture
def list_key(tmp_path: Path, db_url: str, sink, dns_zone) -> dict:
    """`listserv dkim keygen` for the list's domain, the file [dkim] names, its record
    published."""
    path = write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port)
    with path.open("a") as config:
        config.write('[dkim]\nselector = "s2027"\nprivate_key_file = "keys/lists.pem"\n')
    made = keygen(path, "lists.example.org")
    dns_zone.records[made["name"]] = ["".join(made["strings"])]
    return made


@pytest.fixture
def config_path(list_key: dict, tmp_path: Path) -> Path:
    return tmp_path / "listserv.toml"


@pytest.fixture(scope="module")
def author_key() -> bytes:
    return new_dkim_key()


@pytest.fixture
def jane_signs(author_key: bytes, dns_zone):
    """Jane's domain publishes its key (and, unless told, no DMARC policy)."""
    dns_zone.records["s1._domainkey.example.org"] = [dkim_record_of(author_key).decode()]

    def sign(raw: bytes) -> bytes:
        return dkim.sign(raw, b"s1", b"example.org", author_key,
                         canonicalize=(b"relaxed", b"relaxed"),
                         include_headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                          b"mime-version", b"content-type"]) + raw

    return sign


def lookup(dns_zone):
    """dkimpy's dnsfunc over the stub's records."""

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        records = dns_zone.records.get(name.decode().rstrip(".").lower())
        return "".join(records[0]).encode() if records else None

    return dnsfunc


def mail_about(sink, address: str, words: str) -> bytes:
    """The bytes of the first mail to `address` whose Subject has `words`, once it came."""
    def found():
        return [d.data for d in sink.messages_for(address)
                if words in str(parse(d.data)["Subject"])]
    sink.wait_for(lambda s: found(), description=f"a mail to {address} about {words!r}")
    return found()[0]


def signature_tags(data: bytes) -> dict[bytes, bytes]:
    value = str(parse(data)["DKIM-Signature"])
    return parse_tag_value(value.encode())


def verified_list_signature(data: bytes, dns_zone) -> dkim.DKIM:
    """The topmost signature checked as a receiver would; returns the checker (what it
    signed)."""
    checker = dkim.DKIM(data)
    assert checker.verify(idx=0, dnsfunc=lookup(dns_zone)), data[:2000]
    tags = signature_tags(data)
    assert (tags[b"d"], tags[b"s"], tags[b"c"]) == (b"lists.example.org", b"s2027",
                                                   b"relaxed/relaxed")
    return checker


def signed_value(checker: dkim.DKIM, name: bytes) -> str:
    [value] = [v for k, v in checker.signed_headers if k.lower() == name]
    return " ".join(value.decode().split())


# -- keys and settings --------------------------------------------------------------------------


def test_keygen_writes_a_private_2048_bit_key_and_the_record_in_strings_of_255(list_key,
                                                                                tmp_path):
    key_file = Path(list_key["key_file"])
    assert key_file == tmp_path / "keys" / "lists.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert list_key["name"] == LIST_KEY and list_key["configured"] is True
    assert all(len(text) <= 255 for text in list_key["strings"]) and len(list_key["strings"]) == 2
    record = "".join(list_key["strings"])
    assert record.startswith("v=DKIM1; k=rsa; p=")
    public = dkim.crypto.parse_public_key(__import__("base64").b64decode(record.split("p=")[1]))
    assert public["modulus"].bit_length() == 2048


def test_keygen_never_replaces_a_key_and_prints_the_zone_line(list_key, tmp_path):
    config = tmp_path / "listserv.toml"
    again = CliRunner().invoke(main, ["--config", str(config), "dkim", "keygen",
                                      "lists.example.org"])
    assert again.exit_code != 0 and "exists" in again.output
    other = CliRunner().invoke(main, ["--config", str(config), "dkim", "keygen", "other.org",
                                      "--selector", "s1", "--key-file", str(tmp_path / "o.pem")])
    assert other.exit_code == 0, other.output
    assert 's1._domainkey.other.org. IN TXT (\n  "v=DKIM1; k=rsa; p=' in other.output
    assert 'selector = "s1"' in other.output  # not configured yet: it says how


def test_a_key_file_others_can_read_stops_the_daemon_with_one_line(list_key, tmp_path):
    key_file = Path(list_key["key_file"])
    key_file.chmod(0o640)
    settings = load_settings(tmp_path / "listserv.toml")
    with pytest.raises(ConfigError, match=r"dkim\.private_key_file: .* readable by group or "
                                          r"others \(mode 0640\); make it private: chmod 600"):
        Daemon(settings).run(install_signals=False)


def test_per_domain_keys_override_the_default_and_domains_limit_signing(tmp_path):
    settings = load_settings(None, dkim={
        "selector": "s1", "private_key_file": "k.pem", "domains": ["Lists.Example.org"],
        "keys": {"other.example": {"selector": "s2", "private_key_file": "o.pem"}}})
    dkim_settings = settings.dkim
    assert dkim_settings.key_for("lists.example.org").selector == "s1"
    assert dkim_settings.key_for("elsewhere.example") is None
    other = dkim_settings.key_for("other.example")
    assert (other.selector, other.private_key_file.name) == ("s2", "o.pem")
    with pytest.raises(ConfigError, match="dkim.private_key_file: must name the key file"):
        load_settings(None, dkim={"selector": "s1"})
    with pytest.raises(ConfigError, match="unknown key 'dkim.keys.other.example.secret'"):
        load_settings(None, dkim={"keys": {"other.example": {"secret": "x"}}})


def test_the_signature_covers_the_required_headers_and_the_mime_ones_present():
    data = (b"From: a@x.org\r\nTo: b@y.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain\r\nList-Unsubscribe: <mailto:l@x.org>\r\n\r\nbody\r\n")
    names = dkim_headers(data)
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"list-id",
                 b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version",
                 b"content-type"):
        assert name in names
    assert b"content-transfer-encoding" not in names and b"cc" not in names


def test_openssl_signs_exactly_the_bytes_dkimpy_would(author_key):
    key = parse_pem_private_key(author_key)
    for data in (b"", b"a header and a body", b"x" * 10_000):
        digest = dkim.HashThrough(hashlib.sha256(data))
        assert signing._openssl_sign(digest, key) == signing._PURE_SIGN(
            dkim.HashThrough(hashlib.sha256(data)), key)


# -- what reaches the members -------------------------------------------------------------------


@pytest.mark.both_backends
def test_a_personalised_copy_is_signed_over_its_own_list_unsubscribe_and_sealed(
        cli, shma, daemon, sink, dns_zone, jane_signs):
    cli("members", "add", LIST, JANE, "--no-welcome")
    cli("members", "add", LIST, BOB, "--no-welcome")
    post = jane_signs(make_message(JANE, LIST, "Signed plans", "See you on Thursday.\n"))
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], post)
    copy = mail_about(sink, BOB, "Signed plans")
    checker = verified_list_signature(copy, dns_zone)
    unsubscribe = str(parse(copy)["List-Unsubscribe"])
    assert "shma-leave+" in unsubscribe
    assert signed_value(checker, b"list-unsubscribe") == unsubscribe
    signed = parse_tag_value(str(parse(copy)["DKIM-Signature"]).encode())[b"h"]
    assert b"list-unsubscribe-post" in signed and b"list-id" in signed
    # Jane's copy carries her own token, under a signature of its own.
    jane_copy = mail_about(sink, JANE, "Signed plans")
    jane_checker = verified_list_signature(jane_copy, dns_zone)
    assert signed_value(jane_checker, b"list-unsubscribe") != unsubscribe
    # The ARC set: first instance, valid, and it saw Jane's signature pass.
    cv, results, reason = dkim.arc_verify(copy, dnsfunc=lookup(dns_zone))
    assert cv == dkim.CV_Pass, reason
    aar = str(parse(copy)["ARC-Authentication-Results"])
    assert aar.startswith("i=1; lists.example.org")
    assert "dkim=pass header.d=example.org header.s=s1" in " ".join(aar.split())
    seal = parse_tag_value(str(parse(copy)["ARC-Seal"]).encode())
    assert (seal[b"i"], seal[b"cv"]) == (b"1", b"none")
    # The order on the wire: the DKIM signature on top, the ARC set under the copy's own header.
    names = [line.split(b":")[0] for line in copy.split(b"\r\n\r\n")[0].split(b"\r\n")
             if line and line[:1] not in b" \t"]
    assert names[:5] == [b"DKIM-Signature", b"ARC-Seal", b"ARC-Message-Signature",
                         b"ARC-Authentication-Results", b"List-Unsubscribe"]


def test_a_batched_copy_is_signed_once_for_all_its_recipients(cli, shma, daemon, sink,
                                                              dns_zone):
    cli("lists", "set", LIST, "personalize", "false")
    for member in (JANE, BOB, ANA):
        cli("members", "add", LIST, member, "--no-welcome")
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], make_message(JANE, LIST, "Batched news"))
    mail_about(sink, BOB, "Batched news")
    [delivery] = [d for d in sink.messages_for(BOB) if b"Batched news" in d.data]
    assert {BOB, ANA} <= set(delivery.rcpt_tos)
    checker = verified_list_signature(delivery.data, dns_zone)
    assert signed_value(checker, b"list-unsubscribe") == "<mailto:shma-leave@lists.example.org>"
    # Unsigned post: the ARC set records that, and still validates.
    assert dkim.arc_verify(delivery.data, dnsfunc=lookup(dns_zone))[0] == dkim.CV_Pass
    assert "dkim=none" in str(parse(delivery.data)["ARC-Authentication-Results"])


def test_a_confirmation_is_signed_by_the_list(shma, daemon, sink, dns_zone):
    lmtp_send(daemon.ports["lmtp"], ANA, [REQUEST],
              make_message(ANA, REQUEST, "subscribe", "subscribe\n"))
    confirmation = mail_about(sink, ANA, "confirm")
    verified_list_signature(confirmation, dns_zone)
    # Mail we composed has no post behind it: no ARC set.
    assert parse(confirmation)["ARC-Seal"] is None


def test_a_digest_is_signed_by_the_list_for_each_member(cli, shma, daemon, sink, dns_zone,
                                                       clock):
    cli("members", "add", LIST, JANE, "--no-welcome")
    cli("members", "add", LIST, ANA, "--no-welcome")
    cli("members", "set", LIST, ANA, "--delivery", "digest")
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST],
              make_message(JANE, LIST, "Picnic plans", "Bring a blanket.\n"))
    mail_about(sink, JANE, "Picnic plans")  # distributed: the digest now holds it
    now = clock.now()
    clock.advance(datetime.combine(now.date() + timedelta(days=1), time(0, 1),
                                   tzinfo=now.tzinfo) - now)  # past digest.send_at (00:00)
    daemon.run_scheduler()
    digest = mail_about(sink, ANA, "Digest")
    checker = verified_list_signature(digest, dns_zone)
    # her own List-Unsubscribe is under the signature (a digest is personalised too)
    assert "shma-leave+" in signed_value(checker, b"list-unsubscribe")


def test_a_post_that_arrives_sealed_gets_the_next_instance_and_the_chain_holds(
        cli, shma, daemon, sink, dns_zone, jane_signs, author_key):
    cli("members", "add", LIST, BOB, "--no-welcome")
    cli("members", "add", LIST, JANE, "--no-welcome")
    dns_zone.records["arc._domainkey.forwarder.example"] = [
        dkim_record_of(author_key).decode()]
    post = jane_signs(make_message(JANE, LIST, "Forwarded plans", "Via a forwarder.\n"))
    results = b"Authentication-Results: forwarder.example; dkim=pass header.d=example.org\r\n"
    arc_set = dkim.arc_sign(results + post, b"arc", b"forwarder.example", author_key,
                            b"forwarder.example",
                            include_headers=[b"from", b"to", b"subject", b"date"])
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], b"".join(arc_set) + post)
    copy = mail_about(sink, BOB, "Forwarded plans")
    cv, found, reason = dkim.arc_verify(copy, dnsfunc=lookup(dns_zone))
    assert cv == dkim.CV_Pass, reason
    seal = parse_tag_value(str(parse(copy)["ARC-Seal"]).encode())
    assert (seal[b"i"], seal[b"cv"]) == (b"2", b"pass")
    assert len(found) == 2


# -- DMARC: a no-modify list keeps an author's From when her signature survives ----------------


@pytest.mark.parametrize("no_modify,kept", [(True, True), (False, False)])
def test_a_no_modify_list_keeps_a_reject_domains_from_when_her_signature_survives(
        cli, shma, daemon, sink, dns_zone, jane_signs, no_modify, kept):
    dns_zone.records["_dmarc.example.org"] = ["v=DMARC1; p=reject"]
    if no_modify:
        cli("lists", "set", LIST, "subject_prefix", "")
        cli("lists", "set", LIST, "footer", "")
    cli("members", "add", LIST, BOB, "--no-welcome")
    cli("members", "add", LIST, JANE, "--no-welcome")
    post = jane_signs(make_message(JANE, LIST, "Unchanged plans", "Nothing added.\n"))
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], post)
    copy = mail_about(sink, BOB, "Unchanged plans")
    if kept:
        assert parse(copy)["From"].addresses[0].addr_spec == JANE
        # Jane's own signature verifies on the copy as it arrived (DMARC passes).
        assert dkim.DKIM(copy).verify(idx=1, dnsfunc=lookup(dns_zone))
    else:
        assert parse(copy)["From"].addresses[0].addr_spec == LIST


def test_an_unsigned_post_to_a_no_modify_list_is_still_munged(cli, shma, daemon, sink,
                                                              dns_zone):
    dns_zone.records["_dmarc.example.org"] = ["v=DMARC1; p=reject"]
    cli("lists", "set", LIST, "subject_prefix", "")
    cli("lists", "set", LIST, "footer", "")
    cli("members", "add", LIST, BOB, "--no-welcome")
    cli("members", "add", LIST, JANE, "--no-welcome")
    message = make_message(JANE, LIST, "Unsigned plans")
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], message)
    copy = mail_about(sink, BOB, "Unsigned plans")
    assert parse(copy)["From"].addresses[0].addr_spec == LIST


def test_a_held_post_approved_by_the_chair_is_sealed_with_its_checks_and_the_trusted_mtas(
        tmp_path, cli, shma, daemon, sink, dns_zone, jane_signs):
    """A non-member's post waits for the chair; approved from the command line, its copies'
    ARC set records her DKIM pass and the trusted MTA's SPF result."""
    with (tmp_path / "listserv.toml").open("a") as config:  # read by the CLI, not the daemon
        config.write('[intake]\ntrusted_authserv_id = "mx.lists.example.org"\n')
    cli("members", "add", LIST, BOB, "--no-welcome")
    post = jane_signs(make_message(JANE, LIST, "Held plans", "From a non-member.\n"))
    upstream = (b"Authentication-Results: mx.lists.example.org; spf=pass "
                b"smtp.mailfrom=example.org; dkim=fail header.d=example.org\r\n")
    lmtp_send(daemon.ports["lmtp"], JANE, [LIST], upstream + post)
    [held] = wait_until(lambda: json.loads(cli("held", "list", "--json").output),
                        what="the post held")
    cli("held", "approve", str(held["id"]))
    copy = mail_about(sink, BOB, "Held plans")
    assert dkim.arc_verify(copy, dnsfunc=lookup(dns_zone))[0] == dkim.CV_Pass
    aar = " ".join(str(parse(copy)["ARC-Authentication-Results"]).split())
    assert "dkim=pass header.d=example.org" in aar  # checked here, not the MTA's "fail"
    assert "spf=pass smtp.mailfrom=example.org" in aar
    assert "dkim=fail" not in aar


def test_without_arc_the_post_is_not_checked_for_a_seal():
    ml = MailingList(name="shma", domain="lists.example.org")
    signed = load_settings(None, intake={"trusted_authserv_id": "mx.example.org"},
                           dkim={"selector": "s1", "private_key_file": "k.pem"})
    assert arc_authserv(signed, ml) == "mx.example.org"
    assert arc_authserv(load_settings(None), ml) is None
    no_arc = load_settings(None, dkim={"selector": "s1", "private_key_file": "k.pem",
                                       "arc": False})
    assert arc_authserv(no_arc, ml) is None
