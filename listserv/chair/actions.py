"""The chair's actions, shared by the command line and the handlers; each one is audited.

Every function takes the caller's session (the caller owns the unit of work) and raises
`ListservError` with one clear line when the chair asked for something that cannot be done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, insert, select
from sqlalchemy.orm import Session

from listserv.delivery.listmail import list_headers
from listserv.delivery.notices import notify
from listserv.digests.posts import DELIVERY_MODES
from listserv.errors import ListservError
from listserv.identity import authentication
from listserv.mail.addresses import Role, normalize, valid_address
from listserv.mail.automatic import may_auto_reply
from listserv.mail.headers import from_name
from listserv.mail.message import parse
from listserv.mail.render import Renderer
from listserv.mail.tokens import new_token
from listserv.membership.bans import banning, is_banned, patterns_of
from listserv.membership.subscriptions import find_member, subscribe
from listserv.posting.distribute import distribute, headers_only
from listserv.posting.dmarc import look_up_ahead
from listserv.store import list_settings
from listserv.store.audit import audit
from listserv.store.lookup import by_number, required, revoke_open_requests
from listserv.store.models.core import (
    MAX_NAME_LENGTH,
    AuditEntry,
    Held,
    Inbound,
    MailingList,
    Member,
    Owner,
    Request,
)
from listserv.store.models.outgoing import OutMessage, OutRecipient

_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


# -- lists -----------------------------------------------------------------------------------


def find_list(session: Session, ref: str) -> MailingList:
    """The list named by its full address, or by NAME where that is unique."""
    ref = normalize(ref)
    if "@" in ref:
        name, _, domain = ref.partition("@")
        found = session.scalar(
            select(MailingList).where(MailingList.name == name, MailingList.domain == domain)
        )
        if found is None:
            raise ListservError(f"no list {ref}")
        return found
    matches = session.scalars(select(MailingList).where(MailingList.name == ref)).all()
    if not matches:
        raise ListservError(f"no list named {ref}")
    if len(matches) > 1:
        names = ", ".join(m.address for m in matches)
        raise ListservError(f"several lists are named {ref} ({names}); give the full address")
    return matches[0]


def create_list(session: Session, address: str, owners: Iterable[str], now: datetime,
                actor: str) -> MailingList:
    """Create the list `NAME@DOMAIN` with its owners."""
    normalized = valid_address(address)
    if normalized is None:
        raise ListservError(f"{address!r} is not a list address (NAME@DOMAIN)")
    name, _, domain = normalized.partition("@")
    if not _LIST_NAME.match(name):
        raise ListservError(f"list name {name!r}: use lower-case letters, digits, '.', '_', '-'")
    suffixes = tuple(f"-{role.value}" for role in Role if role is not Role.POST)
    if name.endswith(suffixes):
        raise ListservError(f"list name {name!r} ends like one of a list's own addresses")
    owner_list = []
    for owner in owners:
        checked = valid_address(owner)
        if checked is None:
            raise ListservError(f"owner {owner!r} is not an email address")
        owner_list.append(checked)
    if not owner_list:
        raise ListservError("a list needs at least one owner (--owner EMAIL)")
    exists = select(MailingList.id).where(MailingList.name == name, MailingList.domain == domain)
    if session.scalar(exists) is not None:
        raise ListservError(f"the list {normalized} exists already")
    ml = MailingList(name=name, domain=domain, extra={}, created_at=now)
    ml.owners = [Owner(email=o) for o in dict.fromkeys(owner_list)]
    session.add(ml)
    session.flush()
    audit(session, now, actor, "list-created", f"{ml.address}, owners {', '.join(owner_list)}",
          ml.id)
    return ml


def all_lists(session: Session) -> list[dict[str, str]]:
    """Every list, for `lists list`."""
    return [{"id": str(ml.id), "list": ml.address, "description": ml.description,
             "owners": ", ".join(o.email for o in ml.owners)}
            for ml in session.scalars(select(MailingList).order_by(MailingList.id))]


def set_list_setting(session: Session, ml: MailingList, key: str, value: str, now: datetime,
                     actor: str) -> None:
    """Change one list setting (SPEC §4), checked by its parser in the registry."""
    setting = list_settings.find(key)
    if setting is None:
        role = key.partition(".")[2] if key.startswith("address.") else ""
        if role:
            raise ListservError(f"unknown role {role!r} in {key}")
        known = ", ".join(s.key for s in list_settings.registered())
        raise ListservError(f"unknown list setting {key!r}; known settings: {known}")
    try:
        setting.set(ml, value)
    except list_settings.Refused as exc:
        raise ListservError(f"{key}: {exc}") from None
    audit(session, now, actor, "list-set", f"{key} = {value!r}", ml.id)


def list_info(ml: MailingList) -> dict[str, Any]:
    """Everything about a list, as `lists show` prints it: every setting, typed."""
    info: dict[str, Any] = {"id": str(ml.id), "list": ml.address}
    for setting in list_settings.registered():
        value = setting.get(ml)
        info[setting.key] = list(value) if isinstance(value, tuple) else value
    info["subject_prefix"] = ml.prefix
    info["owners"] = [o.email for o in ml.owners]
    info["addresses"] = {role.value: ml.role_address(role) for role in Role}
    headers = list_headers(ml)
    info["headers"] = {
        "List-Id": headers.list_id,
        "List-Post": f"<mailto:{headers.post}>",
        "List-Help": f"<mailto:{headers.help}?subject=help>",
        "List-Subscribe": f"<mailto:{headers.subscribe}>",
    }
    return info


# -- members ---------------------------------------------------------------------------------


def member_dicts(session: Session, ml: MailingList, batch: int = 1000) -> Iterator[dict[str, str]]:
    """Each member as a listing row (email, name, delivery, language, status, list) in address
    order, read as plain columns in batches: no ORM object per member (the streamed
    `members list --json` of 100,000)."""
    columns = select(Member.email, Member.name, Member.delivery, Member.language, Member.status)
    for row in _in_address_order(session, ml, columns, batch):
        yield {**row._asdict(), "list": ml.address}


def iter_members(session: Session, ml: MailingList, batch: int = 1000) -> Iterator[Member]:
    """The roster in address order, read in batches."""
    for row in _in_address_order(session, ml, select(Member, Member.email), batch):
        yield row.Member


def _in_address_order(session: Session, ml: MailingList, query: Select[Any], batch: int
                      ) -> Iterator[Row[Any]]:
    """The rows of `query` (from members, with an `email` column) for `ml` by address, read
    `batch` at a time after the last address seen (keyset paging: no OFFSET rescans)."""
    last = ""
    while True:
        rows = session.execute(
            query.where(Member.list_id == ml.id, Member.email > last)
            .order_by(Member.email).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].email


def member_count(session: Session, ml: MailingList) -> int:
    """How many rows `iter_members` gives (for a progress bar)."""
    return session.scalar(
        select(func.count()).select_from(Member).where(Member.list_id == ml.id)) or 0


def add_member(session: Session, renderer: Renderer, ml: MailingList, email: str, name: str,
               now: datetime, actor: str, *, welcome: bool = True) -> Member:
    """Subscribe `email` directly (chair adds skip confirmation); welcome by default."""
    checked = valid_address(email)
    if checked is None:
        raise ListservError(f"{email!r} is not an email address")
    if find_member(session, ml, checked) is not None:
        raise ListservError(f"{checked} is already a member of {ml.address}")
    if is_banned(session, ml, checked):
        raise ListservError(f"{checked} is banned on {ml.address} (see `members bans`)")
    name = " ".join(name.split())
    if len(name) > MAX_NAME_LENGTH:
        raise ListservError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    return subscribe(session, renderer, ml, checked, name, now, actor, welcome=welcome)


def remove_member(session: Session, ml: MailingList, email: str, now: datetime,
                  actor: str) -> None:
    """Unsubscribe `email` (no goodbye: SPEC §2) and revoke their open tokens on the list.

    Forgetting the person as well is `chair.forget.forget`.
    """
    member = find_member(session, ml, email)
    address = normalize(email)
    if member is None:
        raise ListservError(f"{address} is not a member of {ml.address}")
    session.delete(member)
    revoke_open_requests(session, ml.id, address, now, actor)
    audit(session, now, actor, "member-removed", address, ml.id)


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: int
    skipped: list[str]


_CSV_ESCAPED = ("=", "+", "-", "@")


def csv_cell(value: str) -> str:
    """A cell safe to open in a spreadsheet: formula-like starts are quoted with '.

    A value that starts with ' itself is quoted too, so that importing the export gives back
    exactly what was exported.
    """
    return "'" + value if value.startswith((*_CSV_ESCAPED, "'")) else value


def _csv_unescape(value: str) -> str:
    """The value `csv_cell` was given (a cell that `csv_cell` did not quote is kept)."""
    if value.startswith("'") and value[1:].startswith((*_CSV_ESCAPED, "'")):
        return value[1:]
    return value


def import_members(session: Session, ml: MailingList,
                   rows: Iterable[tuple[int, dict[str, str | None]]], now: datetime, actor: str,
                   progress: Callable[[int], None] = lambda n: None) -> ImportResult:
    """Add members from CSV rows (`email`, optional `name`, `delivery`, `language`: a
    language code, empty for the list's); never mails.

    `rows` are (line number in the file, row) pairs. Bad rows are skipped and named by their
    line number; the rest are inserted in bulk. A banned address is skipped like a bad row.
    """
    existing = set(session.scalars(select(Member.email).where(Member.list_id == ml.id)))
    patterns = patterns_of(session, ml)
    seen: dict[str, int] = {}
    skipped: list[str] = []
    pending: list[dict[str, Any]] = []
    added = 0
    for line, row in rows:
        email = _csv_unescape((row.get("email") or "").strip())
        checked = valid_address(email)
        delivery = (row.get("delivery") or "regular").strip().lower() or "regular"
        name = " ".join(_csv_unescape(row.get("name") or "").split())
        language = (row.get("language") or "").strip().lower()
        if checked is None:
            skipped.append(f"line {line}: {email!r} is not an email address")
        elif delivery not in DELIVERY_MODES:
            skipped.append(f"line {line}: delivery {delivery!r} is not one of "
                           f"{', '.join(DELIVERY_MODES)}")
        elif len(name) > MAX_NAME_LENGTH:
            skipped.append(f"line {line}: the name is longer than {MAX_NAME_LENGTH} characters")
        elif language and not re.fullmatch(r"[a-z]{2,3}", language):
            skipped.append(f"line {line}: language {language!r} is not a language code "
                           "such as en, es, fr, de or pt")
        elif checked in seen:
            skipped.append(f"line {line}: {checked} is already on line {seen[checked]}")
        elif checked in existing:
            skipped.append(f"line {line}: {checked} is already a member")
        elif (banned := banning(patterns, [checked])) is not None:
            skipped.append(f"line {line}: {checked} is banned ({banned[1]})")
        else:
            seen[checked] = line
            pending.append({"list_id": ml.id, "email": checked, "name": name,
                            "delivery": delivery, "language": language, "status": "active",
                            "bounce_token": new_token(), "leave_token": new_token(),
                            "created_at": now})
        if len(pending) >= 1000:
            session.execute(insert(Member), pending)
            added += len(pending)
            pending = []
        progress(1)
    if pending:
        session.execute(insert(Member), pending)
        added += len(pending)
    audit(session, now, actor, "members-imported",
          f"{added} added, {len(skipped)} skipped", ml.id)
    return ImportResult(added, skipped)


# -- held messages ---------------------------------------------------------------------------


def held_dict(held: Held) -> dict[str, str]:
    return {"id": str(held.id), "list": held.mailing_list.address, "sender": held.sender,
            "subject": held.subject, "reason": held.reason, "status": held.status,
            "held_at": held.created_at.isoformat(), "expires": held.expires_at.isoformat(),
            "lang": held.lang}


def waiting_held(session: Session, ml: MailingList | None = None) -> list[Held]:
    """Held messages waiting for a decision, oldest first (of one list, or all)."""
    query = select(Held).where(Held.status == "waiting").order_by(Held.id)
    if ml is not None:
        query = query.where(Held.list_id == ml.id)
    return list(session.scalars(query))


def find_held(session: Session, held_id: str, *, waiting: bool = True) -> Held:
    """A held message by id (by default: one still waiting for a decision)."""
    held = required(session, Held, held_id, "held message")
    if waiting and held.status != "waiting":
        raise ListservError(f"held message {held_id} was already {held.status}")
    return held


def before_approving(held_raw: bytes) -> None:
    """The slow part of approving a held post, done before the write transaction opens: the
    author's DMARC lookup and the keys of its signatures (`approve_held` then answers from
    their caches)."""
    msg = parse(held_raw)
    look_up_ahead(msg)
    authentication.look_up_ahead(msg)


def approve_held(session: Session, renderer: Renderer, held: Held, now: datetime, actor: str,
                 *, add_member_too: bool = False, hosted: bool = False,
                 trusted_authserv_id: str | None = None) -> int:
    """Distribute a held message (and subscribe its sender if asked); returns the fan-out.

    `hosted`: the lists run on a hosted mailbox (`Settings.hosted`; see `posting.distribute`);
    `trusted_authserv_id`: for the copies' ARC set (`posting.distribute.arc_authserv`).
    """
    ml = held.mailing_list
    if headers_only(held.inbound.size, len(held.inbound.raw)):
        raise ListservError(f"held message {held.id} was too big: only its headers were read. "
                            "Forward it from the mailbox yourself, then discard it here")
    if add_member_too and find_member(session, ml, held.sender) is None:
        display = from_name(parse(held.inbound.raw))[:MAX_NAME_LENGTH]
        add_member(session, renderer, ml, held.sender, display, now, actor)
    held.status, held.decided_at, held.decided_by = "approved", now, actor
    audit(session, now, actor, "held-approved", f"#{held.id} from {held.sender}", ml.id)
    return distribute(session, renderer, ml, held.inbound.raw, now, hosted=hosted,
                      trusted_authserv_id=trusted_authserv_id)


def may_mail_sender(held: Held) -> bool:
    """Whether the sender of a held message may get an automatic mail (RFC 3834)."""
    return may_auto_reply(parse(held.inbound.raw), held.inbound.mail_from, held.sender)


def reject_held(session: Session, renderer: Renderer, held: Held, now: datetime, actor: str,
                reason: str) -> None:
    """Refuse a held message and tell its sender why (from a template)."""
    held.status, held.decided_at, held.decided_by = "rejected", now, actor
    audit(session, now, actor, "held-rejected", f"#{held.id} from {held.sender}: {reason}",
          held.list_id)
    if may_mail_sender(held):
        notify(session, renderer, held.mailing_list, "deny-post-held.txt", [held.sender], now,
               kind="reject", lang=held.lang, held=held, reason=reason)


def discard_held(session: Session, held: Held, now: datetime, actor: str, *,
                 action: str = "held-discarded") -> None:
    """Drop a held message silently (`action`: what the audit log calls it)."""
    held.status, held.decided_at, held.decided_by = "discarded", now, actor
    audit(session, now, actor, action, f"#{held.id} from {held.sender}", held.list_id)


# -- requests --------------------------------------------------------------------------------


def request_dict(request: Request) -> dict[str, str]:
    return {"id": str(request.id), "list": request.mailing_list.address, "email": request.email,
            "kind": "subscribe" if request.kind == "resubscribe" else request.kind,
            "status": request.status, "name": request.name, "lang": request.lang,
            "subject": request.summary, "received": request.created_at.isoformat()}


def open_requests(session: Session, ml: MailingList | None = None) -> list[Request]:
    """Requests waiting for the chair, or for the person's confirmation; oldest first."""
    query = (select(Request).where(Request.status.in_(("waiting", "confirming")))
             .order_by(Request.id))
    if ml is not None:
        query = query.where(Request.list_id == ml.id)
    return list(session.scalars(query))


