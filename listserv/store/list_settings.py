"""Per-list settings (SPEC §4): one typed registry; each setting is declared once, by its owner.

A `ListSetting` has a key, a default, a `Parser` (which reads the chair's text for `lists set`
and says what it accepts) and a line of help. The module that uses a setting declares it with
`declare()` and reads it with `SETTING.get(ml)`, which gives the typed value: a number, a
boolean, a string, or a tuple of strings for a list.

Where the value lives: the core settings are columns of `lists` (`column=True`); the
namespaced settings of the features (`bounce.*`, `meetings.*`, `column.*`, `address.ROLE`) are
kept in the list's JSON `extra`, as their typed JSON value (numbers, booleans, strings,
arrays). Versions before the registry wrote list settings as one comma-separated string;
`get` reads such a value with the setting's parser, so old databases keep working without a
migration, and the next `lists set` stores the array.

`lists set`, `lists show` and docs/list-settings.md (made by `markdown_table`) read the
registry.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from listserv.mail.addresses import valid_address

log = logging.getLogger(__name__)

T = TypeVar("T")


class HasSettings(Protocol):
    """What the registry needs of a list (a `MailingList`)."""

    extra: dict[str, Any]


class Refused(ValueError):
    """The chair's text is not valid; the message says which text and why, in one line."""


@dataclass(frozen=True, slots=True)
class Parser(Generic[T]):
    """Reads the chair's text into a value of `kind`; raises `Refused` saying what is wrong.

    `accepts` says in a few words what it takes ("a whole number from 0 to 10"): the help in
    the docs. `read` raises ValueError with what it wanted instead (by default `accepts`),
    and the refusal reads "'TEXT' is not WANTED".
    """

    accepts: str
    kind: type
    read: Callable[[str], T]

    def __call__(self, text: str) -> T:
        try:
            return self.read(text)
        except Refused:
            raise
        except ValueError as exc:
            raise Refused(f"{text.strip()!r} is not {exc or self.accepts}") from None


@dataclass(frozen=True, slots=True)
class ListSetting(Generic[T]):
    """One list setting: where it lives, its default, how the chair's text is read."""

    key: str
    parser: Parser[Any]
    default: T
    help: str
    column: bool = False  # a column of `lists` named `key`; else kept in `extra`

    def get(self, ml: HasSettings) -> T:
        """The list's value, typed; the default when the list has none."""
        if self.column:
            value: T = getattr(ml, self.key)
            return value
        if self.key not in ml.extra:
            return self.default
        stored = ml.extra[self.key]
        typed = _as_kind(stored, self.parser.kind)
        if typed is not None:
            return typed
        try:  # text written by an older version, or by hand
            parsed: T = self.parser(str(stored))
        except Refused:
            log.warning("list setting %s: stored value %r is not %s; using the default %r",
                        self.key, stored, self.parser.accepts, self.default)
            return self.default
        return parsed

    def set(self, ml: HasSettings, text: str) -> T:
        """Read the chair's `text` and store it; `Refused` (saying why) when it is not valid."""
        value: T = self.parser(text)
        if self.column:
            setattr(ml, self.key, value)
        else:
            ml.extra = {**ml.extra, self.key: list(value) if isinstance(value, tuple) else value}
        return value

    def reset(self, ml: HasSettings) -> T:
        """Bring back the default (`lists set LIST KEY --default`); returns it."""
        if self.column:
            setattr(ml, self.key, self.default)
        else:
            ml.extra = {k: v for k, v in ml.extra.items() if k != self.key}
        return self.default


def _as_kind(stored: Any, kind: type) -> Any:
    """`stored` (a JSON value) as `kind`, or None when it is something else."""
    if kind is tuple:
        if isinstance(stored, list | tuple) and all(isinstance(i, str) for i in stored):
            return tuple(stored)
        return None
    if isinstance(stored, bool) != (kind is bool):
        return None  # JSON true is no number, and 1 is no boolean
    if kind is float and isinstance(stored, int | float):
        return float(stored)
    return stored if isinstance(stored, kind) else None


_REGISTRY: dict[str, ListSetting[Any]] = {}


def declare(key: str, parser: Parser[Any], default: T, help: str, *,
            column: bool = False) -> ListSetting[T]:
    """Declare the list setting `key` (once: a second declaration is a programming error)."""
    if key in _REGISTRY:
        raise RuntimeError(f"the list setting {key} is declared twice")
    setting = ListSetting(key, parser, default, help, column)
    _REGISTRY[key] = setting
    return setting


def registered() -> list[ListSetting[Any]]:
    """Every declared setting: the core ones (the list's columns and `address.*`, declared in
    one module) in declaration order, then the features' in alphabetical order of key, so the
    order does not depend on which feature module was imported first."""
    def place(setting: ListSetting[Any]) -> tuple[bool, str]:
        core = "." not in setting.key or setting.key.startswith("address.")
        return (not core, "" if core else setting.key)
    return sorted(_REGISTRY.values(), key=place)


def find(key: str) -> ListSetting[Any] | None:
    """The setting named `key`, or None."""
    return _REGISTRY.get(key)


