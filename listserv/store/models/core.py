"""The core tables: lists and their settings, owners, members, inbound, held, requests, the
chair's decision tokens, audit.

Also the `once` table, and the core list settings (the columns of `lists`, SPEC §4) declared in
the one typed registry (`store/list_settings.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from listserv.mail.addresses import Role, role_address
from listserv.store.list_settings import (
    ADDRESS,
    ADDRESSES,
    BOOLEAN,
    ONE_LINE,
    TEXT,
    choice,
    declare,
    whole,
)
from listserv.store.models.base import Base, utcnow

# -- the core list settings (SPEC §4): columns of `lists` ---------------------------------------

DISPLAY_NAME = declare("display_name", ONE_LINE, "",
                       'the list\'s name in mail: notices come from "NAME (list owner)" '
                       '(`""` = the list\'s name in capitals)')
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
#: Co-chairs who decide on held items with the owners (`owners` is the `owners` table).
MODERATORS = declare("moderators", ADDRESSES, (),
                     "moderators: get the notices that ask for a decision, as the owners do")


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
    def display(self) -> str:
        """The list's name as mail shows it (`display_name`, else NAME in capitals)."""
        return DISPLAY_NAME.get(self) or self.name.upper()

    @property
    def deciders(self) -> list[str]:
        """Who decides on held items and waiting requests: the owners, then the moderators."""
        return list(dict.fromkeys([*(o.email for o in self.owners), *MODERATORS.get(self)]))

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
DELIVERY_LENGTH = 12  # the longest delivery mode, "digest-plain"


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
    # regular | digest | digest-plain | nomail (SPEC §3 "Delivery modes")
    delivery: Mapped[str] = mapped_column(String(DELIVERY_LENGTH), default="regular")
    status: Mapped[str] = mapped_column(String(10), default="active")
    bounce_token: Mapped[str] = mapped_column(String(40), unique=True)
    leave_token: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The member's language (`members set --language`); "" = the list's.
    language: Mapped[str] = mapped_column(String(8), default="")


class Ban(Base):
    """A pattern of senders whose posts and requests to a list are discarded (`members ban`).

    `pattern` is an address, `*@domain`, or a regular expression starting with `^`
    (listserv/membership/bans.py matches them).
    """

    __tablename__ = "bans"
    __table_args__ = (UniqueConstraint("list_id", "pattern"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    pattern: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="")


class InboundRaw(Base):
    """The bytes of one accepted transaction, stored once however many recipients it had."""

    __tablename__ = "inbound_raw"

    id: Mapped[int] = mapped_column(primary_key=True)
    raw: Mapped[bytes]


class Inbound(Base):
    """One accepted message for one recipient, stored before the MTA heard 250.

    The recipients of one transaction share one InboundRaw row (SPEC §7: the raw message is
    stored once per transaction); retention deletes it once every one of them is handled and
    past `inbound_days`, and `raw` is then empty.
    """

    __tablename__ = "inbound"
    __table_args__ = (
        Index("ix_inbound_status", "status", "id"),
        # The per-sender hourly limit at MAIL FROM (listserv.intake.store.messages_since).
        Index("ix_inbound_sender", "mail_from", "received_at"),
        # Retention asks which rows still need a transaction's bytes.
        Index("ix_inbound_raw_id", "raw_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt: Mapped[str] = mapped_column(String(320))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(20))
    token: Mapped[str] = mapped_column(String(80), default="")
    # No ON DELETE: bytes a row points at cannot be deleted; retention (and `--forget`) first
    # let go of them. (SQLite added this column by ALTER TABLE, whose ON DELETE no reflection
    # reads back.)
    raw_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_raw.id"), default=None)
    # The size of the message as received (for IMAP, larger than `raw` when only the header
    # section of a huge message was fetched).
    size: Mapped[int] = mapped_column(Integer)
    # new -> done | failed; a transient failure leaves it new, due again at next_attempt_at
    status: Mapped[str] = mapped_column(String(10), default="new")
    outcome: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Transient failures since it came (or since the chair's `queue retry`); None = due now.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)

    raw_message: Mapped[InboundRaw | None] = relationship()

    @property
    def raw(self) -> bytes:
        """The message's bytes; empty once retention pruned them."""
        return self.raw_message.raw if self.raw_message is not None else b""

    @raw.setter
    def raw(self, value: bytes) -> None:
        # A row of its own (IMAP, tests); intake shares one among a transaction's recipients.
        self.raw_message = InboundRaw(raw=value)


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


class Request(Base):
    """A membership request: waiting for its confirmation, for the chair, or unclear.

    `kind` is subscribe, unsubscribe, resubscribe (the undo offered by a goodbye), unclear or
    peer_input; `status` is confirming (the token went out), waiting (for the chair), done,
    denied, ignored (an unclear request the chair closed) or expired.
    """

    __tablename__ = "requests"
    __table_args__ = (Index("ix_requests_status", "status", "list_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default="")
    delivery: Mapped[str] = mapped_column(String(DELIVERY_LENGTH), default="regular")
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


class ChairToken(Base):
    """The `NAME-confirm+TOKEN@` of a notice that asks the chair to decide (SPEC §2, "The chair
    replies"): one per item (`kind` held, request, peer_input or follow_up, and its `item_id`),
    or one per daily summary (`kind` summary) with the ids it listed in `items` ({"held":
    [12, 13], …}), so that its "approve all" never reaches an item that came later. Single
    use: `used_at`."""

    __tablename__ = "chair_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    items: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    used_by: Mapped[str] = mapped_column(String(320), default="")

    mailing_list: Mapped[MailingList] = relationship()


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


class Once(Base):
    """What must happen once (a daily summary, a reminder): its key is unique."""

    __tablename__ = "once"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


#: How long a DKIM-proven Message-ID is remembered: longer than the proof accepts a Date
#: (listserv.identity.fresh: at most 7 days old, 1 day ahead), so a replay is always caught.
SEEN_MESSAGE_DAYS = 14


class SeenMessage(Base):
    """A Message-ID that already proved its sender (SPEC §2, "Who sent it"): the same signed
    mail sent again proves nothing. Only a SHA-256 of the normalized Message-ID is kept."""

    __tablename__ = "seen_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
