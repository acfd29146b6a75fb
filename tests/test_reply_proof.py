"""The reply proof (SPEC §2 "Who sent it", issue 14): a reply to a mail we generated and sent
to one address alone proves that address; nothing else we send counts.

Unit tests on the store (both backends): the outbox records what it queues, `identify` reads it,
retention prunes it. The end-to-end uses are in test_column.py and test_peer_input.py.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from listserv.delivery.notices import list_context, notify
from listserv.delivery.outbox import enqueue, enqueue_to_members
from listserv.identity.proof import identify
from listserv.mail.addresses import Destination, Role
from listserv.mail.message import parse
from listserv.mail.render import Renderer
from listserv.mail.wire import to_wire
from listserv.store.models.core import Inbound, MailingList
from listserv.store.models.outgoing import REPLY_PROOF_DAYS, SentOnlyTo
from listserv.store.retention import prune

from .helpers import LIST, make_message

JANE, KEN = "jane@example.net", "ken@example.net"


def _list(session) -> MailingList:
    return session.scalars(select(MailingList)).one()


def _sent_only_to(store) -> list[tuple[str, str]]:
    with store.reading() as session:
        return [(r.message_id, r.address) for r in session.scalars(
            select(SentOnlyTo).order_by(SentOnlyTo.id))]


def _message_id(store, address: str) -> str:
    [(message_id, _)] = [r for r in _sent_only_to(store) if r[1] == address]
    return message_id


def _identity(store, settings, now, sender: str, **headers: str):
    raw = make_message(sender=sender, to=LIST, **headers)
    with store.unit_of_work() as session:
        inbound = Inbound(mail_from=sender, rcpt=LIST, raw=raw, size=len(raw), role="post",
                          received_at=now)
        return identify(session, settings, inbound, parse(raw),
                        Destination(LIST, Role.POST), now)


@pytest.mark.both_backends
def test_a_reply_to_a_mail_sent_only_to_the_sender_proves_it(shma, store, settings, clock):
    now = clock.now()
    with store.unit_of_work() as session:
        notify(session, Renderer(), _list(session), "deny-post-nonmember.txt", [JANE], now,
               kind="reply")
    ours = _message_id(store, JANE)
    assert _identity(store, settings, now, JANE).proven is False
    by_reply = _identity(store, settings, now, f"Jane <{JANE.upper()}>", In_Reply_To=ours)
    assert (by_reply.address, by_reply.proven) == (JANE, True)
    assert ours in by_reply.reason and by_reply.proves(JANE) and not by_reply.proves(KEN)
    # Deep in a thread: the Message-ID among the References.
    thread = f"<a@example.org> {ours} <b@example.org>"
    assert _identity(store, settings, now, JANE, References=thread).proven
    # Someone else quoting it (Ken saw Jane's reply) proves nothing: the From must match.
    assert not _identity(store, settings, now, KEN, In_Reply_To=ours).proven
    # A Message-ID we never sent, or one guessed near ours, proves nothing.
    assert not _identity(store, settings, now, JANE, In_Reply_To="<nope@example.org>").proven
    # Past REPLY_PROOF_DAYS a reply proves nothing any more.
    later = now + timedelta(days=REPLY_PROOF_DAYS, minutes=1)
    assert not _identity(store, settings, later, JANE, In_Reply_To=ours).proven


@pytest.mark.both_backends
def test_only_mail_we_generate_for_one_address_is_recorded(shma, store, settings, clock):
    now = clock.now()
    with store.unit_of_work() as session:
        ml = _list(session)
        # To two addresses at once: nothing (either could quote it).
        composed = Renderer().mail("deny-post-nonmember.txt", domain=ml.domain, now=now, to=JANE,
                                   **list_context(ml))
        enqueue(session, composed, [JANE, KEN], envelope_from=ml.address, kind="reply",
                now=now, list_id=ml.id)
        # A forwarded copy keeps its author's Message-ID, which the author knows: nothing.
        forwarded = (b"From: mallory@evil.example\r\nMessage-ID: <known@evil>\r\n"
                     b"Subject: x\r\n\r\nhello\r\n")
        enqueue(session, forwarded, [KEN], envelope_from=ml.address, kind="owner", now=now,
                list_id=ml.id)
        # List copies to the members in bulk: nothing.
        enqueue_to_members(session, ml, make_message(sender=JANE), now=now)
        assert session.scalar(select(func.count()).select_from(SentOnlyTo)) == 0
        # The same address twice is one recipient; bytes without a Message-ID get one of ours.
        bare = b"From: list@lists.example.org\r\nSubject: x\r\n\r\nhello\r\n"
        queued = enqueue(session, bare, [KEN, KEN], envelope_from=ml.address, kind="notice",
                         now=now, list_id=ml.id)
        recorded = to_wire(queued.raw, sender=ml.address, now=now)
    [(message_id, address)] = _sent_only_to(store)
    assert address == KEN and message_id.encode() in recorded
    assert not _identity(store, settings, now, JANE, In_Reply_To="<known@evil>").proven


def test_every_message_id_we_generate_comes_from_secrets(monkeypatch):
    """Renderer.mail and the wire serializer both take their Message-IDs from
    `tokens.message_id`, whose randomness is `secrets.token_bytes` (unguessable)."""
    import secrets

    calls: list[int] = []

    def token_bytes(n: int) -> bytes:
        calls.append(n)
        return b"\x01" * n

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)
    expected = base64.b32encode(b"\x01" * 15).decode().lower()
    now = datetime(2026, 5, 4, tzinfo=UTC)
    rendered = Renderer().mail("deny-post-nonmember.txt", domain="lists.example.org", now=now,
                               to=JANE, **list_context(MailingList(
                                   name="shma", domain="lists.example.org", description="",
                                   resources="", extra={})))
    assert rendered["Message-ID"] == f"<{expected}@lists.example.org>"
    wire = to_wire(b"Subject: x\r\n\r\nhello\r\n", sender=LIST, now=now)
    assert f"Message-ID: <{expected}@lists.example.org>".encode() in wire
    assert calls and all(n >= 15 for n in calls)


@pytest.mark.both_backends
def test_records_are_pruned_once_they_prove_nothing(shma, store, clock):
    now = clock.now()
    with store.unit_of_work() as session:
        for n, days in enumerate((REPLY_PROOF_DAYS + 1, REPLY_PROOF_DAYS + 2, 1)):
            session.add(SentOnlyTo(message_id=f"<{n}@x>", address=JANE,
                                   at=now - timedelta(days=days)))
    assert prune(store, now, 30, 14, batch=1).sent_only_to == 2
    assert _sent_only_to(store) == [("<2@x>", JANE)]
