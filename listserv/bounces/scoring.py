"""Bounces: which members' addresses are dead, and stopping mail to them without losing live ones.

Three ways a failure reaches us, all scored here:

- **during our own delivery**: a recipient refused with a `5xx` at `RCPT TO`, or still refused
  with a `4xx` there when the retries give up (the delivery worker reports both through
  `DeliveryBounces`, its `delivery.feedback` interface). A refusal of `MAIL FROM` or of the
  data never gets here (the transport makes it a retry of the whole transaction), and neither
  does a provider's rate or quota limit (`refused` answers "retry" for it);
- **a report** mailed to `NAME-bounces[+TOKEN]@` (`handlers/bounce.py`): an RFC 3464 DSN or one
  of the many older formats, read with `flufl.bounce` (the detectors GNU Mailman uses);
- **a probe**: the warnings to a disabled member go out with an envelope token of their own, so
  their fate is known: accepted by the relay with no bounce within the grace time re-enables the
  member (`delivered` and `due_work`), a bounce of it is recorded.

A report counts only when it is attributable: through a token we gave out (the member's, or a
probe's), or when it names a member and quotes the Message-ID of a message we sent to that
member (`sent_to`). Anything else naming a member is recorded as unverified, never counted, and
shown to the chair. Permanent failures count 1, temporary ones 0.5, at most once per UTC day;
spam and policy refusals, delays, rate limits and automatic replies are recorded and not
counted. At `bounce.threshold` the member's delivery is disabled, the chair is told, and the
member gets `bounce.warnings` warnings `bounce.warning_interval_days` apart; after the last, the
member is removed and the chair is told. Every step is in the audit log.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from enum import StrEnum
from typing import Any

from flufl.bounce import all_failures
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.mail.addresses import Role, normalize, valid_address
from listserv.mail.automatic import SignKind, signs
from listserv.mail.headers import header_text
from listserv.mail.render import Renderer
from listserv.mail.tokens import new_token
from listserv.mail.wire import message_bytes
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.list_settings import ListSetting, declare, number, whole
from listserv.store.models.core import AuditEntry, MailingList, Member
from listserv.store.models.features import BounceEvent, BounceProbe, BounceScore
from listserv.store.models.outgoing import AutoMail, OutMessage, OutRecipient

log = logging.getLogger(__name__)


# -- list settings ---------------------------------------------------------------------------

THRESHOLD = declare("bounce.threshold", number(0, above=True), 5.0,
                    "score at which delivery is disabled")
WARNINGS = declare("bounce.warnings", whole(0, 10), 3,
                   "notices (probes) to a disabled member before removal (0 = remove at once)")
WARNING_INTERVAL_DAYS = declare("bounce.warning_interval_days", number(0, above=True), 7.0,
                                "days between notices, and from the last to the removal")
DECAY_DAYS = declare("bounce.decay_days", number(0, above=True), 7.0,
                     "a score whose last bounce is older than this goes back to 0")
PROBE_GRACE_HOURS = declare("bounce.probe_grace_hours", number(0), 24.0,
                            "how long an accepted probe waits for a bounce before it counts "
                            "as delivered")


def _days(ml: MailingList, setting: ListSetting[float]) -> timedelta:
    return timedelta(days=setting.get(ml))


# -- what a failure is ------------------------------------------------------------------------


class Kind(StrEnum):
    """What a failure says about the address (only the first two count)."""

    PERMANENT = "permanent"  # the address is dead: +1
    TEMPORARY = "temporary"  # given up on a passing condition (mailbox full, timeouts): +0.5
    DELAYED = "delayed"  # a warning: still being tried
    POLICY = "policy"  # spam, policy or content: the message was refused, not the address
    RATE = "rate"  # a provider's sending limit: about us, never about the member
    AUTOREPLY = "autoreply"  # an automatic reply (out of office), not a delivery report
    UNKNOWN = "unknown"  # nothing recognisable


WEIGHTS = {Kind.PERMANENT: 1.0, Kind.TEMPORARY: 0.5}

# A provider's limit on what we send (quota, rate): retry the transaction later.
_RATE = re.compile(
    r"sending (?:limit|quota)|send(?:ing)? rate|rate[- ]?limit|daily (?:user )?(?:sending )?"
    r"(?:limit|quota)|too many (?:messages|e?mails|recipients|connections)|"
    r"submissionquotaexceeded|message (?:submission )?rate|throttl|"
    r"exceeded (?:the |your )?(?:\w+ )?(?:sending|outbound|outgoing) ",
    re.IGNORECASE,
)
# A refusal of the message for what it is or where it came from, not of the address.
_POLICY = re.compile(
    r"\bspam|unsolicited|\bblock(?:ed|list|listed)?\b|black ?list|\brbl\b|spamhaus|spamcop|"
    r"barracuda|reputation|\bpolicy\b|\bdmarc\b|\bvirus|malware|phish|content (?:filter|rejected)|"
    r"not accepted due to",
    re.IGNORECASE,
)
_MAILBOX_FULL = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota exceeded|exceed(?:s|ed)? (?:\w+ )?(?:storage|quota)|"
    r"insufficient (?:system )?storage|quotaexceededexception",
    re.IGNORECASE,
)
_GAVE_UP = re.compile(
    r"retry timeout exceeded|in the queue too long|could not be delivered for (?:more than )?\d+ "
    r"days?|retry time not reached|delivery time expired|message expired|expired after",
    re.IGNORECASE,
)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY = re.compile(r"(?<![\d.])([245]\d\d)(?:[ :-]|$)")


def status_of(status: str, text: str) -> str:
    """The most specific RFC 3463 status: the field's, else the text's, else from a reply code."""
    status = status.strip().split()[0] if status.strip() else ""
    found = _ENHANCED.search(text)
    if found and (not status or status.endswith(".0.0")):
        return found.group(0)
    if status:
        return status
    reply = _REPLY.search(text)
    if reply:
        return f"{reply.group(1)[0]}.0.0"
    return ""


def classify(action: str, status: str, text: str) -> Kind:
    """What a failure report (or refusal) says: `action` is the DSN's (failed, delayed)."""
    if action.lower().startswith("delayed"):
        return Kind.DELAYED
    if _RATE.search(text):
        return Kind.RATE
    klass, _, rest = status.partition(".")
    subject, _, detail = rest.partition(".")
    if subject in ("6", "7") or (subject, detail) == ("3", "4"):  # policy, content, size
        return Kind.POLICY
    if _POLICY.search(text) and subject != "1":
        return Kind.POLICY
    if (subject, detail) in (("2", "2"), ("4", "7")) or _MAILBOX_FULL.search(text):
        return Kind.TEMPORARY
    if _GAVE_UP.search(text) or klass == "4":
        return Kind.TEMPORARY
    return Kind.PERMANENT


