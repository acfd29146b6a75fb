"""Forged mail changes nothing (issue 14, acceptance 1; SPEC §2, "Who sent it"), through real
LMTP sockets to a running daemon and the SMTP sink.

A mail that only *claims* to come from a member (forged From, or a forged envelope sender) may
not remove or mute her: she gets one confirmation, however many such mails arrive. A mail that
*proves* it comes from her (a fresh DKIM signature of her domain, or her own `-leave+TOKEN`)
removes her at once, and her goodbye is sent even when her cap on automatic mail is used up.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import dkim
import pytest
from sqlalchemy import func, select

from listserv.store.models.core import Member, Request, SeenMessage
from listserv.store.models.outgoing import AutoMail

from .dkim_keys import dkim_record_of, new_dkim_key
from .helpers import LIST, lmtp_send, parse, wait_handled, wait_settled
from .test_membership import REQUEST, confirm_address, leave_address, mails_to, members

JANE = "jane@example.org"
LEAVE = "shma-leave@lists.example.org"
SELECTOR = "s2026"


@pytest.fixture(scope="module")
def jane_key() -> bytes:
    """The private key example.org signs its mail with (made once for the module)."""
    return new_dkim_key()


@pytest.fixture
def jane_domain(dns_zone, jane_key) -> bytes:
    """example.org publishes its DKIM key in the loopback DNS; returns the private key."""
    dns_zone.records[f"{SELECTOR}._domainkey.example.org"] = [dkim_record_of(jane_key).decode()]
    return jane_key


@pytest.fixture
def jane(cli, shma) -> str:
    cli("members", "add", LIST, JANE, "--name", "Jane Doe", "--no-welcome")
    return JANE


def mail(to: str, body: str, *, sender: str | None = JANE, date: datetime | None = None,
         message_id: str | None = None, subject: str = "") -> bytes:
    """A plain message as Jane's mail client writes it (no From when `sender` is None)."""
    headers = [f"From: Jane Doe <{sender}>"] if sender else []
    headers += [f"To: {to}", f"Subject: {subject}",
                f"Date: {format_datetime(date or datetime.now(UTC))}",
                f"Message-ID: {message_id or f'<{uuid.uuid4().hex}@example.org>'}",
                "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def signed(key: bytes, message: bytes) -> bytes:
    """`message` with the DKIM signature example.org's server adds, as Gmail signs."""
    signature = dkim.sign(message, SELECTOR.encode(), b"example.org", key,
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                           b"mime-version", b"content-type", b"from"])
    return signature + message


def pending(store, email: str) -> Counter[str]:
    """The confirmations waiting at `email`, by kind of request."""
    with store.reading() as session:
        return Counter(session.scalars(select(Request.kind).where(
            Request.email == email, Request.status == "confirming")))


def distinct(sink) -> list:
    """Jane's mails, each once: under a heavy load a delivery worker's short test lease may
    lapse and a copy reach the sink twice (the same message, the same Message-ID)."""
    return list({str(m["Message-ID"]): m for m in mails_to(sink, JANE)}.values())


def deliveries(cli) -> str | None:
    return members(cli).get(JANE, {}).get("delivery")


@pytest.mark.both_backends
@pytest.mark.parametrize("forged", ["from", "envelope"])
def test_a_dozen_forged_leave_unsubscribe_and_nomail_mails_leave_one_confirmation_each(
        cli, jane, daemon, sink, store, forged):
    # "from": anyone's server, with Jane's address in From; "envelope": no From at all, only
    # her address as the envelope sender (the handlers fall back to it).
    sender = JANE if forged == "from" else None
    envelope = "mallory@evil.example" if forged == "from" else JANE
    for _ in range(12):
        for to, body in ((LEAVE, ""), (REQUEST, "unsubscribe"), (REQUEST, "set nomail")):
            lmtp_send(daemon.ports["lmtp"], envelope, [to], mail(to, body, sender=sender))
    wait_handled(sink, store, 36, timeout=60)
    wait_settled(store)
    assert JANE in members(cli) and deliveries(cli) == "regular"
    assert pending(store, JANE) == Counter({"unsubscribe": 1, "set": 1})
    # One confirmation per action reached her; the other 34 mails sent nothing new.
    subjects = sorted({" ".join(str(m["Subject"]).split()) for m in distinct(sink)})
    assert len(subjects) == 2, subjects
    assert "leave the shma list" in subjects[0] and "stop mail" in subjects[1]
    assert not sink.messages_for("mallory@evil.example")


