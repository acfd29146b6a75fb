"""IMAP intake against a real Dovecot: a list run on a hosted mailbox (issue 7).

The list's public addresses are plus-addresses of the test account (group+request@…), as on a
provider; mail is put in the mailbox with IMAP APPEND, the way a provider's delivery leaves it,
with the `Delivered-To` header the provider adds.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from listserv.daemon import Daemon
from listserv.intake.imap import KEYWORD
from listserv.mail.addresses import Role
from listserv.store.models.core import Inbound
from listserv.store.models.features import ImapMessage
from listserv.store.models.outgoing import OutMessage

from .daemons import DaemonProcess
from .helpers import LIST, make_message, parse, wait_settled, write_config, write_secret
from .tcp_proxy import TcpProxy

MEMBERS = ["ann@example.org", "bob@example.net", "cat@example.com"]


def plus(account: str, role: Role) -> str:
    local, _, domain = account.partition("@")
    return account if role is Role.POST else f"{local}+{role.value}@{domain}"


def hosted_config(tmp_path: Path, db_url: str, sink_port: int, account, port: int, *,
                  tls: str = "starttls", **imap: object) -> Path:
    """The test daemon's config, reading `account`'s INBOX (certificate verified)."""
    path = write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink_port)
    secret = write_secret(tmp_path / "imap-password", account.password + "\n")
    options = {"idle": True, "poll_seconds": 30, "processed_folder": "", **imap}
    extra = "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v).replace(chr(39), chr(34))}\n"
        for k, v in options.items())
    path.write_text(path.read_text() + "[intake.imap]\nenabled = true\n"
                    f'host = "127.0.0.1"\nport = {port}\ntls = "{tls}"\n'
                    f'username = "{account.username}"\npassword_file = "{secret}"\n' + extra)
    return path


@pytest.fixture
def imap_options() -> dict[str, object]:
    return {}


@pytest.fixture
def config_path(tmp_path, db_url, sink, imap_account, imap_options, monkeypatch) -> Path:
    # The daemon verifies Dovecot's self-signed certificate as it would a provider's.
    monkeypatch.setenv("SSL_CERT_FILE", str(imap_account.cert_path))
    return hosted_config(tmp_path, db_url, sink.port, imap_account, imap_account.imap_port,
                         **imap_options)


def make_group(cli, account: str) -> str:
    """The list, its public addresses on the mailbox `account`, three members."""
    cli("lists", "create", LIST, "--owner", "chair@example.org")
    for role in Role:
        cli("lists", "set", LIST, f"address.{role.value}", plus(account, role))
    for member in MEMBERS:
        cli("members", "add", LIST, member, "--no-welcome")
    return account


@pytest.fixture
def group(cli, imap_account) -> str:
    return make_group(cli, imap_account.username)


@pytest.fixture
def mailbox(imap_account) -> Iterator:
    """The test's own IMAP session on the account (as the chair's phone would have one)."""
    client = imap_account.server.client(imap_account.username, imap_account.password)
    client.select_folder("INBOX")
    yield client
    client.logout()


@contextmanager
def serving(settings, clock) -> Iterator[Daemon]:
    """A daemon in this process for part of a test (the `daemon` fixture runs for all of it)."""
    running = Daemon(settings, clock=clock).start()
    try:
        yield running
    finally:
        running.stop()


def delivered(to: str, raw: bytes) -> bytes:
    """A message as the provider leaves it in the mailbox: `Delivered-To` on top."""
    return f"Delivered-To: {to}\r\n".encode() + raw


def inbound_rows(store) -> list[Inbound]:
    with store.unit_of_work() as session:
        rows = session.scalars(select(Inbound).options(selectinload(Inbound.raw_message))
                               .order_by(Inbound.id)).all()
        session.expunge_all()
        return list(rows)


def wait(predicate, timeout: float, what: str) -> float:
    """Seconds until `predicate` held; fails after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def idling(monkeypatch) -> threading.Event:
    """Set once a daemon in this process is in IDLE: the server has answered its IDLE command."""
    entered = threading.Event()
    start_idle = IMAPClient.idle

    def idle(client: IMAPClient) -> object:
        answer = start_idle(client)
        entered.set()
        return answer

    monkeypatch.setattr(IMAPClient, "idle", idle)
    return entered


