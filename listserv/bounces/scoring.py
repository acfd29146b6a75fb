"""A member's bounce score: registering each failure as an event, counting it (1 for a
permanent failure, 0.5 for a temporary one, at most once per UTC day), disabling the member at
`bounce.threshold`, the decay of a quiet score, and turning delivery back on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.bounces.reports import Kind, one_line
from listserv.bounces.settings import DECAY_DAYS, THRESHOLD, days
from listserv.errors import ListservError
from listserv.mail.addresses import normalize
from listserv.store.audit import DAEMON, audit
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import BounceEvent, BounceProbe, BounceScore

# What a counted failure adds to the score; the other kinds add nothing.
WEIGHTS = {Kind.PERMANENT: 1.0, Kind.TEMPORARY: 0.5}


def locked_state(session: Session, member: Member) -> BounceScore:
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
    state = locked_state(session, member)
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
                now - state.last_bounce_at > days(ml, DECAY_DAYS):
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
        state.last_reason = one_line(f"{kind}: {reason}" if reason else str(kind), 500)
    event = BounceEvent(list_id=ml.id, member_id=member.id, at=now, source=source,
                        kind=kind.value, counted=added > 0, verified=verified, weight=added,
                        reason=one_line(reason, 1000), inbound_id=inbound_id)
    session.add(event)
    threshold = THRESHOLD.get(ml)
    where = f"probe {probe.warning}" if probe is not None else source
    if added:
        audit(session, now, DAEMON, "bounce-counted",
              f"{member.email}: {kind} ({where}) {one_line(reason, 200)}; "
              f"score {state.score:g} of {threshold:g}", ml.id)
    else:
        audit(session, now, DAEMON,
              "bounce-unverified" if not verified else "bounce-not-counted",
              f"{member.email}: {kind} ({where}) {one_line(reason, 200)}; {why_not}", ml.id)
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


def enable(session: Session, ml: MailingList, member: Member, now: datetime, actor: str,
           why: str) -> None:
    """Turn `member`'s delivery back on: score and warnings cleared, open probes cancelled."""
    # The score row is locked first, as `register` does: score, then probe, then member.
    _reset(locked_state(session, member))
    member.status = "active"
    for probe in session.scalars(select(BounceProbe).where(
            BounceProbe.member_id == member.id, BounceProbe.status.in_(("sent", "accepted")))):
        probe.status = "cancelled"
    audit(session, now, actor, "member-enabled", f"{member.email}: {why}", ml.id)


def decay(session: Session, now: datetime) -> int:
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
        quiet = days(ml, DECAY_DAYS)
        if state.last_bounce_at is not None and now - state.last_bounce_at <= quiet:
            continue
        audit(session, now, DAEMON, "bounce-score-reset",
              f"{address}: no bounce for {DECAY_DAYS.get(ml):g} days; "
              f"score {state.score:g} -> 0", ml.id)
        state.score, state.counted_on, state.day_weight = 0.0, "", 0.0
        reset += 1
    return reset


def effective_score(ml: MailingList, state: BounceScore, now: datetime) -> float:
    """The score as it stands now (zero once the last bounce is older than the decay time)."""
    if state.disabled_at is None and state.last_bounce_at is not None and \
            now - state.last_bounce_at > days(ml, DECAY_DAYS):
        return 0.0
    return state.score


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
    enable(session, ml, member, now, actor, "enabled by the chair")
    return member
