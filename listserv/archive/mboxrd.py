"""mboxrd (the "From-quoting" mbox that reverses exactly): writing and reading, byte for byte.

Each message starts with a `From SENDER DATE` line and ends with an empty line; a line of a
message that matches `>*From ` gets one more `>` on the way in and loses one on the way out,
so any text survives. Lines end in LF in the file, as mutt and `mailbox.mbox` expect; the
archive's messages are CRLF only (the wire form), so reading with `crlf=True` gives back
exactly the archived bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO

_QUOTED_ON_WRITE = re.compile(rb"^(>*From )", re.MULTILINE)
_QUOTED_ON_READ = re.compile(rb"^>(>*From )", re.MULTILINE)


def from_line(sender: str, date: datetime) -> bytes:
    """The separator line: `From jane@example.org Tue Dec  1 09:00:00 2026` (asctime, UTC)."""
    envelope = sender if sender and " " not in sender and sender.isascii() else "MAILER-DAEMON"
    return f"From {envelope} {date.astimezone(UTC).strftime('%a %b %e %H:%M:%S %Y')}\n".encode()


def entry(message: bytes, sender: str, date: datetime) -> bytes:
    """One message as the mbox holds it: the separator, the quoted lines, an empty line."""
    text = message.replace(b"\r\n", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    return from_line(sender, date) + _QUOTED_ON_WRITE.sub(rb">\1", text) + b"\n"


def write(out: IO[bytes], messages: Iterable[tuple[bytes, str, datetime]]) -> int:
    """Write `(bytes, sender, date)` messages to `out`; returns how many."""
    count = 0
    for message, sender, date in messages:
        out.write(entry(message, sender, date))
        count += 1
    return count


def read(data: bytes, *, crlf: bool = False) -> Iterator[bytes]:
    """The messages of an mboxrd file, unquoted; with `crlf`, their lines end in CRLF."""
    starts = [m.start() for m in re.finditer(rb"^From ", data, re.MULTILINE)]
    for begin, end in zip(starts, [*starts[1:], len(data)], strict=True):
        body = data[data.index(b"\n", begin) + 1:end]
        if body.endswith(b"\n\n"):
            body = body[:-1]  # the empty line that ends each entry
        body = _QUOTED_ON_READ.sub(rb"\1", body)
        yield body.replace(b"\n", b"\r\n") if crlf else body