def classify_refusal(reply: str) -> tuple[Kind, str]:
    """A refusal during our own delivery (`550 5.1.1 …`): its kind and status."""
    status = status_of("", reply)
    return classify("failed", status, reply), status


# -- reading a report -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One address a report says failed, how, and why (one line)."""

    address: str
    kind: Kind
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    """What a message at the bounces address says."""

    failures: tuple[Failure, ...]
    # The Message-IDs of the original message, as the report quotes them.
    message_ids: tuple[str, ...]
    # Why it is an automatic reply (out of office …) rather than a report ("" when it is not).
    automatic: str
    # A DSN whose every recipient was delivered or relayed (NOTIFY=SUCCESS): nothing failed.
    success_only: bool
    subject: str
    sender: str

    def failure_for(self, address: str) -> Failure | None:
        """The failure naming `address`, else the weightiest one (a forwarded address)."""
        for failure in self.failures:
            if failure.address == normalize(address):
                return failure
        order = [Kind.PERMANENT, Kind.TEMPORARY, Kind.POLICY, Kind.RATE, Kind.DELAYED]
        ranked = sorted(self.failures, key=lambda f: order.index(f.kind)
                        if f.kind in order else len(order))
        return ranked[0] if ranked else None


_COPY_MARKERS = re.compile(
    r"^\s*(?:-{2,}.*(?:copy of the (?:original )?message|original message|returned mail|"
    r"message headers? follow|undelivered message)|.*below this line is a copy|"
    r"original message headers|-{5,} ?original)",
    re.IGNORECASE,
)
_MESSAGE_ID_LINE = re.compile(
    r"^[ \t>]*Message-I[Dd]:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)", re.MULTILINE | re.IGNORECASE
)
_TAGS = re.compile(r"<[^>]*>")
MAX_TEXT = 64 * 1024  # of a report's own text scanned for reasons
MAX_FAILURES = 100  # addresses taken from one report


def _parts(msg: Message) -> Iterator[Message]:
    """The report's own parts, depth first, without entering an attached original message."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        yield part
        if part.get_content_type() in ("message/rfc822", "message/delivery-status",
                                       "text/rfc822-headers"):
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack[0:0] = [p for p in payload if isinstance(p, Message)]


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[:MAX_TEXT].decode(charset, "replace")
    except LookupError:
        return payload[:MAX_TEXT].decode("utf-8", "replace")


def _human_text(msg: Message) -> str:
    """The report's explanation in words (plain text, else HTML stripped), before any copy."""
    plain = [p for p in _parts(msg) if p.get_content_type() == "text/plain"
             and not p.get_filename()]
    if plain:
        body = "\n".join(_decoded(p) for p in plain)
    else:
        html = [p for p in _parts(msg) if p.get_content_type() == "text/html"]
        body = "\n".join(_TAGS.sub(" ", _decoded(p)) for p in html)
    lines = []
    for line in body.splitlines():
        if _COPY_MARKERS.match(line):
            break
        lines.append(line)
    return "\n".join(lines)