def find_membership_request(session: Session, request_id: str) -> Request:
    """A membership request (to join, to leave) by its id, whatever its state."""
    return required(session, Request, request_id, "request")


# -- queue and log ---------------------------------------------------------------------------


def queue_items(session: Session, failed: bool = False) -> list[dict[str, str]]:
    """What is still to be done: outgoing mail not yet delivered (with reasons) and incoming
    mail not yet handled; with `failed`, the final failures instead (the newest 100 outgoing
    recipients given up on or refused, and incoming mail whose handling failed)."""
    if failed:
        return _failures(session)
    items: list[dict[str, str]] = []
    waiting = session.execute(
        select(OutMessage.id, OutMessage.kind, MailingList.name, MailingList.domain,
               func.count(OutRecipient.id), func.min(OutRecipient.next_attempt_at),
               func.max(OutRecipient.last_error))
        .join(OutRecipient, OutRecipient.message_id == OutMessage.id)
        .outerjoin(MailingList, MailingList.id == OutMessage.list_id)
        .where(OutRecipient.status == "queued")
        .group_by(OutMessage.id, OutMessage.kind, MailingList.name, MailingList.domain)
        .order_by(OutMessage.id)
    ).all()
    for mid, kind, name, domain, count, next_at, error in waiting:
        items.append({"id": f"out-{mid}", "direction": "outgoing", "kind": kind,
                      "list": f"{name}@{domain}" if name else "", "recipients": str(count),
                      "next_attempt": next_at.isoformat() if next_at else "",
                      "reason": error or "waiting for delivery"})
    waiting_in = session.scalars(
        select(Inbound).where(Inbound.status == "new").order_by(Inbound.id)
    ).all()
    items += [_inbound_item(row) for row in waiting_in]
    return items


