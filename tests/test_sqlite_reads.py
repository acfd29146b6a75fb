"""SQLite: reads begin deferred and answer while a writer holds the lock (issue 13, acc. 5)."""

from __future__ import annotations

import json
import smtplib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from listserv.store.models.core import MailingList

from .helpers import LIST

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
