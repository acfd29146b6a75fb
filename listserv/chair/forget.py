"""Forgetting a person (`listserv members remove LIST EMAIL --forget`, SPEC §7).

Everything naming the address goes: memberships on every list and their bounce records,
requests, peer input, held posts, their archived posts, the automatic-mail ledger, incoming
mail from or naming them, outgoing recipient rows and the messages that named them,
submissions and their files. The log
keeps its lines (it is the record), with the address replaced by the person's pseudonym
(`privacy.pseudonym`); so does every other text that still names them (an outcome, a reason).

What is kept, and why, is reported, never silently left:
- a column piece already published (part of the column's record; its files stay too);
- an archived post by someone else that names them (a reply quoting them, a Cc): the group's
  record of what others said, kept whole; `listserv archive remove ID` withdraws one;
- an export of their submissions the chair wrote somewhere (outside listserv's keeping);
- their address as a list owner (a list setting: change the owners first);
- mail by someone else that names them and is not done with: incoming mail not yet handled, a
  post waiting for the chair, outgoing mail still being delivered to others, outbox files for
  other recipients too. Forgetting again later takes what has been handled by then.

A submission that is not published keeps a bare row (status `forgotten`, the sender a
pseudonym, no text, no revisions) so that its tracking id is never given to another piece.
On SQLite the rows are deleted with `secure_delete` on and the WAL is checkpointed afterwards
(`scrub`), so the bytes leave the database file, not only the tables.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Select, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from listserv.chair.privacy import (
    checked_address,
    mentions,
    outbox_files,
    pseudonym,
    raw_mentions,
    revision_files,
    stored_type,
)
from listserv.column.submissions import FORGOTTEN
from listserv.files import remove_paths
from listserv.mail.addresses import untagged
from listserv.store.audit import audit
from listserv.store.engine import Store
from listserv.store.models.archive import ArchivedPost
from listserv.store.models.base import Base
from listserv.store.models.core import (
    AuditEntry,
    Ban,
    Held,
    Inbound,
    InboundRaw,
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
from listserv.store.retention import give_back_space

_EXPORTED = re.compile(r"^(?P<ids>.*) to (?P<path>.+)$")


@dataclass
class Kept:
    """Something that still names the person, and why it stays."""

    what: str
    why: str
    rows: list[str] = field(default_factory=list)  # "table #id"
    files: list[str] = field(default_factory=list)


@dataclass
class Forgotten:
    """What forgetting a person removed and kept (printed by the command)."""

    email: str
    pseudonym: str
    removed: dict[str, int] = field(default_factory=dict)
    files_removed: list[str] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    log_entries: int = 0

    def count(self, what: str, n: int) -> None:
        """Add `n` removed records of a kind (a kind with none is not named)."""
        if n:
            self.removed[what] = self.removed.get(what, 0) + n

    def as_dict(self) -> dict[str, Any]:
        """The report as `--json` prints it."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Scanned:
    """The stored messages naming a person, found before the write transaction: a stored
    message's bytes never change, so `forget` reads only the messages that came since, and
    the write lock is not held while every message is read."""

    inbound: list[int]
    inbound_upto: int
    outgoing: list[int]
    outgoing_upto: int

    def naming(self, session: Session, model: type[Inbound] | type[OutMessage],
               address: str) -> list[int]:
        """Those found ahead that still exist, and those naming `address` since."""
        ids, upto = ((self.inbound, self.inbound_upto) if model is Inbound
                     else (self.outgoing, self.outgoing_upto))
        still = list(session.scalars(select(model.id).where(model.id.in_(ids))))
        return still + raw_mentions(session, model, address, after=upto)


def scan_ahead(session: Session, email: str) -> Scanned | None:
    """Read every stored message for `email` in a reading unit of work (see `Scanned`).

    On SQLite only: there a reading transaction sees one snapshot and ids are given out under
    the write lock, in commit order. PostgreSQL hands out ids before commit (a row numbered
    below the newest may still come), and its writers lock rows, not the database: `forget`
    reads every message itself there (None).
    """
    if session.get_bind().dialect.name != "sqlite":
        return None
    address = checked_address(email)
    newest = {model: session.scalar(select(func.max(model.id))) or 0
              for model in (Inbound, OutMessage)}
    return Scanned(
        [i for i in raw_mentions(session, Inbound, address) if i <= newest[Inbound]],
        newest[Inbound],
        [i for i in raw_mentions(session, OutMessage, address) if i <= newest[OutMessage]],
        newest[OutMessage])