def _one_line(value: str, limit: int = 300) -> str:
    line = " ".join(value.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _paragraph_about(text: str, address: str) -> str:
    """The lines of `text` about `address`: its line and what follows up to a blank line."""
    lines = text.splitlines()
    lowered = address.lower()
    for index, line in enumerate(lines):
        if lowered in line.lower():
            chunk = [line]
            for following in lines[index + 1: index + 12]:
                if not following.strip():
                    if len(chunk) > 1:
                        break
                    continue
                chunk.append(following)
            return "\n".join(chunk)
    return ""


def _reason_in(chunk: str) -> str:
    """From the first SMTP reply code (or status) in `chunk` to its end, as one line."""
    found = _REPLY.search(chunk) or _ENHANCED.search(chunk)
    return _one_line(chunk[found.start():] if found else chunk)


def _dsn_blocks(msg: Message) -> list[Message]:
    """The per-recipient field blocks of every message/delivery-status part."""
    blocks: list[Message] = []
    for part in _parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            # The first block is per message (Reporting-MTA …); the rest are per recipient.
            blocks += [b for b in payload if isinstance(b, Message)
                       and (b.get("Final-Recipient") or b.get("Original-Recipient"))]
    return blocks


def _recipient_of(block: Message) -> str:
    """The recipient a DSN block is about: Original-Recipient, else Final-Recipient."""
    for field in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
        value = " ".join(str(block.get(field, "")).split())
        kind, semicolon, address = value.partition(";")
        address = (address if semicolon else kind).strip().strip("<>")
        if "@" in address and (not semicolon or kind.strip().lower() == "rfc822"):
            return normalize(address)
    return ""


def _original_message_ids(msg: Message) -> tuple[str, ...]:
    """The Message-IDs the report quotes of the message it returns (never its own)."""
    own = str(msg.get("Message-ID", "")).strip()
    found: list[str] = []
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(str(payload[0].get("Message-ID", "")))
        elif ctype == "text/rfc822-headers":
            headers = HeaderParser().parsestr(_decoded(part), headersonly=True)
            found.append(str(headers.get("Message-ID", "")))
        elif ctype == "text/plain":
            found += _MESSAGE_ID_LINE.findall(_decoded(part))
    ids = [" ".join(m.split()) for m in found]
    return tuple(dict.fromkeys(m for m in ids if m.startswith("<") and m != own))


def _automatic(msg: EmailMessage) -> str:
    """Why `msg` is an automatic reply and not a delivery report ("" when it is not one).

    Judged on the message alone: a report's sign in it (its MIME type, a mail system's From or
    Sender, a report's Subject) makes it a report; the envelope is no evidence here, since
    reports and automatic replies alike come with the null sender.
    """
    found = [sign for sign in signs(msg) if not sign.envelope]
    if any(sign.kind is SignKind.REPORT for sign in found):
        return ""
    return str(found[0]) if found else ""


def recognise(msg: EmailMessage) -> str:
    """Why `msg` is surely a delivery report or an automatic reply ("" when not surely one).

    For mail whose role comes from its headers (a hosted mailbox): such mail goes to the bounce
    handler whatever address it names, so that it never becomes a post or a request. Only
    strong signs count (a report's MIME type, the null sender, a mail system's address, RFC
    3834's headers); words in a Subject or a bulk `Precedence` are left to the router's guards,
    which hold rather than drop.
    """
    sign = next((sign for sign in signs(msg) if sign.strong), None)
    return str(sign) if sign is not None else ""


def read_report(raw: bytes) -> Report:
    """What a message at the bounces address says: failed addresses, how, and for what.

    flufl.bounce finds the failed addresses in DSNs and in the non-standard formats (qmail,
    Exim, Yahoo, Exchange, …); the DSN's own fields (Action, Status, Diagnostic-Code) or the
    report's text about the address give the status and reason that decide the kind.
    """
    msg = email.message_from_bytes(raw)  # compat32: what flufl.bounce's detectors expect
    modern = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(modern, EmailMessage)
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping on odd input must not lose the report
        log.exception("flufl.bounce could not read a report")
        temporary, permanent = frozenset(), frozenset()
    human = _human_text(msg)
    failures: dict[str, Failure] = {}
    blocks = _dsn_blocks(msg)
    actions = []
    for block in blocks[:MAX_FAILURES]:
        address = _recipient_of(block)
        action = " ".join(str(block.get("Action", "")).split()).lower()
        actions.append(action)
        if not address or not action.startswith(("fail", "error", "delayed")):
            continue
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        diagnostic = diagnostic.partition(";")[2].strip() if ";" in diagnostic[:12] else diagnostic
        context = diagnostic or _reason_in(_paragraph_about(human, address))
        status = status_of(str(block.get("Status", "")), context)
        failures.setdefault(address, Failure(
            address, classify(action, status, context), status,
            _one_line(diagnostic or context or status or action)))
    for found, action in ((permanent, "failed"), (temporary, "delayed")):
        for raw_address in sorted(found):
            address = valid_address(raw_address.decode("ascii", "replace")) or ""
            if not address or address in failures:
                continue
            chunk = _paragraph_about(human, address)
            reason = _reason_in(chunk) if chunk else _reason_in(human[:2000])
            status = status_of("", reason)
            failures[address] = Failure(address, classify(action, status, chunk or reason),
                                        status, reason)
    success = bool(actions) and all(a.startswith(("delivered", "relayed", "expanded"))
                                    for a in actions)
    return Report(
        failures=tuple(failures.values())[:MAX_FAILURES],
        message_ids=_original_message_ids(msg),
        automatic="" if failures else _automatic(modern),
        success_only=success and not failures,
        subject=header_text(modern, "Subject"),
        sender=header_text(modern, "From"),
    )


# -- attributing a report ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """The member a bounce token names, and the probe when it was a probe's token."""

    member: Member
    probe: BounceProbe | None = None


def by_token(session: Session, ml: MailingList, token: str) -> Target | None:
    """The member (or probe) whose envelope token a report came back to, if it is ours."""
    token = token.strip().lower()
    if not token:
        return None
    member = session.scalar(select(Member).where(Member.bounce_token == token,
                                                 Member.list_id == ml.id))
    if member is not None:
        return Target(member)
    probe = session.scalar(select(BounceProbe).where(BounceProbe.token == token,
                                                     BounceProbe.list_id == ml.id))
    if probe is not None:
        member = session.get(Member, probe.member_id)
        if member is not None:
            return Target(member, probe)
    return None


SENT_WINDOW = timedelta(days=30)  # how old a message a report may return and still count
MAX_MESSAGE_IDS = 5


def _header_message_id(raw: bytes) -> str:
    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return " ".join(str(headers.get("Message-ID", "")).split())


def sent_to(session: Session, ml: MailingList, address: str, message_ids: tuple[str, ...],
            now: datetime) -> bool:
    """Whether we sent `address` a message of this list with one of `message_ids` lately.

    The outgoing queue keeps each message's bytes: the Message-ID is looked for in them (a
    substring search in the database, then the header itself checked), among the messages
    that had `address` as a recipient in the last SENT_WINDOW.
    """
    if not message_ids:
        return False
    sqlite = session.get_bind().dialect.name == "sqlite"
    for message_id in message_ids[:MAX_MESSAGE_IDS]:
        needle = message_id.encode("utf-8", "replace")
        contains: Any = (func.instr(OutMessage.raw, needle) > 0 if sqlite else
                         text("position(:needle in out_messages.raw) > 0")
                         .bindparams(needle=needle))
        candidates = session.scalars(
            select(OutMessage.raw)
            .join(OutRecipient, OutRecipient.message_id == OutMessage.id)
            .where(OutRecipient.email == normalize(address), OutRecipient.status != "dropped",
                   OutMessage.list_id == ml.id, OutMessage.created_at >= now - SENT_WINDOW,
                   contains)
            .limit(5)
        )
        if any(_header_message_id(raw) == message_id for raw in candidates):
            return True
    return False


# -- scoring ----------------------------------------------------------------------------------


def _state(session: Session, member: Member) -> BounceScore:
    """The member's score row, created if need be, locked for this transaction."""
    query = select(BounceScore).where(BounceScore.member_id == member.id).with_for_update()
    state = session.scalar(query)
    if state is not None:
        return state
    try:
        with session.begin_nested():
            session.add(BounceScore(member_id=member.id, list_id=member.list_id, score=0.0,
                                    counted_on="", day_weight=0.0, last_reason="",
                                    warnings_sent=0))
    except IntegrityError:  # another transaction made it first
        pass
    state = session.scalar(query.execution_options(populate_existing=True))
    assert state is not None
    return state


def register(session: Session, ml: MailingList, member: Member, kind: Kind, reason: str,
             now: datetime, *, source: str, verified: bool = True, inbound_id: int | None = None,
             probe: BounceProbe | None = None) -> BounceEvent:
    """Record one failure of `member`, score it, and disable the member at the threshold."""
    state = _state(session, member)
    weight = WEIGHTS.get(kind, 0.0) if verified else 0.0
    added = 0.0
    why_not = ""
    if probe is not None and kind in (*WEIGHTS, Kind.POLICY) and \
            probe.status in ("sent", "accepted"):
        probe.status = "bounced"
    if not verified:
        why_not = "unverified: matched nothing we sent to this address"
    elif not weight:
        why_not = f"{kind} does not count"
    elif member.status != "active":
        why_not = f"member is {member.status}"
    else:
        if state.last_bounce_at is not None and \
                now - state.last_bounce_at > _days(ml, DECAY_DAYS):
            state.score, state.counted_on, state.day_weight = 0.0, "", 0.0
        day = now.date().isoformat()
        if state.counted_on == day:
            added = max(0.0, weight - state.day_weight)
            state.day_weight = max(state.day_weight, weight)
            why_not = "" if added else "already counted today"
        else:
            added, state.counted_on, state.day_weight = weight, day, weight
        state.score += added
        state.last_bounce_at = now
    if verified and kind not in (Kind.AUTOREPLY, Kind.UNKNOWN):
        state.last_reason = _one_line(f"{kind}: {reason}" if reason else str(kind), 500)
    event = BounceEvent(list_id=ml.id, member_id=member.id, at=now, source=source,
                        kind=kind.value, counted=added > 0, verified=verified, weight=added,
                        reason=_one_line(reason, 1000), inbound_id=inbound_id)
    session.add(event)
    threshold = THRESHOLD.get(ml)
    where = f"probe {probe.warning}" if probe is not None else source
    if added:
        audit(session, now, DAEMON, "bounce-counted",
              f"{member.email}: {kind} ({where}) {_one_line(reason, 200)}; "
              f"score {state.score:g} of {threshold:g}", ml.id)
    else:
        audit(session, now, DAEMON,
              "bounce-unverified" if not verified else "bounce-not-counted",
              f"{member.email}: {kind} ({where}) {_one_line(reason, 200)}; {why_not}", ml.id)
    if member.status == "active" and state.score >= threshold:
        _disable(session, ml, member, state, now)
    return event


def _disable(session: Session, ml: MailingList, member: Member, state: BounceScore,
             now: datetime) -> None:
    member.status = "disabled"
    state.disabled_at, state.warnings_sent, state.next_step_at = now, 0, now
    audit(session, now, DAEMON, "member-disabled",
          f"{member.email}: bounce score {state.score:g} reached "
          f"{THRESHOLD.get(ml):g}; last: {state.last_reason}", ml.id)


def _reset(state: BounceScore) -> None:
    state.score, state.counted_on, state.day_weight = 0.0, "", 0.0
    state.disabled_at, state.warnings_sent, state.next_step_at = None, 0, None


def _enable(session: Session, ml: MailingList, member: Member, now: datetime, actor: str,
            why: str) -> None:
    # The score row is locked first, as `register` does: score, then probe, then member.
    _reset(_state(session, member))
    member.status = "active"
    for probe in session.scalars(select(BounceProbe).where(
            BounceProbe.member_id == member.id, BounceProbe.status.in_(("sent", "accepted")))):
        probe.status = "cancelled"
    audit(session, now, actor, "member-enabled", f"{member.email}: {why}", ml.id)


# -- during our own delivery (the delivery worker's feedback) ---------------------------------


def _score_delivery(session: Session, row: OutRecipient, kind: Kind, reply: str,
                    now: datetime) -> None:
    """Score a failure of a member's copy (or a probe) seen during our own delivery."""
    if row.member_id is None:
        return
    member = session.get(Member, row.member_id)
    if member is None:
        return
    try:
        # A fault in scoring must never cost the delivery its recorded result.
        with session.begin_nested():
            ml = session.get(MailingList, member.list_id)
            assert ml is not None
            probe = session.scalar(select(BounceProbe)
                                   .where(BounceProbe.out_recipient_id == row.id))
            register(session, ml, member, kind, reply, now,
                     source="probe" if probe is not None else "delivery", probe=probe)
    except Exception:
        log.exception("could not score the failure of %s (recipient %s)", row.email, row.id)


class DeliveryBounces:
    """The delivery worker's results, scored (`delivery.feedback.DeliveryFeedback`).

    The daemon hands one to its delivery workers.
    """

    def refused(self, session: Session, row: OutRecipient, reply: str, now: datetime) -> bool:
        """A recipient refused for good at RCPT time; False when it is to be retried instead.

        A provider's rate or quota limit ("daily user sending limit exceeded") says nothing
        about the recipient: False, and the caller retries it with its backoff. Otherwise,
        when the row was a member's copy (or a probe), the refusal is scored like a bounce
        report.
        """
        kind, _ = classify_refusal(reply)
        if kind is Kind.RATE:
            return False
        _score_delivery(session, row, kind, reply, now)
        return True

    def gave_up(self, session: Session, row: OutRecipient, reply: str, now: datetime) -> None:
        """The retries of a recipient ended on a temporary refusal at RCPT TO (a mailbox
        full): scored like a report of a temporary failure (+0.5), or not counted when its
        words are a policy or a sending limit."""
        kind, _ = classify_refusal(reply)
        if kind is Kind.PERMANENT:
            kind = Kind.TEMPORARY  # a 4xx reply the relay never turned into a 5xx
        _score_delivery(session, row, kind, f"gave up: {reply}", now)

    def delivered(self, session: Session, recipient_ids: list[int], now: datetime) -> None:
        """Mark the probes among the recipients sent as accepted by the relay."""
        if not recipient_ids:
            return
        wanted = set(recipient_ids)
        probes = session.scalars(select(BounceProbe).where(
            BounceProbe.out_recipient_id.between(min(recipient_ids), max(recipient_ids)),
            BounceProbe.status == "sent"))
        for probe in probes:
            if probe.out_recipient_id in wanted:
                probe.status, probe.accepted_at = "accepted", now
                log.info("probe %s (notice %s) accepted by the relay", probe.id, probe.warning)


# -- notices, warnings and the steps after disabling ------------------------------------------


def _tell_chair(session: Session, renderer: Renderer, ml: MailingList, template: str,
                now: datetime, **context: Any) -> None:
    from listserv.delivery.notices import (
        notify,  # notices queues through outbound, which imports this module
    )

    notify(session, renderer, ml, template, [o.email for o in ml.owners], now, kind="notice",
           **context)


CHAIR_REPORTS_PER_DAY = 20


def report_to_chair(session: Session, renderer: Renderer, ml: MailingList, raw: bytes,
                    now: datetime, why: str, inbound_id: int) -> bool:
    """Send a report we could not use to the owners, attached; False past the daily cap.

    The cap keeps a flood of odd reports (or our own notices bouncing back) from becoming a
    flood of notices.
    """
    from listserv.delivery.notices import list_context
    from listserv.delivery.outbox import enqueue

    since = now - timedelta(days=1)
    sent = session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.list_id == ml.id, AuditEntry.action == "bounce-to-chair",
        AuditEntry.at > since))
    if (sent or 0) >= CHAIR_REPORTS_PER_DAY:
        audit(session, now, DAEMON, "bounce-ignored",
              f"inbound #{inbound_id}: {why}; not sent to the chair (over "
              f"{CHAIR_REPORTS_PER_DAY} a day)", ml.id)
        return False
    report = email.message_from_bytes(raw, policy=email.policy.default)
    for owner in ml.owners:
        msg = renderer.mail("notice-bounce-report.txt", domain=ml.domain, now=now,
                            to=owner.email, why=why, inbound_id=inbound_id,
                            subject=header_text(report, "Subject"),
                            sender=header_text(report, "From"), **list_context(ml))
        try:
            msg.add_attachment(report)  # message/rfc822
            data = message_bytes(msg)
        except Exception:  # an unserialisable report goes as text
            msg = renderer.mail("notice-bounce-report.txt", domain=ml.domain, now=now,
                                to=owner.email, why=why, inbound_id=inbound_id, subject="",
                                sender="", **list_context(ml))
            msg.add_attachment(raw.decode("utf-8", "replace"), filename="report.txt")
            data = message_bytes(msg)
        enqueue(session, data, [owner.email], envelope_from=ml.role_address(Role.BOUNCES),
                kind="notice", list_id=ml.id, now=now, eightbit=renderer.eightbit)
    audit(session, now, DAEMON, "bounce-to-chair", f"inbound #{inbound_id}: {why}", ml.id)
    return True


