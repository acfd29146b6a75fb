"""Rows by what a person hands us: the number the chair types (`held approve 3`, `peer-input
move 7 …`), the token in a confirmation address."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from listserv.errors import ListservError
from listserv.store.models.core import Request

Row = TypeVar("Row")
#: Longest id we look up: 18 digits stay inside a 64-bit integer column.
MAX_DIGITS = 18


def by_number(session: Session, model: type[Row], ref: str) -> Row | None:
    """The `model` row whose id is `ref` (spaces around it allowed); None when there is none
    or `ref` is not a number a row could have."""
    number = ref.strip()
    if not number.isdigit() or len(number) > MAX_DIGITS:
        return None
    return session.get(model, int(number))


def required(session: Session, model: type[Row], ref: str, what: str) -> Row:
    """The `model` row numbered `ref`, or a one-line error for the chair: "no WHAT REF"."""
    row = by_number(session, model, ref)
    if row is None:
        raise ListservError(f"no {what} {ref}")
    return row


def open_request_for_token(session: Session, token: str, now: datetime) -> Request | None:
    """The open request a confirmation token belongs to (None if unknown, used or expired).

    Here rather than in membership because intake asks it too (a token in a Subject, when a
    provider stripped the `+TOKEN`), and intake sits below the features."""
    request = session.scalar(select(Request).where(Request.token == token.lower()))
    if request is None or request.status != "confirming" or request.expires_at <= now:
        return None
    return request


def revoke_open_requests(session: Session, list_id: int, email: str, now: datetime,
                         actor: str) -> int:
    """Close every open confirmation and undo token of `email` on a list (status `revoked`);
    returns how many.

    Called whenever a membership ends (the person left, the chair removed them, bounces did):
    an undo from an old goodbye, or a confirmation asked for earlier, must not bring back
    someone who is gone since, past the chair's approval (`confirm+approve`).
    """
    result = session.execute(
        update(Request).where(Request.list_id == list_id, Request.email == email.lower(),
                              Request.status == "confirming")
        .values(status="revoked", decided_at=now, decided_by=actor))
    return int(result.rowcount or 0)
