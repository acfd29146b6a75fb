"""Reports the bounce handler could not use, forwarded to the list's owners as attachments,
at most CHAIR_REPORTS_PER_DAY a day per list, and each one a chair notice under the list's hourly
cap (SPEC §7: one transaction to many `-bounces+TOKEN` addresses is not a flood of notices)."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.delivery.notices import charge_chair_notice, list_context
from listserv.delivery.outbox import enqueue
from listserv.mail.addresses import Role
from listserv.mail.headers import header_text
from listserv.mail.render import Renderer
from listserv.mail.wire import message_bytes
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import AuditEntry, MailingList

CHAIR_REPORTS_PER_DAY = 20


def report_to_chair(session: Session, renderer: Renderer, ml: MailingList, raw: bytes,
                    now: datetime, why: str, inbound_id: int) -> bool:
    """Send a report we could not use to the owners, attached; False past either cap.

    The cap keeps a flood of odd reports (or our own notices bouncing back) from becoming a
    flood of notices.
    """
    since = now - timedelta(days=1)
    sent = session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.list_id == ml.id, AuditEntry.action == "bounce-to-chair",
        AuditEntry.at > since))
    if (sent or 0) >= CHAIR_REPORTS_PER_DAY:
        audit(session, now, DAEMON, "bounce-ignored",
              f"inbound #{inbound_id}: {why}; not sent to the chair (over "
              f"{CHAIR_REPORTS_PER_DAY} a day)", ml.id)
        return False
    if charge_chair_notice(session, ml, now):
        audit(session, now, DAEMON, "chair-notice-capped", f"inbound #{inbound_id}: {why}",
              ml.id)
        return False
    report = email.message_from_bytes(raw, policy=email.policy.default)
    for owner in ml.owners:
        msg = renderer.mail("notice-bounce-report.txt", domain=ml.domain, now=now,
                            to=owner.email, why=why, inbound_id=inbound_id,
                            subject=header_text(report, "Subject"),
                            sender=header_text(report, "From"), **list_context(ml))
        try:
            msg.add_attachment(report)  # message/rfc822
            data = message_bytes(msg)
        except Exception:  # an unserialisable report goes as text
            msg = renderer.mail("notice-bounce-report.txt", domain=ml.domain, now=now,
                                to=owner.email, why=why, inbound_id=inbound_id, subject="",
                                sender="", **list_context(ml))
            msg.add_attachment(raw.decode("utf-8", "replace"), filename="report.txt")
            data = message_bytes(msg)
        enqueue(session, data, [owner.email], envelope_from=ml.role_address(Role.BOUNCES),
                kind="notice", list_id=ml.id, now=now, eightbit=renderer.eightbit)
    audit(session, now, DAEMON, "bounce-to-chair", f"inbound #{inbound_id}: {why}", ml.id)
    return True
