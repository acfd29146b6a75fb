"""Reading the operator's config file into `Settings`: `load_settings`.

The file (or none: defaults only) is parsed, the overrides merged over it, literal passwords
refused, then each table read through `config.tables` into the dataclasses of
`config.settings`, secrets through `config.passwords`. Relative paths start at the config
file's folder, or at the current directory when there is no file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from listserv.config.dkim import read_dkim
from listserv.config.passwords import read_secret, refuse_literal_passwords
from listserv.config.settings import (
    DEFAULT_DATA_DIR,
    IMAP_TLS,
    OUTBOUND_TLS,
    OUTBOUND_TRANSPORTS,
    BackupSettings,
    DaemonSettings,
    DatabaseSettings,
    ImapSettings,
    IntakeSettings,
    OutboundSettings,
    RetentionSettings,
    ServerSettings,
    Settings,
    StatusSettings,
    WebSettings,
    sqlite_url_parts,
)
from listserv.config.tables import Key, Loader, Table, one_line
from listserv.errors import ConfigError

_OVERRIDES_LABEL: Final = "overrides"
_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the settings from the TOML file at `path` (None: defaults only).

    `overrides` are nested dicts (`intake={"lmtp": {"port": 0}}`) merged over the file's data
    before validation, and validated the same way; their errors name "overrides" as the file.
    Raises `ConfigError` (one line naming key and file) for any unreadable file, invalid TOML,
    unknown key, wrong type, out-of-range or unknown value, literal password or missing secret.
    """
    sources: dict[Key, str] = {}
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
    loader = Loader(sources, label, base_dir)
    refuse_literal_passwords(data, (), loader)
    return _build(loader, Table(loader, (), data), config_path)


