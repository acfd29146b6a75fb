"""The operator's settings: one TOML file, read into frozen dataclasses (SPEC §7).

`load_settings(path, **overrides)` is the only entry point. A missing table or key takes its
default; an unknown key, a value of the wrong type or outside its range, or a literal `password`
key is a `ConfigError` whose one line names the dotted key and the file. Secrets are never written
in the file itself: `password_env` names an environment variable, `password_file` a file.

Relative paths (`data_dir`, `templates_dir`, `password_file`, a relative SQLite file in
`database.url`) are relative to the folder of the config file, or to the current directory when
there is no config file. Every path in `Settings` is absolute.

The environment is read only for secrets; finding the config file (e.g. from `LISTSERV_CONFIG`)
is the command line's business.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from listserv.errors import ConfigError

__all__ = [
    "DEFAULT_DATA_DIR",
    "DaemonSettings",
    "DatabaseSettings",
    "ImapSettings",
    "IntakeSettings",
    "OutboundSettings",
    "ServerSettings",
    "Settings",
    "load_settings",
]

DEFAULT_DATA_DIR: Final = "listserv-data"
"""Where the store, outbox and run files live unless `data_dir` says otherwise."""

OUTBOUND_TRANSPORTS: Final = ("maildir", "smtp")
OUTBOUND_TLS: Final = ("none", "starttls", "implicit")
IMAP_TLS: Final = ("implicit", "starttls", "none")

_OVERRIDES_LABEL: Final = "overrides"
_LITERAL_PASSWORD: Final = (
    "a literal 'password' is not allowed; "
    "use password_env (an environment variable's name) or password_file"
)
_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

_Key = tuple[str, ...]
"""A dotted key as its parts: ("intake", "lmtp", "port")."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """`[database]`: where the store lives.

    `url` is always resolved: an empty value in the file becomes
    `sqlite:///<absolute data_dir>/listserv.db`.
    """

    url: str


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """`[intake.lmtp]` or `[intake.smtp]`: one listening server.

    `port = 0` asks for a free port (the daemon writes the bound one to `run/ports.json`);
    `max_message_kb` is the hard size cap, advertised with `SIZE`.
    """

    enabled: bool
    host: str
    port: int
    max_message_kb: int = 25600


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """`[intake.imap]`: a hosted mailbox polled over IMAP.

    `password` is the resolved secret (from `password_env` or `password_file`); it is resolved
    only when the poller is enabled, and is "" otherwise. `processed_folder = ""` leaves fetched
    messages in place, marked with a private keyword. `tls = "none"` is for loopback tests only.
    """

    enabled: bool = False
    host: str = "imap.example.org"
    port: int = 993
    username: str = ""
    password: str = field(default="", repr=False)
    tls: str = "implicit"
    verify_cert: bool = True
    folder: str = "INBOX"
    processed_folder: str = ""
    poll_seconds: float = 60.0
    idle: bool = True


def _default_lmtp() -> ServerSettings:
    return ServerSettings(enabled=True, host="127.0.0.1", port=8024)


def _default_smtp() -> ServerSettings:
    return ServerSettings(enabled=True, host="127.0.0.1", port=8025)


@dataclass(frozen=True, slots=True)
class IntakeSettings:
    """`[intake.*]`: the ways mail comes in (LMTP and SMTP from an MTA, IMAP from a mailbox)."""

    lmtp: ServerSettings = field(default_factory=_default_lmtp)
    smtp: ServerSettings = field(default_factory=_default_smtp)
    imap: ImapSettings = field(default_factory=ImapSettings)


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """`[outbound]`: how mail goes out.

    `transport = "maildir"` writes into `data_dir/outbox`; `"smtp"` relays to `host:port`.
    `password` is the resolved secret ("" when neither `password_env` nor `password_file` is
    set). `messages_per_minute` (SMTP transactions in any 60 s) and `recipients_per_day`
    (recipients in any 24 h) are the relay's sending limits, respected by the queue: mail
    beyond them waits, still queued (docs/delivery.md); 0 means no limit. A temporary
    failure is retried after `retry_base_seconds`, doubling, until `give_up_days` have passed;
    a worker's claim on a batch lapses after `claim_lease_seconds`. `eightbitmime = true`
    says the relay takes 8-bit bodies unchanged; otherwise every message leaves in 7-bit form
    (SPEC §3, "On the wire"; `listserv.mail.wire`).
    """

    transport: str = "maildir"
    host: str = "127.0.0.1"
    port: int = 25
    tls: str = "none"
    verify_cert: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    max_recipients_per_transaction: int = 500
    max_connections: int = 4
    messages_per_minute: int = 0
    recipients_per_day: int = 0
    retry_base_seconds: int = 300
    give_up_days: float = 5.0
    claim_lease_seconds: int = 60
    eightbitmime: bool = False


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """`[daemon]`: the worker threads' pace and the name the daemon uses for itself.

    `hostname = ""` means `socket.getfqdn()`, looked up when it is used (not here).
    """

    poll_seconds: float = 2.0
    scheduler_tick_seconds: float = 60.0
    hostname: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon and the command line need from the operator.

    `config_path` is the absolute path of the file read, or None when there was none.
    `templates_dir` is None when no override folder is configured.
    """

    config_path: Path | None
    data_dir: Path
    templates_dir: Path | None
    database: DatabaseSettings
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)

    @property
    def hosted(self) -> bool:
        """Whether the lists run on a hosted mailbox (IMAP intake on).

        A provider sends only as its account: every SMTP transaction's envelope sender is
        `hosted_sender`, and every post's From is the list's (docs/delivery.md).
        """
        return self.intake.imap.enabled

    @property
    def hosted_sender(self) -> str:
        """The hosted account's address: `outbound.username` when it is an address (has an
        `@`), else `intake.imap.username`."""
        if "@" in self.outbound.username:
            return self.outbound.username
        return self.intake.imap.username

    @property
    def outbox_dir(self) -> Path:
        """The Maildir that `transport = "maildir"` delivers into."""
        return self.data_dir / "outbox"

    @property
    def run_dir(self) -> Path:
        """Runtime files of the daemon, such as `ports.json`."""
        return self.data_dir / "run"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when `database.url` is SQLite on a file; None otherwise."""
        parts = _sqlite_url_parts(self.database.url)
        if parts is None or parts[1] in ("", ":memory:"):
            return None
        return Path(parts[1])


# --------------------------------------------------------------------------- loading


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the settings from the TOML file at `path` (None: defaults only).

    `overrides` are nested dicts (`intake={"lmtp": {"port": 0}}`) merged over the file's data
    before validation, and validated the same way; their errors name "overrides" as the file.
    Raises `ConfigError` (one line naming key and file) for any unreadable file, invalid TOML,
    unknown key, wrong type, out-of-range or unknown value, literal password or missing secret.
    """
    sources: dict[_Key, str] = {}
    data: dict[str, Any] = {}
    config_path: Path | None = None
    label = _OVERRIDES_LABEL
    if path is None:
        base_dir = Path.cwd()
    else:
        label = os.fspath(path)
        config_path = Path(os.path.abspath(Path(path).expanduser()))
        base_dir = config_path.parent
        data = _read_toml(config_path, label)
        _record_sources(data, (), label, sources)
    if overrides:
        data = _merge(data, overrides, (), sources)
    loader = _Loader(sources, label, base_dir)
    _refuse_literal_passwords(data, (), loader)
    return _build(loader, _Table(loader, (), data), config_path)