def forget(session: Session, data_dir: Path, outbox: Path, email: str, list_id: int | None,
           now: datetime, actor: str, ahead: Scanned | None = None) -> Forgotten:
    """Erase what the store holds about `email`; files go in `erase_files` after the commit.

    `ahead`: the stored messages naming them, read before (`scan_ahead`); without it they are
    all read here.
    """
    address = checked_address(email)
    ahead = ahead or Scanned([], 0, [], 0)
    alias = pseudonym(data_dir, address) or ""
    done = Forgotten(address, alias)
    if session.get_bind().dialect.name == "sqlite":
        # Deleted rows are overwritten with zeros, not only unlinked from the tables.
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")
    kept_rows: set[tuple[str, int]] = set()
    for owner in session.scalars(select(Owner).where(func.lower(Owner.email) == address)):
        done.kept.append(Kept(f"owner of {owner.mailing_list.address}",
                              "an owner's address is a setting of the list: change the "
                              "owners first", [f"owners #{owner.id}"]))
        kept_rows.add(("owners", owner.id))
    for ban in session.scalars(select(Ban).where(func.lower(Ban.pattern) == address)):
        banned_on = session.get(MailingList, ban.list_id)
        done.kept.append(Kept(f"the ban of {address} on {banned_on.address if banned_on else '?'}",
                              "the chair's decision to keep them out: lift it first with "
                              "`members unban`", [f"bans #{ban.id}"]))
        kept_rows.add(("bans", ban.id))
    inbound_ids = _forget_member_rows(session, done, address)
    inbound_ids |= _forget_submissions(session, done, data_dir, address, alias, kept_rows)
    _forget_archived(session, done, address, kept_rows)
    _forget_mail(session, done, address, inbound_ids, ahead)
    _forget_outbox(done, outbox, address)
    done.log_entries = _pseudonymise(session, address, alias, kept_rows)
    audit(session, now, actor, "member-forgotten",
          f"{alias}: {sum(done.removed.values())} records and {len(done.files_removed)} files "
          f"removed, {len(done.kept)} kept", list_id)
    return done


def _ids(session: Session, query: Select[tuple[int | None]]) -> set[int]:
    return {row_id for row_id in session.scalars(query) if row_id is not None}


def _forget_member_rows(session: Session, done: Forgotten, address: str) -> set[int]:
    """Memberships and their bounce records, requests, peer input, held posts, the ledger;
    returns the incoming mail they point at.

    A request someone else is asked to confirm stays (it is theirs), with the address of the
    person who asked replaced by the pseudonym like any other text.
    """
    lower = func.lower
    member_ids = list(session.scalars(select(Member.id).where(lower(Member.email) == address)))
    inbound_ids = _ids(session, select(BounceEvent.inbound_id).where(
        BounceEvent.member_id.in_(member_ids)))
    for model in (BounceProbe, BounceEvent, BounceScore):
        done.count(model.__tablename__, session.execute(
            delete(model).where(model.member_id.in_(member_ids))).rowcount)
    done.count("memberships", session.execute(
        delete(Member).where(Member.id.in_(member_ids))).rowcount)
    inbound_ids |= _ids(session, select(Request.inbound_id).where(
        lower(Request.email) == address))
    done.count("requests", session.execute(
        delete(Request).where(lower(Request.email) == address)).rowcount)
    inbound_ids |= _ids(session, select(PeerInput.inbound_id).where(
        lower(PeerInput.email) == address))
    done.count("peer_input", session.execute(
        delete(PeerInput).where(lower(PeerInput.email) == address)).rowcount)
    inbound_ids |= _ids(session, select(Held.inbound_id).where(lower(Held.sender) == address))
    inbound_ids |= _ids(session, select(Inbound.id).where(lower(Inbound.mail_from) == address))
    done.count("automatic_mail", session.execute(delete(AutoMail).where(
        AutoMail.address.in_({address, untagged(address)}))).rowcount)
    done.count("sent_only_to", session.execute(delete(SentOnlyTo).where(
        lower(SentOnlyTo.address) == address)).rowcount)
    return inbound_ids


