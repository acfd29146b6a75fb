"""Tests of `listserv.config.load_settings` against SPEC §7."""

from __future__ import annotations

import dataclasses
import shutil
import tomllib
from pathlib import Path

import pytest

from listserv.config import (
    BackupSettings,
    DaemonSettings,
    ImapSettings,
    IntakeSettings,
    OutboundSettings,
    RetentionSettings,
    ServerSettings,
    StatusSettings,
    WebSettings,
    load_settings,
)
from listserv.errors import ConfigError, ListservError

from .helpers import write_secret

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
LITERAL = (
    "a literal 'password' is not allowed; "
    "use password_env (an environment variable's name) or password_file"
)


def write_config(folder: Path, text: str, name: str = "config.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args: object, **overrides: object) -> str:
    """The message of the ConfigError that load_settings raises; it must be one line."""
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **overrides)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


# --------------------------------------------------------------------------- defaults


def test_no_config_gives_the_spec_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTSERV_CONFIG", str(tmp_path / "never-read.toml"))

    settings = load_settings()

    data_dir = tmp_path / "listserv-data"
    assert settings.config_path is None
    assert settings.data_dir == data_dir
    assert settings.templates_dir is None
    assert settings.database.url == f"sqlite:///{data_dir}/listserv.db"
    assert settings.database.url.startswith("sqlite:////")
    assert settings.sqlite_path == data_dir / "listserv.db"
    assert settings.outbox_dir == data_dir / "outbox"
    assert settings.run_dir == data_dir / "run"
    assert settings.intake.lmtp == ServerSettings(True, "127.0.0.1", 8024, 25600)
    assert settings.intake.smtp == ServerSettings(True, "127.0.0.1", 8025, 25600)
    assert settings.intake.imap == ImapSettings(
        enabled=False,
        host="imap.example.org",
        port=993,
        username="",
        password="",
        tls="implicit",
        verify_cert=True,
        folder="INBOX",
        processed_folder="",
        poll_seconds=60,
        idle=True,
    )
    assert settings.outbound == OutboundSettings(
        transport="maildir",
        host="127.0.0.1",
        port=25,
        tls="none",
        verify_cert=True,
        username="",
        password="",
        max_recipients_per_transaction=500,
        max_connections=4,
        messages_per_minute=0,
        recipients_per_day=0,
        retry_base_seconds=300,
        give_up_days=5.0,
        claim_lease_seconds=60,
    )
    assert settings.daemon == DaemonSettings(
        poll_seconds=2.0, scheduler_tick_seconds=60.0, hostname=""
    )


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=str(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.data_dir = Path("/elsewhere")  # type: ignore[misc]


def test_missing_tables_and_keys_take_their_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[intake.smtp]\nport = 2525\n[outbound]\nhost = "relay"\n')

    settings = load_settings(path)

    assert settings.config_path == path
    assert settings.data_dir == tmp_path / "listserv-data"
    assert settings.intake.lmtp == IntakeSettings().lmtp
    assert settings.intake.smtp == ServerSettings(True, "127.0.0.1", 2525, 25600)
    assert settings.intake.imap == ImapSettings()
    assert settings.outbound == dataclasses.replace(OutboundSettings(), host="relay")
    assert settings.daemon == DaemonSettings()


def test_empty_file_equals_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, "")
    assert load_settings(path) == dataclasses.replace(load_settings(), config_path=path)


# --------------------------------------------------------------------------- the example


def test_example_loads_and_equals_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LISTSERV_IMAP_PASSWORD", raising=False)  # imap is off: not read
    copy = tmp_path / "config.toml"
    shutil.copyfile(EXAMPLE, copy)

    assert load_settings(copy) == dataclasses.replace(load_settings(), config_path=copy)


