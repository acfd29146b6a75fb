"""Column submissions (SPEC §6): intake, tracking, the chair's review, calls for submissions.

Mail to `NAME-column@` is a submission. It gets a tracking id `PREFIX-YYYY-NNN` (numbered per
list and year), its mail, text and attachments are stored under
`data_dir/submissions/<tracking id>/rev-N/`, the sender gets an acknowledgement and the chair
and editors a notice. Attachments are judged by their bytes (`attachments.sniff`), kept
within the list's size limits and written under safe, unique names; what is kept out is
named, with the reason, in the acknowledgement.

A follow-up (its subject carries the tracking id, or it replies to an acknowledgement) is the
next revision when it comes from the original sender or an editor; from anyone else it is
held for the chair (kept, not numbered).

Before each deadline (`column.deadlines`, month-day, yearly) the members get a call for
submissions, `column.call_days` days ahead; on the deadline the chair and editors get a
summary. Each is claimed with a `Once` row in the transaction that queues it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.delivery.notices import list_context, notify
from listserv.delivery.outbox import enqueue_to_members
from listserv.errors import ListservError
from listserv.intent.classify import body_text
from listserv.mail import attachments as attachments
from listserv.mail.addresses import Role
from listserv.mail.headers import header_text
from listserv.mail.mime.transforms import distribution_copy
from listserv.mail.render import Renderer, one_line
from listserv.mail.tokens import message_id
from listserv.mail.wire import message_bytes
from listserv.posting.distribute import footer_text, list_headers
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.list_settings import (
    ADDRESSES,
    ONE_LINE,
    Parser,
    choice,
    declare,
    items,
    whole,
)
from listserv.store.lookup import by_number
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList, Member
from listserv.store.models.features import Submission, SubmissionRevision
from listserv.store.once import claim_once
from listserv.store.staging import staged_folder

log = logging.getLogger(__name__)

MAX_TITLE = 300
MAX_BODY = 200_000
#: The summary is still sent this long after a deadline the daemon slept through.
SUMMARY_WINDOW = timedelta(days=7)
#: Names of our own files in a revision's folder (attachments never take them).
OWN_FILES = ("message.eml", "message.txt")
#: Where a revision's files are written until its unit of work commits (in submissions/; a
#: tracking id never starts with a dot).
STAGING = ".staging"
STATUSES = ("received", "accepted", "declined", "published")

# -- list settings ---------------------------------------------------------------------------


def _prefix(text: str) -> str:
    value = text.strip().upper()
    if value and not re.fullmatch(r"[A-Z0-9][A-Z0-9-]{0,19}", value):
        raise ValueError
    return value


def _month_day(token: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", token.strip())
    if match is None:
        raise ValueError("a month-day such as 03-01")
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2000, month, day)  # a leap year: 02-29 is allowed
    except ValueError:
        raise ValueError("a day of the year") from None
    return month, day


def _deadline_day(token: str) -> str:
    month, day = _month_day(token)
    return f"{month:02d}-{day:02d}"


NAME = declare("column.name", ONE_LINE, "", "the column's name in mail (`\"\"` = the list's name)")
PREFIX = declare("column.prefix",
                 Parser("up to 20 letters, digits and '-', e.g. TCP", str, _prefix), "",
                 "tracking-id prefix (`\"\"` = the list's NAME upper-cased)")
EDITORS = declare("column.editors", ADDRESSES, (),
                  "editors: they get the notices and may send revisions")
DEADLINES = declare("column.deadlines",
                    items(_deadline_day, "days of the year as `MM-DD`, comma-separated",
                          order=str), (),
                    "deadlines, repeating yearly")
CALL_DAYS = declare("column.call_days", whole(0, 365, unit="days"), 21,
                    "days before a deadline the call for submissions goes out (0 = no call)")
MAX_FILE_KB = declare("column.max_file_kb", whole(1, unit="KB"), 10240,
                      "largest attachment kept")
MAX_TOTAL_KB = declare("column.max_total_kb", whole(1, unit="KB"), 20480,
                       "most attachments kept per mail, in all")
_TYPE_NAMES = (*attachments.DEFAULT_TYPES, "zip")
TYPES = declare("column.types",
                items(choice(*_TYPE_NAMES), f"comma-separated, of {', '.join(_TYPE_NAMES)}"),
                attachments.DEFAULT_TYPES, "attachment types taken, judged by their content")


def column_name(ml: MailingList) -> str:
    return NAME.get(ml) or ml.name


def prefix(ml: MailingList) -> str:
    return PREFIX.get(ml) or re.sub(r"[^A-Z0-9-]", "-", ml.name.upper())


# -- deadlines ---------------------------------------------------------------------------------


def _on(year: int, month: int, day: int) -> date:
    if (month, day) == (2, 29):
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, month, day)


def deadline_dates(ml: MailingList, around: date) -> list[date]:
    """The list's deadlines in the year before, of and after `around`, in order."""
    days = [_month_day(t) for t in DEADLINES.get(ml)]
    return sorted({_on(around.year + y, m, d) for y in (-1, 0, 1) for m, d in days})


