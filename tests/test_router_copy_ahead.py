"""The router makes a post's copy for the members before its write transaction (issue 15),
and queues it only if the list's settings are still those it was made from."""

from __future__ import annotations

from sqlalchemy import select

from listserv.mail.render import Renderer
from listserv.router.dispatch import prepare_due, route_due
from listserv.store.models.core import Inbound, MailingList
from listserv.store.models.outgoing import OutMessage

from .helpers import LIST, make_message

JANE = "jane@example.org"


def _store_post(store, subject: str) -> None:
    with store.unit_of_work() as session:
        list_id = session.scalars(select(MailingList.id)).one()
        raw = make_message(sender=JANE, subject=subject)
        session.add(Inbound(mail_from=JANE, rcpt=LIST, list_id=list_id, role="post", raw=raw,
                            size=len(raw)))


def _queued_post(store) -> bytes:
    with store.reading() as session:
        return session.scalars(select(OutMessage.raw).where(OutMessage.kind == "post")).one()


def test_the_copy_made_before_the_transaction_is_the_one_queued(cli, shma, store, settings,
                                                                 clock):
    cli("members", "add", LIST, JANE, "--no-welcome")
    _store_post(store, "Programme")
    renderer = Renderer(settings.templates_dir)
    prepared = prepare_due(store, clock.now(), 1, settings, renderer)
    assert prepared[0].copy is not None
    assert b"List-Id:" in prepared[0].copy.wire
    assert route_due(store, settings, renderer, clock, prepared, 1) == 1
    assert _queued_post(store) == prepared[0].copy.wire


def test_a_copy_made_before_the_list_changed_is_made_again(cli, shma, store, settings, clock):
    cli("members", "add", LIST, JANE, "--no-welcome")
    _store_post(store, "Programme")
    renderer = Renderer(settings.templates_dir)
    prepared = prepare_due(store, clock.now(), 1, settings, renderer)
    assert prepared[0].copy is not None and b"[Agenda]" not in prepared[0].copy.wire
    cli("lists", "set", LIST, "subject_prefix", "[Agenda]")  # between the read and the transaction
    assert route_due(store, settings, renderer, clock, prepared, 1) == 1
    queued = _queued_post(store)
    assert b"Subject: [Agenda] Programme" in queued
    assert queued != prepared[0].copy.wire