def _build(loader: Loader, root: Table, config_path: Path | None) -> Settings:
    data_dir = root.path("data_dir", DEFAULT_DATA_DIR)
    if data_dir is None:
        raise loader.error(("data_dir",), "must not be empty")
    templates_dir = root.path("templates_dir", "")
    database = _read_database(root.table("database"), data_dir)

    intake_table = root.table("intake")
    defaults = IntakeSettings()
    intake = IntakeSettings(
        max_recipients=intake_table.integer("max_recipients", defaults.max_recipients,
                                            minimum=1),
        max_messages_per_sender_per_hour=intake_table.integer(
            "max_messages_per_sender_per_hour", defaults.max_messages_per_sender_per_hour),
        trusted_authserv_id=intake_table.string("trusted_authserv_id",
                                                defaults.trusted_authserv_id).strip().lower(),
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
    retention = _read_retention(root.table("retention"), RetentionSettings())
    backup = _read_backup(root.table("backup"), BackupSettings())
    status_table = root.table("status")
    status = StatusSettings(max_queue_age_minutes=status_table.integer(
        "max_queue_age_minutes", StatusSettings().max_queue_age_minutes, minimum=1))
    status_table.finish()
    dkim = read_dkim(root.table("dkim"))
    web = _read_web(root.table("web"), WebSettings())
    root.finish()
    return Settings(
        config_path=config_path,
        data_dir=data_dir,
        templates_dir=templates_dir,
        database=database,
        intake=intake,
        outbound=outbound,
        daemon=daemon,
        retention=retention,
        backup=backup,
        status=status,
        dkim=dkim,
        web=web,
    )


def _read_database(table: Table, data_dir: Path) -> DatabaseSettings:
    url = table.string("url", "")
    table.finish()
    if not url:
        return DatabaseSettings(url=f"sqlite:///{data_dir / 'listserv.db'}")
    if not _URL_SCHEME.match(url):
        raise table.error("url", "expected a database URL such as 'postgresql+psycopg://…'")
    parts = sqlite_url_parts(url)
    if parts is not None:
        scheme, file, query = parts
        if file not in ("", ":memory:") and not file.startswith("file:"):
            absolute = table.loader.absolute(file)
            url = f"{scheme}:///{absolute}{query}"
    return DatabaseSettings(url=url)


def _read_server(table: Table, default: ServerSettings) -> ServerSettings:
    settings = ServerSettings(
        enabled=table.boolean("enabled", default.enabled),
        host=table.string("host", default.host),
        port=table.port("port", default.port),
        max_message_kb=table.integer("max_message_kb", default.max_message_kb, minimum=1),
    )
    table.finish()
    return settings


def _read_imap(table: Table, default: ImapSettings) -> ImapSettings:
    enabled = table.boolean("enabled", default.enabled)
    settings = ImapSettings(
        enabled=enabled,
        host=table.string("host", default.host),
        port=table.port("port", default.port),
        username=table.string("username", default.username),
        password=read_secret(table, resolve=enabled),
        tls=table.string("tls", default.tls, choices=IMAP_TLS),
        verify_cert=table.boolean("verify_cert", default.verify_cert),
        folder=table.string("folder", default.folder, non_empty=True),
        processed_folder=table.string("processed_folder", default.processed_folder),
        poll_seconds=table.number("poll_seconds", default.poll_seconds),
        idle=table.boolean("idle", default.idle),
    )
    if enabled:
        _refuse_clear_text(table, settings.host, settings.tls)
    if _same_folder(settings.processed_folder, settings.folder):
        # Each move would make a new message there, to be read and moved again, forever.
        raise table.error("processed_folder", "must not be the folder mail is read from")
    table.finish()
    return settings


def _same_folder(a: str, b: str) -> bool:
    """IMAP folder names are case-sensitive, except INBOX (RFC 3501 §5.1)."""
    return bool(a) and (a == b or a.upper() == b.upper() == "INBOX")


def _read_outbound(table: Table, default: OutboundSettings) -> OutboundSettings:
    settings = OutboundSettings(
        transport=table.string("transport", default.transport, choices=OUTBOUND_TRANSPORTS),
        host=table.string("host", default.host),
        port=table.port("port", default.port),
        tls=table.string("tls", default.tls, choices=OUTBOUND_TLS),
        verify_cert=table.boolean("verify_cert", default.verify_cert),
        username=table.string("username", default.username),
        password=read_secret(table, resolve=True),
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
    if settings.transport == "smtp":
        _refuse_clear_text(table, settings.host, settings.tls)
    table.finish()
    return settings


def _refuse_clear_text(table: Table, host: str, tls: str) -> None:
    """`tls = "none"` only to this machine: elsewhere the password and the mail would cross
    the network readable by anyone on the way (SPEC §7 "Files")."""
    if tls == "none" and not is_loopback(host):
        raise table.error("tls", f'"none" (clear text) is refused to {host!r}, which is not '
                                 'this machine; use "starttls" or "implicit"')


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine without a lookup: `localhost` (RFC 6761) or a
    loopback address (127.0.0.0/8, ::1, IPv4-mapped 127.x)."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _read_daemon(table: Table, default: DaemonSettings) -> DaemonSettings:
    settings = DaemonSettings(
        poll_seconds=table.number("poll_seconds", default.poll_seconds),
        scheduler_tick_seconds=table.number(
            "scheduler_tick_seconds", default.scheduler_tick_seconds
        ),
        hostname=table.string("hostname", default.hostname),
    )
    table.finish()
    return settings


def _read_retention(table: Table, default: RetentionSettings) -> RetentionSettings:
    settings = RetentionSettings(
        inbound_days=table.integer("inbound_days", default.inbound_days, minimum=1),
        outgoing_days=table.integer("outgoing_days", default.outgoing_days, minimum=1),
    )
    table.finish()
    return settings


def _read_backup(table: Table, default: BackupSettings) -> BackupSettings:
    settings = BackupSettings(
        every_hours=table.integer("every_hours", default.every_hours),
        keep=table.integer("keep", default.keep, minimum=1),
        folder=table.path("folder", ""),
    )
    table.finish()
    return settings


def _read_web(table: Table, default: WebSettings) -> WebSettings:
    base_url = table.string("base_url", default.base_url).strip().rstrip("/")
    if base_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", base_url):
        raise table.error("base_url", "expected the public URL the endpoint is reached at, "
                                      "such as 'https://lists.example.org/listserv'")
    settings = WebSettings(
        enabled=table.boolean("enabled", default.enabled),
        host=table.string("host", default.host, non_empty=True),
        port=table.port("port", default.port),
        base_url=base_url,
    )
    table.finish()
    return settings


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    """The parsed file, or a one-line `ConfigError` naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(one_line(f"{label}: cannot read the file: {reason}")) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(one_line(f"{label}: invalid TOML: {exc}")) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(one_line(f"{label}: invalid TOML: not UTF-8 text")) from exc


def _record_sources(value: Any, key: Key, label: str, sources: dict[Key, str]) -> None:
    """Note `label` as the origin of `key` and of every key nested under it."""
    if key:
        sources[key] = label
    if isinstance(value, Mapping):
        for name, item in value.items():
            _record_sources(item, (*key, str(name)), label, sources)


def _merge(
    base: Mapping[str, Any], overrides: Mapping[str, Any], key: Key, sources: dict[Key, str]
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
