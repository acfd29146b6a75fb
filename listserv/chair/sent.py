"""Delivered outgoing mail for the chair (`listserv queue --sent`): per message, how many
recipients it was sent to, failed for or dropped, whether the rows are still there or retention
has compacted them into the message's counts (docs/retention.md)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.models.core import MailingList
from listserv.store.models.outgoing import RESULTS, OutMessage, OutRecipient


def sent_items(session: Session, limit: int = 100) -> list[dict[str, str]]:
    """The newest `limit` messages none of whose recipients is still queued, with counts."""
    queued = select(OutRecipient.id).where(OutRecipient.message_id == OutMessage.id,
                                           OutRecipient.status == "queued").exists()
    messages = session.execute(
        select(OutMessage.id, OutMessage.kind, OutMessage.created_at, OutMessage.sent,
               OutMessage.failed, OutMessage.dropped,
               (func.length(OutMessage.raw) > 0).label("has_bytes"),
               MailingList.name, MailingList.domain)
        .outerjoin(MailingList, MailingList.id == OutMessage.list_id)
        .where(~queued).order_by(OutMessage.id.desc()).limit(limit)
    ).all()
    live: dict[tuple[int, str], int] = {
        (message_id, status): count for message_id, status, count in session.execute(
            select(OutRecipient.message_id, OutRecipient.status, func.count())
            .where(OutRecipient.message_id.in_([m.id for m in messages]))
            .group_by(OutRecipient.message_id, OutRecipient.status))
    }
    items = []
    for m in messages:
        compacted = dict(zip(RESULTS, (m.sent, m.failed, m.dropped), strict=True))
        items.append({
            "id": f"out-{m.id}", "kind": m.kind,
            "list": f"{m.name}@{m.domain}" if m.name else "",
            "queued_at": m.created_at.isoformat(),
            **{result: str(compacted[result] + live.get((m.id, result), 0))
               for result in RESULTS},
            "bytes": "kept" if m.has_bytes else "pruned",
        })
    return items
