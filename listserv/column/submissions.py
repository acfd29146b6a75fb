"""Column submissions (SPEC §6): receiving them, and their revisions.

Mail to `NAME-column@` is a submission. It gets a tracking id `PREFIX-YYYY-NNN` (numbered per
list and year), its mail, text and attachments are stored under
`data_dir/submissions/<tracking id>/rev-N/`, the sender gets an acknowledgement and the chair
and editors a notice. Attachments are judged by their bytes (`attachments.sniff`), kept
within the list's size limits and written under safe, unique names; what is kept out is
named, with the reason, in the acknowledgement.

A follow-up (its subject carries the tracking id, or it replies to an acknowledgement) is the
next revision when it comes from the original sender or an editor and proves it (a reply to
the acknowledgement, which went to the author alone, does; SPEC §2 "Who sent it"); otherwise it
is held for the chair (kept, not numbered) and the author is told.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.column.deadlines import deadline_for, deadline_text
from listserv.column.settings import EDITORS, MAX_FILE_KB, MAX_TOTAL_KB, TYPES, column_name, prefix
from listserv.delivery.notices import notify, notify_chair
from listserv.identity.replies import quoted_ids
from listserv.mail import attachments as attachments
from listserv.mail.addresses import Role
from listserv.mail.headers import header_text
from listserv.mail.render import Renderer, one_line
from listserv.mail.text import body_text
from listserv.mail.tokens import message_id
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList, Member
from listserv.store.models.features import Submission, SubmissionRevision
from listserv.store.staging import staged_folder

MAX_TITLE = 300
MAX_BODY = 200_000
#: Names of our own files in a revision's folder (attachments never take them).
OWN_FILES = ("message.eml", "message.txt")
#: Where a revision's files are written until its unit of work commits (in submissions/; a
#: tracking id never starts with a dot).
STAGING = ".staging"
#: What is left of a submission whose author was forgotten (`chair.forget`): a bare row that
#: keeps its tracking id from being given again; no listing shows it, no follow-up finds it.
FORGOTTEN = "forgotten"

_REPLY = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr|rv|res|sv|antw)\s*(?:\[\d+\])?\s*:\s*)+",
                    re.IGNORECASE)
_TRACKING = re.compile(r"(?<![A-Za-z0-9-])([A-Za-z0-9][A-Za-z0-9-]{0,19}-\d{4}-\d{3,6})(?!\d)")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A column mail, read."""

    sender: str
    name: str
    title: str
    body: str
    raw: bytes
    msg: EmailMessage
    lang: str
    inbound_id: int | None


def title_of(msg: EmailMessage, ml: MailingList, tracking_id: str = "") -> str:
    subject = _REPLY.sub("", header_text(msg, "Subject"))
    subject = re.sub(rf"\[{re.escape(ml.name)}\]", "", subject, flags=re.IGNORECASE)
    if tracking_id:
        subject = re.sub(re.escape(tracking_id), "", subject, flags=re.IGNORECASE)
        subject = re.sub(r"^\s*your submission\s*", "", subject, flags=re.IGNORECASE)
    subject = _REPLY.sub("", subject)
    return one_line(subject).strip(" -:()[]")[:MAX_TITLE]


def find_target(session: Session, ml: MailingList, msg: EmailMessage) -> Submission | None:
    """The submission a follow-up is about: a tracking id in its subject, or a reply to an
    acknowledgement (In-Reply-To / References)."""
    for candidate in _TRACKING.findall(header_text(msg, "Subject")):
        found = session.scalar(select(Submission).where(
            Submission.list_id == ml.id, Submission.tracking_id == candidate.upper(),
            Submission.status != FORGOTTEN))
        if found is not None:
            return found
    ids = quoted_ids(msg)
    if ids:
        found = session.scalar(
            select(Submission).join(SubmissionRevision)
            .where(Submission.list_id == ml.id, SubmissionRevision.ack_message_id.in_(ids))
            .limit(1))
        if found is not None:
            return found
    return None


def _leaf_parts(msg: EmailMessage) -> list[EmailMessage]:
    """The attachments of a mail: parts named or marked as attachments, or not text."""
    try:
        body = msg.get_body(preferencelist=("plain", "html"))
    except (KeyError, AttributeError):
        body = None
    found = []
    for part in msg.walk():
        if part.is_multipart() or part is body:
            continue
        try:
            filename = part.get_filename()
        except (ValueError, LookupError, TypeError):
            filename = "attachment"
        disposition = part.get_content_disposition()
        if filename or disposition == "attachment" or part.get_content_maintype() not in (
                "text", "multipart", "message"):
            found.append(part)
    return found


def _filename(part: EmailMessage) -> str:
    try:
        return str(part.get_filename() or "")
    except (ValueError, LookupError, TypeError):
        return ""


def kb_text(size: int) -> str:
    """A size as mail and the export index write it, in whole KB rounded up."""
    return f"{(size + 1023) // 1024} KB"


