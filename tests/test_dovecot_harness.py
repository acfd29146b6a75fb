"""The Dovecot test harness itself (tests/dovecot.py): TLS both ways, mail, restarts, users."""

from __future__ import annotations

import secrets
import socket
import ssl
import time

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from .dovecot import Dovecot, DovecotError, ImapAccount, main

MESSAGE = b"From: jane@example.org\r\nSubject: hello\r\n\r\nA body.\r\n"


def test_login_over_starttls_and_implicit_tls(imap_account: ImapAccount) -> None:
    verified = ssl.create_default_context(cafile=str(imap_account.cert_path))

    with IMAPClient(imap_account.host, port=imap_account.imap_port, ssl=False) as plain:
        assert b"STARTTLS" in plain.capabilities()
        plain.starttls(verified)
        plain.login(imap_account.username, imap_account.password)
        assert plain.select_folder("INBOX")[b"EXISTS"] == 0

    with IMAPClient(imap_account.host, port=imap_account.imaps_port, ssl=True,
                    ssl_context=verified) as tls:
        tls.login(imap_account.username, imap_account.password)
        assert tls.select_folder("INBOX")[b"EXISTS"] == 0

    # The certificate is really checked: without our CA file it is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(imap_account.host, port=imap_account.imaps_port, ssl=True,
                   ssl_context=ssl.create_default_context(), timeout=5)


def test_append_fetch_keywords_and_a_second_folder(imap_account: ImapAccount) -> None:
    with imap_account.client() as imap:
        selected = imap.select_folder("INBOX")
        assert b"\\*" in selected[b"PERMANENTFLAGS"]  # keywords can be stored
        imap.append("INBOX", MESSAGE, flags=[b"\\Seen"])
        imap.create_folder("Processed")

        uids = imap.search(["ALL"])
        imap.add_flags(uids, [b"listserv-done"])
        fetched = imap.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
        assert [(f[b"BODY[]"], set(f[b"FLAGS"]) >= {b"\\Seen", b"listserv-done"})
                for f in fetched.values()] == [(MESSAGE, True)]

        imap.move(uids, "Processed")
        assert imap.folder_status("Processed", ["MESSAGES"])[b"MESSAGES"] == 1
        assert imap.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0


def test_idle_reports_new_mail(imap_account: ImapAccount) -> None:
    with imap_account.client() as idler, imap_account.client() as writer:
        idler.select_folder("INBOX")
        idler.idle()
        writer.append("INBOX", MESSAGE)
        responses = idler.idle_check(timeout=10)
        idler.idle_done()
    assert (1, b"EXISTS") in responses


def test_fresh_users_are_isolated(dovecot_server: Dovecot) -> None:
    alice, alice_password = dovecot_server.new_user()
    bob, bob_password = dovecot_server.new_user()
    assert alice != bob and "@" in alice

    with dovecot_server.client(alice, alice_password) as imap:
        imap.append("INBOX", MESSAGE)
    with dovecot_server.client(bob, bob_password) as imap:
        assert imap.select_folder("INBOX")[b"EXISTS"] == 0
    with pytest.raises(LoginError):
        dovecot_server.client(alice, bob_password)

    # A user added right after a login (Dovecot re-reads the passwd-file at most once a
    # second) can log in at once, in any case.
    carol = f"Carol-{secrets.token_hex(4)}@Example.org"
    dovecot_server.add_user(carol, "pw")
    with dovecot_server.client(carol.upper(), "pw") as imap:
        assert imap.select_folder("INBOX")[b"EXISTS"] == 0


def test_stop_and_start_keep_the_mail(private_dovecot: Dovecot) -> None:
    user, password = private_dovecot.new_user()
    with private_dovecot.client(user, password) as imap:
        imap.append("INBOX", MESSAGE)

    started = time.monotonic()
    private_dovecot.stop()
    stopped = time.monotonic()
    assert not private_dovecot.running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((private_dovecot.host, private_dovecot.imap_port), timeout=5)

    private_dovecot.start()
    restarted = time.monotonic()
    with private_dovecot.client(user, password) as imap:
        imap.select_folder("INBOX")
        assert imap.fetch(imap.search(["ALL"]), ["BODY.PEEK[]"])[1][b"BODY[]"] == MESSAGE
    # Generous bounds: these are to notice a harness that waits on timeouts, not benchmarks.
    assert stopped - started < 10 and restarted - stopped < 10


def test_command_line_start_stop_and_attach(private_dovecot: Dovecot) -> None:
    folder = private_dovecot.folder
    assert main(["stop", str(folder)]) == 0
    assert not private_dovecot.running()
    with pytest.raises(DovecotError, match="not running"):
        Dovecot.attach(folder)

    assert main(["start", str(folder)]) == 0
    attached = Dovecot.attach(folder)
    assert (attached.imap_port, attached.imaps_port) == (private_dovecot.imap_port,
                                                        private_dovecot.imaps_port)
    user, password = attached.new_user()
    with attached.client(user, password) as imap:
        assert imap.select_folder("INBOX")[b"EXISTS"] == 0
    attached.close()  # an attached instance is its owner's to stop
    assert private_dovecot.running()
