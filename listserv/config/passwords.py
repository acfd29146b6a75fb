"""Secrets: never in the config file itself, read from where it names them.

A literal `password` key, anywhere, is refused before anything else is read. `password_env`
names an environment variable, `password_file` a file (one line, UTF-8, its newline dropped)
that only its owner may read; either must hold a non-empty, single-line secret. The
environment is read only for secrets.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any, Final

from listserv.config.tables import Key, Loader, Table, dotted, one_line
from listserv.errors import ConfigError

#: A password file with any of these bits is refused (SPEC §7 "Files").
_OTHERS_READ: Final = stat.S_IRGRP | stat.S_IROTH
_LITERAL_PASSWORD: Final = (
    "a literal 'password' is not allowed; "
    "use password_env (an environment variable's name) or password_file"
)


def read_secret(table: Table, *, resolve: bool) -> str:
    """The secret named by `password_env` or `password_file` ("" when neither is set).

    With `resolve=False` both keys are still checked, but nothing is read.
    """
    env_name = table.string("password_env", "")
    file_path = table.path("password_file", "")
    if env_name and file_path is not None:
        raise table.loader.error(table.key, "set password_env or password_file, not both")
    if not resolve:
        return ""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise table.error("password_env", f"environment variable {env_name!r} is not set")
        return _check(table, "password_env", value, f"environment variable {env_name!r}")
    if file_path is not None:
        try:
            with file_path.open("rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                data = handle.read()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise table.error("password_file", f"cannot read '{file_path}': {reason}") from exc
        if mode & _OTHERS_READ:
            raise table.error(
                "password_file",
                f"'{file_path}' is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                f"make it private: chmod 600 '{file_path}'")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise table.error("password_file", f"'{file_path}' is not UTF-8 text") from exc
        value = text.removesuffix("\n").removesuffix("\r")
        return _check(table, "password_file", value, f"'{file_path}'")
    return ""


def _check(table: Table, name: str, value: str, where: str) -> str:
    if not value:
        raise table.error(name, f"{where} is empty")
    if "\n" in value or "\r" in value:
        raise table.error(name, f"{where} holds more than one line")
    return value


def refuse_literal_passwords(value: Any, key: Key, loader: Loader) -> None:
    """A `password` key anywhere (even in an unknown table) is refused before anything else."""
    if isinstance(value, Mapping):
        if "password" in value:
            label = loader.label((*key, "password"))
            where = f"{dotted(key)}: " if key else ""
            raise ConfigError(one_line(f"{label}: {where}{_LITERAL_PASSWORD}"))
        for name, item in value.items():
            refuse_literal_passwords(item, (*key, str(name)), loader)
    elif isinstance(value, list):
        for item in value:
            refuse_literal_passwords(item, key, loader)
