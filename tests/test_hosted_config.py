"""The README's worked config for a hosted mailbox is a valid config, in hosted mode."""

from __future__ import annotations

import re
from pathlib import Path

from listserv.config import load_settings

from .helpers import write_secret

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_hosted_mailbox_config_loads(tmp_path, monkeypatch):
    section = README.read_text().split("## Run it on a hosted mailbox", 1)[1]
    toml = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert toml is not None
    monkeypatch.setenv("HOME", str(tmp_path))
    write_secret(tmp_path / ".listserv-password", "app-password\n")
    config = tmp_path / "hosted.toml"
    config.write_text(toml.group(1))
    settings = load_settings(config)
    imap, outbound = settings.intake.imap, settings.outbound
    assert settings.hosted and settings.hosted_sender == "group@provider.example"
    assert (imap.tls, imap.port, imap.password) == ("implicit", 993, "app-password")
    assert (outbound.tls, outbound.port, outbound.password) == ("starttls", 587, "app-password")
    assert not settings.intake.lmtp.enabled and not settings.intake.smtp.enabled
    assert (outbound.messages_per_minute, outbound.recipients_per_day) == (20, 2000)
