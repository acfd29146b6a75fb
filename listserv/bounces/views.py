"""What `bounces list` and `bounces show` print: each member's score, status, last reason and
next step, and one member's reports, refusals and probes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.bounces.scoring import effective_score
from listserv.bounces.settings import THRESHOLD, WARNINGS
from listserv.errors import ListservError
from listserv.mail.addresses import normalize
from listserv.store.models.core import MailingList, Member
from listserv.store.models.features import BounceEvent, BounceProbe, BounceScore


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
    """One report or refusal as `bounces show` prints it."""
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