def _send_warning(session: Session, renderer: Renderer, ml: MailingList, member: Member,
                  state: BounceScore, number: int, now: datetime) -> BounceProbe | None:
    """Queue warning `number` to `member` as a probe with its own envelope token."""
    from listserv.delivery.notices import list_context, over_cap
    from listserv.delivery.outbox import enqueue

    capped = over_cap(session, member.email, "warning", now)
    session.add(AutoMail(address=member.email, kind="warning", at=now, suppressed=capped))
    if capped:
        audit(session, now, DAEMON, "cap-suppressed", f"warning to {member.email}", ml.id)
        return None
    total = WARNINGS.get(ml)
    interval = _days(ml, WARNING_INTERVAL_DAYS)
    probe = BounceProbe(token=new_token(), list_id=ml.id, member_id=member.id, warning=number,
                        status="sent", sent_at=now)
    session.add(probe)
    msg = renderer.mail(
        "warning-bounce-probe.txt", domain=ml.domain, now=now, to=member.email, member=member,
        warning=number, warnings=total, reason=state.last_reason,
        removal=(now + interval * (total - number + 1)).strftime("%Y-%m-%d"),
        **list_context(ml))
    out = enqueue(session, msg, [member.email],
                  envelope_from=ml.role_address(Role.BOUNCES, probe.token), kind="probe",
                  list_id=ml.id, now=now, eightbit=renderer.eightbit)
    row = session.scalars(select(OutRecipient).where(OutRecipient.message_id == out.id)).one()
    row.member_id = member.id
    session.flush()
    probe.out_recipient_id = row.id
    return probe


