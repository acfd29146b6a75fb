"""Typed, checked access to the TOML tables, with errors that name the key and its file.

`Table` reads one table's keys as booleans, integers, numbers, strings or paths, each checked
(type, range, choices); `finish()` refuses the keys nobody read. `Loader` holds what one
`load_settings` call knows: where each key came from, and the folder relative paths start at.
Every error is one line: `FILE: dotted.key: what is wrong`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from listserv.errors import ConfigError

Key = tuple[str, ...]
"""A dotted key as its parts: ("intake", "lmtp", "port")."""


class Loader:
    """The state of one `load_settings` call: where each key came from, and the base folder."""

    def __init__(self, sources: dict[Key, str], default_label: str, base_dir: Path) -> None:
        self.sources = sources
        self.default_label = default_label
        self.base_dir = base_dir

    def label(self, key: Key) -> str:
        """The file (or "overrides") that set `key`, or failing that its nearest table."""
        while key:
            if key in self.sources:
                return self.sources[key]
            key = key[:-1]
        return self.default_label

    def error(self, key: Key, message: str) -> ConfigError:
        """A one-line error about `key`, naming the file it came from."""
        return ConfigError(one_line(f"{self.label(key)}: {dotted(key)}: {message}"))

    def absolute(self, value: str | os.PathLike[str]) -> Path:
        """`value` as an absolute path; relative paths start at the config file's folder."""
        path = Path(value).expanduser()
        return Path(os.path.abspath(self.base_dir / path))


class Table:
    """Typed, checked access to one TOML table; `finish()` refuses the keys nobody read."""

    def __init__(self, loader: Loader, key: Key, data: Mapping[str, Any]) -> None:
        self.loader = loader
        self.key = key
        self.data = data
        self._read: set[str] = set()

    def error(self, name: str, message: str) -> ConfigError:
        return self.loader.error((*self.key, name), message)

    def _get(self, name: str) -> tuple[bool, Any]:
        self._read.add(name)
        if name in self.data:
            return True, self.data[name]
        return False, None

    def _wrong_type(self, name: str, expected: str, value: object) -> ConfigError:
        return self.error(name, f"expected {expected}, got {_kind(value)}")

    def table(self, name: str) -> Table:
        """The sub-table `name` (empty when missing, so every key takes its default)."""
        present, value = self._get(name)
        if not present:
            value = {}
        elif not isinstance(value, Mapping):
            raise self._wrong_type(name, "a table", value)
        return Table(self.loader, (*self.key, name), value)

    def boolean(self, name: str, default: bool) -> bool:
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, bool):
            raise self._wrong_type(name, "true or false", value)
        return value

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        """An integer (a boolean is not one) of at least `minimum`, at most `maximum`."""
        present, value = self._get(name)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong_type(name, "an integer", value)
        if maximum is not None and not minimum <= value <= maximum:
            raise self.error(name, f"must be between {minimum} and {maximum}, got {value}")
        if value < minimum:
            if minimum == 0:
                raise self.error(name, f"must not be negative, got {value}")
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def port(self, name: str, default: int) -> int:
        """A TCP port; 0 asks for a free one."""
        return self.integer(name, default, minimum=0, maximum=65535)

    def number(self, name: str, default: float) -> float:
        """A positive, finite number of seconds or days; an integer is accepted."""
        present, value = self._get(name)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong_type(name, "a number", value)
        if not math.isfinite(value) or value <= 0:
            raise self.error(name, f"must be a number greater than 0, got {value}")
        return float(value)

    def string(
        self,
        name: str,
        default: str,
        *,
        choices: tuple[str, ...] = (),
        non_empty: bool = False,
    ) -> str:
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, str):
            raise self._wrong_type(name, "a string", value)
        if choices and value not in choices:
            allowed = ", ".join(repr(choice) for choice in choices)
            raise self.error(name, f"{_short_repr(value)} is not one of {allowed}")
        if non_empty and not value:
            raise self.error(name, "must not be empty")
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """An array of strings (empty entries refused)."""
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong_type(name, "an array of strings", value)
        if any(not item.strip() for item in value):
            raise self.error(name, "must not hold an empty string")
        return tuple(item.strip() for item in value)

    def path(self, name: str, default: str) -> Path | None:
        """An absolute path, or None for ""; `os.PathLike` is accepted from overrides."""
        present, value = self._get(name)
        if not present:
            value = default
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise self._wrong_type(name, "a string (a path)", value)
        if not value:
            return None
        return self.loader.absolute(value)

    def finish(self) -> None:
        """Refuse any key of this table that no reader asked for."""
        for name in self.data:
            if name not in self._read:
                key = (*self.key, str(name))
                raise ConfigError(
                    one_line(f"{self.loader.label(key)}: unknown key '{dotted(key)}'")
                )


def dotted(key: Key) -> str:
    """`key` as the config file spells it: "intake.lmtp.port"."""
    return ".".join(key)


def _kind(value: object) -> str:
    """A TOML-flavoured name for the type of `value`, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _short_repr(value: str, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "…'"


def one_line(message: str) -> str:
    """`message` on one line (an error names a TOML parser's multi-line message too)."""
    return " ".join(message.splitlines())