def flags_of(client, message_id: str) -> set[bytes]:
    client.noop()
    uids = client.search(["HEADER", "Message-ID", message_id])
    assert len(uids) == 1, uids
    return set(client.get_flags(uids)[uids[0]])


@pytest.mark.both_backends
def test_post_is_distributed_and_marked_and_add_me_reaches_the_request_handler(
        group, daemon, sink, store, mailbox):
    post = make_message(sender=MEMBERS[0], to=group, subject="Peer support reading list")
    mailbox.append("INBOX", delivered(group, post))
    sink.wait_for(lambda s: all(s.messages_for(m) for m in MEMBERS), timeout=15,
                  description="the post at every member")
    copy = sink.messages_for(MEMBERS[1])[0]
    assert b"Peer support reading list" in copy.data
    # Hosted mode: sent as the account, under the list's From (the author in Reply-To).
    assert copy.mail_from == group
    headers = parse(copy.data)
    assert "via" in str(headers["From"]) and group in str(headers["From"])
    assert MEMBERS[0] in str(headers["Reply-To"])
    message_id = str(make_message_id(post))
    wait(lambda: KEYWORD.encode() in flags_of(mailbox, message_id), 10, "marked")
    assert b"\\Seen" not in flags_of(mailbox, message_id)

    request_address = plus(group, Role.REQUEST)
    ask = make_message(sender="newcomer@example.org", to=request_address,
                       subject="joining", body="Hi, please add me to the listserv.\n\nDana\n")
    mailbox.append("INBOX", delivered(request_address, ask))
    sink.wait_for(lambda s: s.messages_for("newcomer@example.org"), timeout=15,
                  description="a confirmation to the newcomer")
    rows = inbound_rows(store)
    assert [(r.role, r.rcpt) for r in rows] == [("post", group),
                                               ("request", request_address)]
    confirmation = sink.messages_for("newcomer@example.org")[0].data
    assert b"confirm" in confirmation.lower()


def make_message_id(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")


def test_a_message_another_client_already_read_is_still_processed(
        group, daemon, sink, store, mailbox):
    post = make_message(sender=MEMBERS[1], to=group, subject="Read on the phone first")
    mailbox.append("INBOX", delivered(group, post), flags=[b"\\Seen"])
    sink.wait_for(lambda s: len(s.messages_for(MEMBERS[2])) == 1, timeout=15,
                  description="the post distributed")
    flags = flags_of(mailbox, make_message_id(post))
    assert {b"\\Seen", KEYWORD.encode()} <= flags


def test_idle_wakes_the_daemon_within_two_seconds(group, idling, daemon, store, mailbox):
    poller = next(w for w in daemon._workers if w.name == "imap")
    wait(lambda: poller.cycles >= 1, 15, "the first catch-up")
    assert idling.wait(15), "the daemon never went into IDLE"  # the poll interval is 30 s
    mailbox.append("INBOX", delivered(group, make_message(sender=MEMBERS[0], to=group)))
    seconds = wait(lambda: len(inbound_rows(store)) == 1, 10, "the message stored")
    assert seconds < 2.0, f"IDLE took {seconds:.2f}s"


@pytest.mark.parametrize("imap_options", [{"idle": False, "poll_seconds": 1.0}])
def test_without_idle_polling_finds_mail_within_the_interval(group, daemon, store, mailbox):
    poller = next(w for w in daemon._workers if w.name == "imap")
    wait(lambda: poller.cycles >= 1, 15, "the first catch-up")
    mailbox.append("INBOX", delivered(group, make_message(sender=MEMBERS[0], to=group)))
    seconds = wait(lambda: len(inbound_rows(store)) == 1, 10, "the message stored")
    # One interval, plus the moment a catch-up itself takes.
    assert seconds < 1.0 + 1.0, f"polling took {seconds:.2f}s"


@pytest.mark.parametrize("imap_options", [{"processed_folder": "Processed"}])
def test_processed_mail_is_moved_when_a_folder_is_set(group, daemon, sink, mailbox):
    post = make_message(sender=MEMBERS[0], to=group, subject="Move me")
    mailbox.append("INBOX", delivered(group, post))
    sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 1, timeout=15,
                  description="the post distributed")
    wait(lambda: not (mailbox.noop() and mailbox.search(["ALL"])), 10, "INBOX emptied")
    mailbox.select_folder("Processed")
    assert len(mailbox.search(["ALL"])) == 1
    mailbox.select_folder("INBOX")