def accepted_keys() -> set[str]:
    """Every dotted key the loader accepts, derived from the settings dataclasses."""

    def fields(prefix: str, cls: type) -> set[str]:
        names = {f.name for f in dataclasses.fields(cls)}
        if "password" in names:
            names = (names - {"password"}) | {"password_env", "password_file"}
        return {f"{prefix}{name}" for name in names}

    return (
        {"data_dir", "templates_dir", "database.url"}
        | {"intake.max_recipients", "intake.max_messages_per_sender_per_hour",
           "intake.trusted_authserv_id"}
        | fields("intake.lmtp.", ServerSettings)
        | fields("intake.smtp.", ServerSettings)
        | fields("intake.imap.", ImapSettings)
        | fields("outbound.", OutboundSettings)
        | fields("daemon.", DaemonSettings)
        | fields("retention.", RetentionSettings)
        | fields("backup.", BackupSettings)
        | fields("status.", StatusSettings)
        # DkimSettings holds resolved keys, not the file's keys: listed here.
        | {"dkim.selector", "dkim.private_key_file", "dkim.domains", "dkim.arc"}
        | fields("web.", WebSettings)
    )


def test_example_documents_every_key_with_a_comment() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)

    def dotted(table: dict[str, object], prefix: str = "") -> set[str]:
        keys: set[str] = set()
        for name, value in table.items():
            if isinstance(value, dict):
                keys |= dotted(value, f"{prefix}{name}.")
            else:
                keys.add(f"{prefix}{name}")
        return keys

    assert dotted(data) == accepted_keys()
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"undocumented: {line!r}"
    # The SPEC's order: the fixed keys come first, in the SPEC's sequence.
    spec_order = ["data_dir", "templates_dir", "[database]", "[intake.lmtp]", "[intake.smtp]",
                  "[intake.imap]", "[outbound]", "[daemon]"]  # fmt: skip
    positions = [text.index(f"\n{marker}") for marker in spec_order]
    assert positions == sorted(positions)


# --------------------------------------------------------------------------- errors


def test_unknown_key_names_the_dotted_key_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, "[intake.lmtp]\nprot = 8024\n")

    message = config_error("config.toml")

    assert message == "config.toml: unknown key 'intake.lmtp.prot'"
    assert isinstance(ConfigError(message), ListservError)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 'blue'\n", "colour"),
        ("[databse]\nurl = ''\n", "databse"),
        ("[intake.pop3]\nenabled = true\n", "intake.pop3"),
        ("[outbound]\nretries = 3\n", "outbound.retries"),
        ("[daemon]\nthreads = 3\n", "daemon.threads"),
        ("[intake.imap]\npassword_envv = 'X'\n", "intake.imap.password_envv"),
    ],
)
def test_unknown_keys_anywhere(tmp_path: Path, text: str, key: str) -> None:
    path = write_config(tmp_path, text)
    assert config_error(path) == f"{path}: unknown key '{key}'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[intake.lmtp]\nport = "8024"\n', "intake.lmtp.port: expected an integer, got a string"),
        ("[intake.lmtp]\nport = true\n", "intake.lmtp.port: expected an integer, got a boolean"),
        ("[outbound]\nmax_connections = 4.0\n",
         "outbound.max_connections: expected an integer, got a float"),
        ('[intake.smtp]\nenabled = "yes"\n',
         "intake.smtp.enabled: expected true or false, got a string"),
        ("[intake.imap]\nverify_cert = 1\n",
         "intake.imap.verify_cert: expected true or false, got an integer"),
        ("[daemon]\npoll_seconds = true\n",
         "daemon.poll_seconds: expected a number, got a boolean"),
        ('[daemon]\nhostname = 3\n', "daemon.hostname: expected a string, got an integer"),
        ("data_dir = 3\n", "data_dir: expected a string (a path), got an integer"),
        ("intake = 3\n", "intake: expected a table, got an integer"),
        ("[outbound]\nhost = ['a', 'b']\n", "outbound.host: expected a string, got an array"),
    ],
)  # fmt: skip
def test_wrong_type_names_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)
    assert config_error(path) == f"{path}: {message}"


