"""The chair's daily summary (SPEC §2): what waits for her, as a form she answers by reply.

Once a day per list, while anything has been waiting since before today: held posts, join
requests waiting for approval, requests nobody could read, and non-members' peer-input
requests, each under its stable id (the command line's). The summary's own token records the
ids it listed, so a reply acts on those only (`chair.replies`). Held column follow-ups are
listed too, for her to see, but decided by replying to their own notice or on the command
line: their numbers are a submission's, and would clash with the others'.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.delivery.notices import SUMMARY_TEMPLATE, notify_chair
from listserv.mail.render import Renderer
from listserv.store.models.core import Held, MailingList, Request
from listserv.store.models.features import PeerInput, Submission, SubmissionRevision
from listserv.store.once import claim_once


def _waiting(session: Session, ml: MailingList) -> dict[str, list[Any]]:
    held = session.scalars(select(Held).where(Held.list_id == ml.id, Held.status == "waiting")
                           .order_by(Held.id)).all()
    requests = session.scalars(select(Request).where(
        Request.list_id == ml.id, Request.status == "waiting").order_by(Request.id)).all()
    peer = session.scalars(select(PeerInput).where(
        PeerInput.list_id == ml.id, PeerInput.status == "held").order_by(PeerInput.id)).all()
    follow_ups = session.scalars(select(SubmissionRevision).join(Submission).where(
        Submission.list_id == ml.id, SubmissionRevision.status == "held")
        .order_by(SubmissionRevision.id)).all()
    return {"waiting": list(held),
            "follow_ups": list(follow_ups),
            "joins": [r for r in requests if r.kind != "unclear"],
            "unclear": [r for r in requests if r.kind == "unclear"],
            "peer_input": list(peer)}


def send_daily_summaries(session: Session, renderer: Renderer, now: datetime) -> int:
    """Once a day per list, tell the chair what has been waiting since before today; returns
    how many summaries were queued."""
    start_of_day = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
    sent = 0
    for ml in session.scalars(select(MailingList)).all():
        found = _waiting(session, ml)
        since = [item.created_at for key, rows in found.items() if key != "follow_ups"
                 for item in rows] + [r.received_at for r in found["follow_ups"]]
        if not any(at < start_of_day for at in since):
            continue
        if not claim_once(session, "held-summary", f"{ml.id}:{now.date().isoformat()}", now):
            continue
        listed = {"held": [h.id for h in found["waiting"]],
                  "request": [r.id for r in found["joins"] + found["unclear"]],
                  "peer_input": [p.id for p in found["peer_input"]]}
        notify_chair(session, renderer, ml, SUMMARY_TEMPLATE, now, decide="summary",
                     items=listed, count=len(since), **found)
        sent += 1
    return sent