def deadline_for(ml: MailingList, at: datetime) -> date | None:
    """The deadline a submission arriving at `at` is for: the first on or after its day."""
    today = at.astimezone(UTC).date()
    return next((d for d in deadline_dates(ml, today) if d >= today), None)


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def parse_deadline(value: str) -> str:
    """`--deadline` as the chair writes it: YYYY-MM-DD, or MM-DD (any year)."""
    value = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    elif re.fullmatch(r"\d{1,2}-\d{1,2}", value):
        try:
            month, day = _month_day(value)
            return f"{month:02d}-{day:02d}"
        except ValueError:
            pass
    raise ListservError(f"--deadline {value!r}: give a date as YYYY-MM-DD (or MM-DD)")


def _matches_deadline(submission: Submission, wanted: str) -> bool:
    return (submission.deadline == wanted if len(wanted) == 10
            else submission.deadline[5:] == wanted)


# -- intake ------------------------------------------------------------------------------------

_REPLY = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr|rv|res|sv|antw)\s*(?:\[\d+\])?\s*:\s*)+",
                    re.IGNORECASE)
_TRACKING = re.compile(r"(?<![A-Za-z0-9-])([A-Za-z0-9][A-Za-z0-9-]{0,19}-\d{4}-\d{3,6})(?!\d)")
_MSGID = re.compile(r"<[^<>\s]{1,250}>")


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
            Submission.list_id == ml.id, Submission.tracking_id == candidate.upper()))
        if found is not None:
            return found
    ids = _MSGID.findall(header_text(msg, "In-Reply-To") + " " + header_text(msg, "References"))
    if ids:
        found = session.scalar(
            select(Submission).join(SubmissionRevision)
            .where(Submission.list_id == ml.id, SubmissionRevision.ack_message_id.in_(ids[-20:]))
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


def _kb_text(size: int) -> str:
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
                            f"it is {_kb_text(len(data))}, over the limit of "
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


def _notice_context(ml: MailingList, submission: Submission,
                    revision: SubmissionRevision) -> dict[str, Any]:
    return {"submission": submission, "revision": revision, "column_name": column_name(ml),
            "column_address": ml.role_address(Role.COLUMN),
            "deadline_text": _deadline_text(submission.deadline),
            "max_file_kb": MAX_FILE_KB.get(ml), "max_total_kb": MAX_TOTAL_KB.get(ml)}


def _deadline_text(iso: str) -> str:
    if not iso:
        return ""
    day = date.fromisoformat(iso)
    return f"{day:%A} {day.day} {day:%B %Y}"


def _is_member(session: Session, ml: MailingList, *addresses: str) -> bool:
    wanted = [a for a in addresses if a]
    return bool(wanted) and session.scalar(select(func.count()).select_from(Member).where(
        Member.list_id == ml.id, Member.email.in_(wanted),
        Member.status.in_(("active", "disabled")))) > 0


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


def receive(session: Session, renderer: Renderer, data_dir: Path, ml: MailingList,
            incoming: Incoming, now: datetime, *, answerable: bool) -> str:
    """A column mail: a new submission, a revision of one, or a follow-up held for the chair."""
    target = find_target(session, ml, incoming.msg)
    chair_and_editors = [*(o.email for o in ml.owners), *EDITORS.get(ml)]
    if target is not None:
        title = title_of(incoming.msg, ml, target.tracking_id)
        incoming = Incoming(**{**_fields(incoming), "title": title})
        if incoming.sender in (target.sender, *EDITORS.get(ml)):
            number = 1 + (session.scalar(select(func.max(SubmissionRevision.number)).where(
                SubmissionRevision.submission_id == target.id)) or 0)
            revision = _new_revision(session, data_dir, ml, target, incoming, now, number=number)
            audit(session, now, DAEMON, "column-revision",
                  f"{target.tracking_id} revision {number} from {incoming.sender}: "
                  f"{len(revision.files)} file(s), {len(revision.refused)} refused", ml.id)
            context = _notice_context(ml, target, revision)
            if answerable:
                notify(session, renderer, ml, "column-received.txt", [incoming.sender], now,
                       kind="reply", lang=incoming.lang, ack_id=revision.ack_message_id,
                       **context)
            notify(session, renderer, ml, "notice-column-submission.txt", chair_and_editors,
                   now, kind="notice", **context)
            return f"column {target.tracking_id}: revision {number}"
        revision = _new_revision(session, data_dir, ml, target, incoming, now, number=None)
        audit(session, now, DAEMON, "column-follow-up-held",
              f"{target.tracking_id}: a follow-up from {incoming.sender}, who is neither its "
              "author nor an editor", ml.id)
        notify(session, renderer, ml, "notice-column-held.txt", [o.email for o in ml.owners],
               now, kind="notice", **_notice_context(ml, target, revision))
        return f"column {target.tracking_id}: follow-up from {incoming.sender} held"

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
    context = _notice_context(ml, submission, revision)
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


# -- the chair ---------------------------------------------------------------------------------


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
            "revision": r.number, "status": r.status, "sender": r.sender, "title": r.title,
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
                  **_notice_context(ml, submission, latest(submission)))
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


