"""The daemon's log on standard error: one line per record, as text or JSON (SPEC §7).

`text` (the default) is for people and journald: `TIME LEVEL LOGGER: MESSAGE`. When standard
error is the journal (systemd sets `$JOURNAL_STREAM` to its device and inode), the time is left
to the journal and the line starts with the syslog priority (`<3>` for an error), which the
journal turns into the entry's priority (`journalctl -p err` works). `json` is for log
shippers: one object per line with `time` (ISO 8601, UTC), `level`, `logger`, `message`, any
extra fields the record was given (`log.info(..., extra={"message_id": 7})`) and `exception`.

Either way a record is one line: the line breaks of a message or a traceback are written as
`\\n`, so that a journal or a shipper never splits one record into several.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

FORMATS: Final = ("text", "json")
#: The attributes every LogRecord has: anything else was passed with `extra=`.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime",
                                                                  "taskName"}
#: syslog priorities (RFC 5424) of the logging levels, for the journal.
_PRIORITY: Final = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                    logging.INFO: 6, logging.DEBUG: 7}


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\\n")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the record was given with `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: MESSAGE`, or `<PRIORITY>LEVEL LOGGER: MESSAGE` for the journal."""

    def __init__(self, journal: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s" if journal
                         else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = _one_line(super().format(record))
        if self.journal:
            priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
            return f"<{priority}>{line}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str: an extra field of any type is shown rather than the record lost.
        return json.dumps(entry, ensure_ascii=False, default=str)


def stream_is_journal(stream: TextIO) -> bool:
    """Whether `stream` is connected to the journal: `$JOURNAL_STREAM` names its device and
    inode (systemd's documented way to tell)."""
    device_inode = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in device_inode.split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def configure_logging(log_format: str, verbose: bool, stream: TextIO = sys.stderr) -> None:
    """Send every record to `stream`, one line each, in `log_format` (`text` or `json`)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else TextFormatter(journal=stream_is_journal(stream)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # aiosmtpd logs every SMTP command at INFO, flufl.bounce every detector it runs on a
    # report (some 30 lines each), Alembic its context on every look at the schema: debugging
    # detail, shown with -v. Our own lines say enough.
    for chatty in ("mail.log", "flufl.bounce", "alembic"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose else logging.WARNING)