# --------------------------------------------------------------------------- building


def _build(loader: _Loader, root: _Table, config_path: Path | None) -> Settings:
    data_dir = root.path("data_dir", DEFAULT_DATA_DIR)
    if data_dir is None:
        raise loader.error(("data_dir",), "must not be empty")
    templates_dir = root.path("templates_dir", "")
    database = _read_database(root.table("database"), data_dir)

    intake_table = root.table("intake")
    defaults = IntakeSettings()
    intake = IntakeSettings(
        lmtp=_read_server(intake_table.table("lmtp"), defaults.lmtp),
        smtp=_read_server(intake_table.table("smtp"), defaults.smtp),
        imap=_read_imap(intake_table.table("imap"), defaults.imap),
    )
    intake_table.finish()

    outbound = _read_outbound(root.table("outbound"), OutboundSettings())
    if intake.imap.enabled and "@" not in outbound.username + intake.imap.username:
        # Hosted mode sends as the account: without an address there is no envelope sender.
        raise loader.error(("intake", "imap", "username"),
                           "must be the mailbox's address (name@domain) when imap is enabled, "
                           "unless outbound.username is one")
    daemon = _read_daemon(root.table("daemon"), DaemonSettings())
    root.finish()
    return Settings(
        config_path=config_path,
        data_dir=data_dir,
        templates_dir=templates_dir,
        database=database,
        intake=intake,
        outbound=outbound,
        daemon=daemon,
    )