def test_integer_is_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[daemon]\npoll_seconds = 1\n[outbound]\ngive_up_days = 2\n")
    settings = load_settings(path)
    assert settings.daemon.poll_seconds == 1.0
    assert isinstance(settings.daemon.poll_seconds, float)
    assert settings.outbound.give_up_days == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[outbound]\ntransport = "smtpp"\n',
         "outbound.transport: 'smtpp' is not one of 'maildir', 'smtp'"),
        ('[outbound]\ntls = "ssl"\n', "outbound.tls: 'ssl' is not one of 'none', 'starttls', "
         "'implicit'"),
        ('[intake.imap]\ntls = "tls"\n',
         "intake.imap.tls: 'tls' is not one of 'implicit', 'starttls', 'none'"),
        ("[intake.lmtp]\nport = 65536\n",
         "intake.lmtp.port: must be between 0 and 65535, got 65536"),
        ("[outbound]\nport = -1\n", "outbound.port: must be between 0 and 65535, got -1"),
        ("[outbound]\nrecipients_per_day = -5\n",
         "outbound.recipients_per_day: must not be negative, got -5"),
        ("[outbound]\nmessages_per_minute = -1\n",
         "outbound.messages_per_minute: must not be negative, got -1"),
        ("[outbound]\nmax_connections = 0\n",
         "outbound.max_connections: must be at least 1, got 0"),
        ("[intake.smtp]\nmax_message_kb = -1\n",
         "intake.smtp.max_message_kb: must be at least 1, got -1"),
        ("[intake]\nmax_recipients = 0\n", "intake.max_recipients: must be at least 1, got 0"),
        ("[intake]\nmax_messages_per_sender_per_hour = -1\n",
         "intake.max_messages_per_sender_per_hour: must not be negative, got -1"),
        ("[daemon]\nscheduler_tick_seconds = -1.5\n",
         "daemon.scheduler_tick_seconds: must be a number greater than 0, got -1.5"),
        ('[database]\nurl = "listserv.db"\n',
         "database.url: expected a database URL such as 'postgresql+psycopg://…'"),
        ('data_dir = ""\n', "data_dir: must not be empty"),
        ('[intake.imap]\nfolder = "INBOX"\nprocessed_folder = "inbox"\n',
         "intake.imap.processed_folder: must not be the folder mail is read from"),
        ('[intake.imap]\nenabled = true\nusername = "group"\npassword_env = "HOME"\n',
         "intake.imap.username: must be the mailbox's address (name@domain) when imap is "
         "enabled, unless outbound.username is one"),
    ],
)  # fmt: skip
def test_out_of_range_values_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)
    assert config_error(path) == f"{path}: {message}"


def test_port_zero_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[intake.lmtp]\nport = 0\n[intake.smtp]\nport = 0\n")
    settings = load_settings(path)
    assert settings.intake.lmtp.port == 0
    assert settings.intake.smtp.port == 0


def test_enabled_false_turns_a_server_off(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[intake.smtp]\nenabled = false\n")
    settings = load_settings(path)
    assert settings.intake.smtp.enabled is False
    assert settings.intake.lmtp.enabled is True


def test_invalid_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[intake.lmtp\nport = 8024\n")
    message = config_error(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 1" in message


def test_unreadable_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    assert config_error(missing) == f"{missing}: cannot read the file: No such file or directory"
    assert config_error(tmp_path) == f"{tmp_path}: cannot read the file: Is a directory"


def test_non_utf8_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'data_dir = "\xff"\n')
    assert config_error(path) == f"{path}: invalid TOML: not UTF-8 text"


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[intake.imap]\npassword = "hunter2"\n', "intake.imap: "),
        ('[outbound]\nusername = "u"\npassword = "hunter2"\n', "outbound: "),
        ('password = "hunter2"\n', ""),
        ('[database]\npassword = "hunter2"\n', "database: "),
        ('[somewhere.else]\npassword = "hunter2"\n', "somewhere.else: "),
    ],
)
def test_literal_password_is_refused(tmp_path: Path, text: str, where: str) -> None:
    path = write_config(tmp_path, text)
    message = config_error(path)
    assert message == f"{path}: {where}{LITERAL}"
    assert "hunter2" not in message


