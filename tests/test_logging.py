"""The daemon's log on standard error: one line per record, journald-friendly text by default,
`serve --log-format json` for log shippers (issue 19; listserv/operations/logs.py).

Each test runs `listserv serve` as a subprocess, as systemd does, has it deliver a post to the
sink, stops it with SIGTERM and reads what it wrote to standard error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from listserv.operations.logs import JsonFormatter, TextFormatter

from .daemons import DaemonProcess
from .helpers import LIST, lmtp_send, make_message

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S.*$")
JOURNAL_LINE = re.compile(r"^<[0-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S.*$")


def serve_and_post(config_path: Path, log: Path, sink, *serve_args: str,
                   environ: dict[str, str] | None = None) -> list[str]:
    """Run the daemon until it has delivered one post to the sink; its log's lines."""
    daemon = DaemonProcess(config_path, config_path.parent / "data" / "run", log,
                           serve_args=serve_args, environ=environ or dict(os.environ),
                           wait=False)
    try:
        daemon.wait_until(daemon.ports_file.exists, "start", 60)
        lmtp_send(daemon.ports["lmtp"], "jane@example.org", [LIST],
                  make_message(subject="Logged post"))
        sink.wait_for(lambda s: s.messages_for("jane@example.org"), 30, "the post delivered")
        daemon.wait_until(lambda: "delivered message" in daemon.log_text(1 << 20),
                          "log the delivery")
        code, _ = daemon.terminate()
        assert code == 0, daemon.log_text()
    finally:
        daemon.reap()
    return log.read_text().splitlines()


@pytest.fixture
def member(cli, shma) -> str:
    cli("members", "add", shma, "jane@example.org", "--no-welcome")
    return "jane@example.org"


def test_the_default_log_is_one_timestamped_line_per_record(config_path, sink, member,
                                                             tmp_path):
    lines = serve_and_post(config_path, tmp_path / "serve.log", sink)
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert any(" INFO listserv.daemon: listserv serving: lmtp on port" in line for line in lines)
    assert any(re.search(r"INFO listserv.delivery.worker: delivered message \d+: 1 sent", line)
               for line in lines)
    assert lines[-1].endswith("INFO listserv.daemon: listserv stopped")


def test_under_journald_the_line_carries_the_priority_and_leaves_the_time_to_it(
        config_path, sink, member, tmp_path):
    log = tmp_path / "journal.log"
    log.touch()  # the file standard error will be: systemd names its device and inode
    stat = log.stat()
    environ = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
    lines = serve_and_post(config_path, log, sink, environ=environ)
    assert lines and all(JOURNAL_LINE.match(line) for line in lines), lines
    assert any(line.startswith("<6>INFO listserv.daemon: listserv serving") for line in lines)


def test_log_format_json_writes_one_object_per_line_with_the_extra_fields(config_path, sink,
                                                                         member, tmp_path):
    lines = serve_and_post(config_path, tmp_path / "serve.json", sink, "--log-format", "json")
    entries = [json.loads(line) for line in lines]  # every line is one whole object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["time"].endswith("+00:00")
    serving = next(e for e in entries if e["message"].startswith("listserv serving"))
    assert serving["level"] == "INFO" and serving["logger"] == "listserv.daemon"
    assert set(serving["ports"]) == {"lmtp", "smtp"}
    delivered = next(e for e in entries if e["message"].startswith("delivered message"))
    assert (delivered["sent"], delivered["not_sent"]) == (1, 0)
    assert delivered["message"] == f"delivered message {delivered['message_id']}: 1 sent, 0 not"


def test_serve_refuses_an_unknown_log_format(cli):
    result = cli("serve", "--log-format", "xml", ok=False)
    assert result.exit_code == 2
    assert "'xml' is not one of 'text', 'json'" in result.output


def failing_record() -> logging.LogRecord:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        record = logging.makeLogRecord({"name": "listserv.test", "levelno": logging.ERROR,
                                        "levelname": "ERROR", "msg": "it broke:\n%s",
                                        "args": ("details",), "exc_info": None})
        record.exc_info = sys.exc_info()
    return record


def test_a_traceback_stays_on_the_records_one_line():
    text = TextFormatter(journal=True).format(failing_record())
    assert "\n" not in text
    assert text.startswith("<3>ERROR listserv.test: it broke:\\ndetails\\nTraceback")
    assert text.endswith("ValueError: first line\\nsecond line")
    entry = JsonFormatter().format(failing_record())
    assert "\n" not in entry
    parsed = json.loads(entry)
    assert parsed["message"] == "it broke:\ndetails"
    assert parsed["exception"].endswith("ValueError: first line\nsecond line")
