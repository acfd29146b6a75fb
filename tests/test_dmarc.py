"""DMARC mitigation (SPEC §3): policy lookup, munge, always, wrap, none; no header injection.

DNS is stubbed twice over: pure tests give `DmarcResolver` a `TxtLookup` of their own, and the
rest ask the real dnspython resolver, pointed at the loopback DNS server of tests/dns_stub.py.
"""

from __future__ import annotations

import dataclasses
import time
from email import message_from_bytes, policy

import pytest

from listserv.mail.dns import DnsFailure, TxtAnswer
from listserv.mail.mime.copies import ListHeaders, distribution_copy, owner_copy
from listserv.mail.mime.raw import RawMessage
from listserv.mail.mime.sender_rewrite import SenderRewrite
from listserv.mail.render import Renderer
from listserv.posting.dmarc import (
    DmarcResolver,
    Policy,
    default_lookup,
    make_resolver,
    mitigation,
    parse_record,
    set_default_lookup,
    walk_names,
)

from .helpers import LIST, lmtp_send, make_message, parse

HEADERS = ListHeaders(
    list_id="<shma.lists.example.org>", post=LIST, help="shma-request@lists.example.org",
    subscribe="shma-join@lists.example.org", been_there=LIST,
)
MUNGE = SenderRewrite("Jane Doe via SHMA", LIST)
POST = (b"From: Jane Doe <jane@reject.example>\r\nTo: shma@lists.example.org\r\n"
        b"Cc: Bob <bob@example.net>\r\nSubject: Plans\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n"
        b"Message-ID: <plans@reject.example>\r\nDKIM-Signature: v=1; d=reject.example; b=x\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee you.\r\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Zone:
    """A TxtLookup from a dict, counting its queries."""

    def __init__(self, records: dict[str, list[str] | Exception], ttl: float = 300) -> None:
        self.records, self.ttl, self.queries = records, ttl, []

    def __call__(self, name: str, seconds: float) -> TxtAnswer:
        self.queries.append(name)
        found = self.records.get(name, [])
        if isinstance(found, Exception):
            raise found
        return TxtAnswer(tuple(found), self.ttl)


# -- the policy ---------------------------------------------------------------------------------


def test_records_are_read_as_dmarc_only_when_they_say_so():
    assert parse_record("v=DMARC1; p=reject; rua=mailto:d@example.org") == {
        "v": "DMARC1", "p": "reject", "rua": "mailto:d@example.org"}
    assert parse_record("v=spf1 -all") is None
    assert parse_record("v=DMARC1") == {"v": "DMARC1"}


def test_the_tree_walk_goes_up_to_two_labels_and_jumps_long_names():
    assert walk_names("a.b.mail.example.org") == [
        "a.b.mail.example.org", "b.mail.example.org", "mail.example.org", "example.org"]
    assert walk_names("Example.ORG.") == ["example.org"]
    assert walk_names("1.2.3.4.5.6.7.8.9.example.org") == [
        "1.2.3.4.5.6.7.8.9.example.org", "5.6.7.8.9.example.org", "6.7.8.9.example.org",
        "7.8.9.example.org", "8.9.example.org", "9.example.org", "example.org"]


@pytest.mark.parametrize("records,domain,expected", [
    ({"_dmarc.example.org": ["v=DMARC1; p=reject"]}, "example.org", Policy.REJECT),
    ({"_dmarc.example.org": ["v=DMARC1; p=quarantine; pct=10"]}, "example.org",
     Policy.QUARANTINE),
    ({"_dmarc.example.org": ["v=DMARC1; p=none"]}, "example.org", Policy.NONE),
    ({}, "example.org", Policy.NONE),
    # A parent's record: its subdomain policy, else its policy.
    ({"_dmarc.example.org": ["v=DMARC1; p=reject; sp=none"]}, "mail.example.org", Policy.NONE),
    ({"_dmarc.example.org": ["v=DMARC1; p=reject"]}, "mail.example.org", Policy.REJECT),
    ({"_dmarc.mail.example.org": ["v=DMARC1; p=none"],
      "_dmarc.example.org": ["v=DMARC1; p=reject"]}, "mail.example.org", Policy.NONE),
    # Other TXT records are ignored; two DMARC records mean none applies; a bad p= is none.
    ({"_dmarc.example.org": ["v=spf1 -all", "v=DMARC1; p=reject"]}, "example.org",
     Policy.REJECT),
    ({"_dmarc.example.org": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}, "example.org",
     Policy.NONE),
    ({"_dmarc.example.org": ["v=DMARC1; p=bogus"]}, "example.org", Policy.NONE),
])
def test_policy_of_a_domain(records, domain, expected):
    assert DmarcResolver(Zone(records))(domain) is expected


def test_a_failed_lookup_is_unknown_and_protective():
    zone = Zone({"_dmarc.example.org": DnsFailure("SERVFAIL")})
    assert DmarcResolver(zone)("example.org") is Policy.UNKNOWN
    assert Policy.UNKNOWN.protective and Policy.REJECT.protective
    assert Policy.QUARANTINE.protective and not Policy.NONE.protective


def test_answers_are_cached_for_their_ttl_at_most_an_hour_and_failures_for_a_minute():
    clock = FakeClock()
    zone = Zone({"_dmarc.example.org": ["v=DMARC1; p=reject"]}, ttl=86400)
    lookup = DmarcResolver(zone, clock=clock)
    assert lookup("example.org") is Policy.REJECT
    assert lookup("example.org") is Policy.REJECT
    assert zone.queries == ["_dmarc.example.org"]
    clock.now += 3599
    lookup("example.org")
    assert len(zone.queries) == 1
    clock.now += 2
    lookup("example.org")
    assert len(zone.queries) == 2

    zone.records["_dmarc.example.org"] = DnsFailure("timeout")
    clock.now += 3601
    assert lookup("example.org") is Policy.UNKNOWN
    zone.records["_dmarc.example.org"] = ["v=DMARC1; p=none"]
    clock.now += 30
    assert lookup("example.org") is Policy.UNKNOWN  # the failure is remembered a while
    clock.now += 31
    assert lookup("example.org") is Policy.NONE


def test_the_whole_walk_shares_one_time_budget():
    clock = FakeClock()

    def slow(name: str, seconds: float) -> TxtAnswer:
        clock.now += 1.5  # each query takes 1.5 s of a 2 s budget
        return TxtAnswer((), 300)

    assert DmarcResolver(slow, timeout=2, clock=clock)("a.b.example.org") is Policy.UNKNOWN


# -- the real resolver against the loopback DNS server -------------------------------------------


def test_dnspython_lookups_against_a_stubbed_server(dns_zone):
    dns_zone.records["_dmarc.reject.example"] = ["v=DMARC1; p=reject"]
    dns_zone.records["_dmarc.none.example"] = ["v=DMARC1; p=none"]
    dns_zone.servfail.add("_dmarc.broken.example")
    lookup = make_resolver(dns_zone.address, timeout=1)
    assert lookup("reject.example") is Policy.REJECT
    assert lookup("sub.reject.example") is Policy.REJECT
    assert lookup("none.example") is Policy.NONE
    assert lookup("nothing.example") is Policy.NONE
    assert lookup("broken.example") is Policy.UNKNOWN
    assert "_dmarc.sub.reject.example" in dns_zone.queries


def test_in_tests_the_process_wide_lookup_asks_only_the_loopback_server(dns_zone):
    dns_zone.records["_dmarc.quarantine.example"] = ["v=DMARC1; p=quarantine"]
    assert default_lookup()("quarantine.example") is Policy.QUARANTINE
    assert default_lookup() is default_lookup()  # one cache for the process
    assert dns_zone.queries == ["_dmarc.quarantine.example"]


def test_a_lookup_timeout_is_unknown_within_the_timeout(dns_zone):
    dns_zone.silent.add("_dmarc.slow.example")
    lookup = make_resolver(dns_zone.address, timeout=0.3)
    started = time.monotonic()
    assert lookup("slow.example") is Policy.UNKNOWN
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    assert lookup("slow.example") is Policy.UNKNOWN  # cached: no second wait
    assert time.monotonic() - started < 0.1


def test_no_resolver_configuration_means_every_lookup_fails_safe(monkeypatch):
    import dns.resolver

    def unconfigured(*args: object, **kwargs: object) -> None:
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    monkeypatch.setattr(dns.resolver, "Resolver", unconfigured)
    assert make_resolver("")("example.org") is Policy.UNKNOWN


@pytest.mark.parametrize("mode,policy,expected", [
    ("munge", Policy.REJECT, "munge"), ("munge", Policy.QUARANTINE, "munge"),
    ("munge", Policy.UNKNOWN, "munge"), ("munge", Policy.NONE, None),
    ("wrap", Policy.REJECT, "wrap"), ("wrap", Policy.NONE, None),
    ("always", Policy.NONE, "munge"), ("none", Policy.REJECT, None),
])
def test_mitigation_by_mode_and_policy(mode, policy, expected):
    assert mitigation(mode, "example.org", lambda domain: policy) == expected


# -- the copies ----------------------------------------------------------------------------------


def test_munged_copy_is_from_the_list_with_the_author_in_reply_to():
    copy = distribution_copy(POST, HEADERS, "[shma]", "", MUNGE)
    msg = parse(copy)
    assert copy.count(b"\r\nFrom: ") + copy.startswith(b"From: ") == 1
    assert b'From: "Jane Doe via SHMA" <shma@lists.example.org>\r\n' in copy
    assert msg["From"].addresses[0].display_name == "Jane Doe via SHMA"
    assert msg["Reply-To"] == "Jane Doe <jane@reject.example>"
    assert msg["Cc"] == "Bob <bob@example.net>"
    assert msg["Message-ID"] == "<plans@reject.example>"
    assert copy.endswith(b"\r\n\r\nSee you.\r\n")


def test_an_authors_own_reply_to_is_kept():
    post = POST.replace(b"Subject:", b"Reply-To: home@example.net\r\nSubject:")
    msg = parse(distribution_copy(post, HEADERS, "", "", MUNGE))
    assert msg.get_all("Reply-To") == ["home@example.net"]


def test_with_replies_to_the_list_the_author_goes_to_cc():
    headers = dataclasses.replace(HEADERS, reply_to=LIST)
    sender = dataclasses.replace(MUNGE, author_to="Cc")
    msg = parse(distribution_copy(POST, headers, "", "", sender))
    assert msg["Reply-To"] == LIST
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["bob@example.net",
                                                          "jane@reject.example"]


def test_wrap_sends_the_original_bytes_as_a_message_rfc822_attachment():
    sender = dataclasses.replace(MUNGE, wrap=True)
    copy = distribution_copy(POST, HEADERS, "[shma]", "-- \nSHMA footer", sender)
    msg = parse(copy)
    assert msg["From"].addresses[0].addr_spec == LIST
    assert msg["Reply-To"] == "Jane Doe <jane@reject.example>"
    assert msg["Subject"] == "[shma] Plans"
    assert msg["Message-ID"] == "<plans@reject.example>"
    assert msg["List-Id"] == "<shma.lists.example.org>"
    attached, footer = msg.iter_parts()
    assert attached.get_content_type() == "message/rfc822"
    assert POST in copy  # the post, byte for byte (its DKIM signature intact inside)
    assert attached.get_content()["From"] == "Jane Doe <jane@reject.example>"
    assert "SHMA footer" in footer.get_content()


def test_wrap_drops_what_the_list_never_passes_on_from_the_inner_message():
    post = POST.replace(b"Subject:", b"Approved: hunter2\r\nSubject:")
    copy = distribution_copy(post, HEADERS, "", "", dataclasses.replace(MUNGE, wrap=True))
    assert b"hunter2" not in copy
    assert POST in copy


def test_owner_copies_are_munged_and_wrapped_the_same_way():
    owner = "shma-owner@lists.example.org"
    munged = parse(owner_copy(POST, owner, SenderRewrite("Jane Doe via SHMA", owner)))
    assert munged["From"].addresses[0].addr_spec == owner
    assert munged["Reply-To"] == "Jane Doe <jane@reject.example>"
    assert munged["X-BeenThere"] == owner
    wrapped = owner_copy(POST, owner, SenderRewrite("Jane Doe via SHMA", owner, wrap=True))
    assert POST in wrapped
    assert parse(wrapped).get_content_type() == "multipart/mixed"


@pytest.mark.parametrize("from_line", [
    b"From: =?utf-8?q?Jane=0D=0ABcc=3A_victim=40example=2Eorg?= <jane@reject.example>",
    b"From: =?utf-8?b?SmFuZQ0KQmNjOiB2aWN0aW1AZXhhbXBsZS5vcmc=?= <jane@reject.example>",
    b'From: "Jane\\\r\n Bcc: victim@example.org" <jane@reject.example>',
])
@pytest.mark.parametrize("wrap", [False, True])
def test_encoded_line_breaks_in_a_name_or_subject_add_no_header(from_line, wrap):
    post = POST.replace(b"From: Jane Doe <jane@reject.example>", from_line).replace(
        b"Subject: Plans", b"Subject: =?utf-8?q?Plans=0D=0AX-Injected=3A_yes?=")
    name_from_template = "Jane\r\nBcc: victim@example.org via SHMA"
    for sender in (dataclasses.replace(MUNGE, wrap=wrap),
                   SenderRewrite(" ".join(name_from_template.split()), LIST, "Cc", wrap)):
        for copy in (distribution_copy(post, HEADERS, "[shma]", "footer", sender),
                     owner_copy(post, "shma-owner@lists.example.org", sender)):
            outer = message_from_bytes(copy.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n",
                                       policy=policy.compat32)
            assert outer["Bcc"] is None and outer["X-Injected"] is None
            assert len(outer.get_all("From")) == 1


# -- through the daemon -------------------------------------------------------------------------


@pytest.fixture
def members(cli, shma, tmp_path):
    roster = tmp_path / "members.csv"
    roster.write_text("email,name\njane@reject.example,Jane Doe\njoe@none.example,Joe\n"
                      "sue@slow.example,Sue\nreader@example.net,Reader\n")
    cli("members", "import", shma, str(roster))


def reader_copies(sink, count):
    """The reader's copies by Message-ID, once `count` different posts have arrived (a copy
    the tests' 2 s delivery lease sends twice on a loaded machine counts once)."""
    sink.wait_for(lambda s: len({str(d.message["Message-ID"])
                                 for d in s.messages_for("reader@example.net")}) >= count,
                  timeout=20)
    return {str(d.message["Message-ID"]): d.message
            for d in sink.messages_for("reader@example.net")}


def raw_from(msg) -> str | None:
    """The From field exactly as written (Python's str() would drop the quotes)."""
    return RawMessage.parse(msg.as_bytes()).value("From")


def test_posts_are_munged_by_their_authors_domain_policy(members, dns_zone, daemon, sink):
    dns_zone.records["_dmarc.reject.example"] = ["v=DMARC1; p=reject"]
    dns_zone.records["_dmarc.none.example"] = ["v=DMARC1; p=none"]
    dns_zone.silent.add("_dmarc.slow.example")  # the lookup times out
    # The daemon's own resolver (dnspython, the loopback server), with a timeout well inside
    # the test config's 2 s delivery lease: the router waits for DNS inside its unit of work.
    set_default_lookup(make_resolver(dns_zone.address, timeout=0.5))
    posts = {
        "jane@reject.example": make_message("Jane Doe <jane@reject.example>", subject="A"),
        "joe@none.example": make_message("Joe <joe@none.example>", subject="B"),
        "sue@slow.example": make_message("Sue Smith <sue@slow.example>", subject="C"),
    }
    for sender, post in posts.items():
        assert lmtp_send(daemon.ports["lmtp"], sender, [LIST], post) == {}
    copies = reader_copies(sink, 3)

    jane = copies[str(parse(posts["jane@reject.example"])["Message-ID"])]
    assert raw_from(jane) == '"Jane Doe via SHMA" <shma@lists.example.org>'
    assert jane["Reply-To"] == "Jane Doe <jane@reject.example>"
    joe = copies[str(parse(posts["joe@none.example"])["Message-ID"])]
    assert str(joe["From"]) == "Joe <joe@none.example>"
    assert joe["Reply-To"] is None
    sue = copies[str(parse(posts["sue@slow.example"])["Message-ID"])]
    assert raw_from(sue) == '"Sue Smith via SHMA" <shma@lists.example.org>'
    assert sue["Reply-To"] == "Sue Smith <sue@slow.example>"
    assert {"_dmarc.reject.example", "_dmarc.none.example",
            "_dmarc.slow.example"} <= set(dns_zone.queries)


def test_list_settings_choose_always_wrap_none_and_cc(cli, members, dns_zone, daemon, sink):
    dns_zone.records["_dmarc.reject.example"] = ["v=DMARC1; p=reject"]
    post = make_message("Joe <joe@none.example>", subject="Always")
    cli("lists", "set", LIST, "dmarc_mitigation", "always")
    cli("lists", "set", LIST, "reply_to", "list")
    lmtp_send(daemon.ports["lmtp"], "joe@none.example", [LIST], post)
    copy = reader_copies(sink, 1)[str(parse(post)["Message-ID"])]
    assert raw_from(copy) == '"Joe via SHMA" <shma@lists.example.org>'
    assert copy["Reply-To"] == LIST
    assert copy["Cc"] == "Joe <joe@none.example>"

    cli("lists", "set", LIST, "dmarc_mitigation", "wrap")
    wrapped = make_message("Jane Doe <jane@reject.example>", subject="Wrapped")
    lmtp_send(daemon.ports["lmtp"], "jane@reject.example", [LIST], wrapped)
    copy = reader_copies(sink, 2)[str(parse(wrapped)["Message-ID"])]
    assert copy["From"].addresses[0].addr_spec == LIST
    assert copy.get_content_type() == "multipart/mixed"
    attached = next(copy.iter_parts())
    assert attached.get_content_type() == "message/rfc822"
    assert wrapped in sink.messages_for("reader@example.net")[-1].data

    cli("lists", "set", LIST, "dmarc_mitigation", "none")
    untouched = make_message("Jane Doe <jane@reject.example>", subject="None")
    lmtp_send(daemon.ports["lmtp"], "jane@reject.example", [LIST], untouched)
    copy = reader_copies(sink, 3)[str(parse(untouched)["Message-ID"])]
    assert str(copy["From"]) == "Jane Doe <jane@reject.example>"


def test_owner_mail_from_a_reject_domain_is_forwarded_munged(shma, dns_zone, daemon, sink):
    dns_zone.records["_dmarc.reject.example"] = ["v=DMARC1; p=reject"]
    owner = "shma-owner@lists.example.org"
    mail = make_message("Jane Doe <jane@reject.example>", to=owner, subject="For the chair")
    assert lmtp_send(daemon.ports["lmtp"], "jane@reject.example", [owner], mail) == {}
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), timeout=20)
    forward = sink.messages_for("chair@example.org")[0].message
    assert raw_from(forward) == f'"Jane Doe via SHMA" <{owner}>'
    assert forward["Reply-To"] == "Jane Doe <jane@reject.example>"
    assert forward["X-BeenThere"] == owner


