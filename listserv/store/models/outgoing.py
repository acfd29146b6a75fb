"""The outgoing mail's tables: the queue, the sending limits' ledger, the automatic-mail cap.

`out_messages` holds each message's wire bytes once and `out_recipients` one row per recipient
with its result (docs/delivery.md), until retention compacts them into the message's counts;
`send_usage` is what the relay's sending limits count, and `auto_mail` what the cap on
automatic mail to one address counts (SPEC §2); `sent_only_to` the Message-IDs of mail queued
for one address, whose replies prove their sender (SPEC §2).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from listserv.store.models.base import Base, utcnow

#: The results a recipient ends with (`out_recipients.status` other than queued); retention
#: compacts delivered recipients into the `out_messages` column of each name.
RESULTS = ("sent", "failed", "dropped")


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
    # A distributed post's authentication when it arrived (identity.authentication), sealed
    # into each batch's ARC set by the delivery worker; "" for mail we composed.
    authentication_results: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Recipients compacted away by retention (store/retention.py), by their result; the rows
    # still in out_recipients are counted there.
    sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dropped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


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
    # When the latest attempt ended, whatever its result (`listserv status` counts the hour's).
    attempted_at: Mapped[datetime | None] = mapped_column(default=None)

    message: Mapped[OutMessage] = relationship()


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


class AutoMail(Base):
    """One automatic mail sent to an address, for the cap of SPEC §2."""

    __tablename__ = "auto_mail"
    __table_args__ = (Index("ix_auto_mail_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)


#: How long a reply to a mail we sent to one address proves that address (SPEC §2): the
#: confirmation tokens' 14 days, and a column author's reply to an acknowledgement within one
#: deadline cycle (21 days), with a margin. Rows older than this are pruned (store.retention).
REPLY_PROOF_DAYS = 30


class SentOnlyTo(Base):
    """The Message-ID of a mail we generated and queued for exactly one address, and when."""

    __tablename__ = "sent_only_to"
    __table_args__ = (Index("ix_sent_only_to_message_id", "message_id"),
                      Index("ix_sent_only_to_at", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(250))
    address: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(default=utcnow)