def step(session: Session, renderer: Renderer, ml: MailingList, member: Member,
         state: BounceScore, now: datetime) -> str:
    """Take the next due step for a disabled member: a warning, or the removal after them."""
    if member.status != "disabled" or state.next_step_at is None or state.next_step_at > now:
        return ""
    total = WARNINGS.get(ml)
    interval = _days(ml, WARNING_INTERVAL_DAYS)
    if state.warnings_sent < total:
        number = state.warnings_sent + 1
        _send_warning(session, renderer, ml, member, state, number, now)
        state.warnings_sent, state.next_step_at = number, now + interval
        removal = now + interval * (total - number + 1)
        audit(session, now, DAEMON, "bounce-warning",
              f"{member.email}: warning {number} of {total} sent (a probe)", ml.id)
        _tell_chair(session, renderer, ml,
                    "notice-member-disabled.txt" if number == 1 else "notice-bounce-warning.txt",
                    now, member=member, state=state, warning=number, warnings=total,
                    next_step=state.next_step_at.strftime("%Y-%m-%d"),
                    removal=removal.strftime("%Y-%m-%d"),
                    threshold=THRESHOLD.get(ml))
        return f"warning {number} of {total} to {member.email}"
    email_address, reason, warnings = member.email, state.last_reason, state.warnings_sent
    for probe in session.scalars(select(BounceProbe).where(BounceProbe.member_id == member.id)):
        session.delete(probe)
    session.delete(state)
    session.delete(member)
    session.flush()
    audit(session, now, DAEMON, "member-removed",
          f"{email_address}: still bouncing after {warnings} warnings; last: {reason}", ml.id)
    _tell_chair(session, renderer, ml, "notice-bounce-removed.txt", now, email=email_address,
                reason=reason, warnings=warnings)
    return f"removed {email_address}"


