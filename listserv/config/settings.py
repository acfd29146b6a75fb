"""The settings' schema: one frozen dataclass per table of the config file (SPEC §7).

Each field's default is the default of its key; `config.example.toml` documents every key. The
values are checked and resolved (paths made absolute, secrets read) by `config.loading`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

DEFAULT_DATA_DIR: Final = "listserv-data"
"""Where the store, outbox and run files live unless `data_dir` says otherwise."""

OUTBOUND_TRANSPORTS: Final = ("maildir", "smtp")
OUTBOUND_TLS: Final = ("none", "starttls", "implicit")
IMAP_TLS: Final = ("implicit", "starttls", "none")


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
    """`[intake.*]`: the ways mail comes in (LMTP and SMTP from an MTA, IMAP from a mailbox).

    `max_recipients` bounds the distinct recipients of one LMTP/SMTP transaction (the rest
    get `452 4.5.3`); `max_messages_per_sender_per_hour` bounds the transactions one envelope
    sender may complete in any hour (then `451 4.7.1`; 0 = no limit; the null sender of
    delivery reports is exempt). `trusted_authserv_id` names the receiving MTA whose topmost
    `Authentication-Results` header is believed (`dmarc=pass` proves a sender, SPEC §2);
    "" believes none.
    """

    max_recipients: int = 50
    max_messages_per_sender_per_hour: int = 120
    trusted_authserv_id: str = ""
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
class RetentionSettings:
    """`[retention]`: how long handled mail is kept before the scheduler prunes it (SPEC §7)."""

    inbound_days: int = 30
    outgoing_days: int = 14


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """`[backup]`: backups the scheduler takes (docs/operations.md).

    Every `every_hours` (0 = none) a backup goes into `folder` (default: `listserv-backups`
    beside the data folder), and only the newest `keep` stay there.
    """

    every_hours: int = 0
    keep: int = 7
    folder: Path | None = None


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """`[status]`: what `listserv status` counts as wrong (a non-zero exit for monitoring)."""

    max_queue_age_minutes: int = 30


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One signing key: its selector and private key file (read by `config.dkim.private_key`
    when a signer is made, so `listserv dkim keygen` can write a file the config names).

    `domain` is "" for the default key of `[dkim]`; `setting` is the dotted key that named the
    file and `source` the file it was written in, for errors.
    """

    domain: str
    selector: str
    private_key_file: Path
    setting: str
    source: str


@dataclass(frozen=True, slots=True)
class DkimSettings:
    """`[dkim]`: DKIM signing and ARC sealing of outgoing mail (SPEC §3 "Signing").

    `default` is the key of `selector` and `private_key_file` (None when `selector = ""`);
    `keys` the per-domain overrides of `[dkim.keys."DOMAIN"]` (each inherits what it leaves
    out). `domains` limits signing to those domains (`()` = every domain with a key); a domain
    of `keys` is always signed. `arc` seals distributed copies with an ARC set.
    """

    default: DkimKey | None = None
    domains: tuple[str, ...] = ()
    keys: tuple[DkimKey, ...] = ()
    arc: bool = True

    def key_for(self, domain: str) -> DkimKey | None:
        """The key that signs mail from `domain`; None when that domain is not signed."""
        domain = domain.strip().rstrip(".").lower()
        for key in self.keys:
            if key.domain == domain:
                return key
        if self.default is None or (self.domains and domain not in self.domains):
            return None
        return self.default

    def seals(self, domain: str) -> bool:
        """Whether the copies of posts to a list at `domain` get an ARC set."""
        return self.arc and self.key_for(domain) is not None

    @property
    def enabled(self) -> bool:
        """Whether any domain is signed."""
        return self.default is not None or bool(self.keys)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """`[web]`: the small HTTP endpoint for one-click unsubscribe and confirmation pages.

    Off unless `enabled`. `port = 0` asks for a free port (written to `run/ports.json` as
    `web`). `base_url` is the public URL a reverse proxy forwards to `host:port`, without a
    trailing slash; "" means the endpoint's own `http://host:port` (one machine, tests). Only
    an `https://` `base_url` puts the endpoint into List-Unsubscribe (SPEC §3, RFC 8058).
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""


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
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    web: WebSettings = field(default_factory=WebSettings)

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
    def backup_dir(self) -> Path:
        """Where scheduled backups go: `[backup] folder`, else beside the data folder."""
        return self.backup.folder or self.data_dir.parent / "listserv-backups"

    @property
    def run_dir(self) -> Path:
        """Runtime files of the daemon, such as `ports.json`."""
        return self.data_dir / "run"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when `database.url` is SQLite on a file; None otherwise."""
        parts = sqlite_url_parts(self.database.url)
        if parts is None or parts[1] in ("", ":memory:"):
            return None
        return Path(parts[1])


def sqlite_url_parts(url: str) -> tuple[str, str, str] | None:
    """(scheme, file, "?query") of a SQLite URL such as `sqlite:////abs/x.db`; else None."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.split("+", 1)[0].lower() != "sqlite":
        return None
    if rest and not rest.startswith("/"):
        return None
    file, question, query = rest[1:].partition("?")
    return scheme, file, question + query
