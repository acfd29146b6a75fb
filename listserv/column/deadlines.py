"""The column's deadlines as dates.

`column.deadlines` (month-day, repeating yearly) in the years around a day, the deadline a
submission arriving on a day is for, and the chair's `--deadline` (YYYY-MM-DD or MM-DD).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from listserv.column.settings import DEADLINES, month_day
from listserv.errors import ListservError
from listserv.mail import i18n
from listserv.store.models.core import MailingList


def _on(year: int, month: int, day: int) -> date:
    if (month, day) == (2, 29):
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, month, day)


def deadline_dates(ml: MailingList, around: date) -> list[date]:
    """The list's deadlines in the year before, of and after `around`, in order."""
    days = [month_day(t) for t in DEADLINES.get(ml)]
    return sorted({_on(around.year + y, m, d) for y in (-1, 0, 1) for m, d in days})


def deadline_for(ml: MailingList, at: datetime) -> date | None:
    """The deadline a submission arriving at `at` is for: the first on or after its day."""
    today = at.astimezone(UTC).date()
    return next((d for d in deadline_dates(ml, today) if d >= today), None)


def parse_deadline(value: str) -> str:
    """`--deadline` as the chair writes it: YYYY-MM-DD, or MM-DD (any year)."""
    value = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    elif re.fullmatch(r"\d{1,2}-\d{1,2}", value):
        try:
            month, day = month_day(value)
            return f"{month:02d}-{day:02d}"
        except ValueError:
            pass
    raise ListservError(f"--deadline {value!r}: give a date as YYYY-MM-DD (or MM-DD)")


def deadline_text(iso: str, lang: str = "en") -> str:
    """A deadline (an ISO date) as mail writes it in `lang`, `Sunday, 1 March 2026`; "" for
    none."""
    if not iso:
        return ""
    return i18n.day(date.fromisoformat(iso), lang)
