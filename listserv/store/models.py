"""Typed SQLAlchemy models: the whole durable state of listserv."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from listserv.mail.addresses import Role, role_address
from listserv.store.list_settings import (
    ADDRESS,
    BOOLEAN,
    ONE_LINE,
    TEXT,
    choice,
    declare,
    whole,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset, so store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, bytes: LargeBinary}


# -- the core list settings (SPEC §4): columns of `lists` ---------------------------------------

DESCRIPTION = declare("description", ONE_LINE, "", "what the list is for (`info`, `help`)",
                      column=True)
POLICY = declare("policy", choice("confirm", "confirm+approve"), "confirm",
                 "joining: confirmed by the person, or confirmed and then approved by the chair",
                 column=True)
NONMEMBER_ACTION = declare("nonmember_action", choice("hold", "reject", "discard"), "hold",
                           "what becomes of a non-member's post", column=True)
REPLY_TO = declare("reply_to", choice("poster", "list"), "poster",
                   "where replies to list mail go", column=True)
SUBJECT_PREFIX = declare("subject_prefix", ONE_LINE, None,
                         'put before the subject (built in: `[NAME]`; `""` = none)', column=True)
FOOTER = declare("footer", TEXT, None,
                 'added to each copy (built in: the `footer.txt` template; `""` = none)',
                 column=True)
MAX_POST_KB = declare("max_post_kb", whole(0), 1024,
                      "a larger post is held for the chair (0 = no limit)", column=True)
PERSONALIZE = declare("personalize", BOOLEAN, True,
                      "one copy per member, with their own unsubscribe link and bounce address",
                      column=True)
DMARC_MITIGATION = declare("dmarc_mitigation", choice("munge", "always", "wrap", "none"),
                           "munge", "what a copy of a post from a DMARC-protected domain does "
                           "(docs/delivery.md)", column=True)
HELD_EXPIRY_DAYS = declare("held_expiry_days", whole(0), 14,
                           "days a held post or request waits for the chair", column=True)
RESOURCES = declare("resources", TEXT, "", "links shown in `info` and `help`, one a line",
                    column=True)
ARCHIVE_URL = declare("archive_url", ONE_LINE, "", "the archive's address (List-Archive)",
                      column=True)
#: `address.ROLE`: the public address of a role (SPEC §1), "" for the list's own.
ROLE_ADDRESSES = {
    role: declare(f"address.{role.value}", ADDRESS, "",
                  f"the public address of the {role.value} role (`\"\"` = the list's own)")
    for role in Role
}


class MailingList(Base):
    """A list `name@domain` and the chair's settings for it (SPEC §4 "List settings")."""

    __tablename__ = "lists"
    __table_args__ = (UniqueConstraint("name", "domain"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(253))
    description: Mapped[str] = mapped_column(Text, default=DESCRIPTION.default)
    policy: Mapped[str] = mapped_column(String(20), default=POLICY.default)
    nonmember_action: Mapped[str] = mapped_column(String(10), default=NONMEMBER_ACTION.default)
    reply_to: Mapped[str] = mapped_column(String(10), default=REPLY_TO.default)
    # None = the default "[NAME]"; "" = no prefix (a no-modify list).
    subject_prefix: Mapped[str | None] = mapped_column(Text, default=SUBJECT_PREFIX.default)
    # None = the default footer template; "" = no footer.
    footer: Mapped[str | None] = mapped_column(Text, default=FOOTER.default)
    max_post_kb: Mapped[int] = mapped_column(Integer, default=MAX_POST_KB.default)
    personalize: Mapped[bool] = mapped_column(Boolean, default=PERSONALIZE.default)
    dmarc_mitigation: Mapped[str] = mapped_column(String(10), default=DMARC_MITIGATION.default)
    held_expiry_days: Mapped[int] = mapped_column(Integer, default=HELD_EXPIRY_DAYS.default)
    resources: Mapped[str] = mapped_column(Text, default=RESOURCES.default)
    archive_url: Mapped[str] = mapped_column(Text, default=ARCHIVE_URL.default)
    # The namespaced settings (address.ROLE, bounce.*, column.*, meetings.*): store/list_settings
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owners: Mapped[list[Owner]] = relationship(
        back_populates="mailing_list", cascade="all, delete-orphan", order_by="Owner.id"
    )

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    def role_address(self, role: Role, token: str = "") -> str:
        """The public address of `role` (SPEC §1: the `address.ROLE` setting, or the default)."""
        return role_address(self.address, role, token, ROLE_ADDRESSES[role].get(self))

    @property
    def prefix(self) -> str:
        return f"[{self.name}]" if self.subject_prefix is None else self.subject_prefix


class Owner(Base):
    """An owner (chair) of a list: gets the owner mail and the notices."""

    __tablename__ = "owners"
    __table_args__ = (UniqueConstraint("list_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))

    mailing_list: Mapped[MailingList] = relationship(back_populates="owners")


MAX_NAME_LENGTH = 200  # of a member's or requester's name


class Member(Base):
    """A subscriber of a list. Tokens are opaque: they never encode the address."""

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("list_id", "email"),
        Index("ix_members_list_status", "list_id", "status", "delivery"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default="")
    delivery: Mapped[str] = mapped_column(String(10), default="regular")
    status: Mapped[str] = mapped_column(String(10), default="active")
    bounce_token: Mapped[str] = mapped_column(String(40), unique=True)
    leave_token: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Inbound(Base):
    """One accepted message for one recipient, stored before the MTA heard 250."""

    __tablename__ = "inbound"
    __table_args__ = (Index("ix_inbound_status", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt: Mapped[str] = mapped_column(String(320))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(20))
    token: Mapped[str] = mapped_column(String(80), default="")
    raw: Mapped[bytes]
    size: Mapped[int] = mapped_column(Integer)
    # new -> done | failed; a transient failure leaves it new, due again at next_attempt_at
    status: Mapped[str] = mapped_column(String(10), default="new")
    outcome: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Transient failures since it came (or since the chair's `queue retry`); None = due now.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)


class Held(Base):
    """A message waiting for the chair's decision."""

    __tablename__ = "held"
    __table_args__ = (Index("ix_held_status", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text)
    # waiting -> approved | rejected | discarded | expired
    status: Mapped[str] = mapped_column(String(10), default="waiting")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str] = mapped_column(String(320), default="")

    inbound: Mapped[Inbound] = relationship()
    mailing_list: Mapped[MailingList] = relationship()


class OutMessage(Base):
    """A message to send: the copy's bytes once, its recipients in OutRecipient rows."""

    __tablename__ = "out_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20))
    raw: Mapped[bytes]
    envelope_from: Mapped[str] = mapped_column(String(320))
    # Per-recipient envelope NAME-bounces+TOKEN@ and List-Unsubscribe, one transaction each.
    personalize: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutRecipient(Base):
    """One recipient of an OutMessage and the result of delivering to it."""

    __tablename__ = "out_recipients"
    # The claim's two orders: first attempts (attempts = 0) before retries, each by due time.
    __table_args__ = (Index("ix_out_recipients_due", "status", "next_attempt_at", "id"),
                      Index("ix_out_recipients_fresh", "status", "attempts", "next_attempt_at",
                            "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("out_messages.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None
    )
    email: Mapped[str] = mapped_column(String(320))
    # queued -> sent | failed | dropped (the member left before delivery)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(default=None)

    message: Mapped[OutMessage] = relationship()


class AuditEntry(Base):
    """Every chair action and automatic decision: who, what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(60))
    list_id: Mapped[int | None] = mapped_column(
        ForeignKey("lists.id", ondelete="SET NULL"), default=None
    )
    detail: Mapped[str] = mapped_column(Text, default="")


class AutoMail(Base):
    """One automatic mail sent to an address, for the cap of SPEC §2."""

    __tablename__ = "auto_mail"
    __table_args__ = (Index("ix_auto_mail_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)


class Once(Base):
    """What must happen once (a daily summary, a reminder): its key is unique."""

    __tablename__ = "once"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Request(Base):
    """A membership request: waiting for its confirmation, for the chair, or unclear.

    `kind` is subscribe, unsubscribe, resubscribe (the undo offered by a goodbye), unclear or
    peer_input; `status` is confirming (the token went out), waiting (for the chair), done,
    denied or expired.
    """

    __tablename__ = "requests"
    __table_args__ = (Index("ix_requests_status", "status", "list_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default="")
    delivery: Mapped[str] = mapped_column(String(10), default="regular")
    lang: Mapped[str] = mapped_column(String(8), default="en")
    status: Mapped[str] = mapped_column(String(12), default="confirming")
    token: Mapped[str | None] = mapped_column(String(40), unique=True, default=None)
    requested_by: Mapped[str] = mapped_column(String(320), default="")
    # What the chair sees of an unclear request (its subject); never mailed to anyone else.
    summary: Mapped[str] = mapped_column(Text, default="")
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str] = mapped_column(String(320), default="")

    mailing_list: Mapped[MailingList] = relationship()


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
    # stored | held (a follow-up from someone else, for the chair)
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


class SendUsage(Base):
    """What the outgoing queue handed to the relay, and when: the provider's limits' ledger.

    One row per claimed batch: `messages` SMTP transactions for `recipients` recipients.
    `messages_per_minute` and `recipients_per_day` are counted over these rows.
    """

    __tablename__ = "send_usage"
    __table_args__ = (Index("ix_send_usage_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    messages: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[int] = mapped_column(Integer)