def store_files(folder: Path, ml: MailingList, incoming: Incoming) -> tuple[list[dict[str, Any]],
                                                                           list[dict[str, Any]]]:
    """Write the mail, its text and the attachments the list takes into the empty `folder`.

    Returns (files kept, files refused with the reason).
    """
    attachments.write_inside(folder, "message.eml", incoming.raw)
    attachments.write_inside(folder, "message.txt", incoming.body.encode("utf-8"))
    taken = {n.casefold() for n in OWN_FILES}
    max_file = MAX_FILE_KB.get(ml) * 1024
    max_total = MAX_TOTAL_KB.get(ml) * 1024
    allowed = TYPES.get(ml)
    kept: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    total = 0
    for part in _leaf_parts(incoming.msg):
        original = _filename(part)
        shown = one_line(original.replace("\x00", "\\0"))[:120] or "(no name)"
        try:
            data = part.get_payload(decode=True)
        except (ValueError, LookupError, TypeError, AssertionError):
            data = None
        if not isinstance(data, bytes):
            refused.append({"original": shown, "reason": "it could not be read"})
            continue
        sniffed = attachments.sniff(data)
        if len(data) > max_file:
            refused.append({"original": shown, "size": len(data), "reason":
                            f"it is {kb_text(len(data))}, over the limit of "
                            f"{max_file // 1024} KB per file"})
            continue
        if sniffed.kind not in allowed:
            refused.append({"original": shown, "size": len(data), "reason":
                            f"its content is {sniffed.label}, which the column does not take"})
            continue
        if total + len(data) > max_total:
            refused.append({"original": shown, "size": len(data), "reason":
                            f"with it the submission would pass the limit of "
                            f"{max_total // 1024} KB in all"})
            continue
        total += len(data)
        name = attachments.safe_name(original, taken, extension=sniffed.extension)
        attachments.write_inside(folder, name, data)
        kept.append({"name": name, "original": shown, "type": sniffed.kind,
                     "label": sniffed.label, "size": len(data), "macros": sniffed.macros})
    return kept, refused


def notice_context(ml: MailingList, submission: Submission,
                    revision: SubmissionRevision) -> dict[str, Any]:
    """What the column's mail about a submission says (its author's and the chair's)."""
    return {"submission": submission, "revision": revision, "column_name": column_name(ml),
            "column_address": ml.role_address(Role.COLUMN),
            "deadline_text": deadline_text(submission.deadline, submission.lang),
            "max_file_kb": MAX_FILE_KB.get(ml), "max_total_kb": MAX_TOTAL_KB.get(ml)}


def _is_member(session: Session, ml: MailingList, *addresses: str) -> bool:
    wanted = [a for a in addresses if a]
    return bool(wanted) and session.scalar(select(func.count()).select_from(Member).where(
        Member.list_id == ml.id, Member.email.in_(wanted),
        Member.status.in_(("active", "disabled")))) > 0


def next_number(session: Session, submission: Submission) -> int:
    """The number the submission's next revision takes."""
    return 1 + (session.scalar(select(func.max(SubmissionRevision.number)).where(
        SubmissionRevision.submission_id == submission.id)) or 0)


def _new_revision(session: Session, data_dir: Path, ml: MailingList, submission: Submission,
                  incoming: Incoming, now: datetime, *, number: int | None) -> SubmissionRevision:
    revision = SubmissionRevision(
        number=number, status="stored" if number else "held", inbound_id=incoming.inbound_id,
        sender=incoming.sender, title=incoming.title, body=incoming.body[:MAX_BODY],
        received_at=now, files=[], refused=[],
        ack_message_id=message_id(ml.domain) if number else "")
    submission.revisions.append(revision)
    session.flush()
    leaf = f"rev-{number}" if number else f"held-{revision.id}"
    revision.folder = f"{submission.tracking_id}/{leaf}"
    # The files appear under submissions/ only once the unit of work commits.
    submissions = data_dir / "submissions"
    folder = staged_folder(session, submissions / revision.folder, submissions / STAGING)
    revision.files, revision.refused = store_files(folder, ml, incoming)
    return revision


