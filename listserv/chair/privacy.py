"""What the store holds about one person (`listserv members data EMAIL`, SPEC §7).

Every record naming an address: memberships, requests, submissions with their files, peer
input, bounce records, held posts, archived posts (theirs, and others' that name them), the
automatic-mail ledger, incoming and outgoing mail, the log. Besides the queries by purpose,
`mentions` scans every text column of every table and `raw_mentions` the bytes of every
stored message, so a record no section knows of (a new table, an outcome line naming the
address) still shows up, under `other_mentions`.

Forgotten people are named in the log by a pseudonym: an HMAC-SHA256 of the address under a
per-install key (`data_dir/pseudonym.key`, 32 random bytes, 0600). The same address always
gets the same pseudonym, so `members data` still finds a forgotten person's log lines when the
chair types the address again; without the key nobody can tell whom a pseudonym stands for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, String, Text, TypeDecorator, cast, func, or_, select
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.files import private_folder, write_new_private
from listserv.mail.addresses import untagged, valid_address
from listserv.store.models.archive import ArchivedPost
from listserv.store.models.base import Base
from listserv.store.models.core import (
    AuditEntry,
    Ban,
    ChairToken,
    Held,
    Inbound,
    MailingList,
    Member,
    Owner,
    Request,
)
from listserv.store.models.features import (
    BounceEvent,
    BounceProbe,
    BounceScore,
    DigestPost,
    PeerInput,
    Submission,
    SubmissionRevision,
)
from listserv.store.models.outgoing import AutoMail, OutMessage, OutRecipient, SentOnlyTo

KEY_FILE = "pseudonym.key"
#: The columns holding whole messages ("table.column"): `raw_mentions` reads them through the
#: `raw` attribute of `Inbound`, `OutMessage`, `DigestPost` and `ArchivedPost`, whatever table
#: keeps the bytes.
MESSAGE_BYTES = ("inbound_raw.raw", "out_messages.raw", "digest_posts.raw", "archived_posts.raw")
#: The models whose rows hold a whole message in `raw`.
MessageModel = type[Inbound] | type[OutMessage] | type[DigestPost] | type[ArchivedPost]
#: Column types whose text `mentions` scans (every other column holds numbers, times, flags).
TEXT_TYPES = (String, Text, JSON)
#: Messages read per query while scanning the stored mail.
BATCH = 200


def checked_address(email: str) -> str:
    """The address as the store keeps it (lower case), or a one-line error."""
    address = valid_address(email)
    if address is None:
        raise ListservError(f"{email!r} is not an email address")
    return address


# -- the pseudonym ---------------------------------------------------------------------------


def pseudonym(data_dir: Path, address: str, *, create: bool = True) -> str | None:
    """The stable pseudonym of `address` (None when there is no key and `create` is off)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        if not create:
            return None
        private_folder(data_dir)
        try:
            write_new_private(path, secrets.token_hex(32).encode())
        except FileExistsError:
            pass  # another process made it first: use theirs
    key = path.read_bytes().strip()
    digest = hmac.new(key, address.lower().encode(), hashlib.sha256).hexdigest()
    return f"forgotten-{digest[:16]}"


# -- scanning every column -------------------------------------------------------------------


def _primary_key(table: Any) -> Any:
    (column,) = table.primary_key.columns
    return column


def stored_type(column: Any) -> Any:
    """The type a column is stored as (a TypeDecorator's underlying type)."""
    kind = column.type
    return kind.impl if isinstance(kind, TypeDecorator) else kind


def mentions(session: Session, address: str) -> Iterator[tuple[str, int, str]]:
    """(table, row id, column) of every text value that contains `address` (any case)."""
    for table in Base.metadata.sorted_tables:
        key = _primary_key(table)
        for column in table.columns:
            kind = stored_type(column)
            if not isinstance(kind, TEXT_TYPES):
                continue
            text = cast(column, Text) if isinstance(kind, JSON) else column
            found = session.scalars(select(key).where(
                func.lower(text).contains(address, autoescape=True)).order_by(key))
            for row_id in found:
                yield table.name, int(row_id), column.name


