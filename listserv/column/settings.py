"""The column's list settings (SPEC §6), declared once in the registry.

Its name in mail, the tracking-id prefix, the editors, the yearly deadlines and how many days
ahead of them the call goes out, and the attachments it takes (types and sizes).
"""

from __future__ import annotations

import re
from datetime import date

from listserv.mail import attachments as attachments
from listserv.store.list_settings import ADDRESSES, ONE_LINE, Parser, choice, declare, items, whole
from listserv.store.models.core import MailingList


def _prefix(text: str) -> str:
    value = text.strip().upper()
    if value and not re.fullmatch(r"[A-Z0-9][A-Z0-9-]{0,19}", value):
        raise ValueError
    return value


def month_day(token: str) -> tuple[int, int]:
    """A deadline as `MM-DD`, read as (month, day); ValueError if it is no day of the year."""
    match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", token.strip())
    if match is None:
        raise ValueError("a month-day such as 03-01")
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2000, month, day)  # a leap year: 02-29 is allowed
    except ValueError:
        raise ValueError("a day of the year") from None
    return month, day


def _deadline_day(token: str) -> str:
    month, day = month_day(token)
    return f"{month:02d}-{day:02d}"


NAME = declare("column.name", ONE_LINE, "", "the column's name in mail (`\"\"` = the list's name)")
PREFIX = declare("column.prefix",
                 Parser("up to 20 letters, digits and '-', e.g. TCP", str, _prefix), "",
                 "tracking-id prefix (`\"\"` = the list's NAME upper-cased)")
EDITORS = declare("column.editors", ADDRESSES, (),
                  "editors: they get the notices and may send revisions")
DEADLINES = declare("column.deadlines",
                    items(_deadline_day, "days of the year as `MM-DD`, comma-separated",
                          order=str), (),
                    "deadlines, repeating yearly")
CALL_DAYS = declare("column.call_days", whole(0, 365, unit="days"), 21,
                    "days before a deadline the call for submissions goes out (0 = no call)")
MAX_FILE_KB = declare("column.max_file_kb", whole(1, unit="KB"), 10240,
                      "largest attachment kept")
MAX_TOTAL_KB = declare("column.max_total_kb", whole(1, unit="KB"), 20480,
                       "most attachments kept per mail, in all")
_TYPE_NAMES = (*attachments.DEFAULT_TYPES, "zip")
TYPES = declare("column.types",
                items(choice(*_TYPE_NAMES), f"comma-separated, of {', '.join(_TYPE_NAMES)}"),
                attachments.DEFAULT_TYPES, "attachment types taken, judged by their content")


def column_name(ml: MailingList) -> str:
    return NAME.get(ml) or ml.name


def prefix(ml: MailingList) -> str:
    return PREFIX.get(ml) or re.sub(r"[^A-Z0-9-]", "-", ml.name.upper())
