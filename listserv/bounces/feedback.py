"""The delivery worker's results, scored: `DeliveryBounces` is the bounce side of
`delivery.feedback.DeliveryFeedback`, which the daemon hands to its delivery workers (a refusal
at RCPT TO, a give-up after the retries, and the probes the relay accepted)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.bounces.reports import Kind, classify_refusal
from listserv.bounces.scoring import register
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import BounceProbe
from listserv.store.models.outgoing import OutRecipient

log = logging.getLogger(__name__)


def _score_delivery(session: Session, row: OutRecipient, kind: Kind, reply: str,
                    now: datetime) -> None:
    """Score a failure of a member's copy (or a probe) seen during our own delivery."""
    if row.member_id is None:
        return
    member = session.get(Member, row.member_id)
    if member is None:
        return
    try:
        # A fault in scoring must never cost the delivery its recorded result.
        with session.begin_nested():
            ml = session.get(MailingList, member.list_id)
            assert ml is not None
            probe = session.scalar(select(BounceProbe)
                                   .where(BounceProbe.out_recipient_id == row.id))
            register(session, ml, member, kind, reply, now,
                     source="probe" if probe is not None else "delivery", probe=probe)
    except Exception:
        log.exception("could not score the failure of %s (recipient %s)", row.email, row.id)


class DeliveryBounces:
    """The delivery worker's results, scored (`delivery.feedback.DeliveryFeedback`).

    The daemon hands one to its delivery workers.
    """

    def refused(self, session: Session, row: OutRecipient, reply: str, now: datetime) -> bool:
        """A recipient refused for good at RCPT time; False when it is to be retried instead.

        A provider's rate or quota limit ("daily user sending limit exceeded") says nothing
        about the recipient: False, and the caller retries it with its backoff. Otherwise,
        when the row was a member's copy (or a probe), the refusal is scored like a bounce
        report.
        """
        kind, _ = classify_refusal(reply)
        if kind is Kind.RATE:
            return False
        _score_delivery(session, row, kind, reply, now)
        return True

    def gave_up(self, session: Session, row: OutRecipient, reply: str, now: datetime) -> None:
        """The retries of a recipient ended on a temporary refusal at RCPT TO (a mailbox
        full): scored like a report of a temporary failure (+0.5), or not counted when its
        words are a policy or a sending limit."""
        kind, _ = classify_refusal(reply)
        if kind is Kind.PERMANENT:
            kind = Kind.TEMPORARY  # a 4xx reply the relay never turned into a 5xx
        _score_delivery(session, row, kind, f"gave up: {reply}", now)

    def delivered(self, session: Session, recipient_ids: list[int], now: datetime) -> None:
        """Mark the probes among the recipients sent as accepted by the relay."""
        if not recipient_ids:
            return
        wanted = set(recipient_ids)
        probes = session.scalars(select(BounceProbe).where(
            BounceProbe.out_recipient_id.between(min(recipient_ids), max(recipient_ids)),
            BounceProbe.status == "sent"))
        for probe in probes:
            if probe.out_recipient_id in wanted:
                probe.status, probe.accepted_at = "accepted", now
                log.info("probe %s (notice %s) accepted by the relay", probe.id, probe.warning)