# -- export ------------------------------------------------------------------------------------


def _file_words(data: bytes, kind: str) -> int:
    """Words of a text-bearing attachment (txt, docx, odt); 0 for the others."""
    try:
        if kind == "txt":
            return word_count(data.decode("utf-8", "replace"))
        member = {"docx": "word/document.xml", "docm": "word/document.xml",
                  "odt": "content.xml"}.get(kind)
        if member is None:
            return 0
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo(member)
            if info.file_size > 50 * 1024 * 1024:
                return 0
            xml = archive.read(info).decode("utf-8", "replace")
        xml = re.sub(r"</(?:w:p|text:p|text:h)>", "\n", xml)
        return word_count(re.sub(r"<[^>]+>", " ", xml))
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, RuntimeError):
        return 0


def export(session: Session, data_dir: Path, submissions: list[Submission], to: Path,
           now: datetime, actor: str) -> str:
    """One folder per submission (its latest revision's text and files) and an index, into a
    new folder `to` or a zip file `to` (*.zip)."""
    if not submissions:
        raise ListservError("no submissions to export")
    entries: list[tuple[str, bytes]] = []
    index: list[dict[str, Any]] = []
    top: set[str] = {"index.md", "index.json"}
    for submission in submissions:
        last = latest(submission)
        folder = attachments.safe_name(submission.tracking_id, top, default="submission")
        taken: set[str] = set()
        files = []
        words = word_count(last.body)
        if last.body.strip():
            name = attachments.safe_name("text.txt", taken)
            entries.append((f"{folder}/{name}", last.body.encode("utf-8")))
        source = data_dir / "submissions" / last.folder
        for item in last.files:
            try:
                data = attachments.inside(source, item["name"]).read_bytes()
            except (OSError, ValueError) as exc:
                raise ListservError(f"{submission.tracking_id}: cannot read {item['name']} "
                                    f"({exc})") from None
            name = attachments.safe_name(item["name"], taken)
            entries.append((f"{folder}/{name}", data))
            words += _file_words(data, item["type"])
            files.append({"name": name, "type": item["type"], "size": len(data),
                          "macros": bool(item.get("macros"))})
        index.append({
            "id": submission.tracking_id, "folder": folder, "title": submission.title,
            "author": submission.name or submission.sender, "sender": submission.sender,
            "date": submission.created_at.isoformat(), "status": submission.status,
            "deadline": submission.deadline, "member": submission.member,
            "revision": last.number, "issue": submission.issue, "word_count": words,
            "files": files,
        })
    entries.append(("index.json", (json.dumps(index, indent=2, ensure_ascii=False) + "\n")
                    .encode("utf-8")))
    entries.append(("index.md", _index_md(index, now).encode("utf-8")))
    _check_names([name for name, _ in entries])
    if to.suffix.lower() == ".zip":
        if to.exists():
            raise ListservError(f"{to} exists already")
        to.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(to, "x", zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    else:
        if to.exists() and (not to.is_dir() or any(to.iterdir())):
            raise ListservError(f"{to} exists and is not an empty folder")
        to.mkdir(parents=True, exist_ok=True)
        for name, data in entries:
            parts = name.split("/")
            folder = to
            for part in parts[:-1]:
                folder = attachments.inside(folder, part)
                folder.mkdir(exist_ok=True)
            attachments.write_inside(folder, parts[-1], data)
    ids = ", ".join(s.tracking_id for s in submissions)
    audit(session, now, actor, "column-exported", f"{ids} to {to}",
          submissions[0].list_id)
    return f"exported {len(submissions)} submission(s) to {to}"


def _check_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name
                or any(p in ("", ".", "..") for p in name.split("/"))):
            raise ListservError(f"refused an unsafe name in the export: {name!r}")
        folded = name.casefold()
        if folded in seen:
            raise ListservError(f"two files would share the name {name!r} in the export")
        seen.add(folded)


