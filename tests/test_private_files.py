"""Private files (SPEC §7 "Files", issue 14 acceptance 6), through `listserv` in subprocesses.

The commands run with the usual umask 022, so what they create is private because they make it
so: folders 0700, files 0600, in the data folder and in exports. A password file others can read
and clear text to another machine are refused when the config is read.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import stat
import subprocess
from pathlib import Path

import pytest

from .helpers import LIST, make_message, wait_until, write_secret
from .test_column import PDF, submission
from .test_quickstart import LISTSERV

JANE = "jane@example.org"


def listserv(folder: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LISTSERV_CONFIG"}
    done = subprocess.run([LISTSERV, "--config", "listserv.toml", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60, umask=0o022)
    assert (done.returncode == 0) == ok, done.stderr
    return done


def write_config(folder: Path, text: str = "") -> Path:
    config = folder / "listserv.toml"
    config.write_text('data_dir = "data"\n[intake.lmtp]\nport = 0\n[intake.smtp]\nport = 0\n'
                      + text)
    return config


def modes(root: Path) -> dict[str, int]:
    """The permission bits of `root` and of everything under it, by path relative to `root`."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def not_private(root: Path) -> dict[str, str]:
    """What under `root` is not a 0700 folder or a 0600 file (empty when all is private)."""
    return {name: f"{mode:04o}" for name, mode in modes(root).items()
            if mode != (0o700 if (root / name).is_dir() else 0o600)}


def test_data_folder_and_exports_are_private_after_init_serve_a_post_a_submission_and_exports(
    tmp_path: Path,
) -> None:
    write_config(tmp_path)
    data = tmp_path / "data"
    listserv(tmp_path, "init")
    assert {"listserv.db", "outbox"} <= set(modes(data))
    assert not_private(data) == {}

    listserv(tmp_path, "lists", "create", LIST, "--owner", "chair@example.org")
    listserv(tmp_path, "members", "add", LIST, JANE, "--no-welcome")
    env = {k: v for k, v in os.environ.items() if k != "LISTSERV_CONFIG"}
    daemon = subprocess.Popen([LISTSERV, "--config", "listserv.toml", "serve"], cwd=tmp_path,
                              env=env, stderr=subprocess.PIPE, text=True, umask=0o022)
    try:
        ports = data / "run" / "ports.json"
        wait_until(ports.exists, 20, "the daemon to listen")
        with smtplib.SMTP("127.0.0.1", json.loads(ports.read_text())["smtp"], timeout=10) as c:
            c.sendmail(JANE, [LIST], make_message(JANE, subject="First post"))
            c.sendmail(JANE, ["shma-column@lists.example.org"],
                       submission(JANE, "Our tool library", "The piece is attached.",
                                  [("library.pdf", PDF)]))
        outbox = data / "outbox" / "new"
        wait_until(lambda: any(b"First post" in p.read_bytes() for p in outbox.iterdir()), 20,
                   "the post in the Maildir outbox")
        wait_until(lambda: list(data.glob("submissions/*/rev-1/library.pdf")), 20,
                   "the submission's files")
        running = modes(data)
        # The daemon is running: the database's WAL and shared-memory files are there too.
        assert {"listserv.db-wal", "listserv.db-shm", "run/ports.json"} <= set(running)
        assert not_private(data) == {}
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, log
    assert "private" not in log  # nothing needed tightening

    listed = json.loads(listserv(tmp_path, "submissions", "list", "--json").stdout)
    tracking = listed[0]["id"]
    listserv(tmp_path, "submissions", "export", tracking, "--to", "exports/piece.zip")
    listserv(tmp_path, "submissions", "export", tracking, "--to", "exports/piece")
    listserv(tmp_path, "members", "export", LIST, "-o", "exports/roster.csv")
    (tmp_path / "exports" / "old.csv").write_text("a roster written before\n")  # 0644
    listserv(tmp_path, "members", "export", LIST, "-o", "exports/old.csv")
    exports = tmp_path / "exports"
    assert {"piece.zip", "piece", f"piece/{tracking}/library.pdf", "piece/index.md",
            "roster.csv", "old.csv"} <= set(modes(exports))
    assert JANE in (exports / "old.csv").read_text()
    assert not_private(exports) == {}
    assert not_private(data) == {}


def test_init_and_serve_make_a_loose_data_folder_private_and_say_so(tmp_path: Path) -> None:
    write_config(tmp_path)
    data = tmp_path / "data"
    listserv(tmp_path, "init")
    (data / "old").mkdir()
    (data / "old" / "notes.txt").write_text("left by hand")
    for path, mode in ((data, 0o755), (data / "listserv.db", 0o644), (data / "old", 0o775),
                       (data / "old" / "notes.txt", 0o664), (data / "outbox", 0o755)):
        path.chmod(mode)

    said = listserv(tmp_path, "init").stdout
    assert f"made 5 files and folders in {data} private" in said
    assert not_private(data) == {}
    assert "private" not in listserv(tmp_path, "init").stdout  # nothing left to do

    (data / "listserv.db").chmod(0o640)
    env = {k: v for k, v in os.environ.items() if k != "LISTSERV_CONFIG"}
    daemon = subprocess.Popen([LISTSERV, "--config", "listserv.toml", "serve"], cwd=tmp_path,
                              env=env, stderr=subprocess.PIPE, text=True, umask=0o022)
    try:
        wait_until((data / "run" / "ports.json").exists, 20, "the daemon to listen")
        assert not_private(data) == {}
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=30)
    assert f"WARNING listserv.daemon: made 1 files and folders in {data} private" in log


@pytest.mark.parametrize("table", ['[intake.imap]\nenabled = true\nusername = "g@example.org"\n',
                                   "[outbound]\n"])
def test_the_commands_refuse_a_password_file_others_can_read(tmp_path: Path, table: str) -> None:
    secret = write_secret(tmp_path / "password", "app-password\n")
    secret.chmod(0o644)
    write_config(tmp_path, table + 'password_file = "password"\n')
    refused = listserv(tmp_path, "init", ok=False)
    key = "intake.imap" if "imap" in table else "outbound"
    assert refused.stderr == (f"Error: listserv.toml: {key}.password_file: '{secret}' is readable "
                              f"by group or others (mode 0644); make it private: "
                              f"chmod 600 '{secret}'\n")
    assert not (tmp_path / "data").exists()
    secret.chmod(0o600)
    listserv(tmp_path, "init")


@pytest.mark.parametrize("table", [
    '[intake.imap]\nenabled = true\nusername = "g@example.org"\npassword_env = "HOME"\n',
    '[outbound]\ntransport = "smtp"\n',
])
def test_the_commands_refuse_clear_text_to_another_machine(tmp_path: Path, table: str) -> None:
    """Config only: nothing connects to 192.0.2.1 (TEST-NET-1)."""
    write_config(tmp_path, table + 'host = "192.0.2.1"\ntls = "none"\n')
    refused = listserv(tmp_path, "init", ok=False)
    key = "intake.imap" if "imap" in table else "outbound"
    assert refused.stderr == (f"Error: listserv.toml: {key}.tls: \"none\" (clear text) is "
                              "refused to '192.0.2.1', which is not this machine; use "
                              "\"starttls\" or \"implicit\"\n")
    write_config(tmp_path, table + 'host = "127.0.0.1"\ntls = "none"\n')
    listserv(tmp_path, "init")
