"""A series as the chair says it (SPEC §5): `--every "third thursday" --months 2,5,8,11`, read
into the RFC 5545 RRULE the store keeps (`FREQ=MONTHLY;BYMONTH=2,5,8,11;BYDAY=3TH`).

English words: an ordinal (`first` … `fifth`, `last`, `second last`; or `1st` … `5th`) and a
weekday (`thursday`, `thu`, `th`); `every thursday` alone is weekly; `every day` is daily.
"""

from __future__ import annotations

import re

from listserv.errors import ListservError

_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4,
             "4th": 4, "fifth": 5, "5th": 5, "last": -1, "second last": -2,
             "second-to-last": -2, "next to last": -2}
_WEEKDAYS = {"monday": "MO", "tuesday": "TU", "wednesday": "WE", "thursday": "TH",
             "friday": "FR", "saturday": "SA", "sunday": "SU"}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                "dec")


def _weekday(word: str) -> str | None:
    word = word.rstrip("s")  # "thursdays"
    for name, code in _WEEKDAYS.items():
        if word in (name, name[:3], code.lower()) or (len(word) >= 3 and name.startswith(word)):
            return code
    return None


def months(text: str) -> list[int]:
    """`2,5,8,11` or `feb,may,aug,nov` as month numbers, in order."""
    found: list[int] = []
    for item in (t.strip().lower() for t in re.split(r"[,;\s]+", text) if t.strip()):
        if item.isdigit() and 1 <= int(item) <= 12:
            found.append(int(item))
        elif item[:3] in _MONTH_NAMES:
            found.append(_MONTH_NAMES.index(item[:3]) + 1)
        else:
            raise ListservError(f"--months {text!r}: {item!r} is not a month (1-12 or a name)")
    return sorted(set(found))


def every_rule(every: str, in_months: str | None = None) -> str:
    """The RRULE for `--every` (and `--months`), or one clear error."""
    words = " ".join(every.lower().replace(",", " ").split())
    words = re.sub(r"^(every|each|the|on)\s+", "", words)
    words = re.sub(r"\s+(of|in)( the| each| every)? months?$", "", words)
    by_month = f";BYMONTH={','.join(map(str, months(in_months)))}" if in_months else ""
    if words in ("day", "days"):
        return f"FREQ=DAILY{by_month}"
    ordinal, _, day = words.rpartition(" ")
    code = _weekday(day)
    if code is None:
        raise ListservError(f'--every {every!r}: say e.g. "third thursday", "last monday" or '
                            '"tuesday"')
    ordinal = ordinal.removeprefix("the ").strip()
    if not ordinal:
        freq = "MONTHLY" if by_month else "WEEKLY"
        return f"FREQ={freq}{by_month};BYDAY={code}"
    if ordinal not in _ORDINALS:
        raise ListservError(f"--every {every!r}: {ordinal!r} is not first, second, third, "
                            "fourth, fifth, last or second last")
    return f"FREQ=MONTHLY{by_month};BYDAY={_ORDINALS[ordinal]}{code}"