def _index_md(index: list[dict[str, Any]], now: datetime) -> str:
    lines = [f"# Column submissions ({len(index)})", "",
             f"Exported {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC.", ""]
    for item in index:
        lines += [f"## {item['id']}: {one_line(item['title']) or '(no title)'}", "",
                  f"- Author: {one_line(item['author'])} <{item['sender']}>",
                  f"- Received: {item['date'][:10]}",
                  f"- Status: {item['status']}"
                  + (f" ({one_line(item['issue'])})" if item["issue"] else ""),
                  f"- Deadline: {item['deadline'] or '-'}",
                  f"- Words: {item['word_count']}",
                  f"- Folder: {item['folder']}/", "- Files:"]
        lines += [f"  - {f['name']} ({f['type']}, {_kb_text(f['size'])})"
                  + (" — macro-enabled: open with care" if f["macros"] else "")
                  for f in item["files"]] or ["  - (none)"]
        lines.append("")
    return "\n".join(lines)


# -- calls for submissions and the closing summary ---------------------------------------------


def send_call(session: Session, renderer: Renderer, ml: MailingList, deadline: date,
              now: datetime) -> int:
    """The call for submissions to the members, as list mail (not re-injected as a post)."""
    msg = renderer.mail(
        "column-call.txt", domain=ml.domain, now=now, **list_context(ml),
        post_address=ml.role_address(Role.POST), column_name=column_name(ml),
        column_address=ml.role_address(Role.COLUMN), deadline_text=_deadline_text(
            deadline.isoformat()), max_file_kb=MAX_FILE_KB.get(ml),
        max_total_kb=MAX_TOTAL_KB.get(ml), types=TYPES.get(ml))
    copy = distribution_copy(message_bytes(msg), list_headers(ml), ml.prefix,
                             footer_text(renderer, ml))
    return enqueue_to_members(session, ml, copy, now=now, kind="column-call",
                              eightbit=renderer.eightbit)


def send_summary(session: Session, renderer: Renderer, ml: MailingList, deadline: date,
                 now: datetime) -> None:
    found = [s for s in session.scalars(select(Submission).where(
        Submission.list_id == ml.id, Submission.deadline == deadline.isoformat())
        .order_by(Submission.id))]
    counts = {s: sum(1 for f in found if f.status == s) for s in STATUSES}
    notify(session, renderer, ml, "notice-column-summary.txt",
           [*(o.email for o in ml.owners), *EDITORS.get(ml)], now, kind="notice",
           column_name=column_name(ml), deadline_text=_deadline_text(deadline.isoformat()),
           deadline_iso=deadline.isoformat(),
           submissions=found, received=len(found),
           accepted=counts["accepted"] + counts["published"], declined=counts["declined"],
           pending=counts["received"], column_address=ml.role_address(Role.COLUMN))


def due_for_list(session: Session, renderer: Renderer, ml: MailingList, now: datetime) -> None:
    """The list's call (from call_days before a deadline to its end) and summary (on it)."""
    call_days = CALL_DAYS.get(ml)
    for deadline in deadline_dates(ml, now.astimezone(UTC).date()):
        start, end = _start(deadline), _start(deadline + timedelta(days=1))
        key = f"{ml.id}:{deadline.isoformat()}"
        if call_days and start - timedelta(days=call_days) <= now < end \
                and claim_once(session, "column-call", key, now):
            count = send_call(session, renderer, ml, deadline, now)
            late = now - (start - timedelta(days=call_days))
            audit(session, now, DAEMON, "column-call",
                  f"deadline {deadline.isoformat()}: sent to {count} members"
                  + (f" ({late.days} days late)" if late >= timedelta(days=1) else ""), ml.id)
        if start <= now < start + SUMMARY_WINDOW \
                and claim_once(session, "column-summary", key, now):
            send_summary(session, renderer, ml, deadline, now)
            audit(session, now, DAEMON, "column-summary",
                  f"deadline {deadline.isoformat()}: summary to the chair", ml.id)


def due_work(store: Store, renderer: Renderer, now: Callable[[], datetime]) -> None:
    """The scheduler's column work, one list per unit of work."""
    with store.reading() as session:
        ids = [ml.id for ml in session.scalars(select(MailingList))
               if DEADLINES.get(ml)]
    for list_id in ids:
        try:
            with store.unit_of_work() as session:
                ml = session.get(MailingList, list_id)
                if ml is not None:
                    due_for_list(session, renderer, ml, now())
        except Exception:
            log.exception("column work of list %s failed; trying again next tick", list_id)