def test_bounces_and_auto_replies_never_become_posts(group, daemon, sink, store, mailbox):
    report = make_message(sender="MAILER-DAEMON@mx.example.net", to=group,
                          subject="Undelivered Mail Returned to Sender",
                          body=f"<{MEMBERS[1]}>: host mx.example.net said: 550 5.1.1 "
                               "User unknown\n")
    away = make_message(sender=MEMBERS[2], to=group, subject="Out of office",
                        Auto_Submitted="auto-replied")
    mailbox.append("INBOX", b"Return-Path: <>\r\n" + delivered(group, report))
    mailbox.append("INBOX", delivered(group, away))
    wait(lambda: [r.status for r in inbound_rows(store)] == ["done", "done"], 15,
         "both handled")
    assert [r.role for r in inbound_rows(store)] == ["bounces", "bounces"]
    with store.unit_of_work() as session:
        # Nothing went to the members (the chair may hear of the unverified report).
        assert "post" not in session.scalars(select(OutMessage.kind)).all()


def test_mail_for_no_address_of_ours_goes_to_the_chair(group, daemon, sink, store, mailbox):
    stray = make_message(sender="someone@example.com", to="other@elsewhere.example",
                         subject="Bcc'd to the group")
    mailbox.append("INBOX", stray)
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), timeout=15,
                  description="a forward to the chair")
    assert [r.role for r in inbound_rows(store)] == ["owner"]


# -- crashes and outages (the daemon in a subprocess) -----------------------------------------


@pytest.fixture
def daemons(tmp_path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.reap()


def count_inbound(store) -> int:
    with store.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(Inbound)) or 0)


def behind_proxy(folder: Path, db_url: str, sink, account, hold_on: bytes
                 ) -> tuple[TcpProxy, Path]:
    """A config in `folder` reaching Dovecot in plain text through a proxy that swallows the
    first command containing `hold_on`."""
    proxy = TcpProxy(account.imap_port, hold_on=hold_on)
    folder.mkdir()
    return proxy, hosted_config(folder, db_url, sink.port, account, proxy.port, tls="none")


@pytest.mark.both_backends
def test_sigkill_after_the_commit_before_the_mark_neither_repeats_nor_forgets(
        tmp_path, db_url, sink, imap_account, group, store, mailbox, daemons):
    # The daemon reaches Dovecot through a proxy that swallows the marking command: the
    # message is committed, the server has not heard of it, and then the daemon dies.
    proxy, config = behind_proxy(tmp_path / "crash", db_url, sink, imap_account, b"STORE")
    post = make_message(sender=MEMBERS[0], to=group, subject="Exactly once")
    mailbox.append("INBOX", delivered(group, post))
    first = DaemonProcess(config, tmp_path / "crash" / "data" / "run",
                          tmp_path / "first.log")
    daemons.append(first)
    assert proxy.held.wait(20), first.log_text()
    first.wait_until(lambda: count_inbound(store) == 1, "store the message")
    first.kill()
    proxy.close()
    assert KEYWORD.encode() not in flags_of(mailbox, make_message_id(post))

    restart = tmp_path / "restart"
    restart.mkdir()
    second = DaemonProcess(
        hosted_config(restart, db_url, sink.port, imap_account, imap_account.imap_port,
                      tls="none"),
        restart / "data" / "run", tmp_path / "second.log")
    daemons.append(second)
    second.wait_until(lambda: KEYWORD.encode() in flags_of(mailbox, make_message_id(post)),
                      "mark the message")
    sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) >= 1, timeout=15,
                  description="the post delivered")
    second.wait_until(lambda: _marked_rows(store) == 1, "record the mark")  # after the STORE
    wait_settled(store)  # a second copy, were one coming, would be in the sink by then
    assert count_inbound(store) == 1
    assert len(sink.messages_for(MEMBERS[0])) == 1
    with store.unit_of_work() as session:
        assert session.scalars(select(ImapMessage.marked)).all() == [True]
    assert second.terminate()[0] == 0