def test_literal_password_in_overrides_is_refused(tmp_path: Path) -> None:
    message = config_error(None, data_dir=str(tmp_path), outbound={"password": "hunter2"})
    assert message == f"overrides: outbound: {LITERAL}"


def test_password_env_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_IMAP_SECRET", "s3cret imap")
    monkeypatch.setenv("TEST_SMTP_SECRET", "s3cret smtp")
    path = write_config(
        tmp_path,
        '[intake.imap]\nenabled = true\nusername = "group@example.org"\n'
        'password_env = "TEST_IMAP_SECRET"\n'
        '[outbound]\ntransport = "smtp"\npassword_env = "TEST_SMTP_SECRET"\n',
    )
    settings = load_settings(path)
    assert settings.intake.imap.password == "s3cret imap"
    assert settings.outbound.password == "s3cret smtp"
    assert "s3cret" not in repr(settings)


def test_missing_environment_variable_names_key_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_NO_SUCH_SECRET", raising=False)
    path = write_config(tmp_path, '[outbound]\npassword_env = "TEST_NO_SUCH_SECRET"\n')
    assert config_error(path) == (
        f"{path}: outbound.password_env: environment variable 'TEST_NO_SUCH_SECRET' is not set"
    )


def test_empty_environment_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EMPTY_SECRET", "")
    path = write_config(tmp_path, '[outbound]\npassword_env = "TEST_EMPTY_SECRET"\n')
    assert config_error(path) == (
        f"{path}: outbound.password_env: environment variable 'TEST_EMPTY_SECRET' is empty"
    )


def test_disabled_imap_does_not_resolve_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_NO_SUCH_SECRET", raising=False)
    path = write_config(tmp_path, '[intake.imap]\npassword_env = "TEST_NO_SUCH_SECRET"\n')
    assert load_settings(path).intake.imap.password == ""

    enabled = write_config(
        tmp_path, '[intake.imap]\nenabled = true\npassword_env = "TEST_NO_SUCH_SECRET"\n', "on.toml"
    )
    assert config_error(enabled) == (
        f"{enabled}: intake.imap.password_env: environment variable 'TEST_NO_SUCH_SECRET' "
        "is not set"
    )


def test_password_file_is_read_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    (folder / "secrets").mkdir(parents=True)
    write_secret(folder / "secrets" / "imap.txt", "imap pass\n")
    write_secret(folder / "secrets" / "smtp.txt", "smtp pass\r\n")
    path = write_config(
        folder,
        '[intake.imap]\nenabled = true\nusername = "group@example.org"\n'
        'password_file = "secrets/imap.txt"\n'
        '[outbound]\npassword_file = "secrets/smtp.txt"\n',
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the config's folder counts, not the cwd

    settings = load_settings(path)

    assert settings.intake.imap.password == "imap pass"
    assert settings.outbound.password == "smtp pass"


def test_missing_password_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[outbound]\npassword_file = "nope.txt"\n')
    assert config_error(path) == (
        f"{path}: outbound.password_file: cannot read '{tmp_path / 'nope.txt'}': "
        "No such file or directory"
    )


def test_multi_line_password_file_is_refused(tmp_path: Path) -> None:
    write_secret(tmp_path / "pw", "one\ntwo\n")
    path = write_config(tmp_path, '[outbound]\npassword_file = "pw"\n')
    assert config_error(path) == (
        f"{path}: outbound.password_file: '{tmp_path / 'pw'}' holds more than one line"
    )


def test_password_env_and_password_file_together_are_refused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, '[intake.imap]\npassword_env = "X"\npassword_file = "secret.txt"\n'
    )
    assert config_error(path) == (
        f"{path}: intake.imap: set password_env or password_file, not both"
    )


IMAP_ON = '[intake.imap]\nenabled = true\nusername = "group@example.org"\n'