def _failures(session: Session) -> list[dict[str, str]]:
    failed_out = session.execute(
        select(OutRecipient.message_id, OutRecipient.email, OutRecipient.last_error)
        .where(OutRecipient.status == "failed").order_by(OutRecipient.id.desc()).limit(100)
    ).all()
    items = [{"id": f"out-{mid}", "direction": "outgoing", "kind": "failed", "list": "",
              "recipients": email, "next_attempt": "", "reason": error}
             for mid, email, error in failed_out]
    failed_in = session.scalars(
        select(Inbound).where(Inbound.status == "failed").order_by(Inbound.id)
    ).all()
    return items + [_inbound_item(row) for row in failed_in]


def _inbound_item(row: Inbound) -> dict[str, str]:
    waiting = row.status == "new"
    return {"id": f"in-{row.id}", "direction": "incoming", "kind": row.role, "list": row.rcpt,
            "recipients": "",
            "status": "failed" if not waiting else "retrying" if row.attempts else "waiting",
            "attempts": str(row.attempts),
            "next_attempt": row.next_attempt_at.isoformat()
            if waiting and row.next_attempt_at else "",
            "reason": row.error or row.outcome or "waiting to be handled"}


def retry_inbound(session: Session, ref: str, now: datetime, actor: str) -> Inbound:
    """Run a failed incoming message again (`queue retry ID`), or one waiting to be retried now.

    `ref` is its id as `listserv queue` shows it (`in-7`), or the number alone.
    """
    row = by_number(session, Inbound, ref.strip().removeprefix("in-"))
    if row is None:
        hint = " (outgoing mail is retried by the delivery worker)" if ref.startswith("out-") \
            else ""
        raise ListservError(f"no incoming message {ref}{hint}")
    if row.status == "done":
        raise ListservError(f"incoming message {ref} was handled already ({row.outcome})")
    before = row.error or row.outcome
    row.status, row.attempts, row.next_attempt_at, row.error = "new", 0, None, ""
    audit(session, now, actor, "inbound-retried", f"in-{row.id} to {row.rcpt}"
          + (f" (was: {before})" if before else ""), row.list_id)
    return row


def log_entries(session: Session, limit: int, *, ml: MailingList | None = None,
                since: datetime | None = None, action: str = "") -> list[dict[str, str]]:
    """The newest `limit` audit entries, oldest first; only those of list `ml`, from `since`
    on, or whose action starts with `action` (`held` finds held, held-approved, …), if given."""
    query = (select(AuditEntry, MailingList.name, MailingList.domain)
             .outerjoin(MailingList, MailingList.id == AuditEntry.list_id))
    if ml is not None:
        query = query.where(AuditEntry.list_id == ml.id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    rows = session.execute(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
    return [{"id": str(e.id), "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "list": f"{name}@{domain}" if name else "", "detail": e.detail}
            for e, name, domain in reversed(rows)]