def act_now(session: Session, renderer: Renderer, ml: MailingList, member: Member,
            now: datetime) -> str:
    """Take a step that is due for `member` at once (after a report disabled them)."""
    state = session.get(BounceScore, member.id)
    return step(session, renderer, ml, member, state, now) if state is not None else ""


def _decay(session: Session, now: datetime) -> int:
    """Scores of members whose last bounce is older than the list's decay time go to zero."""
    lists: dict[int, MailingList] = {}
    reset = 0
    rows = session.execute(
        select(BounceScore, Member.email)
        .join(Member, Member.id == BounceScore.member_id)
        .where(BounceScore.score > 0, BounceScore.disabled_at.is_(None))
        .with_for_update(of=BounceScore, skip_locked=True)
    ).all()
    for state, address in rows:
        ml = lists.get(state.list_id) or session.get(MailingList, state.list_id)
        assert ml is not None
        lists[ml.id] = ml
        decay = _days(ml, DECAY_DAYS)
        if state.last_bounce_at is not None and now - state.last_bounce_at <= decay:
            continue
        audit(session, now, DAEMON, "bounce-score-reset",
              f"{address}: no bounce for {DECAY_DAYS.get(ml):g} days; "
              f"score {state.score:g} -> 0", ml.id)
        state.score, state.counted_on, state.day_weight = 0.0, "", 0.0
        reset += 1
    return reset