def _forget_submissions(session: Session, done: Forgotten, data_dir: Path, address: str,
                        alias: str, kept_rows: set[tuple[str, int]]) -> set[int]:
    """Their submissions and revisions, with the files; a published piece is kept."""
    inbound_ids: set[int] = set()
    sender_is = func.lower(Submission.sender) == address
    for submission in session.scalars(select(Submission).where(sender_is)):
        tracking = submission.tracking_id
        exports = _exports(session, submission)
        if exports:
            done.kept.append(Kept(f"the export of {tracking}",
                                  "written by the chair outside the data folder: delete it "
                                  "there if it must go", files=exports))
        if submission.status == "published":
            rows = [f"column_submissions #{submission.id}"]
            rows += [f"column_revisions #{r.id}" for r in submission.revisions]
            kept_rows.update({("column_submissions", submission.id)}
                             | {("column_revisions", r.id) for r in submission.revisions})
            done.kept.append(Kept(f"column piece {tracking}",
                                  f"published in {submission.issue}: part of the column's "
                                  "record", rows,
                                  [f for r in submission.revisions
                                   for f in revision_files(data_dir, r)]))
            continue
        for revision in submission.revisions:
            inbound_ids.add(revision.inbound_id or 0)
            done.files_removed += revision_files(data_dir, revision)
        done.count("column_revisions", len(submission.revisions))
        done.count("column_submissions", 1)
        submission.revisions.clear()
        # A bare row keeps the tracking id taken (the numbering takes the highest + 1).
        submission.status, submission.sender, submission.name = FORGOTTEN, alias, ""
        submission.title = submission.reason = submission.issue = submission.deadline = ""
        done.files_removed.append(str(data_dir / "submissions" / tracking))
    by_them = select(SubmissionRevision).join(Submission).where(
        func.lower(SubmissionRevision.sender) == address, ~sender_is)
    for revision in session.scalars(by_them):
        parent = revision.submission
        if parent.status == "published":
            kept_rows.add(("column_revisions", revision.id))
            done.kept.append(Kept(f"their revision of {parent.tracking_id}",
                                  f"published in {parent.issue}: part of the column's record",
                                  [f"column_revisions #{revision.id}"],
                                  revision_files(data_dir, revision)))
            continue
        inbound_ids.add(revision.inbound_id or 0)
        if revision.folder:
            done.files_removed.append(str(data_dir / "submissions" / revision.folder))
        done.count("column_revisions", 1)
        session.delete(revision)
    session.flush()
    inbound_ids.discard(0)
    return inbound_ids


def _forget_archived(session: Session, done: Forgotten, address: str,
                     kept_rows: set[tuple[str, int]]) -> None:
    """Their archived posts go (SPEC §7); others' posts naming them stay whole, reported."""
    done.count("archived_posts", session.execute(delete(ArchivedPost).where(
        func.lower(ArchivedPost.sender) == address)).rowcount)
    for post_id in raw_mentions(session, ArchivedPost, address):
        post = session.get(ArchivedPost, post_id)
        if post is None:
            continue
        kept_rows.add(("archived_posts", post.id))
        done.kept.append(Kept(f"archived post {post.id} by {post.sender} to "
                              f"{post.mailing_list.address}",
                              "someone else's post that names them, part of the group's "
                              "record: `listserv archive remove "
                              f"{post.id}` withdraws it", [f"archived_posts #{post.id}"]))


def _exports(session: Session, submission: Submission) -> list[str]:
    """Where the chair exported `submission` to (the log says it)."""
    paths = []
    for detail in session.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "column-exported",
            AuditEntry.list_id == submission.list_id)):
        match = _EXPORTED.match(detail)
        if match and submission.tracking_id in match["ids"].split(", "):
            paths.append(match["path"])
    return paths


