"""Failed incoming mail: transient failures are retried with backoff, bugs wait for the chair."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta

import dns.exception
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import selectinload

from listserv.handlers.context import Context
from listserv.mail.addresses import Role
from listserv.mail.dns import DnsFailure
from listserv.mail.render import Renderer
from listserv.router import dispatch as router
from listserv.router.dispatch import (
    RETRY_FOR,
    prepare_due,
    retry_delay,
    route_due,
    route_one,
    transient,
)
from listserv.store.models.core import Inbound, MailingList

from .helpers import LIST, lmtp_send, make_message

JANE = "jane@example.org"


def database_locked() -> OperationalError:
    return OperationalError("INSERT INTO out_messages …", {},
                            sqlite3.OperationalError("database is locked"))


def schema_bug(message: str) -> OperationalError:
    return OperationalError("SELECT members.nickname …", {}, sqlite3.OperationalError(message))


@pytest.fixture
def failing_once(monkeypatch) -> Callable[[Exception], list[int]]:
    """Make the post handler raise `error` the first time it runs; returns the calls made."""

    def install(error: Exception) -> list[int]:
        calls: list[int] = []
        real = router.HANDLERS[Role.POST]

        def handler(ctx: Context) -> str:
            calls.append(ctx.inbound.id)
            if len(calls) == 1:
                raise error
            return real(ctx)

        monkeypatch.setitem(router.HANDLERS, Role.POST, handler)
        return calls

    return install


@pytest.fixture
def member(cli, shma) -> str:
    cli("members", "add", LIST, JANE, "--no-welcome")
    return JANE


def post(daemon, subject: str) -> None:
    message = make_message(sender=JANE, subject=subject)
    assert lmtp_send(daemon.ports["lmtp"], JANE, [LIST], message) == {}


def inbound_rows(store) -> list[Inbound]:
    with store.reading() as session:
        return list(session.scalars(select(Inbound).options(selectinload(Inbound.raw_message))
                                    .order_by(Inbound.id)))


def incoming(cli, *options: str) -> list[dict[str, str]]:
    return [i for i in json.loads(cli("queue", "--json", *options).output)
            if i["direction"] == "incoming"]


def copies(sink, subject: str) -> int:
    return sum(1 for d in sink.deliveries if subject in d.message["Subject"])


@pytest.mark.both_backends
def test_a_transient_failure_is_retried_with_backoff_without_the_chair(
        cli, member, daemon, sink, store, clock, failing_once):
    calls = failing_once(database_locked())
    post(daemon, "Minutes of Tuesday")
    sink.wait_for(lambda s: inbound_rows(store)[0].attempts == 1, description="a failed try")
    (row,) = inbound_rows(store)
    assert row.status == "new" and row.next_attempt_at is not None
    assert row.next_attempt_at - row.processed_at == timedelta(minutes=1)
    (shown,) = incoming(cli)
    assert shown["id"] == f"in-{row.id}" and shown["status"] == "retrying"
    assert "OperationalError" in shown["reason"] and "database is locked" in shown["reason"]
    assert shown["next_attempt"] == row.next_attempt_at.isoformat()
    assert copies(sink, "Minutes of Tuesday") == 0

    clock.advance(timedelta(minutes=1))
    daemon.route_wake.set()
    sink.wait_for(lambda s: copies(s, "Minutes of Tuesday") == 1, description="the retried post")
    sink.wait_for(lambda s: inbound_rows(store)[0].status == "done", description="handled")
    assert calls == [row.id, row.id]
    assert incoming(cli) == []


def test_a_bug_stays_failed_until_queue_retry(cli, member, daemon, sink, store, clock,
                                             failing_once):
    calls = failing_once(KeyError("a bug in a handler"))
    post(daemon, "First post")
    sink.wait_for(lambda s: inbound_rows(store)[0].status == "failed", description="failed")
    assert incoming(cli) == []  # a final failure is listed only with --failed
    (shown,) = incoming(cli, "--failed")
    failed_id = shown["id"]
    assert shown["status"] == "failed" and shown["next_attempt"] == ""
    assert "KeyError" in shown["reason"] and "a bug in a handler" in shown["reason"]
    assert "KeyError" in cli("queue", "--failed").output

    # Time passes and other mail is handled; the failed one is not tried again by itself.
    clock.advance(RETRY_FOR)
    post(daemon, "Second post")
    sink.wait_for(lambda s: copies(s, "Second post") == 1, description="the second post")
    assert inbound_rows(store)[0].status == "failed" and len(calls) == 2

    result = cli("queue", "retry", failed_id)
    assert f"{failed_id} will be handled again" in result.output
    sink.wait_for(lambda s: copies(s, "First post") == 1, description="the retried post")
    sink.wait_for(lambda s: inbound_rows(store)[0].status == "done", description="handled")
    assert incoming(cli) == [] and incoming(cli, "--failed") == []
    log = json.loads(cli("log", "--json").output)
    assert log[-1]["action"] == "inbound-retried" and "KeyError" in log[-1]["detail"]


def test_queue_retry_explains_what_it_cannot_retry(cli, member, daemon, sink, store):
    post(daemon, "Handled")
    sink.wait_for(lambda s: copies(s, "Handled") == 1, description="the post")
    sink.wait_for(lambda s: inbound_rows(store)[0].status == "done", description="handled")
    handled = f"in-{inbound_rows(store)[0].id}"
    for ref, says in ((handled, "was handled already"), ("in-999", "no incoming message in-999"),
                      ("out-1", "retried by the delivery worker"), ("x", "no incoming message")):
        result = cli("queue", "retry", ref, ok=False)
        assert result.exit_code == 1 and says in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_retrying_gives_up_after_five_days(cli, member, store, settings, clock, failing_once):
    raw = make_message(sender=JANE, subject="Never handled")
    with store.unit_of_work() as session:
        list_id = session.scalars(select(MailingList.id)).one()
        session.add(Inbound(mail_from=JANE, rcpt=LIST, list_id=list_id, role="post", raw=raw,
                            size=len(raw), attempts=124))  # the last try within five days
    failing_once(database_locked())
    assert route_one(store, settings, Renderer(settings.templates_dir), clock)
    (row,) = inbound_rows(store)
    assert row.status == "failed" and row.next_attempt_at is None
    assert row.error.startswith("gave up after 125 attempts: OperationalError")


@pytest.mark.parametrize("message", ["no such table: out_messages",
                                     "no such column: members.nickname"])
def test_a_missing_table_or_column_is_a_bug_that_fails_at_once(cli, member, store, settings,
                                                              clock, failing_once, message):
    raw = make_message(sender=JANE, subject="Handled by old code")
    with store.unit_of_work() as session:
        list_id = session.scalars(select(MailingList.id)).one()
        session.add(Inbound(mail_from=JANE, rcpt=LIST, list_id=list_id, role="post", raw=raw,
                            size=len(raw)))
    failing_once(schema_bug(message))
    assert route_one(store, settings, Renderer(settings.templates_dir), clock)
    (row,) = inbound_rows(store)
    assert row.status == "failed" and row.next_attempt_at is None and row.attempts == 0
    assert "OperationalError" in row.error and message in row.error


@pytest.fixture
def untimed_batches(monkeypatch) -> None:
    """A batch closes after its messages, not after 50 ms (a loaded test machine is slow)."""
    monkeypatch.setattr(router, "ROUTE_BATCH_SECONDS", 600.0)


def _store_posts(store, subjects: list[str]) -> None:
    with store.unit_of_work() as session:
        list_id = session.scalars(select(MailingList.id)).one()
        for subject in subjects:
            raw = make_message(sender=JANE, subject=subject)
            session.add(Inbound(mail_from=JANE, rcpt=LIST, list_id=list_id, role="post",
                                raw=raw, size=len(raw)))


def test_waiting_posts_are_routed_together_and_a_bug_in_one_fails_only_it(
        cli, member, store, settings, clock, failing_once, untimed_batches):
    _store_posts(store, ["One", "Two", "Three"])
    failing_once(KeyError("role"))
    prepared = prepare_due(store, clock.now())
    assert len(prepared) == 3
    assert route_due(store, settings, Renderer(settings.templates_dir), clock, prepared) == 3
    assert [r.status for r in inbound_rows(store)] == ["failed", "done", "done"]
    assert "KeyError" in inbound_rows(store)[0].error


def test_a_transient_failure_in_a_batch_puts_off_only_that_post(
        cli, member, store, settings, clock, monkeypatch, untimed_batches):
    _store_posts(store, ["One", "Two", "Three"])
    real = router.HANDLERS[Role.POST]
    calls: list[int] = []

    def handler(ctx: Context) -> str:  # the second post meets a locked database, once
        calls.append(ctx.inbound.id)
        if len(calls) == 2:
            raise database_locked()
        return real(ctx)

    monkeypatch.setitem(router.HANDLERS, Role.POST, handler)
    renderer = Renderer(settings.templates_dir)
    assert route_due(store, settings, renderer, clock, prepare_due(store, clock.now())) == 2
    rows = inbound_rows(store)
    assert [r.status for r in rows] == ["done", "new", "new"]
    assert (rows[1].attempts, rows[2].attempts) == (1, 0)
    assert rows[1].next_attempt_at is not None and rows[2].next_attempt_at is None
    assert route_due(store, settings, renderer, clock) == 1  # the third, the second waits
    assert [r.status for r in inbound_rows(store)] == ["done", "new", "done"]


def test_the_waits_double_from_a_minute_to_an_hour_for_five_days():
    assert [retry_delay(n) for n in (1, 2, 3, 6, 7, 50)] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4),
        timedelta(minutes=32), timedelta(hours=1), timedelta(hours=1)]
    last = max(n for n in range(1, 500) if retry_delay(n) is not None)
    spent = sum((retry_delay(n) or timedelta() for n in range(1, last + 1)), timedelta())
    assert RETRY_FOR - timedelta(hours=1) <= spent < RETRY_FOR
    assert retry_delay(last + 1) is None


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("error", "passing"), [
    (database_locked(), True),
    (dns.exception.Timeout(), True),
    (DnsFailure("_dmarc.example.org: SERVFAIL"), True),
    (TimeoutError("timed out"), True),
    (ConnectionResetError("reset"), True),
    (_raised_from(RuntimeError("while storing"), database_locked()), True),
    (schema_bug("no such table: out_messages"), False),
    (schema_bug("no such column: members.nickname"), False),
    (_raised_from(RuntimeError("while storing"), schema_bug("no such table: x")), False),
    (KeyError("role"), False),
    (ValueError("bad header"), False),
    (IntegrityError("INSERT …", {}, sqlite3.IntegrityError("UNIQUE")), False),
])
def test_which_failures_pass(error, passing):
    assert transient(error) is passing