def raw_mentions(session: Session, model: MessageModel, address: str, *,
                 after: int = 0) -> list[int]:
    """Ids of the stored messages (`inbound`, `out_messages`, `digest_posts` or
    `archived_posts`, numbered above `after`) whose bytes name `address`.

    Read through the model's `raw` attribute, BATCH rows at a time, and compared in lower
    case: an address in a header keeps the case its writer gave it.
    """
    needle = address.encode()
    found: list[int] = []
    last = after
    while True:
        rows = list(session.scalars(select(model).where(model.id > last)
                                    .order_by(model.id).limit(BATCH)))
        for row in rows:
            if needle in (row.raw or b"").lower():
                found.append(row.id)
            session.expunge(row)
        if len(rows) < BATCH:
            return found
        last = rows[-1].id


def outbox_files(outbox: Path, address: str) -> list[Path]:
    """The Maildir outbox's files that name `address` (`transport = "maildir"`)."""
    needle = address.encode()
    return sorted(path for sub in ("new", "cur", "tmp") if (outbox / sub).is_dir()
                  for path in (outbox / sub).iterdir()
                  if path.is_file() and needle in path.read_bytes().lower())


def revision_files(data_dir: Path, revision: SubmissionRevision) -> list[str]:
    """Every file in a revision's folder (its mail, its text, the attachments kept)."""
    if not revision.folder:
        return []
    folder = data_dir / "submissions" / revision.folder
    if not folder.is_dir():
        return []
    return sorted(str(path) for path in folder.rglob("*") if path.is_file())


# -- the person's data -----------------------------------------------------------------------


