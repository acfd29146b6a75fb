"""The operator's settings: one TOML file, read into frozen dataclasses (SPEC §7).

`load_settings(path, **overrides)` is the only entry point. A missing table or key takes its
default; an unknown key, a value of the wrong type or outside its range, or a literal `password`
key is a `ConfigError` whose one line names the dotted key and the file. Secrets are never written
in the file itself: `password_env` names an environment variable, `password_file` a file.

Relative paths (`data_dir`, `templates_dir`, `password_file`, a relative SQLite file in
`database.url`) are relative to the folder of the config file, or to the current directory when
there is no config file. Every path in `Settings` is absolute.

Loading reads the environment only for secrets. Finding the file (`--config`,
`$LISTSERV_CONFIG`, `listserv.toml` here or in a parent, `~/.config/listserv/`) is
`config.discovery`, which the command line calls.

This package's public names are below; inside it, `settings` holds the dataclasses, `loading`
reads the file, `tables` checks each table's keys, `passwords` resolves the secrets and
`discovery` finds the file (and writes the one `listserv init` starts with).
"""

from listserv.config.loading import load_settings
from listserv.config.settings import (
    DEFAULT_DATA_DIR,
    BackupSettings,
    DaemonSettings,
    DatabaseSettings,
    DkimKey,
    DkimSettings,
    ImapSettings,
    IntakeSettings,
    OutboundSettings,
    RetentionSettings,
    ServerSettings,
    Settings,
    StatusSettings,
    WebSettings,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DaemonSettings",
    "DatabaseSettings",
    "DkimKey",
    "DkimSettings",
    "ImapSettings",
    "IntakeSettings",
    "OutboundSettings",
    "BackupSettings",
    "RetentionSettings",
    "ServerSettings",
    "Settings",
    "StatusSettings",
    "WebSettings",
    "load_settings",
]
