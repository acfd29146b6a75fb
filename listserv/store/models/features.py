"""The features' tables: meetings and peer input, bounces, the column, IMAP bookkeeping.

The features' packages own what these rows mean (`meetings/`, `bounces/`, `column/`,
`intake/imap.py`); the tables stay in the store, beside the rest of the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from listserv.store.models.base import Base, utcnow
from listserv.store.models.core import MAX_NAME_LENGTH, MailingList

# -- meetings and peer input (SPEC §5) ---------------------------------------------------------


class MeetingSeries(Base):
    """A list's recurring meetings: an RFC 5545 RRULE from a first start in an IANA zone."""

    __tablename__ = "meeting_series"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    rrule: Mapped[str] = mapped_column(Text)
    # DTSTART: the first start (UTC); its wall-clock time in `tz` is kept by every occurrence.
    first_start: Mapped[datetime]
    tz: Mapped[str] = mapped_column(String(64))
    duration: Mapped[int] = mapped_column(Integer)
    dial_in: Mapped[str] = mapped_column(Text, default="")
    # A replaced series makes no more meetings (those it made stay).
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    mailing_list: Mapped[MailingList] = relationship()


class Meeting(Base):
    """One meeting: a one-off, or one occurrence of a series (unique per series and instant)."""

    __tablename__ = "meetings"
    __table_args__ = (
        UniqueConstraint("series_id", "occurrence"),
        Index("ix_meetings_list_start", "list_id", "start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    series_id: Mapped[int | None] = mapped_column(
        ForeignKey("meeting_series.id", ondelete="SET NULL"), default=None
    )
    # The series instant this meeting was made for (kept when the meeting is moved).
    occurrence: Mapped[datetime | None] = mapped_column(default=None)
    start: Mapped[datetime]
    tz: Mapped[str] = mapped_column(String(64))
    duration: Mapped[int] = mapped_column(Integer)
    dial_in: Mapped[str] = mapped_column(Text, default="")
    # scheduled | cancelled
    status: Mapped[str] = mapped_column(String(12), default="scheduled")
    # The iCalendar UID (stable for the meeting's life) and SEQUENCE (rises with each change).
    uid: Mapped[str] = mapped_column(String(200), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the members were first mailed about it (a reminder, a move); None = never, so a
    # `series --replace` may drop it without a word.
    announced_at: Mapped[datetime | None] = mapped_column(default=None)

    mailing_list: Mapped[MailingList] = relationship()
    reminders: Mapped[list[MeetingReminder]] = relationship(
        back_populates="meeting", cascade="all, delete-orphan", order_by="MeetingReminder.id"
    )


class MeetingReminder(Base):
    """A reminder at one of the list's offsets: sent or missed, recorded once (unique)."""

    __tablename__ = "meeting_reminders"
    __table_args__ = (UniqueConstraint("meeting_id", "offset_minutes"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    offset_minutes: Mapped[int] = mapped_column(Integer)
    # sent | missed
    status: Mapped[str] = mapped_column(String(10))
    due_at: Mapped[datetime]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")

    meeting: Mapped[Meeting] = relationship(back_populates="reminders")


class PeerInput(Base):
    """A request for peer-input time at a meeting, in order of arrival (its id).

    `status`: held (a non-member's, for the chair), reserved (provisionally, in `meeting_id`),
    waiting (no meeting has room yet), approved, declined, expired.
    """

    __tablename__ = "peer_input"
    __table_args__ = (Index("ix_peer_input_list_status", "list_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    meeting_id: Mapped[int | None] = mapped_column(
        ForeignKey("meetings.id", ondelete="SET NULL"), default=None
    )
    email: Mapped[str] = mapped_column(String(320))
    # What list mail shows (the chair may edit both): the requester's name, the project title.
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default="")
    project: Mapped[str] = mapped_column(String(200))
    # The help wanted: between requester and chair, never in list mail.
    help: Mapped[str] = mapped_column(Text, default="")
    minutes: Mapped[int] = mapped_column(Integer)
    requested_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    # Placed in its meeting by the chair: not moved up automatically.
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    lang: Mapped[str] = mapped_column(String(8), default="en")
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str] = mapped_column(String(320), default="")
    reason: Mapped[str] = mapped_column(Text, default="")

    mailing_list: Mapped[MailingList] = relationship()
    meeting: Mapped[Meeting | None] = relationship()


# -- bounces (issue 8) -------------------------------------------------------------------------


class BounceScore(Base):
    """A member's bounce score and, once delivery is disabled, where the warnings stand.

    One row per member (a member belongs to one list). Permanent bounces count 1, temporary
    ones 0.5, at most once per UTC day (`counted_on`, `day_weight`); the score starts again
    from zero when the last counted bounce is older than the list's `bounce.decay_days`.
    """

    __tablename__ = "bounce_scores"
    __table_args__ = (
        Index("ix_bounce_scores_list", "list_id", "score"),
        Index("ix_bounce_scores_next_step", "next_step_at"),
    )

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(default=0.0)
    last_bounce_at: Mapped[datetime | None] = mapped_column(default=None)
    counted_on: Mapped[str] = mapped_column(String(10), default="")
    day_weight: Mapped[float] = mapped_column(default=0.0)
    last_reason: Mapped[str] = mapped_column(Text, default="")
    # Set while the member is disabled by bounces: when, how many warnings went out, and when
    # the next step (a warning, or the removal after the last one) is due.
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    warnings_sent: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime | None] = mapped_column(default=None)


class BounceEvent(Base):
    """One delivery failure of a member: a refusal during our delivery, a report, a probe's.

    `counted` says whether it moved the score; `verified` is False for a report that named the
    member but matched nothing we sent to them (recorded and shown, never counted).
    """

    __tablename__ = "bounce_events"
    __table_args__ = (Index("ix_bounce_events_member", "member_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # delivery (refused while we delivered) | report (a DSN or other report) | probe
    source: Mapped[str] = mapped_column(String(10))
    # permanent | temporary | delayed | policy | rate | autoreply | unknown
    kind: Mapped[str] = mapped_column(String(12))
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    verified: Mapped[bool] = mapped_column(Boolean, default=True)
    weight: Mapped[float] = mapped_column(default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound.id", ondelete="SET NULL"), default=None
    )


class BounceProbe(Base):
    """A warning to a disabled member, sent with an envelope token of its own.

    `status`: sent (queued) -> accepted (the relay took it) -> succeeded (no bounce came within
    the grace time: the member is enabled again) | bounced | cancelled (the member was enabled
    or removed meanwhile).
    """

    __tablename__ = "bounce_probes"
    __table_args__ = (
        Index("ix_bounce_probes_recipient", "out_recipient_id"),
        Index("ix_bounce_probes_status", "status", "accepted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(40), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    warning: Mapped[int] = mapped_column(Integer)
    out_recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("out_recipients.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(10), default="sent")
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)


# -- column submissions (SPEC §6) --------------------------------------------------------------


class Submission(Base):
    """A submission to the list's newsletter column, known by its tracking id."""

    __tablename__ = "column_submissions"
    __table_args__ = (
        UniqueConstraint("list_id", "year", "number"),
        Index("ix_column_submissions_list_status", "list_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # PREFIX-YYYY-NNN: the prefix (column.prefix) at the time, the year, the number in it.
    tracking_id: Mapped[str] = mapped_column(String(64), unique=True)
    year: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    # Whether the sender was a member when it came (the column is open to all).
    member: Mapped[bool] = mapped_column(Boolean, default=False)
    # The deadline (YYYY-MM-DD) it came in for: the first on or after its arrival ("" = none).
    deadline: Mapped[str] = mapped_column(String(10), default="")
    # received -> accepted -> published; received | accepted -> declined
    status: Mapped[str] = mapped_column(String(12), default="received")
    reason: Mapped[str] = mapped_column(Text, default="")
    issue: Mapped[str] = mapped_column(Text, default="")
    lang: Mapped[str] = mapped_column(String(8), default="en")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str] = mapped_column(String(320), default="")

    mailing_list: Mapped[MailingList] = relationship()
    revisions: Mapped[list[SubmissionRevision]] = relationship(
        back_populates="submission", cascade="all, delete-orphan",
        order_by="SubmissionRevision.id")


class SubmissionRevision(Base):
    """One mail of a submission: revision 1, a follow-up (2, 3, …), or one held (no number).

    `files` lists what was kept ({name, original, type, size, macros}), `refused` what was kept
    out and why ({original, reason}); the files live in the revision's folder under
    data_dir/submissions/<tracking id>/.
    """

    __tablename__ = "column_revisions"
    __table_args__ = (UniqueConstraint("submission_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("column_submissions.id", ondelete="CASCADE"))
    number: Mapped[int | None] = mapped_column(Integer, default=None)
    # stored | held (a follow-up not proven to come from the author or an editor, for the
    # chair) | discarded (a held one the chair dropped)
    status: Mapped[str] = mapped_column(String(10), default="stored")
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound.id", ondelete="SET NULL"), default=None)
    sender: Mapped[str] = mapped_column(String(320))
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    folder: Mapped[str] = mapped_column(String(200), default="")
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    refused: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The Message-ID of its acknowledgement (a reply to it is a follow-up).
    ack_message_id: Mapped[str] = mapped_column(String(250), default="", index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="revisions")


# -- hosted mailbox intake (IMAP) --------------------------------------------------------------


class ImapCursor(Base):
    """How far a hosted mailbox folder has been read: the only IMAP processing state.

    `mailbox` names the account and folder (`user@host:port/folder`). A message is stored in
    the same transaction that moves `last_uid` past it.
    """

    __tablename__ = "imap_cursors"

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(500), unique=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImapMessage(Base):
    """A message read from a mailbox: its UID, what identifies it, and whether it is marked.

    `marked` turns true once the server holds our keyword (or the message was moved); rows
    still false after a crash are marked at the next connection. `message_id` and
    `content_hash` recognise a message again after the server changed UIDVALIDITY.
    """

    __tablename__ = "imap_messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid"),
        Index("ix_imap_messages_identity", "mailbox", "message_id"),
        Index("ix_imap_messages_unmarked", "mailbox", "marked"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(250), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound.id", ondelete="SET NULL"), default=None)
    marked: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- digests (SPEC §3 "Delivery modes") --------------------------------------------------------


class Digest(Base):
    """A digest of a list sent to its digest members: numbered once (unique volume and issue),
    in the transaction that queues it, so no restart and no second daemon sends one twice.

    `reason`: `scheduled` (its moment came) or `size` (the posts passed `digest.max_kb`).
    """

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("list_id", "volume", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    volume: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(10))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    posts: Mapped[int] = mapped_column(Integer, default=0)
    recipients: Mapped[int] = mapped_column(Integer, default=0)


class DigestPost(Base):
    """A distributed post waiting for its list's next digest (`digest_id` None), or the one it
    went into. Its bytes are the members' copy without the footer (the digest has one), kept
    until the digest is queued, then emptied."""

    __tablename__ = "digest_posts"
    __table_args__ = (Index("ix_digest_posts_pending", "list_id", "digest_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("digests.id", ondelete="SET NULL"), default=None)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes]