def _read_database(table: _Table, data_dir: Path) -> DatabaseSettings:
    url = table.string("url", "")
    table.finish()
    if not url:
        return DatabaseSettings(url=f"sqlite:///{data_dir / 'listserv.db'}")
    if not _URL_SCHEME.match(url):
        raise table.error("url", "expected a database URL such as 'postgresql+psycopg://…'")
    parts = _sqlite_url_parts(url)
    if parts is not None:
        scheme, file, query = parts
        if file not in ("", ":memory:") and not file.startswith("file:"):
            absolute = table.loader.absolute(file)
            url = f"{scheme}:///{absolute}{query}"
    return DatabaseSettings(url=url)


def _read_server(table: _Table, default: ServerSettings) -> ServerSettings:
    settings = ServerSettings(
        enabled=table.boolean("enabled", default.enabled),
        host=table.string("host", default.host),
        port=table.port("port", default.port),
        max_message_kb=table.integer("max_message_kb", default.max_message_kb, minimum=1),
    )
    table.finish()
    return settings


def _read_imap(table: _Table, default: ImapSettings) -> ImapSettings:
    enabled = table.boolean("enabled", default.enabled)
    settings = ImapSettings(
        enabled=enabled,
        host=table.string("host", default.host),
        port=table.port("port", default.port),
        username=table.string("username", default.username),
        password=table.secret(resolve=enabled),
        tls=table.string("tls", default.tls, choices=IMAP_TLS),
        verify_cert=table.boolean("verify_cert", default.verify_cert),
        folder=table.string("folder", default.folder, non_empty=True),
        processed_folder=table.string("processed_folder", default.processed_folder),
        poll_seconds=table.number("poll_seconds", default.poll_seconds),
        idle=table.boolean("idle", default.idle),
    )
    if _same_folder(settings.processed_folder, settings.folder):
        # Each move would make a new message there, to be read and moved again, forever.
        raise table.error("processed_folder", "must not be the folder mail is read from")
    table.finish()
    return settings


def _same_folder(a: str, b: str) -> bool:
    """IMAP folder names are case-sensitive, except INBOX (RFC 3501 §5.1)."""
    return bool(a) and (a == b or a.upper() == b.upper() == "INBOX")


def _read_outbound(table: _Table, default: OutboundSettings) -> OutboundSettings:
    settings = OutboundSettings(
        transport=table.string("transport", default.transport, choices=OUTBOUND_TRANSPORTS),
        host=table.string("host", default.host),
        port=table.port("port", default.port),
        tls=table.string("tls", default.tls, choices=OUTBOUND_TLS),
        verify_cert=table.boolean("verify_cert", default.verify_cert),
        username=table.string("username", default.username),
        password=table.secret(resolve=True),
        max_recipients_per_transaction=table.integer(
            "max_recipients_per_transaction", default.max_recipients_per_transaction, minimum=1
        ),
        max_connections=table.integer("max_connections", default.max_connections, minimum=1),
        messages_per_minute=table.integer("messages_per_minute", default.messages_per_minute),
        recipients_per_day=table.integer("recipients_per_day", default.recipients_per_day),
        retry_base_seconds=table.integer(
            "retry_base_seconds", default.retry_base_seconds, minimum=1
        ),
        give_up_days=table.number("give_up_days", default.give_up_days),
        claim_lease_seconds=table.integer(
            "claim_lease_seconds", default.claim_lease_seconds, minimum=1
        ),
        eightbitmime=table.boolean("eightbitmime", default.eightbitmime),
    )
    table.finish()
    return settings


def _read_daemon(table: _Table, default: DaemonSettings) -> DaemonSettings:
    settings = DaemonSettings(
        poll_seconds=table.number("poll_seconds", default.poll_seconds),
        scheduler_tick_seconds=table.number(
            "scheduler_tick_seconds", default.scheduler_tick_seconds
        ),
        hostname=table.string("hostname", default.hostname),
    )
    table.finish()
    return settings


# --------------------------------------------------------------------------- validation


class _Loader:
    """The state of one `load_settings` call: where each key came from, and the base folder."""

    def __init__(self, sources: dict[_Key, str], default_label: str, base_dir: Path) -> None:
        self.sources = sources
        self.default_label = default_label
        self.base_dir = base_dir

    def label(self, key: _Key) -> str:
        """The file (or "overrides") that set `key`, or failing that its nearest table."""
        while key:
            if key in self.sources:
                return self.sources[key]
            key = key[:-1]
        return self.default_label

    def error(self, key: _Key, message: str) -> ConfigError:
        """A one-line error about `key`, naming the file it came from."""
        return ConfigError(_one_line(f"{self.label(key)}: {_dotted(key)}: {message}"))

    def absolute(self, value: str | os.PathLike[str]) -> Path:
        """`value` as an absolute path; relative paths start at the config file's folder."""
        path = Path(value).expanduser()
        return Path(os.path.abspath(self.base_dir / path))


