"""Rows by the number the chair types (`held approve 3`, `peer-input move 7 …`)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

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