def text_of(value: Any) -> str:
    """A value (not None) as the chair writes it for `lists set`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ",".join(value)
    return str(value)


def markdown_table(settings: Iterable[ListSetting[Any]]) -> str:
    """The settings as a Markdown table: key, default, what it takes, what it does."""
    lines = ["| key | default | takes | what it does |", "| --- | --- | --- | --- |"]
    for s in settings:
        default = "built in" if s.default is None else "`" + (text_of(s.default) or '""') + "`"
        lines.append(f"| `{s.key}` | {default} | {s.parser.accepts} | {s.help} |")
    return "\n".join(lines) + "\n"


# -- the shared parsers ------------------------------------------------------------------------


def whole(low: int, high: int | None = None, *, unit: str = "") -> Parser[int]:
    """A whole number from `low` (to `high`, when given); `unit` names it in the help."""
    what = f"a whole number of {unit}" if unit else "a whole number"
    accepts = f"{what} from {low} to {high}" if high is not None else f"{what}, {low} or more"

    def read(text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            raise ValueError(accepts) from None
        if number < low or (high is not None and number > high):
            raise ValueError(accepts)
        return number

    return Parser(accepts, int, read)


def number(low: float = 0.0, high: float | None = None, *, above: bool = False) -> Parser[float]:
    """A finite number of at least `low` (above it, with `above`), up to `high` if given."""
    if high is not None:
        accepts = f"a number from {low:g} to {high:g}"
    else:
        accepts = f"a number above {low:g}" if above else f"a number, {low:g} or more"

    def read(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(accepts) from None
        too_low = value <= low if above else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise ValueError(accepts)
        return value

    return Parser(accepts, float, read)


def choice(*allowed: str) -> Parser[str]:
    """One of `allowed` (given in any case)."""
    accepts = f"one of {', '.join(allowed)}"

    def read(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(accepts)
        return value

    return Parser(accepts, str, read)


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("true or false")


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError("one line of text")
    return " ".join(text.split())


def _address(text: str) -> str:
    if not text.strip():
        return ""
    checked = valid_address(text)
    if checked is None:
        raise ValueError("an email address")
    return checked


def _language(text: str) -> str:
    code = text.strip().lower()
    if code and not re.fullmatch(r"[a-z]{2,3}", code):
        raise ValueError("a language code such as en, es, fr, de or pt")
    return code


BOOLEAN = Parser("true or false", bool, _boolean)
#: A language's code (the name of its template folder), or "" for none.
LANGUAGE = Parser('a language code such as en, es, fr, de or pt (or `""`)', str, _language)
ONE_LINE = Parser("one line of text", str, _one_line)
#: Several lines; the chair writes a line break as `\n`.
TEXT = Parser("text (`\\n` for a new line)", str, lambda text: text.replace("\\n", "\n"))
#: An email address, or "" for none.
ADDRESS = Parser('an email address, or `""`', str, _address)


def items(read_item: Callable[[str], str], accepts: str, *, split: str = r"[,;]",
          order: Callable[[str], Any] | None = None, most: int | None = None
          ) -> Parser[tuple[str, ...]]:
    """A list, written comma-separated (`""` or `none`: empty).

    Each item is read by `read_item`, which gives its usual form or raises ValueError (the
    refusal names the item); repeats are dropped; sorted by `order` when given.
    """
    item = Parser(accepts, str, read_item)

    def read(text: str) -> tuple[str, ...]:
        if text.strip().lower() == "none":
            return ()
        found = tuple(dict.fromkeys(item(t.strip()) for t in re.split(split, text)
                                    if t.strip()))
        if most is not None and len(found) > most:
            raise Refused(f"{len(found)} items are too many (at most {most})")
        return tuple(sorted(found, key=order)) if order is not None else found

    return Parser(accepts, tuple, read)


ADDRESSES = items(_address, "email addresses, comma-separated", split=r"[,;\s]+")


_DURATION = re.compile(r"^(\d{1,5})\s*([wdhm])$")
_UNIT_MINUTES = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}


def duration_minutes(text: str) -> int:
    """A duration as the chair writes it (`14d`, `2h`, `30m`, `1w`), in minutes."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError("a duration such as 14d, 1d, 2h or 30m")
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def duration_text(minutes: int) -> str:
    """Minutes in the shortest of the forms `duration_minutes` reads (`1440` is `1d`)."""
    for unit in ("d", "h"):
        if minutes % _UNIT_MINUTES[unit] == 0:
            return f"{minutes // _UNIT_MINUTES[unit]}{unit}"
    return f"{minutes}m"


def durations(longest_days: int, most: int) -> Parser[tuple[str, ...]]:
    """Durations above 0 and up to `longest_days` days (at most `most`), longest first."""

    def read_item(text: str) -> str:
        minutes = duration_minutes(text)
        if not 0 < minutes <= longest_days * _UNIT_MINUTES["d"]:
            raise ValueError(f"a duration of more than 0 and at most {longest_days} days")
        return duration_text(minutes)

    return items(read_item, f"durations such as `14d,1d,2h` (w, d, h, m; at most {most}, "
                 f"each up to {longest_days} days)", order=lambda t: -duration_minutes(t),
                 most=most)