def _hold_follow_up(session: Session, renderer: Renderer, data_dir: Path, ml: MailingList,
                    target: Submission, incoming: Incoming, now: datetime) -> str:
    """Keep a follow-up that may not revise `target` for the chair, and tell the author.

    The author's mail quotes nothing the follow-up's sender wrote (SPEC §2): it only says
    that a follow-up is held and how to send a revision that proves it is theirs; it goes at
    most once a day per submission, however many follow-ups are held.
    """
    revision = _new_revision(session, data_dir, ml, target, incoming, now, number=None)
    author_unproven = incoming.sender in (target.sender, *EDITORS.get(ml))
    why = ("its sender's address is not proven" if author_unproven
           else "its sender is neither the author nor an editor")
    audit(session, now, DAEMON, "column-follow-up-held",
          f"{target.tracking_id}: a follow-up from {incoming.sender}: {why}", ml.id)
    context = notice_context(ml, target, revision)
    # The chair decides by replying "approve" or "discard" (`chair.decisions`, kind follow_up).
    notify_chair(session, renderer, ml, "notice-column-held.txt", now, decide="follow_up",
                 item_id=revision.id, author_unproven=author_unproven, **context)
    # Once a day per submission: forged follow-ups must not use up the author's cap on
    # automatic mail (which her own confirmations need).
    told_lately = session.scalar(select(func.count()).where(
        SubmissionRevision.submission_id == target.id, SubmissionRevision.status == "held",
        SubmissionRevision.id != revision.id,
        SubmissionRevision.received_at > now - timedelta(days=1)))
    if not told_lately:
        notify(session, renderer, ml, "column-follow-up-held.txt", [target.sender], now,
               kind="notice", lang=target.lang, received=now, **context)
    return f"column {target.tracking_id}: follow-up from {incoming.sender} held ({why})"


def receive(session: Session, renderer: Renderer, data_dir: Path, ml: MailingList,
            incoming: Incoming, now: datetime, *, answerable: bool, proven: bool) -> str:
    """A column mail: a new submission, a revision of one, or a follow-up held for the chair.

    A follow-up is a revision only when its sender is the author or an editor and the message
    proves it (`proven`: SPEC §2 "Who sent it"); otherwise it is held and the author told.
    """
    target = find_target(session, ml, incoming.msg)
    chair_and_editors = [*(o.email for o in ml.owners), *EDITORS.get(ml)]
    if target is not None:
        title = title_of(incoming.msg, ml, target.tracking_id)
        incoming = Incoming(**{**_fields(incoming), "title": title})
        if incoming.sender in (target.sender, *EDITORS.get(ml)) and proven:
            number = next_number(session, target)
            revision = _new_revision(session, data_dir, ml, target, incoming, now, number=number)
            audit(session, now, DAEMON, "column-revision",
                  f"{target.tracking_id} revision {number} from {incoming.sender}: "
                  f"{len(revision.files)} file(s), {len(revision.refused)} refused", ml.id)
            context = notice_context(ml, target, revision)
            if answerable:
                notify(session, renderer, ml, "column-received.txt", [incoming.sender], now,
                       kind="reply", lang=incoming.lang, ack_id=revision.ack_message_id,
                       **context)
            notify(session, renderer, ml, "notice-column-submission.txt", chair_and_editors,
                   now, kind="notice", **context)
            return f"column {target.tracking_id}: revision {number}"
        return _hold_follow_up(session, renderer, data_dir, ml, target, incoming, now)

    session.execute(select(MailingList.id).where(MailingList.id == ml.id).with_for_update())
    year = now.astimezone(UTC).year
    number = 1 + (session.scalar(select(func.max(Submission.number)).where(
        Submission.list_id == ml.id, Submission.year == year)) or 0)
    tracking_id = f"{prefix(ml)}-{year}-{number:03d}"
    deadline = deadline_for(ml, now)
    submission = Submission(
        list_id=ml.id, tracking_id=tracking_id, year=year, number=number,
        sender=incoming.sender, name=incoming.name[:MAX_NAME_LENGTH], title=incoming.title,
        member=_is_member(session, ml, incoming.sender), lang=incoming.lang,
        deadline=deadline.isoformat() if deadline else "", created_at=now)
    submission.mailing_list = ml
    session.add(submission)
    revision = _new_revision(session, data_dir, ml, submission, incoming, now, number=1)
    audit(session, now, DAEMON, "column-submission",
          f"{tracking_id} from {incoming.sender}"
          f"{'' if submission.member else ' (not a member)'}: {len(revision.files)} file(s), "
          f"{len(revision.refused)} refused", ml.id)
    context = notice_context(ml, submission, revision)
    if answerable:
        notify(session, renderer, ml, "column-received.txt", [incoming.sender], now,
               kind="reply", lang=incoming.lang, ack_id=revision.ack_message_id, **context)
    notify(session, renderer, ml, "notice-column-submission.txt", chair_and_editors, now,
           kind="notice", **context)
    return f"column {tracking_id}: {len(revision.files)} file(s), {len(revision.refused)} refused"


def _fields(incoming: Incoming) -> dict[str, Any]:
    return {f: getattr(incoming, f) for f in Incoming.__slots__}


def read(msg: EmailMessage, raw: bytes, ml: MailingList, sender: str, name: str, lang: str,
         inbound_id: int | None) -> Incoming:
    return Incoming(sender=sender, name=" ".join(name.split()), title=title_of(msg, ml),
                    body=body_text(msg).strip() + "\n", raw=raw, msg=msg, lang=lang,
                    inbound_id=inbound_id)