class _Table:
    """Typed, checked access to one TOML table; `finish()` refuses the keys nobody read."""

    def __init__(self, loader: _Loader, key: _Key, data: Mapping[str, Any]) -> None:
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

    def table(self, name: str) -> _Table:
        """The sub-table `name` (empty when missing, so every key takes its default)."""
        present, value = self._get(name)
        if not present:
            value = {}
        elif not isinstance(value, Mapping):
            raise self._wrong_type(name, "a table", value)
        return _Table(self.loader, (*self.key, name), value)

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

    def secret(self, *, resolve: bool) -> str:
        """The secret named by `password_env` or `password_file` ("" when neither is set).

        With `resolve=False` both keys are still checked, but nothing is read.
        """
        env_name = self.string("password_env", "")
        file_path = self.path("password_file", "")
        if env_name and file_path is not None:
            raise self.loader.error(self.key, "set password_env or password_file, not both")
        if not resolve:
            return ""
        if env_name:
            value = os.environ.get(env_name)
            if value is None:
                raise self.error("password_env", f"environment variable {env_name!r} is not set")
            return self._check_secret("password_env", value, f"environment variable {env_name!r}")
        if file_path is not None:
            try:
                text = file_path.read_text(encoding="utf-8")
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise self.error("password_file", f"cannot read '{file_path}': {reason}") from exc
            except UnicodeDecodeError as exc:
                raise self.error("password_file", f"'{file_path}' is not UTF-8 text") from exc
            value = text.removesuffix("\n").removesuffix("\r")
            return self._check_secret("password_file", value, f"'{file_path}'")
        return ""

    def _check_secret(self, name: str, value: str, where: str) -> str:
        if not value:
            raise self.error(name, f"{where} is empty")
        if "\n" in value or "\r" in value:
            raise self.error(name, f"{where} holds more than one line")
        return value

    def finish(self) -> None:
        """Refuse any key of this table that no reader asked for."""
        for name in self.data:
            if name not in self._read:
                key = (*self.key, str(name))
                raise ConfigError(
                    _one_line(f"{self.loader.label(key)}: unknown key '{_dotted(key)}'")
                )


# --------------------------------------------------------------------------- helpers


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    """The parsed file, or a one-line `ConfigError` naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(_one_line(f"{label}: cannot read the file: {reason}")) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_one_line(f"{label}: invalid TOML: {exc}")) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(_one_line(f"{label}: invalid TOML: not UTF-8 text")) from exc


def _record_sources(value: Any, key: _Key, label: str, sources: dict[_Key, str]) -> None:
    """Note `label` as the origin of `key` and of every key nested under it."""
    if key:
        sources[key] = label
    if isinstance(value, Mapping):
        for name, item in value.items():
            _record_sources(item, (*key, str(name)), label, sources)


def _merge(
    base: Mapping[str, Any], overrides: Mapping[str, Any], key: _Key, sources: dict[_Key, str]
) -> dict[str, Any]:
    """A new dict: `base` with `overrides` merged in, tables recursively; nothing is mutated."""
    merged = dict(base)
    for raw_name, value in overrides.items():
        name = str(raw_name)
        item_key = (*key, name)
        current = merged.get(name)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[name] = _merge(current, value, item_key, sources)
        else:
            merged[name] = _copy_tree(value)
            _record_sources(value, item_key, _OVERRIDES_LABEL, sources)
    return merged


def _copy_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(name): _copy_tree(item) for name, item in value.items()}
    return value


def _refuse_literal_passwords(value: Any, key: _Key, loader: _Loader) -> None:
    """A `password` key anywhere (even in an unknown table) is refused before anything else."""
    if isinstance(value, Mapping):
        if "password" in value:
            label = loader.label((*key, "password"))
            where = f"{_dotted(key)}: " if key else ""
            raise ConfigError(_one_line(f"{label}: {where}{_LITERAL_PASSWORD}"))
        for name, item in value.items():
            _refuse_literal_passwords(item, (*key, str(name)), loader)
    elif isinstance(value, list):
        for item in value:
            _refuse_literal_passwords(item, key, loader)


def _sqlite_url_parts(url: str) -> tuple[str, str, str] | None:
    """(scheme, file, "?query") of a SQLite URL such as `sqlite:////abs/x.db`; else None."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.split("+", 1)[0].lower() != "sqlite":
        return None
    if rest and not rest.startswith("/"):
        return None
    file, question, query = rest[1:].partition("?")
    return scheme, file, question + query


def _dotted(key: _Key) -> str:
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


def _one_line(message: str) -> str:
    return " ".join(message.splitlines())
