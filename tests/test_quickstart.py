"""The README's first command on embedded defaults: an empty folder, no config, real sockets.

`listserv init && listserv serve` with nothing else: SQLite in ./listserv-data, LMTP on
127.0.0.1:8024, SMTP on 127.0.0.1:8025, and a post over SMTP lands in the Maildir outbox.
The defaults are checked as settings; the daemon itself then runs on a config that moves only
the ports (`port = 0`, the bound ones read from run/ports.json), so a daemon started by hand
from the README on this machine does not get in the way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from listserv.config import load_settings

from .helpers import LIST, make_message, wait_until

LISTSERV = shutil.which("listserv", path=str(Path(sys.executable).parent)) or "listserv"


def run(cwd: Path, *args: str) -> str:
    # No config of the person running the tests: not $LISTSERV_CONFIG, not ~/.config/listserv.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LISTSERV_CONFIG", "XDG_CONFIG_HOME")} | {"HOME": str(cwd)}
    done = subprocess.run([LISTSERV, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def with_free_ports(folder: Path) -> Path:
    """Write `folder/listserv.toml`: the embedded defaults, SMTP and LMTP on free ports."""
    config = folder / "listserv.toml"
    config.write_text("[intake.lmtp]\nport = 0\n[intake.smtp]\nport = 0\n")
    defaults = load_settings(None)
    intake = defaults.intake
    assert load_settings(config) == dataclasses.replace(
        defaults, config_path=config, intake=dataclasses.replace(
            intake, lmtp=dataclasses.replace(intake.lmtp, port=0),
            smtp=dataclasses.replace(intake.smtp, port=0)))
    return config


def test_init_and_serve_in_an_empty_folder_deliver_to_the_maildir_outbox(tmp_path, monkeypatch):
    assert run(tmp_path, "init").startswith(f"wrote {tmp_path / 'listserv.toml'}\n"
                                             f"listserv is ready in {tmp_path / 'listserv-data'}")
    # The file init writes says what the built-in defaults are, and changes none of them.
    assert load_settings(tmp_path / "listserv.toml") == dataclasses.replace(
        load_settings(None, data_dir=str(tmp_path / "listserv-data")),
        config_path=tmp_path / "listserv.toml")
    assert "wrote" not in run(tmp_path, "init")  # safe to run again; the file is kept
    run(tmp_path, "lists", "create", LIST, "--owner", "chair@example.org")
    run(tmp_path, "members", "add", LIST, "jane@example.org", "--no-welcome")
    run(tmp_path, "members", "add", LIST, "ann@example.net", "--no-welcome")
    monkeypatch.chdir(tmp_path)
    defaults = load_settings(None)  # what `listserv` reads here without a config file
    assert (defaults.intake.lmtp.host, defaults.intake.lmtp.port) == ("127.0.0.1", 8024)
    assert (defaults.intake.smtp.host, defaults.intake.smtp.port) == ("127.0.0.1", 8025)
    assert defaults.data_dir == tmp_path / "listserv-data"
    assert defaults.database.url == f"sqlite:///{tmp_path / 'listserv-data' / 'listserv.db'}"
    assert (defaults.outbound.transport, defaults.outbox_dir) == (
        "maildir", tmp_path / "listserv-data" / "outbox")
    config = with_free_ports(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LISTSERV_CONFIG"}
    daemon = subprocess.Popen([LISTSERV, "--config", config.name, "serve"], cwd=tmp_path,
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        ports = tmp_path / "listserv-data" / "run" / "ports.json"
        wait_until(ports.exists, 20, "the daemon to listen")
        smtp_port = json.loads(ports.read_text())["smtp"]
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("jane@example.org", [LIST], make_message(subject="First post"))
        outbox = tmp_path / "listserv-data" / "outbox" / "new"
        files = wait_until(lambda: len(list(outbox.glob("*"))) == 2 and list(outbox.glob("*")),
                           20, "two copies in the outbox")
        recipients = set()
        for path in files:
            data = path.read_bytes()
            assert b"Subject: [shma] First post" in data
            assert b"List-Id: <shma.lists.example.org>" in data
            recipients |= {line.split(b"<")[1].split(b">")[0] for line in data.splitlines()
                           if line.startswith(b"X-Envelope-To:")}
        assert recipients == {b"jane@example.org", b"ann@example.net"}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            _, stderr = daemon.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            pytest.fail("the daemon did not stop on SIGTERM")
    assert daemon.returncode == 0, stderr
    assert "listserv stopped" in stderr
    assert "role=post outcome=distributed to 2 members" in stderr