@pytest.mark.both_backends
def test_an_old_or_replayed_signed_mail_of_hers_proves_nothing(cli, jane, jane_domain, daemon,
                                                               sink, store):
    # Her post to the list a while ago, signed, sent again to -leave: it names the list, not
    # -leave, in its signed To. Her signed mail to -leave of ten days ago: too old.
    old_post = signed(jane_domain, mail(LIST, "See you all on Thursday.", subject="Thursday"))
    old_leave = signed(jane_domain, mail(LEAVE, "", date=datetime.now(UTC) - timedelta(days=10)))
    for replay in (old_post, old_leave):
        lmtp_send(daemon.ports["lmtp"], "mallory@evil.example", [LEAVE], replay)
    wait_handled(sink, store, 2)
    assert JANE in members(cli)
    assert pending(store, JANE) == Counter({"unsubscribe": 1})

    # Her fresh signed mail to -leave proves her: she leaves at once. Once she is back (the
    # undo in her goodbye), the same mail sent again proves nothing: its Message-ID was used.
    fresh_leave = signed(jane_domain, mail(LEAVE, "Please remove me."))
    lmtp_send(daemon.ports["lmtp"], JANE, [LEAVE], fresh_leave)
    goodbye = wait_mails_about(sink, "You have left")[0]
    assert JANE not in members(cli)
    assert pending(store, JANE) == Counter({"resubscribe": 1})  # the undo; the rest is moot
    lmtp_send(daemon.ports["lmtp"], JANE, [confirm_address(goodbye)],
              mail(confirm_address(goodbye), "undo", subject="Re: You have left"))
    wait_mails_about(sink, "Welcome to the shma list")
    lmtp_send(daemon.ports["lmtp"], "mallory@evil.example", [LEAVE], fresh_leave)
    wait_handled(sink, store, 5)
    wait_settled(store)
    assert JANE in members(cli)
    assert pending(store, JANE) == Counter({"unsubscribe": 1})  # asked again, not removed
    assert sum("leave the shma list" in str(m["Subject"]) for m in distinct(sink)) == 2
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(SeenMessage)) == 1


def wait_mails_about(sink, words: str):
    """Jane's mails, once one has `words` in its Subject; those first."""
    sink.wait_for(lambda s: any(words in str(parse(d.data)["Subject"])
                                for d in s.messages_for(JANE)),
                  description=f"a mail to {JANE} about {words!r}")
    return sorted(mails_to(sink, JANE), key=lambda m: words not in str(m["Subject"]))


@pytest.mark.both_backends
@pytest.mark.parametrize("proof", ["dkim", "token"])
def test_a_proven_leave_removes_her_at_once_with_a_goodbye_past_her_cap(
        cli, jane, jane_domain, daemon, sink, store, proof):
    for _ in range(12):  # a dozen help requests use up her cap on automatic mail
        lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST], mail(REQUEST, "help"))
    wait_handled(sink, store, 12, timeout=30)
    wait_settled(store)
    assert len(distinct(sink)) == 10
    if proof == "dkim":
        lmtp_send(daemon.ports["lmtp"], JANE, [LEAVE], signed(jane_domain, mail(LEAVE, "")))
    else:
        token_address = leave_address(store, JANE)
        lmtp_send(daemon.ports["lmtp"], "forwarder@else.example", [token_address],
                  mail(token_address, "", sender="forwarder@else.example"))
    [goodbye] = wait_mails_about(sink, "You have left")[:1]
    assert "undo" in goodbye.get_content()
    assert JANE not in members(cli)
    assert pending(store, JANE) == Counter({"resubscribe": 1})  # the undo, nothing to confirm
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(AutoMail).where(
            AutoMail.address == JANE, AutoMail.kind == "goodbye",
            AutoMail.suppressed.is_(False))) == 1


@pytest.mark.both_backends
def test_a_signed_set_nomail_mutes_her_at_once_with_a_notice_past_her_cap(
        cli, jane, jane_domain, daemon, sink, store):
    for _ in range(12):
        lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST], mail(REQUEST, "help"))
    wait_handled(sink, store, 12, timeout=30)
    lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST],
              signed(jane_domain, mail(REQUEST, "set nomail")))
    [notice] = wait_mails_about(sink, "is paused")[:1]
    assert "set regular" in notice.get_content()
    assert deliveries(cli) == "nomail"
    assert pending(store, JANE) == Counter()
    with store.reading() as session:
        assert session.scalar(select(Member.delivery).where(Member.email == JANE)) == "nomail"


def test_a_forged_requests_own_words_are_not_mailed_to_the_address_it_names(
        cli, jane, jane_domain, daemon, sink, store):
    """SPEC §2: text a requester chose is never copied into mail to a different address. A
    forged From is such an address: the results go there without the subject or the lines;
    the same mail signed by Jane's domain gets them repeated (it is hers)."""
    words = "Visit www.pills.example"
    forged = mail(REQUEST, f"info\n{words}\n", subject="Cheap pills www.pills.example")
    lmtp_send(daemon.ports["lmtp"], "mallory@else.example", [REQUEST], forged)
    [reply] = wait_mails_about(sink, "the results of your request")[:1]
    assert "pills" not in str(reply["Subject"])
    assert "pills" not in reply.get_body(("plain",)).get_content()
    assert "1 line, not repeated here" in reply.get_body(("plain",)).get_content()

    lmtp_send(daemon.ports["lmtp"], JANE, [REQUEST], signed(jane_domain, mail(
        REQUEST, f"info\n{words}\n", subject="Cheap pills www.pills.example")))
    sink.wait_for(lambda s: len([m for m in distinct(s) if "results" in str(m["Subject"])]) == 2,
                  description="the second results reply")
    [proven] = [m for m in distinct(sink) if "results" in str(m["Subject"])
                and "pills" in str(m["Subject"])]
    assert words in proven.get_body(("plain",)).get_content()