def _probes_succeeded(session: Session, renderer: Renderer, now: datetime) -> int:
    """Members whose probe the relay accepted, with no bounce within the grace time."""
    enabled = 0
    probes = session.scalars(
        select(BounceProbe).where(BounceProbe.status == "accepted").order_by(BounceProbe.id)
    ).all()
    for probe in probes:
        ml = session.get(MailingList, probe.list_id)
        member = session.get(Member, probe.member_id)
        assert ml is not None and member is not None
        grace = timedelta(hours=PROBE_GRACE_HOURS.get(ml))
        if probe.accepted_at is None or probe.accepted_at + grace > now:
            continue
        _state(session, member)  # locks in the order `register` does; then look again
        session.refresh(probe)
        session.refresh(member)
        if probe.status != "accepted":
            continue  # a bounce came meanwhile, or another daemon took it
        probe.status = "succeeded"
        if member.status != "disabled":
            continue
        _enable(session, ml, member, now, DAEMON,
                f"warning {probe.warning} was delivered (accepted, no bounce within "
                f"{grace.total_seconds() / 3600:g} h)")
        _tell_chair(session, renderer, ml, "notice-bounce-reenabled.txt", now, member=member,
                    warning=probe.warning)
        enabled += 1
    return enabled


def _due_steps(session: Session, renderer: Renderer, now: datetime) -> int:
    done = 0
    rows = session.scalars(
        select(BounceScore).where(BounceScore.next_step_at <= now)
        .order_by(BounceScore.next_step_at).with_for_update(skip_locked=True)
    ).all()
    for state in rows:
        member = session.get(Member, state.member_id)
        ml = session.get(MailingList, state.list_id)
        if member is None or ml is None:
            continue
        if step(session, renderer, ml, member, state, now):
            done += 1
        elif member.status != "disabled":
            state.next_step_at = None  # enabled meanwhile (e.g. by hand in the database)
    return done


def due_work(store: Store, renderer: Renderer, now: Callable[[], datetime]) -> None:
    """The scheduler's part: probes that succeeded, warnings and removals, score decay."""
    for job in (_probes_succeeded, _due_steps):
        with store.unit_of_work() as session:
            job(session, renderer, now())
    with store.unit_of_work() as session:
        _decay(session, now())


# -- the chair's view and actions -------------------------------------------------------------


def effective_score(ml: MailingList, state: BounceScore, now: datetime) -> float:
    """The score as it stands now (zero once the last bounce is older than the decay time)."""
    if state.disabled_at is None and state.last_bounce_at is not None and \
            now - state.last_bounce_at > _days(ml, DECAY_DAYS):
        return 0.0
    return state.score


