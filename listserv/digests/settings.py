"""The digest's list settings (SPEC §4): how often, at what time, and the size that sends early.

`digest.send_day` is ours (SPEC is silent on the day of a weekly digest): the weekday it goes
out on, Monday by default.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from listserv.store.list_settings import Parser, choice, declare, whole
from listserv.store.models.core import MailingList

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _hh_mm(text: str) -> str:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError
    return f"{int(match.group(1)):02d}:{match.group(2)}"


FREQUENCY = declare("digest.frequency", choice("daily", "weekly"), "daily",
                    "how often the digest goes out")
SEND_AT = declare("digest.send_at", Parser("a time of day as HH:MM (UTC)", str, _hh_mm),
                  "00:00", "when the digest goes out, UTC")
SEND_DAY = declare("digest.send_day", choice(*WEEKDAYS), "monday",
                   "the day a weekly digest goes out")
MAX_KB = declare("digest.max_kb", whole(0, unit="KB"), 30,
                 "a digest goes out early once its posts pass this size (0 = never early)")


def last_moment(ml: MailingList, now: datetime) -> datetime:
    """The latest moment at or before `now` when the list's digest was due."""
    hours, minutes = (int(p) for p in SEND_AT.get(ml).split(":"))
    moment = datetime.combine(now.date(), time(hours, minutes), tzinfo=now.tzinfo)
    if moment > now:
        moment -= timedelta(days=1)
    if FREQUENCY.get(ml) == "weekly":
        moment -= timedelta(days=(moment.weekday() - WEEKDAYS.index(SEND_DAY.get(ml))) % 7)
    return moment


def next_moment(ml: MailingList, now: datetime) -> datetime:
    """The next moment after `now` when the list's digest is due."""
    step = timedelta(days=7 if FREQUENCY.get(ml) == "weekly" else 1)
    return last_moment(ml, now) + step
