"""Dates, times and numbers as each language writes them (Babel, CLDR data); no database.

A language is a two-letter code (`en`, `es`, ...), the name of a template folder. English is
written as in Britain (`Thursday, 21 January 2027`, 24-hour clock): the group is international
and a day before the month reads the same everywhere. Every other language takes its own CLDR
locale, whose short time is the 24-hour clock where that is customary. A code Babel does not
know (a chair's own folder with an unusual name) is written in English.

Zone abbreviations (`CST`, `UTC`) are not translated: they are how a reader matches a time to a
clock, and the IANA name follows where the abbreviation is ambiguous.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_decimal

DEFAULT_LANG = "en"

#: The CLDR locale of a language where its plain code is not what mail should say.
_LOCALES = {"en": "en_GB"}


@lru_cache(maxsize=64)
def locale_of(lang: str) -> Locale:
    """The Babel locale that writes `lang`'s dates (English for an unknown code)."""
    try:
        return Locale.parse(_LOCALES.get(lang, lang or DEFAULT_LANG))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(_LOCALES[DEFAULT_LANG])


def day(value: date | datetime, lang: str) -> str:
    """A day with its weekday, in words: `jueves, 21 de enero de 2027`."""
    return format_date(value, "full", locale=locale_of(lang))


def short_day(value: date | datetime, lang: str) -> str:
    """A day without its weekday: `21 de enero de 2027`."""
    return format_date(value, "long", locale=locale_of(lang))


def clock(value: datetime, lang: str) -> str:
    """A time of day, as `lang` reads a clock (`16:00`)."""
    return format_time(value, "short", locale=locale_of(lang))


def weekday(value: datetime, lang: str) -> str:
    """The weekday's name (`jueves`)."""
    return format_date(value, "EEEE", locale=locale_of(lang))


def number(value: float | int, lang: str) -> str:
    """A number with `lang`'s digit grouping and decimal mark (`1.234,5`)."""
    return format_decimal(value, locale=locale_of(lang))


def moment(at: datetime, where: ZoneInfo, lang: str) -> str:
    """A point in time in a zone: `jueves, 21 de enero de 2027, 12:00 CST`."""
    local = at.astimezone(where)
    return f"{day(local, lang)}, {clock(local, lang)} {local.tzname()}"


def span(start: datetime, minutes: int, where: ZoneInfo, label: str, lang: str) -> str:
    """`jueves, 21 de enero de 2027, 16:00–17:00 UTC`: start–end (an en dash), the zone named
    once; `label` (the IANA name) follows in brackets where the abbreviation differs; an end
    on another day names that day's weekday."""
    begin = start.astimezone(where)
    end = (start + timedelta(minutes=minutes)).astimezone(where)
    until = clock(end, lang)
    if end.date() != begin.date():
        until = f"{weekday(end, lang)} {until}"
    abbreviation = begin.tzname() or label
    line = f"{day(begin, lang)}, {clock(begin, lang)}\u2013{until} {abbreviation}"
    return f"{line} ({label})" if label and label != abbreviation else line
