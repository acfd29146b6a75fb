"""The log of every chair action and automatic decision (`listserv log`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from listserv.store.models.core import AuditEntry

DAEMON = "listserv"


def audit(
    session: Session, now: datetime, actor: str, action: str, detail: str = "",
    list_id: int | None = None,
) -> None:
    """Record who did what, when, in the caller's transaction."""
    session.add(AuditEntry(at=now, actor=actor, action=action, detail=detail, list_id=list_id))
