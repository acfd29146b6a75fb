"""The chair's and editors' desk (SPEC §6): submissions listed, shown and decided on.

The decisions: accept, decline (the author gets a courteous reply), publish in an issue; and
for a held follow-up (one not proven to come from the author or an editor), approve it as the
next revision or discard it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.column.deadlines import parse_deadline
from listserv.column.submissions import next_number, notice_context
from listserv.delivery.notices import notify
from listserv.errors import ListservError
from listserv.mail.render import Renderer, one_line
from listserv.mail.tokens import message_id
from listserv.store.audit import audit
from listserv.store.lookup import by_number
from listserv.store.models.core import MailingList
from listserv.store.models.features import Submission, SubmissionRevision

STATUSES = ("received", "accepted", "declined", "published")


def _matches_deadline(submission: Submission, wanted: str) -> bool:
    return (submission.deadline == wanted if len(wanted) == 10
            else submission.deadline[5:] == wanted)


def find_submission(session: Session, ref: str) -> Submission:
    ref = ref.strip()
    found = session.scalar(select(Submission).where(Submission.tracking_id == ref.upper()))
    if found is None:
        found = by_number(session, Submission, ref)
    if found is None:
        raise ListservError(f"no submission {ref}")
    return found


def latest(submission: Submission) -> SubmissionRevision:
    stored = [r for r in submission.revisions if r.status == "stored"]
    return max(stored, key=lambda r: r.number or 0)


def submissions_of(session: Session, ml: MailingList | None, *, status: str | None = None,
                   deadline: str | None = None) -> list[Submission]:
    query = select(Submission).order_by(Submission.id)
    if ml is not None:
        query = query.where(Submission.list_id == ml.id)
    if status:
        if status not in STATUSES:
            raise ListservError(f"--status {status!r}: one of {', '.join(STATUSES)}")
        query = query.where(Submission.status == status)
    found = list(session.scalars(query))
    if deadline:
        wanted = parse_deadline(deadline)
        found = [s for s in found if _matches_deadline(s, wanted)]
    return found


def word_count(text: str) -> int:
    return len(re.findall(r"\w+(?:['’-]\w+)*", text))


def submission_dict(submission: Submission, *, full: bool = False) -> dict[str, Any]:
    last = latest(submission)
    info: dict[str, Any] = {
        "id": submission.tracking_id,
        "title": submission.title,
        "sender": submission.sender,
        "status": submission.status,
        "files": [f["name"] for f in last.files],
        "received": submission.created_at.isoformat(),
        "list": submission.mailing_list.address,
        "name": submission.name,
        "member": submission.member,
        "deadline": submission.deadline,
        "revision": last.number,
        "issue": submission.issue,
        "reason": submission.reason,
        "held_follow_ups": sum(1 for r in submission.revisions if r.status == "held"),
    }
    if full:
        info["revisions"] = [{
            "id": str(r.id), "revision": r.number, "status": r.status, "sender": r.sender,
            "title": r.title,
            "received": r.received_at.isoformat(), "folder": r.folder,
            "words": word_count(r.body),
            "files": [{k: f[k] for k in ("name", "original", "type", "size", "macros")}
                      for f in r.files],
            "refused": r.refused,
        } for r in submission.revisions]
        info["text"] = last.body
    return info


def _decide(submission: Submission, status: str, now: datetime, actor: str) -> None:
    submission.status, submission.decided_at, submission.decided_by = status, now, actor


def accept(session: Session, submission: Submission, now: datetime, actor: str) -> str:
    if submission.status != "received":
        raise ListservError(f"submission {submission.tracking_id} is {submission.status}")
    _decide(submission, "accepted", now, actor)
    audit(session, now, actor, "column-accepted", submission.tracking_id, submission.list_id)
    return f"accepted {submission.tracking_id}"


def decline(session: Session, renderer: Renderer, submission: Submission, now: datetime,
            actor: str, reason: str) -> str:
    if submission.status not in ("received", "accepted"):
        raise ListservError(f"submission {submission.tracking_id} is {submission.status}")
    _decide(submission, "declined", now, actor)
    submission.reason = reason.strip()
    audit(session, now, actor, "column-declined", f"{submission.tracking_id}: {reason}",
          submission.list_id)
    ml = submission.mailing_list
    sent = notify(session, renderer, ml, "column-declined.txt", [submission.sender], now,
                  kind="reply", lang=submission.lang, reason=submission.reason,
                  **notice_context(ml, submission, latest(submission)))
    told = "" if sent else " (the author's automatic-mail cap is reached: not mailed)"
    return f"declined {submission.tracking_id}{told}"


def publish(session: Session, submission: Submission, issue: str, now: datetime,
            actor: str) -> str:
    issue = one_line(issue)
    if not issue:
        raise ListservError("--issue cannot be empty")
    if submission.status not in ("received", "accepted", "published"):
        raise ListservError(f"submission {submission.tracking_id} is {submission.status}")
    _decide(submission, "published", now, actor)
    submission.issue = issue
    audit(session, now, actor, "column-published", f"{submission.tracking_id} in {issue}",
          submission.list_id)
    return f"published {submission.tracking_id} in {issue}"


def find_follow_up(submission: Submission, ref: str) -> SubmissionRevision:
    """A held follow-up of `submission` by the id `submissions show` gives it."""
    for revision in submission.revisions:
        if str(revision.id) == ref.strip() and revision.status == "held":
            return revision
    raise ListservError(f"no held follow-up {ref} of {submission.tracking_id}")


def approve_follow_up(session: Session, renderer: Renderer, revision: SubmissionRevision,
                      now: datetime, actor: str) -> str:
    """Make a held follow-up the submission's next revision; its sender is acknowledged
    (their reply to that acknowledgement then proves them)."""
    submission = revision.submission
    ml = submission.mailing_list
    revision.number, revision.status = next_number(session, submission), "stored"
    revision.ack_message_id = message_id(ml.domain)
    session.flush()
    audit(session, now, actor, "column-follow-up-approved",
          f"{submission.tracking_id} revision {revision.number} from {revision.sender}",
          submission.list_id)
    notify(session, renderer, ml, "column-received.txt", [revision.sender], now, kind="reply",
           lang=submission.lang, ack_id=revision.ack_message_id,
           **notice_context(ml, submission, revision))
    return f"{submission.tracking_id}: the follow-up is revision {revision.number}"


def discard_follow_up(session: Session, revision: SubmissionRevision, now: datetime,
                      actor: str) -> str:
    """Drop a held follow-up: it stays listed as discarded, never a revision."""
    submission = revision.submission
    revision.status = "discarded"
    audit(session, now, actor, "column-follow-up-discarded",
          f"{submission.tracking_id}: #{revision.id} from {revision.sender}", submission.list_id)
    return f"{submission.tracking_id}: follow-up {revision.id} discarded"