def _unverified(session: Session, member_ids: list[int]) -> dict[int, int]:
    if not member_ids:
        return {}
    rows = session.execute(
        select(BounceEvent.member_id, func.count()).where(
            BounceEvent.member_id.in_(member_ids), BounceEvent.verified.is_(False))
        .group_by(BounceEvent.member_id)
    ).all()
    return {member_id: count for member_id, count in rows}


def _row(ml: MailingList, member: Member, state: BounceScore, unverified: int,
         now: datetime) -> dict[str, Any]:
    total = WARNINGS.get(ml)
    next_step = ""
    if member.status == "disabled" and state.next_step_at is not None:
        what = (f"warning {state.warnings_sent + 1}" if state.warnings_sent < total
                else "removal")
        next_step = f"{what} at {state.next_step_at.isoformat()}"
    return {
        "email": member.email, "list": ml.address,
        "score": effective_score(ml, state, now), "status": member.status,
        "last_reason": state.last_reason, "unverified": unverified,
        "threshold": THRESHOLD.get(ml),
        "last_bounce": state.last_bounce_at.isoformat() if state.last_bounce_at else "",
        "disabled_at": state.disabled_at.isoformat() if state.disabled_at else "",
        "warnings_sent": state.warnings_sent, "next_step": next_step,
    }


def bounce_rows(session: Session, ml: MailingList | None, now: datetime) -> list[dict[str, Any]]:
    """Members with a bounce record (of one list, or all): score, status, last reason."""
    query = (select(BounceScore, Member, MailingList)
             .join(Member, Member.id == BounceScore.member_id)
             .join(MailingList, MailingList.id == BounceScore.list_id)
             .order_by(MailingList.name, MailingList.domain, Member.email))
    if ml is not None:
        query = query.where(BounceScore.list_id == ml.id)
    found = session.execute(query).all()
    unverified = _unverified(session, [member.id for _, member, _ in found])
    rows = [_row(lst, member, state, unverified.get(member.id, 0), now)
            for state, member, lst in found]
    rows.sort(key=lambda r: (r["status"] != "disabled", -r["score"], r["list"], r["email"]))
    return rows


def event_dict(event: BounceEvent) -> dict[str, Any]:
    return {"at": event.at.isoformat(), "source": event.source, "kind": event.kind,
            "counted": event.counted, "weight": event.weight, "verified": event.verified,
            "reason": event.reason,
            "inbound": str(event.inbound_id) if event.inbound_id is not None else ""}


def bounce_detail(session: Session, address: str, ml: MailingList | None,
                  now: datetime, limit: int = 50) -> dict[str, Any]:
    """One member's bounce record: the fixed fields, the reports and refusals, the probes."""
    address = normalize(address)
    query = select(Member).where(Member.email == address)
    if ml is not None:
        query = query.where(Member.list_id == ml.id)
    members = session.scalars(query).all()
    if not members:
        where = f" of {ml.address}" if ml is not None else ""
        raise ListservError(f"{address} is not a member{where} (removals are in `listserv log`)")
    if len(members) > 1:
        names = ", ".join(sorted(session.scalars(select(MailingList.name + "@" +
                                                        MailingList.domain).where(
            MailingList.id.in_([m.list_id for m in members])))))
        raise ListservError(f"{address} is on several lists ({names}); give --list")
    member = members[0]
    lst = session.get(MailingList, member.list_id)
    assert lst is not None
    state = session.get(BounceScore, member.id) or BounceScore(
        member_id=member.id, list_id=lst.id, score=0.0, counted_on="", day_weight=0.0,
        last_reason="", warnings_sent=0)
    unverified = _unverified(session, [member.id]).get(member.id, 0)
    info = _row(lst, member, state, unverified, now)
    events = session.scalars(select(BounceEvent).where(BounceEvent.member_id == member.id)
                             .order_by(BounceEvent.id.desc()).limit(limit)).all()
    info["events"] = [event_dict(e) for e in events]
    probes = session.scalars(select(BounceProbe).where(BounceProbe.member_id == member.id)
                             .order_by(BounceProbe.id)).all()
    info["probes"] = [{"warning": p.warning, "status": p.status, "sent": p.sent_at.isoformat(),
                       "accepted": p.accepted_at.isoformat() if p.accepted_at else ""}
                      for p in probes]
    return info


def enable_member(session: Session, ml: MailingList, address: str, now: datetime,
                  actor: str) -> Member:
    """The chair turns a disabled member's delivery back on (score and warnings cleared)."""
    address = normalize(address)
    member = session.scalar(select(Member).where(Member.list_id == ml.id,
                                                 Member.email == address))
    if member is None:
        raise ListservError(f"{address} is not a member of {ml.address}")
    if member.status != "disabled":
        raise ListservError(f"{address} is {member.status}, not disabled")
    _enable(session, ml, member, now, actor, "enabled by the chair")
    return member