def test_injected_line_breaks_reach_no_copy_or_notice(cli, members, dns_zone, daemon, sink):
    dns_zone.records["_dmarc.reject.example"] = ["v=DMARC1; p=reject"]
    evil_subject = "=?utf-8?q?Hi=0D=0ABcc=3A_victim=40example=2Eorg?="
    evil_name = b"=?utf-8?q?Jane=0D=0AX-Injected=3A_yes?="

    def post(sender: bytes, address: str, to: str = LIST) -> bytes:
        return (b"From: " + sender + b" <" + address.encode() + b">\r\nTo: " + to.encode()
                + b"\r\nSubject: " + evil_subject.encode() + b"\r\nMessage-ID: <evil-"
                + address.encode() + b">\r\n\r\nhello\r\n")

    # A member's post (munged: the name goes into From), a non-member's (held: notice to the
    # chair), and mail for the owners (forwarded, munged).
    lmtp_send(daemon.ports["lmtp"], "jane@reject.example", [LIST],
              post(evil_name, "jane@reject.example"))
    lmtp_send(daemon.ports["lmtp"], "mallory@reject.example", [LIST],
              post(evil_name, "mallory@reject.example"))
    lmtp_send(daemon.ports["lmtp"], "mallory@reject.example", ["shma-owner@lists.example.org"],
              post(evil_name, "mallory@reject.example", "shma-owner@lists.example.org"))
    sink.wait_for(lambda s: len(s.messages_for("chair@example.org")) >= 2
                  and s.messages_for("reader@example.net"), timeout=20)
    assert len(sink.deliveries) >= 6
    for delivery in sink.deliveries:
        head = delivery.data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        fields = message_from_bytes(head, policy=policy.compat32)
        assert fields["Bcc"] is None and fields["X-Injected"] is None, head
        assert len(fields.get_all("From")) == 1
        assert len(fields.get_all("Subject")) == 1


def test_the_template_names_the_munged_sender(tmp_path):
    renderer = Renderer()
    text = renderer.text("dmarc-from-name.txt", author="Jane Doe", list_name="shma")
    assert text.strip() == "Jane Doe via SHMA"
    override = tmp_path / "templates"
    override.mkdir()
    (override / "dmarc-from-name.txt").write_text("{{ author }} (vía {{ list_name }})\n")
    assert Renderer(override).text("dmarc-from-name.txt", author="Ana",
                                   list_name="shma").strip() == "Ana (vía shma)"