def _forget_mail(session: Session, done: Forgotten, address: str, inbound_ids: set[int],
                 ahead: Scanned) -> None:
    """Incoming mail from them or naming them, and outgoing mail to them or naming them."""
    for row_id in ahead.naming(session, Inbound, address):
        status = session.scalar(select(Inbound.status).where(Inbound.id == row_id))
        if status is None or row_id in inbound_ids:
            continue
        waiting = session.scalar(select(Held).where(Held.inbound_id == row_id,
                                                    Held.status == "waiting"))
        if waiting is not None:
            done.kept.append(Kept(f"post #{waiting.id} by {waiting.sender} held for the chair",
                                  "someone else's post that names them, waiting for a "
                                  "decision: forget again once it is decided",
                                  [f"inbound #{row_id}", f"held #{waiting.id}"]))
        elif status != "done":
            done.kept.append(Kept(f"incoming message in-{row_id}",
                                  "someone else's mail that names them, not handled yet (or "
                                  "failed, for the chair to retry): forget again once it is "
                                  "done", [f"inbound #{row_id}"]))
        else:
            inbound_ids.add(row_id)
    # Held rows first (the database would cascade, but then they would go uncounted).
    done.count("held", session.execute(delete(Held).where(
        or_(Held.inbound_id.in_(inbound_ids), func.lower(Held.sender) == address))).rowcount)
    raw_ids = set(session.scalars(select(Inbound.raw_id).where(Inbound.id.in_(inbound_ids))))
    done.count("inbound", session.execute(
        delete(Inbound).where(Inbound.id.in_(inbound_ids))).rowcount)
    session.execute(delete(InboundRaw).where(  # a transaction's bytes go with its last row
        InboundRaw.id.in_(raw_ids), ~exists().where(Inbound.raw_id == InboundRaw.id)))

    message_ids = set(ahead.naming(session, OutMessage, address)) | set(session.scalars(
        select(OutRecipient.message_id).where(func.lower(OutRecipient.email) == address)))
    done.count("out_recipients", session.execute(delete(OutRecipient).where(
        func.lower(OutRecipient.email) == address)).rowcount)
    queued = dict(session.execute(
        select(OutRecipient.message_id, func.count()).where(
            OutRecipient.message_id.in_(message_ids), OutRecipient.status == "queued")
        .group_by(OutRecipient.message_id)).all())
    for message_id, count in sorted(queued.items()):
        done.kept.append(Kept(f"outgoing message out-{message_id}",
                              f"still being delivered to {count} other recipient(s): forget "
                              "again once it is delivered", [f"out_messages #{message_id}"]))
    gone = message_ids - set(queued)
    session.execute(delete(OutRecipient).where(OutRecipient.message_id.in_(gone)))
    done.count("out_messages", session.execute(
        delete(OutMessage).where(OutMessage.id.in_(gone))).rowcount)
    # A post waiting for its list's next digest is mail still being delivered, like the
    # above; once its digest is queued its bytes are emptied (digests/sending.py).
    for post_id, raw in session.execute(select(DigestPost.id, DigestPost.raw).where(
            DigestPost.digest_id.is_(None))):
        if address.encode() in raw.lower():
            done.kept.append(Kept(f"a post waiting for a digest (digest_posts #{post_id})",
                                  "still to be delivered in the list's next digest: forget "
                                  "again once it is sent", [f"digest_posts #{post_id}"]))


def _forget_outbox(done: Forgotten, outbox: Path, address: str) -> None:
    """Maildir outbox files only for them go; those for other recipients too are kept."""
    for path in outbox_files(outbox, address):
        head = path.read_bytes().split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
        recipients = {m.decode("utf-8", "replace").lower()
                      for m in re.findall(rb"^X-Envelope-To: <([^>]*)>", head, re.MULTILINE)}
        if recipients and recipients <= {address}:
            done.files_removed.append(str(path))
        else:
            done.kept.append(Kept("a message in the outbox", "handed over for delivery to "
                                  "other recipients too", files=[str(path)]))


def _pseudonymise(session: Session, address: str, alias: str,
                  kept_rows: set[tuple[str, int]]) -> int:
    """Replace the address with `alias` in every text that still names it (the log's lines,
    outcomes, reasons); returns how many log entries changed."""
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    tables = {table.name: table for table in Base.metadata.sorted_tables}
    log_entries = set()
    for name, row_id, column_name in list(mentions(session, address)):
        if (name, row_id) in kept_rows:
            continue
        table = tables[name]
        (key,) = table.primary_key.columns
        column = table.columns[column_name]
        value = session.scalar(select(column).where(key == row_id))
        if isinstance(stored_type(column), JSON):
            value = json.loads(pattern.sub(alias, json.dumps(value, ensure_ascii=False)))
        else:
            value = pattern.sub(alias, value)
        session.execute(update(table).where(key == row_id).values({column_name: value}))
        if name == AuditEntry.__tablename__:
            log_entries.add(row_id)
    return len(log_entries)


def erase_files(done: Forgotten) -> None:
    """After the commit: remove the files and folders `forget` listed."""
    remove_paths(Path(name) for name in done.files_removed)


def scrub(store: Store) -> bool:
    """After the commit, on SQLite: copy the WAL into the file and empty it, and give the
    zeroed pages back; True when the WAL could be emptied (no reader held it)."""
    if store.engine.dialect.name != "sqlite":
        return True
    give_back_space(store)
    # Outside any transaction (the raw connection runs in autocommit): a checkpoint must be.
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.close()
    finally:
        connection.close()
    return not (busy and busy[0])
