"""The steps after disabling: warnings to a disabled member (each a probe with its own envelope
token), the removal after the last, re-enabling a member whose probe was delivered, the
notices to the chair about each, and the scheduler's due work (`due_work`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.bounces.scoring import decay, enable, locked_state
from listserv.bounces.settings import (
    PROBE_GRACE_HOURS,
    THRESHOLD,
    WARNING_INTERVAL_DAYS,
    WARNINGS,
    days,
)
from listserv.delivery.notices import charge_cap, list_context, notify
from listserv.delivery.outbox import enqueue
from listserv.mail.addresses import Role
from listserv.mail.render import Renderer
from listserv.mail.tokens import new_token
from listserv.store.audit import DAEMON, audit
from listserv.store.engine import Store
from listserv.store.lookup import revoke_open_requests
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import BounceProbe, BounceScore
from listserv.store.models.outgoing import OutRecipient


def _tell_chair(session: Session, renderer: Renderer, ml: MailingList, template: str,
                now: datetime, **context: Any) -> None:
    """Queue the notice `template` to the list's owners."""
    notify(session, renderer, ml, template, [o.email for o in ml.owners], now, kind="notice",
           **context)


def _send_warning(session: Session, renderer: Renderer, ml: MailingList, member: Member,
                  state: BounceScore, number: int, now: datetime) -> BounceProbe | None:
    """Queue warning `number` to `member` as a probe with its own envelope token."""
    capped = charge_cap(session, member.email, "warning", now)
    if capped:
        audit(session, now, DAEMON, "cap-suppressed", f"warning to {member.email}", ml.id)
        return None
    total = WARNINGS.get(ml)
    interval = days(ml, WARNING_INTERVAL_DAYS)
    probe = BounceProbe(token=new_token(), list_id=ml.id, member_id=member.id, warning=number,
                        status="sent", sent_at=now)
    session.add(probe)
    msg = renderer.mail(
        "warning-bounce-probe.txt", domain=ml.domain, now=now, lang=member.language or ml.language,
        to=member.email, member=member, warning=number, warnings=total, reason=state.last_reason,
        removal=now + interval * (total - number + 1),
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
    interval = days(ml, WARNING_INTERVAL_DAYS)
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
                    next_step=state.next_step_at, removal=removal,
                    threshold=THRESHOLD.get(ml))
        return f"warning {number} of {total} to {member.email}"
    email_address, reason, warnings = member.email, state.last_reason, state.warnings_sent
    for probe in session.scalars(select(BounceProbe).where(BounceProbe.member_id == member.id)):
        session.delete(probe)
    session.delete(state)
    # The member's own rows go first, in their own flush: the unit of work knows no order
    # between these mappers (no relationship), and deleting the member first lets the
    # database's ON DELETE CASCADE take the score row the next DELETE then expects.
    session.flush()
    session.delete(member)
    session.flush()
    revoke_open_requests(session, ml.id, email_address, now, DAEMON)
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
        locked_state(session, member)  # locks in the order `register` does; then look again
        session.refresh(probe)
        session.refresh(member)
        if probe.status != "accepted":
            continue  # a bounce came meanwhile, or another daemon took it
        probe.status = "succeeded"
        if member.status != "disabled":
            continue
        enable(session, ml, member, now, DAEMON,
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


def due_work(store: Store, renderer: Renderer, now: datetime) -> None:
    """The scheduler's part: probes that succeeded, warnings and removals, score decay."""
    for job in (_probes_succeeded, _due_steps):
        with store.unit_of_work() as session:
            job(session, renderer, now)
    with store.unit_of_work() as session:
        decay(session, now)
