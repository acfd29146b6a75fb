"""System errors as one line (SPEC §4, issue 16): a closed pipe, a port in use, a file system
error; and `--version`. Through `listserv` in subprocesses, as a shell runs it."""

from __future__ import annotations

import os
import shlex
import subprocess
from importlib.metadata import version
from pathlib import Path

from listserv.intake.listening import port_owner

from .daemons import DaemonProcess
from .helpers import LIST, free_port
from .test_quickstart import LISTSERV


def environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LISTSERV_")}


def test_version_prints_the_package_version():
    done = subprocess.run([LISTSERV, "--version"], capture_output=True, text=True, timeout=60,
                          env=environ())
    assert (done.returncode, done.stdout, done.stderr) == (
        0, f"listserv {version('listserv')}\n", "")


def test_members_list_into_head_stops_quietly(config_path, shma, tmp_path):
    # More than a pipe holds (64 KiB), so the writes meet the closed pipe while listing.
    roster = tmp_path / "roster.csv"
    roster.write_text("email,name\n" + "".join(f"member{i:05d}@example.org,Member {i}\n"
                                               for i in range(3000)))
    command = f"{shlex.quote(str(LISTSERV))} --config {shlex.quote(str(config_path))}"
    subprocess.run(f"{command} members import {LIST} {shlex.quote(str(roster))}", shell=True,
                   check=True, capture_output=True, env=environ(), timeout=60)
    for reader, lines in (("head -n 3", 3), ("head -c 0", 0), ("true", 0)):
        done = subprocess.run(
            ["bash", "-c", f'{command} members list {LIST} | {reader}; '
                           'echo "status ${PIPESTATUS[0]}" >&2'],
            capture_output=True, text=True, env=environ(), timeout=60)
        # The status of a program that SIGPIPE stopped, as `cat` gives: no message at all.
        assert done.stderr == "status 141\n", (reader, done.stderr)
        assert len(done.stdout.splitlines()) == lines
    whole = subprocess.run(["bash", "-c", f"{command} members list {LIST} | cat"],
                           capture_output=True, text=True, env=environ(), timeout=60)
    assert (whole.returncode, len(whole.stdout.splitlines())) == (0, 3001)


def test_serve_twice_names_the_port_and_the_process_holding_it(tmp_path):
    port = free_port()
    config = tmp_path / "listserv.toml"
    config.write_text(f'data_dir = "data"\n[intake.lmtp]\nport = {port}\n'
                      "[intake.smtp]\nport = 0\n")
    first = DaemonProcess(config, tmp_path / "data" / "run", tmp_path / "first.log",
                          environ=environ())
    try:
        second = subprocess.run([LISTSERV, "--config", str(config), "serve"],
                                capture_output=True, text=True, env=environ(), timeout=60)
    finally:
        first.terminate()
        first.reap()
    assert second.returncode == 1
    assert "Traceback" not in second.stderr and "unexpected error" not in second.stderr
    (error,) = [line for line in second.stderr.splitlines() if "Error" in line]
    assert error == (
        f"Error: cannot listen for LMTP on 127.0.0.1:{port}: Address already in use; port "
        f"{port} is taken by pid {first.pid} (listserv --config {config} serve); stop it, or "
        "choose another port in the config's [intake.lmtp]")
    assert "listserv stopped" not in second.stderr  # it never served


def test_a_file_system_error_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    config = tmp_path / "listserv.toml"
    config.write_text('data_dir = "afile/data"\n')
    done = subprocess.run([LISTSERV, "--config", str(config), "init"], capture_output=True,
                          text=True, env=environ(), timeout=60)
    assert (done.returncode, done.stderr) == (
        1, f"Error: {tmp_path / 'afile' / 'data'}: Not a directory\n")


def test_port_owner_is_empty_when_nobody_listens():
    assert port_owner(free_port()) == ""
    assert port_owner(free_port(), proc=Path("/nonexistent")) == ""
