"""Where the config file is (SPEC §4): `find_config`, and `write_starter` for `listserv init`.

The order: `--config PATH`, then `$LISTSERV_CONFIG`, then `listserv.toml` in the current folder
or the nearest parent that has one, then the user's config folder
(`$XDG_CONFIG_HOME/listserv/listserv.toml`, by default `~/.config/listserv/listserv.toml`).
The first found wins; the data folder and every relative path then follow the file, so every
command finds the same data from any folder below it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from listserv.config.settings import DEFAULT_DATA_DIR
from listserv.errors import ListservError

CONFIG_NAME: Final = "listserv.toml"
ENV_VAR: Final = "LISTSERV_CONFIG"

# How a config file was found: given (--config or $LISTSERV_CONFIG), in the current folder, in
# a folder above it, or in the user's config folder.
How = Literal["given", "here", "above", "user"]

STARTER: Final = f"""\
# listserv's config, written by `listserv init`. Every command run in this folder or below it
# uses this file (or give --config / $LISTSERV_CONFIG). Every setting, with its default, is
# described in config.example.toml; relative paths are relative to this file's folder.

# SQLite database, outgoing Maildir (outbox/) and run files; the database can be PostgreSQL
# instead ([database] url).
data_dir = "{DEFAULT_DATA_DIR}"

# The defaults: LMTP on 127.0.0.1:8024, SMTP on 127.0.0.1:8025, outgoing mail into
# {DEFAULT_DATA_DIR}/outbox. Change them here, e.g.
# [intake.smtp]
# port = 8025
"""


class ConfigNotFound(ListservError):
    """No config file anywhere discovery looks; the message names every place."""


@dataclass(frozen=True, slots=True)
class FoundConfig:
    """A config file that exists (or, for `given`, was named), and how it was found."""

    path: Path
    how: How


def user_config_path(environ: Mapping[str, str]) -> Path | None:
    """`$XDG_CONFIG_HOME/listserv/listserv.toml`, else `~/.config/listserv/listserv.toml`.

    None when there is no home folder to speak of (no HOME and no password entry).
    """
    xdg = environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "listserv" / CONFIG_NAME
    home = environ.get("HOME", "")
    if not home:
        try:
            home = str(Path.home())
        except (KeyError, RuntimeError):
            return None
    return Path(home) / ".config" / "listserv" / CONFIG_NAME


def find_config(given: str | None, cwd: Path, environ: Mapping[str, str]) -> FoundConfig:
    """The config file every command uses, in the order of the module docstring.

    A file named by `--config` or `$LISTSERV_CONFIG` is returned as named (errors then name
    it as the operator wrote it), whether or not it exists (reading it says what is wrong).
    Raises `ConfigNotFound` naming every place looked.
    """
    for named in (given, environ.get(ENV_VAR)):
        if named:
            return FoundConfig(Path(named).expanduser(), "given")
    folders = [cwd, *cwd.parents]
    for folder in folders:
        if (folder / CONFIG_NAME).is_file():
            return FoundConfig(folder / CONFIG_NAME, "here" if folder == cwd else "above")
    user = user_config_path(environ)
    if user is not None and user.is_file():
        return FoundConfig(user, "user")
    where = ", ".join(str(f) for f in folders)
    user_part = f"none at {user}" if user is not None else "no home folder for ~/.config"
    raise ConfigNotFound(
        f"no config file found: no --config, ${ENV_VAR} not set, no {CONFIG_NAME} in {where}; "
        f"{user_part}. Run `listserv init` to set up in this folder")


def config_for_init(given: str | None, cwd: Path, environ: Mapping[str, str], *,
                    force: bool = False) -> tuple[Path, bool]:
    """The config `listserv init` sets up, and whether it wrote it just now.

    The one given (written if it is not there yet) or in `cwd`; else a new `listserv.toml` in
    `cwd`. A config found above `cwd` or in the user's folder means a setup exists: a second
    data folder here would hide it from every command run here ("my list is gone"), so that
    takes `force`; without it, a `ListservError` says how to upgrade the one found instead.
    """
    try:
        found: FoundConfig | None = find_config(given, cwd, environ)
    except ConfigNotFound:
        found = None
    if found is None or (force and found.how in ("above", "user")):
        path = cwd / CONFIG_NAME
    elif found.how in ("above", "user"):
        raise ListservError(
            f"listserv is already set up with {found.path}; to upgrade that one run "
            f"`listserv --config {found.path} init`, or to set up a separate one in this "
            "folder `listserv init --force`")
    elif found.path.exists():
        return found.path, False
    else:
        path = found.path  # named by --config or $LISTSERV_CONFIG, not there yet
    write_starter(path)
    return path, True


def write_starter(path: Path) -> None:
    """Create the config file `init` writes (0600, like everything listserv makes).

    Never overwrites: an existing file is the operator's.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ListservError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(STARTER)