def test_server_outage_reconnects_and_loses_nothing(
        tmp_path, db_url, sink, private_dovecot, store, cli, monkeypatch):
    server = private_dovecot
    account = server.new_account()
    make_group(cli, account.username)
    outage = tmp_path / "outage"
    outage.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(account.cert_path))
    config = hosted_config(outage, db_url, sink.port, account, account.imaps_port,
                           tls="implicit")
    daemon = DaemonProcess(config, outage / "data" / "run", tmp_path / "daemon.log")
    try:
        server.deliver(account.username, delivered(account.username, make_message(
            sender=MEMBERS[0], to=account.username, subject="Before the outage")))
        sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 1, timeout=15,
                      description="the first post")
        backoffs = daemon.log_text(20000).count("connecting again")
        server.stop()
        arrived = [make_message(sender=MEMBERS[i % 3], to=account.username,
                                subject=f"During the outage {i}") for i in range(3)]
        for raw in arrived:
            server.deliver(account.username, delivered(account.username, raw))
        daemon.wait_until(lambda: daemon.log_text(20000).count("connecting again") > backoffs,
                          "notice the outage and back off")
        assert daemon.running()
        server.start()
        sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 4, timeout=30,
                      description="the three posts that arrived meanwhile")
        wait_settled(store)
        assert len(sink.messages_for(MEMBERS[1])) == 4
        assert count_inbound(store) == 4
        assert "connecting again" in daemon.log_text(20000)
        assert daemon.terminate()[0] == 0
    finally:
        daemon.reap()


@pytest.mark.parametrize("imap_options", [{"folder": "Lists"}])
@pytest.mark.both_backends
def test_a_new_uidvalidity_neither_repeats_nor_loses_mail(
        group, settings, store, clock, sink, imap_account, mailbox):
    mailbox.create_folder("Lists")
    first = make_message(sender=MEMBERS[0], to=group, subject="Before the renumbering")
    mailbox.append("Lists", delivered(group, first))
    with serving(settings, clock):
        sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 1, timeout=15,
                      description="the first post")
        wait(lambda: _marked_rows(store) == 1, 10, "marked")
    # The folder is rebuilt (a restore, a migration): same message, new UIDs, and a new one.
    old_validity = mailbox.folder_status("Lists", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    mailbox.rename_folder("Lists", "Lists-old")
    mailbox.create_folder("Lists")
    mailbox.append("Lists", delivered(group, first))
    second = make_message(sender=MEMBERS[1], to=group, subject="After the renumbering")
    mailbox.append("Lists", delivered(group, second))
    assert mailbox.folder_status("Lists", [b"UIDVALIDITY"])[b"UIDVALIDITY"] != old_validity
    with serving(settings, clock):
        sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 2, timeout=15,
                      description="the new post")
        wait(lambda: _marked_rows(store) == 3, 10, "both copies marked")
        wait_settled(store)
    subjects = [parse_subject(d.data) for d in sink.messages_for(MEMBERS[2])]
    assert subjects == ["[shma] Before the renumbering", "[shma] After the renumbering"]
    assert count_inbound(store) == 2
    mailbox.select_folder("Lists")
    flags = mailbox.get_flags(mailbox.search(["ALL"]))
    assert len(flags) == 2 and all(KEYWORD.encode() in f for f in flags.values())


def _marked_rows(store) -> int:
    with store.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(ImapMessage)
                                  .where(ImapMessage.marked.is_(True))) or 0)


def parse_subject(data: bytes) -> str:
    return str(parse(data)["Subject"])


def test_mail_over_the_size_cap_is_kept_as_headers_and_held(group, daemon, sink, store,
                                                             mailbox, cli):
    big = make_message(sender=MEMBERS[0], to=group, subject="A large attachment",
                       body="x" * 100 + "\n" + ("0123456789" * 10 + "\n") * 1000)
    mailbox.append("INBOX", delivered(group, big))
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), timeout=15,
                  description="the held notice")
    (row,) = inbound_rows(store)
    assert row.size > 64 * 1024 > len(row.raw)
    assert b"A large attachment" in row.raw
    assert row.outcome.startswith("held") and "only its headers were read" in row.outcome
    refused = cli("held", "approve", "1", ok=False)
    assert refused.exit_code != 0 and "only its headers were read" in refused.output
    assert not any(sink.messages_for(m) for m in MEMBERS)


