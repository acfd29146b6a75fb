"""The bounce corpus (tests/data/bounces/): every report read and attributed as expected.

Each report is checked twice: parsed on its own (which address failed, and how), then handled
by the router as if it had arrived at the envelope address it names, against a list whose
members carry the corpus's tokens and whose outgoing queue holds the posts the reports return:
the right member, the right kind, and whether it moved the score.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from listserv.bounces.reports import Kind, read_report
from listserv.clock import FakeClock
from listserv.mail.addresses import Role
from listserv.mail.render import Renderer
from listserv.router.dispatch import route_one
from listserv.store.models.core import Inbound, MailingList, Member, Owner
from listserv.store.models.features import BounceEvent, BounceScore
from listserv.store.models.outgoing import OutMessage, OutRecipient

CORPUS = Path(__file__).parent / "data" / "bounces"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())
REPORTS: dict[str, dict[str, Any]] = EXPECTED["reports"]
COUNTING = {"permanent", "temporary"}


def test_the_corpus_covers_every_mta_and_kind():
    assert len(REPORTS) >= 40
    assert sorted(p.stem for p in CORPUS.glob("*.eml")) == sorted(REPORTS)
    kinds_by_mta: dict[str, set[str]] = {}
    for report in REPORTS.values():
        for _, kind, _ in report["expect"]:
            kinds_by_mta.setdefault(report["mta"], set()).add(kind)
    wanted = {"permanent", "temporary", "delayed", "policy", "autoreply"}
    for mta in ("Postfix", "Exim", "Sendmail", "Exchange/Office 365", "Gmail", "Yahoo"):
        assert wanted <= kinds_by_mta[mta], (mta, wanted - kinds_by_mta[mta])
    # qmail writes no delay warnings of its own (it retries silently): the rest it has.
    assert wanted - {"delayed"} <= kinds_by_mta["qmail"]


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_each_report_parses_to_the_failed_address_and_its_kind(name):
    expected = REPORTS[name]
    report = read_report((CORPUS / f"{name}.eml").read_bytes())
    failures = {f.address: f.kind.value for f in report.failures}
    for member, kind, _ in expected["expect"]:
        if kind in ("autoreply", ""):
            assert member not in failures
        else:
            assert failures.get(member) == kind, (failures, report)
    if any(kind == "autoreply" for _, kind, _ in expected["expect"]):
        assert report.automatic and not report.failures
    if not expected["expect"] and not report.failures:
        assert not report.automatic  # nothing recognisable: for the chair
    for failure in report.failures:
        assert failure.reason or failure.status, failure
    if report.failures and name != "forged-dsn-no-matching-message":
        assert report.message_ids, "the report quotes the original Message-ID"


def test_the_same_report_is_read_once_however_many_tokens_it_came_back_to():
    """One transaction to 50 bounce tokens is 50 rows of one message: read once, not 50 times."""
    raw = (CORPUS / f"{sorted(REPORTS)[0]}.eml").read_bytes()
    first = read_report(raw)
    assert read_report(bytes(bytearray(raw))) is first  # equal bytes, another object
    assert read_report(raw + b"\n") is not first


def _seed(session) -> MailingList:
    ml = MailingList(name="shma", domain="lists.example.org", extra={},
                     created_at=datetime.now(UTC))
    ml.owners = [Owner(email="chair@example.org")]
    session.add(ml)
    session.flush()
    for address, tokens in EXPECTED["members"].items():
        session.add(Member(list_id=ml.id, email=address, bounce_token=tokens["bounce_token"],
                           leave_token=tokens["leave_token"]))
    session.flush()
    # The posts the reports return, as we queued and sent them to every member.
    for key, message_id in EXPECTED["posts"].items():
        raw = (f"From: someone@example.org\nTo: shma@lists.example.org\nSubject: {key}\n"
               f"Message-ID: {message_id}\n\nbody\n").encode()
        message = OutMessage(list_id=ml.id, kind="post", raw=raw, personalize=True,
                             envelope_from="shma-bounces@lists.example.org",
                             created_at=datetime.now(UTC))
        session.add(message)
        session.flush()
        for member in session.scalars(select(Member)):
            session.add(OutRecipient(message_id=message.id, member_id=member.id,
                                     email=member.email, status="sent"))
    return ml


def _chair_notices(session) -> int:
    return session.scalar(select(func.count()).select_from(OutRecipient).join(
        OutMessage, OutMessage.id == OutRecipient.message_id).where(
        OutRecipient.email == "chair@example.org")) or 0


@pytest.mark.both_backends
def test_each_report_is_attributed_and_counted_as_expected(store, settings):
    clock = FakeClock(datetime.now(UTC))
    renderer = Renderer()
    with store.unit_of_work() as session:
        ml_id = _seed(session).id
    problems: list[str] = []
    for name, expected in sorted(REPORTS.items()):
        raw = (CORPUS / f"{name}.eml").read_bytes()
        rcpt = expected["to"]
        token = rcpt.partition("@")[0].partition("+")[2]
        with store.unit_of_work() as session:
            session.execute(delete(BounceEvent))
            session.execute(delete(BounceScore))
            before = _chair_notices(session)
            session.add(Inbound(rcpt=rcpt, list_id=ml_id, role=Role.BOUNCES.value, token=token,
                                raw=raw, size=len(raw), mail_from="",
                                received_at=clock.now()))
        assert route_one(store, settings, renderer, clock)
        with store.unit_of_work() as session:
            inbound = session.scalars(select(Inbound).order_by(Inbound.id.desc())).first()
            assert inbound is not None
            if inbound.status != "done":
                problems.append(f"{name}: handler failed: {inbound.error}")
                continue
            events = session.execute(select(BounceEvent, Member.email).join(
                Member, Member.id == BounceEvent.member_id)).all()
            got = {email: event for event, email in events}
            want = {m: (k, c) for m, k, c in expected["expect"] if k}
            if set(got) != set(want):
                problems.append(f"{name}: members {sorted(got)} != {sorted(want)} "
                                f"({inbound.outcome})")
                continue
            for email, (kind, counts) in want.items():
                event = got[email]
                if (event.kind, event.counted) != (kind, counts):
                    problems.append(f"{name}: {email} {event.kind}/counted={event.counted}, "
                                    f"expected {kind}/counted={counts} ({event.reason})")
                if counts != (kind in COUNTING and event.verified):
                    problems.append(f"{name}: counts={counts} for a {kind} report")
                score = session.get(BounceScore, event.member_id)
                weight = {"permanent": 1.0, "temporary": 0.5}.get(kind, 0.0) if counts else 0.0
                if score is None or score.score != weight:
                    problems.append(f"{name}: score {score and score.score} != {weight}")
            told = _chair_notices(session) > before
            if told != expected["chair"]:
                problems.append(f"{name}: chair told={told}, expected {expected['chair']} "
                                f"({inbound.outcome})")
    assert not problems, "\n".join(problems)


def test_no_report_gets_an_answer_and_the_kinds_are_tallied(store, settings):
    """Handled one after another: the only mail queued is for the chair."""
    clock = FakeClock(datetime.now(UTC))
    with store.unit_of_work() as session:
        ml_id = _seed(session).id
        sent_before = {r.id for r in session.scalars(select(OutRecipient))}
    tally: Counter[str] = Counter()
    for name, expected in sorted(REPORTS.items()):
        raw = (CORPUS / f"{name}.eml").read_bytes()
        with store.unit_of_work() as session:
            session.add(Inbound(rcpt=expected["to"], list_id=ml_id, role=Role.BOUNCES.value,
                                token=expected["to"].partition("@")[0].partition("+")[2],
                                raw=raw, size=len(raw), received_at=clock.now()))
        route_one(store, settings, Renderer(), clock)
        tally.update(kind for _, kind, _ in expected["expect"] if kind)
    with store.unit_of_work() as session:
        new = session.scalars(select(OutRecipient).where(OutRecipient.id.not_in(sent_before)))
        assert {r.email for r in new} <= {"chair@example.org"}
    assert tally[Kind.PERMANENT.value] >= 15 and tally[Kind.AUTOREPLY.value] >= 7


def test_a_report_to_the_chair_carries_the_report(store, settings):
    clock = FakeClock(datetime.now(UTC))
    with store.unit_of_work() as session:
        ml_id = _seed(session).id
    raw = (CORPUS / "unrecognised-report-format.eml").read_bytes()
    with store.unit_of_work() as session:
        session.add(Inbound(rcpt="shma-bounces@lists.example.org", list_id=ml_id,
                            role=Role.BOUNCES.value, token="", raw=raw, size=len(raw),
                            received_at=clock.now()))
    route_one(store, settings, Renderer(), clock)
    with store.unit_of_work() as session:
        [notice] = session.scalars(select(OutMessage).join(
            OutRecipient, OutRecipient.message_id == OutMessage.id).where(
            OutRecipient.email == "chair@example.org")).all()
        from email import message_from_bytes, policy

        msg = message_from_bytes(notice.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        assert msg["Subject"] == "shma: a bounce report for you to look at"
        [attached] = [p for p in msg.iter_attachments()]
        assert attached.get_content_type() == "message/rfc822"
        assert attached.get_content()["Subject"] == "Your mail could not be processed"
        assert "a report with no recognisable address" in msg.get_body().get_content()


def test_reports_to_the_chair_are_capped_per_day(store, settings):
    clock = FakeClock(datetime.now(UTC))
    with store.unit_of_work() as session:
        ml_id = _seed(session).id
    raw = (CORPUS / "unrecognised-report-format.eml").read_bytes()
    for _ in range(22):
        with store.unit_of_work() as session:
            session.add(Inbound(rcpt="shma-bounces@lists.example.org", list_id=ml_id,
                                role=Role.BOUNCES.value, token="", raw=raw, size=len(raw),
                                received_at=clock.now()))
        route_one(store, settings, Renderer(), clock)
    with store.unit_of_work() as session:
        assert _chair_notices(session) == 20
        outcomes = [i.outcome for i in session.scalars(select(Inbound).order_by(Inbound.id))]
    assert outcomes[-1] == ("a report with no recognisable address: logged (chair cap "
                            "reached)")
