"""Wire serializer benchmark: `to_wire` on the inputs that used to be slow.

Two inputs, each serialized once per repeat (the best time is printed):

- a post of `--size-mb` MB (25 by default) of 990-octet lines: every line fits, so the check
  for lines over 998 octets reads it all (it was O(size x line length): 143 s for 25 MB);
- a post whose `References` header has `--continuations` continuation lines (200,000 by
  default): its field is built from all of them (it was quadratic).

    .venv/bin/python bench/wire.py
    .venv/bin/python bench/wire.py --size-mb 5 --continuations 50000 --repeat 3

docs/benchmarks.md has the figures. It writes nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from listserv.mail.wire import to_wire

HEAD = (b"From: Jane <jane@example.org>\r\nTo: shma@lists.example.org\r\n"
        b"Date: Mon, 04 May 2026 09:00:00 +0000\r\nMessage-ID: <p1@example.org>\r\n"
        b"MIME-Version: 1.0\r\nSubject: Hello\r\n")
NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


def long_lines(size_mb: int) -> bytes:
    """A plain text post of `size_mb` MB of 990-octet lines."""
    line = b"x" * 990 + b"\r\n"
    return HEAD + b"\r\n" + line * (size_mb * 1024 * 1024 // len(line))


def long_header(continuations: int) -> bytes:
    """A post whose References header has `continuations` continuation lines."""
    refs = b"".join(b" <id%d@example.org>\r\n" % n for n in range(continuations))
    return HEAD + b"References:" + refs + b"\r\nbody\r\n"


def best(run: Callable[[], bytes], repeat: int) -> tuple[float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        size = len(run())
        times.append(time.perf_counter() - started)
    return min(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=25)
    parser.add_argument("--continuations", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    cases = {
        f"{args.size_mb} MB of 990-octet lines": long_lines(args.size_mb),
        f"header with {args.continuations:,} continuation lines": long_header(
            args.continuations),
    }
    print(f"{'input':<45} {'size':>10} {'to_wire':>10}")
    for name, post in cases.items():
        seconds, _ = best(lambda post=post: to_wire(
            post, sender="shma@lists.example.org", now=NOW), args.repeat)
        print(f"{name:<45} {len(post) / 1e6:>8.1f}MB {seconds:>9.2f}s")


if __name__ == "__main__":
    main()
