"""SQLite: reads begin deferred and answer while a writer holds the lock (issue 13, acc. 5)."""

from __future__ import annotations

import json
import logging
import smtplib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url

from listserv.store.models.core import Inbound, InboundRaw, MailingList

from .helpers import LIST, lmtp_send, make_message, wait_until

MEMBER = "jane@example.org"


@contextmanager
def write_lock(url: str) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock: BEGIN IMMEDIATE and a write, not committed."""
    connection = sqlite3.connect(make_url(url).database or "", isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO audit_log (at, actor, action, detail) "
                           "VALUES ('2026-01-01 00:00:00', 'test', 'holds-the-lock', '')")
        yield connection
    finally:
        connection.rollback()
        connection.close()


def is_locked(url: str) -> bool:
    """Whether another connection cannot take the write lock right now."""
    probe = sqlite3.connect(make_url(url).database or "", isolation_level=None, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        probe.close()
    return False


def rcpt_replies(port: int, lmtp: bool) -> list[int]:
    """The codes of RCPT for the list and for an address that is not ours (no DATA)."""
    client = smtplib.LMTP("127.0.0.1", port, timeout=10) if lmtp \
        else smtplib.SMTP("127.0.0.1", port, timeout=10)
    with client:
        client.ehlo_or_helo_if_needed() if not lmtp else client.docmd("LHLO", "test.example")
        client.mail("sender@example.org")
        codes = [client.rcpt(LIST)[0], client.rcpt("nobody@lists.example.org")[0]]
        client.rset()
    return codes


def test_rcpt_lookups_and_members_list_answer_while_a_writer_holds_the_lock(
        cli, shma, daemon, settings):
    cli("members", "add", LIST, MEMBER, "--no-welcome")
    url = settings.database.url
    with write_lock(url) as holder:
        assert is_locked(url)
        lmtp = rcpt_replies(daemon.ports["lmtp"], lmtp=True)
        smtp = rcpt_replies(daemon.ports["smtp"], lmtp=False)
        listed = json.loads(cli("members", "list", LIST, "--json").output)
        # The answers came while the lock was still held.
        assert holder.in_transaction and is_locked(url)
    assert lmtp == smtp == [250, 550]
    assert [m["email"] for m in listed] == [MEMBER]


def test_a_reading_unit_of_work_refuses_to_write(store, cli, shma):
    with pytest.raises(RuntimeError, match="tried to write"), store.reading() as session:
        session.scalars(select(MailingList)).one().description = "changed"
    with store.reading() as session:
        assert session.scalars(select(MailingList)).one().description == ""


def test_data_waiting_for_the_lock_is_stored_in_one_commit_while_rcpt_still_answers(
        cli, shma, daemon, settings, store, caplog):
    """Group commit (docs/intake.md): DATA commands arriving while a commit waits for the lock
    go in the next commit together; meanwhile RCPT lookups answer; each 250 comes after its
    commit."""
    caplog.set_level(logging.DEBUG, logger="listserv.intake.group_commit")
    cli("members", "add", LIST, MEMBER, "--no-welcome")
    port = daemon.ports["lmtp"]
    replies: list[dict[str, object]] = []

    def post(n: int) -> None:
        replies.append(lmtp_send(port, MEMBER, [LIST], make_message(subject=f"Post {n}")))

    with write_lock(settings.database.url):
        first = threading.Thread(target=post, args=(0,))
        first.start()
        # The first DATA's commit waits for the lock; the next four wait for the next commit.
        wait_until(lambda: batches(caplog) == [1], what="the first commit begun")
        others = [threading.Thread(target=post, args=(n,)) for n in range(1, 5)]
        for thread in others:
            thread.start()
        wait_until(lambda: daemon.committer.waiting == 4, what="four DATA waiting")
        assert rcpt_replies(port, lmtp=True) == [250, 550]
        assert replies == [] and stored_inbound(store) == 0  # no 250 before the commit
    for thread in [first, *others]:
        thread.join(30)
    assert replies == [{}] * 5
    assert stored_inbound(store) == 5
    assert batches(caplog) == [1, 4]


def batches(caplog) -> list[int]:
    """The sizes of the intake's commits so far, from its debug log."""
    return [r.args[0] for r in caplog.records
            if r.getMessage().endswith("messages in one transaction")]


def stored_inbound(store) -> int:
    with store.reading() as session:
        return int(session.scalar(select(func.count()).select_from(Inbound)) or 0)


def test_a_failed_commit_answers_451_to_its_own_batch_only(cli, shma, daemon, settings, store,
                                                           caplog):
    """The first batch (one poisoned message) fails and its client gets 451; the two DATA
    waiting behind it form the next batch, which commits and gets 250."""
    caplog.set_level(logging.DEBUG, logger="listserv.intake.group_commit")
    cli("members", "add", LIST, MEMBER, "--no-welcome")
    port = daemon.ports["lmtp"]
    replies: dict[str, object] = {}

    def fail_on_poison(session, _flush_context, _instances) -> None:
        if any(isinstance(o, InboundRaw) and b"poison" in o.raw for o in session.new):
            raise RuntimeError("disk on fire")

    def post(subject: str) -> None:
        try:
            replies[subject] = lmtp_send(port, MEMBER, [LIST], make_message(subject=subject))
        except smtplib.SMTPDataError as exc:
            replies[subject] = exc.smtp_code

    event.listen(daemon.store.sessions, "before_flush", fail_on_poison)
    try:
        with write_lock(settings.database.url):
            threads = [threading.Thread(target=post, args=("poison",))]
            threads[0].start()
            wait_until(lambda: batches(caplog) == [1], what="the first commit begun")
            threads += [threading.Thread(target=post, args=(s,)) for s in ("good 1", "good 2")]
            for thread in threads[1:]:
                thread.start()
            wait_until(lambda: daemon.committer.waiting == 2, what="two DATA waiting")
        for thread in threads:
            thread.join(30)
    finally:
        event.remove(daemon.store.sessions, "before_flush", fail_on_poison)
    assert replies == {"poison": 451, "good 1": {}, "good 2": {}}
    assert batches(caplog) == [1, 2]
    assert stored_inbound(store) == 2