@pytest.mark.parametrize("table", [IMAP_ON, "[outbound]\n"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_password_file_others_can_read_is_refused(tmp_path: Path, table: str, mode: int) -> None:
    secret = write_secret(tmp_path / "pw", "app-password\n")
    path = write_config(tmp_path, table + 'password_file = "pw"\n')
    secret.chmod(mode)
    key = "intake.imap" if "imap" in table else "outbound"
    assert config_error(path) == (
        f"{path}: {key}.password_file: '{secret}' is readable by group or others "
        f"(mode {mode:04o}); make it private: chmod 600 '{secret}'"
    )

    secret.chmod(0o600)
    settings = load_settings(path)
    assert "app-password" in (settings.intake.imap.password, settings.outbound.password)


@pytest.mark.parametrize("table", [
    IMAP_ON + 'password_env = "TEST_PW"\nport = 143\n',
    '[outbound]\ntransport = "smtp"\n',
    '[outbound]\ntransport = "smtp"\nusername = "group@example.org"\npassword_env = "TEST_PW"\n',
])
def test_clear_text_is_refused_to_a_host_that_is_not_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    monkeypatch.setenv("TEST_PW", "app-password")
    key = "intake.imap" if "imap" in table else "outbound"
    for host in ("192.0.2.1", "relay.example.org", "10.0.0.5", "::ffff:192.0.2.1"):
        path = write_config(tmp_path, table + f'host = "{host}"\ntls = "none"\n')
        assert config_error(path) == (
            f"{path}: {key}.tls: \"none\" (clear text) is refused to '{host}', which is not "
            'this machine; use "starttls" or "implicit"'
        )
    for host in ("127.0.0.1", "127.0.0.53", "localhost", "LOCALHOST.", "::1", "[::1]",
                 "::ffff:127.0.0.1"):
        path = write_config(tmp_path, table + f'host = "{host}"\ntls = "none"\n')
        settings = load_settings(path)
        assert host in (settings.intake.imap.host, settings.outbound.host)
    for tls in ("starttls", "implicit"):
        path = write_config(tmp_path, table + f'host = "192.0.2.1"\ntls = "{tls}"\n')
        loaded = load_settings(path)
        assert tls in (loaded.intake.imap.tls, loaded.outbound.tls)


def test_clear_text_settings_that_are_not_used_are_accepted(tmp_path: Path) -> None:
    """A disabled poller and the Maildir transport connect nowhere."""
    path = write_config(tmp_path, '[intake.imap]\nhost = "192.0.2.1"\ntls = "none"\n'
                                  '[outbound]\nhost = "192.0.2.1"\ntls = "none"\n')
    settings = load_settings(path)
    assert (settings.intake.imap.enabled, settings.outbound.transport) == (False, "maildir")


# --------------------------------------------------------------------------- paths


def test_relative_paths_are_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "listserv"
    folder.mkdir(parents=True)
    write_config(folder, 'data_dir = "data"\ntemplates_dir = "../templates"\n')
    monkeypatch.chdir(tmp_path)

    settings = load_settings(Path("etc/listserv/config.toml"))

    assert settings.config_path == folder / "config.toml"
    assert settings.data_dir == folder / "data"
    assert settings.templates_dir == tmp_path / "etc" / "templates"
    assert settings.database.url == f"sqlite:///{folder}/data/listserv.db"
    assert settings.sqlite_path == folder / "data" / "listserv.db"
    assert settings.outbox_dir == folder / "data" / "outbox"


def test_without_a_config_relative_paths_are_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, data_dir="here", templates_dir="tpl")
    assert settings.data_dir == tmp_path / "here"
    assert settings.templates_dir == tmp_path / "tpl"


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    data = tmp_path / "var" / "data"
    path = write_config(tmp_path / "etc", f'data_dir = "{data}"\n')
    assert load_settings(path).data_dir == data


def test_database_url_other_than_sqlite(tmp_path: Path) -> None:
    url = "postgresql+psycopg://listserv@localhost/listserv"
    path = write_config(tmp_path, f'[database]\nurl = "{url}"\n')
    settings = load_settings(path)
    assert settings.database.url == url
    assert settings.sqlite_path is None


def test_relative_sqlite_url_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[database]\nurl = "sqlite:///db/store.db"\n')
    settings = load_settings(path)
    assert settings.database.url == f"sqlite:///{tmp_path}/db/store.db"
    assert settings.sqlite_path == tmp_path / "db" / "store.db"


# --------------------------------------------------------------------------- overrides


def test_overrides_are_merged_over_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[intake.lmtp]\nhost = "0.0.0.0"\nport = 24\n[outbound]\nhost = "relay.example.org"\n',
    )
    overrides = {"lmtp": {"port": 0}}

    settings = load_settings(
        path,
        data_dir=str(tmp_path / "d"),
        intake=overrides,
        outbound={"transport": "smtp", "port": 2525, "tls": "starttls"},
    )

    assert settings.data_dir == tmp_path / "d"
    assert settings.intake.lmtp == ServerSettings(True, "0.0.0.0", 0, 25600)
    assert settings.outbound.transport == "smtp"
    assert settings.outbound.port == 2525
    assert settings.outbound.host == "relay.example.org"
    assert overrides == {"lmtp": {"port": 0}}  # the caller's dicts are left alone