def test_an_unverifiable_certificate_is_refused(imap_account, tmp_path):
    from listserv.config import load_settings
    from listserv.intake.imap import connect

    secret = write_secret(tmp_path / "pw", imap_account.password)
    conf = load_settings(None, data_dir=str(tmp_path), intake={"imap": {
        "enabled": True, "host": "127.0.0.1", "port": imap_account.imaps_port,
        "username": imap_account.username, "password_file": str(secret)}}).intake.imap
    with pytest.raises(ssl.SSLCertVerificationError):
        with connect(conf):
            pass
    relaxed = load_settings(None, data_dir=str(tmp_path), intake={"imap": {
        "enabled": True, "host": "127.0.0.1", "port": imap_account.imaps_port,
        "verify_cert": False, "username": imap_account.username,
        "password_file": str(secret)}}).intake.imap
    with connect(relaxed) as client:
        assert client.select_folder("INBOX")


@pytest.mark.both_backends
def test_malformed_mail_is_read_and_a_failing_one_does_not_block_the_rest(
        group, settings, store, clock, sink, mailbox, cli, monkeypatch):
    from listserv.intake import imap

    real = imap._inbound

    def failing(session, msg, fetched, account, now):
        if b"Poison" in fetched.raw:
            raise RuntimeError("a reader bug")
        return real(session, msg, fetched, account, now)

    monkeypatch.setattr(imap, "_inbound", failing)
    odd = (b"Return-Path: <" + b"a" * 400 + b"@example.org>\r\nFrom: x:;x@y\r\n"
           + delivered(group, make_message(sender=MEMBERS[0], to=group, subject="Odd headers"))
           .replace(b"From: " + MEMBERS[0].encode(), b"Sender: " + MEMBERS[0].encode()))
    mailbox.append("INBOX", odd)
    mailbox.append("INBOX", delivered(group, make_message(sender=MEMBERS[0], to=group,
                                                          subject="Poison")))
    mailbox.append("INBOX", delivered(group, make_message(sender=MEMBERS[1], to=group,
                                                          subject="After the poison")))
    with serving(settings, clock):
        sink.wait_for(lambda s: any(b"After the poison" in d.data
                                    for d in s.messages_for(MEMBERS[2])),
                      timeout=15, description="the post after the failing one")
        wait(lambda: _marked_rows(store) == 3, 10, "all three marked")
    rows = inbound_rows(store)
    assert len(rows) == 3
    assert rows[0].status == "done" and rows[0].outcome.startswith("held")
    assert rows[1].status == "failed" and "a reader bug" in rows[1].error
    assert "a reader bug" in cli("queue", "--failed").output
    assert "a reader bug" not in cli("queue").output


def test_a_message_already_marked_does_not_hide_earlier_unread_mail(
        group, settings, store, clock, sink, mailbox):
    mailbox.append("INBOX", delivered(group, make_message(sender=MEMBERS[0], to=group,
                                                          subject="Not yet read")))
    mailbox.append("INBOX", delivered(group, make_message(sender=MEMBERS[0], to=group,
                                                          subject="Read long ago")),
                   flags=[KEYWORD.encode()])
    with serving(settings, clock):
        sink.wait_for(lambda s: s.messages_for(MEMBERS[1]), timeout=15,
                      description="the unread post")
        wait(lambda: _marked_rows(store) == 1, 10, "marked")
    assert [parse_subject(d.data) for d in sink.messages_for(MEMBERS[1])] == [
        "[shma] Not yet read"]
    assert count_inbound(store) == 1


def test_stopping_does_not_wait_for_a_server_gone_silent(
        tmp_path, db_url, sink, imap_account, group, store, clock, mailbox, idling):
    from listserv.config import load_settings
    # The server stops answering while the daemon is in IDLE (a dropped NAT mapping).
    proxy, config = behind_proxy(tmp_path / "silent", db_url, sink, imap_account, b"DONE")
    running = Daemon(load_settings(config), clock=clock).start()
    poller = next(w for w in running._workers if w.name == "imap")
    wait(lambda: poller.cycles >= 1, 15, "the first catch-up")
    assert idling.wait(15), "the daemon never went into IDLE"
    started = time.monotonic()
    running.stop()
    assert not poller.is_alive()
    assert time.monotonic() - started < 10, "the stop waited for the silent server"
    proxy.close()