def _at(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def _list_address(session: Session, list_id: int | None) -> str:
    ml = session.get(MailingList, list_id) if list_id is not None else None
    return ml.address if ml is not None else ""


def _revision(data_dir: Path, r: SubmissionRevision) -> dict[str, Any]:
    return {"id": r.id, "number": r.number, "status": r.status, "sender": r.sender,
            "title": r.title, "received": _at(r.received_at),
            "folder": r.folder, "files": revision_files(data_dir, r)}


def person_data(session: Session, data_dir: Path, outbox: Path, email: str) -> dict[str, Any]:
    """Every record naming `email`, by purpose, as `members data` prints it."""
    a = checked_address(email)
    lower = func.lower
    data: dict[str, Any] = {"email": a}
    members = list(session.scalars(select(Member).where(lower(Member.email) == a)))
    member_ids = [m.id for m in members]
    data["memberships"] = [
        {"id": m.id, "list": _list_address(session, m.list_id), "email": m.email,
         "name": m.name, "delivery": m.delivery, "status": m.status, "since": _at(m.created_at)}
        for m in members]
    data["owner_of"] = [
        {"id": o.id, "list": _list_address(session, o.list_id)}
        for o in session.scalars(select(Owner).where(lower(Owner.email) == a))]
    data["bans"] = [
        {"id": b.id, "list": _list_address(session, b.list_id), "pattern": b.pattern,
         "since": _at(b.created_at), "by": b.created_by}
        for b in session.scalars(select(Ban).where(
            or_(lower(Ban.pattern) == a, lower(Ban.created_by) == a)).order_by(Ban.id))]
    data["requests"] = [
        {"id": r.id, "list": _list_address(session, r.list_id), "kind": r.kind,
         "status": r.status, "email": r.email, "requested_by": r.requested_by, "name": r.name,
         "received": _at(r.created_at), "expires": _at(r.expires_at)}
        for r in session.scalars(select(Request).where(or_(
            lower(Request.email) == a, lower(Request.requested_by) == a)).order_by(Request.id))]
    submissions = list(session.scalars(select(Submission).where(
        lower(Submission.sender) == a).order_by(Submission.id)))
    data["submissions"] = [
        {"id": s.id, "tracking_id": s.tracking_id, "list": _list_address(session, s.list_id),
         "status": s.status, "title": s.title, "name": s.name, "issue": s.issue,
         "received": _at(s.created_at),
         "revisions": [_revision(data_dir, r) for r in s.revisions]}
        for s in submissions]
    own = [s.id for s in submissions]
    data["revisions_of_others"] = [
        {"submission": r.submission.tracking_id, **_revision(data_dir, r)}
        for r in session.scalars(select(SubmissionRevision).where(
            lower(SubmissionRevision.sender) == a, SubmissionRevision.submission_id.not_in(own))
            .order_by(SubmissionRevision.id))]
    data["peer_input"] = [
        {"id": p.id, "list": _list_address(session, p.list_id), "status": p.status,
         "name": p.name, "project": p.project, "help": p.help, "minutes": p.minutes,
         "meeting": p.meeting_id, "received": _at(p.created_at)}
        for p in session.scalars(select(PeerInput).where(lower(PeerInput.email) == a)
                                 .order_by(PeerInput.id))]
    data["bounces"] = _bounces(session, member_ids)
    data["held"] = [
        {"id": h.id, "list": _list_address(session, h.list_id), "sender": h.sender,
         "subject": h.subject, "reason": h.reason, "status": h.status,
         "held_at": _at(h.created_at)}
        for h in session.scalars(select(Held).join(Inbound).where(or_(
            lower(Held.sender) == a, lower(Inbound.mail_from) == a)).order_by(Held.id))]
    data["archive"] = _archived(session, a)
    data["automatic_mail"] = [
        {"id": m.id, "address": m.address, "kind": m.kind, "at": _at(m.at),
         "suppressed": m.suppressed}
        for m in session.scalars(select(AutoMail).where(
            AutoMail.address.in_({a, untagged(a)})).order_by(AutoMail.id))]
    inbound_ids = set(raw_mentions(session, Inbound, a)) | set(session.scalars(
        select(Inbound.id).where(lower(Inbound.mail_from) == a)))
    data["inbound"] = [
        {"id": i.id, "received": _at(i.received_at), "mail_from": i.mail_from, "rcpt": i.rcpt,
         "role": i.role, "status": i.status, "size": i.size, "outcome": i.outcome,
         "raw": i.raw_id}
        for i in session.scalars(select(Inbound).where(Inbound.id.in_(inbound_ids))
                                 .order_by(Inbound.id))]
    data["outgoing"] = [
        {"id": r.id, "message": r.message_id, "kind": r.message.kind, "email": r.email,
         "status": r.status, "sent_at": _at(r.sent_at)}
        for r in session.scalars(select(OutRecipient).where(lower(OutRecipient.email) == a)
                                 .order_by(OutRecipient.id))]
    data["outgoing_mentions"] = [
        {"id": m.id, "kind": m.kind, "list": _list_address(session, m.list_id),
         "created": _at(m.created_at)}
        for m in session.scalars(select(OutMessage).where(
            OutMessage.id.in_(raw_mentions(session, OutMessage, a))).order_by(OutMessage.id))]
    data["digest_mentions"] = [
        {"id": p.id, "list": _list_address(session, p.list_id), "added": _at(p.added_at),
         "digest": p.digest_id}
        for p in session.scalars(select(DigestPost).where(
            DigestPost.id.in_(raw_mentions(session, DigestPost, a))).order_by(DigestPost.id))]
    data["chair_replies"] = [
        {"id": t.id, "list": _list_address(session, t.list_id), "kind": t.kind,
         "used": _at(t.used_at)}
        for t in session.scalars(select(ChairToken).where(lower(ChairToken.used_by) == a)
                                 .order_by(ChairToken.id))]
    data["sent_only_to"] = [
        {"id": s.id, "message_id": s.message_id, "at": _at(s.at)}
        for s in session.scalars(select(SentOnlyTo).where(lower(SentOnlyTo.address) == a)
                                 .order_by(SentOnlyTo.id))]
    data["log"] = _log(session, a, pseudonym(data_dir, a, create=False))
    data["outbox_files"] = [str(p) for p in outbox_files(outbox, a)]
    data["other_mentions"] = _other_mentions(session, a, data)
    return data


def _archived(session: Session, address: str) -> list[dict[str, Any]]:
    """Their archived posts, and others' posts that name them (in a header or the text)."""
    ids = set(session.scalars(select(ArchivedPost.id).where(
        func.lower(ArchivedPost.sender) == address)))
    ids |= set(raw_mentions(session, ArchivedPost, address))
    return [{"id": p.id, "list": _list_address(session, p.list_id), "number": p.number,
             "date": _at(p.date), "sender": p.sender, "subject": p.subject,
             "by_them": p.sender.lower() == address}
            for p in session.scalars(select(ArchivedPost).where(ArchivedPost.id.in_(ids))
                                     .order_by(ArchivedPost.id))]


def _bounces(session: Session, member_ids: list[int]) -> dict[str, list[dict[str, Any]]]:
    scores = session.scalars(select(BounceScore).where(BounceScore.member_id.in_(member_ids)))
    events = session.scalars(select(BounceEvent).where(BounceEvent.member_id.in_(member_ids))
                             .order_by(BounceEvent.id))
    probes = session.scalars(select(BounceProbe).where(BounceProbe.member_id.in_(member_ids))
                             .order_by(BounceProbe.id))
    return {
        "scores": [{"member": s.member_id, "score": s.score, "last_bounce": _at(s.last_bounce_at),
                    "last_reason": s.last_reason, "disabled": _at(s.disabled_at)}
                   for s in scores],
        "events": [{"id": e.id, "member": e.member_id, "at": _at(e.at), "source": e.source,
                    "kind": e.kind, "counted": e.counted, "reason": e.reason} for e in events],
        "probes": [{"id": p.id, "member": p.member_id, "warning": p.warning,
                    "status": p.status, "sent": _at(p.sent_at)} for p in probes],
    }


def _log(session: Session, address: str, alias: str | None) -> list[dict[str, Any]]:
    names = [address] + ([alias] if alias else [])
    found = session.scalars(select(AuditEntry).where(or_(*(
        func.lower(column).contains(name, autoescape=True)
        for name in names for column in (AuditEntry.detail, AuditEntry.actor))))
        .order_by(AuditEntry.id))
    return [{"id": e.id, "at": _at(e.at), "actor": e.actor, "action": e.action,
             "list": _list_address(session, e.list_id), "detail": e.detail} for e in found]


#: Which section of `person_data` lists the rows of each table (bounce rows are keyed by member).
SECTIONS = {
    "members": "memberships", "owners": "owner_of", "bans": "bans", "requests": "requests",
    "column_submissions": "submissions", "peer_input": "peer_input", "held": "held",
    "archived_posts": "archive",
    "auto_mail": "automatic_mail", "inbound": "inbound", "out_recipients": "outgoing",
    "out_messages": "outgoing_mentions", "digest_posts": "digest_mentions",
    "sent_only_to": "sent_only_to",
    "chair_tokens": "chair_replies", "audit_log": "log",
}


def listed(data: dict[str, Any]) -> set[tuple[str, int]]:
    """(table, row id) of every row a section of `person_data` lists."""
    rows = {(table, row["id"]) for table, section in SECTIONS.items()
              for row in data[section]}
    rows |= {("column_revisions", r["id"]) for s in data["submissions"]
             for r in s["revisions"]}
    rows |= {("column_revisions", r["id"]) for r in data["revisions_of_others"]}
    rows |= {("inbound_raw", i["raw"]) for i in data["inbound"] if i["raw"]}
    rows |= {("bounce_events", e["id"]) for e in data["bounces"]["events"]}
    rows |= {("bounce_scores", s["member"]) for s in data["bounces"]["scores"]}
    rows |= {("bounce_probes", p["id"]) for p in data["bounces"]["probes"]}
    return rows


def _other_mentions(session: Session, address: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Text naming the address in rows no section above lists (an outcome, a reason)."""
    known = listed(data)
    return [{"table": table, "id": row_id, "column": column}
            for table, row_id, column in mentions(session, address)
            if (table, row_id) not in known]