def test_overrides_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        data_dir=str(tmp_path),
        intake={"lmtp": {"port": 0}},
        outbound={"transport": "smtp", "port": 2525},
    )
    assert settings.config_path is None
    assert settings.data_dir == tmp_path
    assert settings.intake.lmtp.port == 0
    assert settings.intake.smtp.port == 8025
    assert (settings.outbound.transport, settings.outbound.port) == ("smtp", 2525)


def test_overrides_accept_path_objects(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path / "d", templates_dir=tmp_path / "t")
    assert settings.data_dir == tmp_path / "d"
    assert settings.templates_dir == tmp_path / "t"


def test_override_errors_name_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[intake.lmtp]\nport = 24\n")
    assert config_error(path, intake={"lmtp": {"prot": 0}}) == (
        "overrides: unknown key 'intake.lmtp.prot'"
    )
    assert config_error(path, outbound={"port": "25"}) == (
        "overrides: outbound.port: expected an integer, got a string"
    )
    assert config_error(None, daemon={"poll_seconds": 0}) == (
        "overrides: daemon.poll_seconds: must be a number greater than 0, got 0"
    )
    assert config_error(None, nonsense=1) == "overrides: unknown key 'nonsense'"


def test_file_errors_still_name_the_file_when_overrides_are_given(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[intake.lmtp]\nport = 70000\n")
    assert config_error(path, intake={"smtp": {"port": 0}}) == (
        f"{path}: intake.lmtp.port: must be between 0 and 65535, got 70000"
    )


def test_the_trusted_authserv_id_is_empty_by_default_and_compared_in_lower_case(
        tmp_path: Path) -> None:
    assert load_settings(data_dir=str(tmp_path)).intake.trusted_authserv_id == ""
    settings = load_settings(data_dir=str(tmp_path),
                             intake={"trusted_authserv_id": " MX.Lists.Example.org "})
    assert settings.intake.trusted_authserv_id == "mx.lists.example.org"


def test_dkim_keys_per_domain_fall_back_to_the_dkim_table(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, '[dkim]\nselector = "s1"\nprivate_key_file = "k.pem"\n'
                                  'domains = ["Lists.Example.org", "other.example"]\n'
                                  '[dkim.keys."other.example"]\nselector = "s2"\n')
    dkim = load_settings(path).dkim

    def key(domain: str) -> tuple[str, Path] | None:
        found = dkim.key_for(domain)
        return None if found is None else (found.selector, found.private_key_file)

    assert key("lists.example.org") == ("s1", tmp_path / "k.pem")
    assert key("other.example") == ("s2", tmp_path / "k.pem")
    assert key("unsigned.example") is None


def test_dkim_domains_must_be_an_array_of_strings(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, '[dkim]\ndomains = "lists.example.org"\n')
    assert "dkim.domains: expected an array of strings" in config_error("config.toml")
