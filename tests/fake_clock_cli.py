"""`listserv` on a fake clock: the test-only entry point of daemons started "days later".

    python tests/fake_clock_cli.py 2027-01-20T18:00:00+00:00 --config FILE serve -v

A subprocess cannot share a test's FakeClock, so this one builds a clock that runs on with
real time from the given start and hands it to the CLI as its context object
(`main(obj=clock)`). The product itself only knows the system clock.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from cli import main
from listserv.clock import FakeClock


def run(argv: list[str]) -> None:
    """Run the CLI with `argv[1:]` on a clock that starts at `argv[0]` (ISO 8601, offset)."""
    start = datetime.fromisoformat(argv[0])
    if start.tzinfo is None:
        raise SystemExit(f"{argv[0]!r}: give the start with an offset, e.g. +00:00")
    print(f"fake_clock_cli: the clock runs from {start.isoformat()}", file=sys.stderr)
    main(args=argv[1:], obj=FakeClock(start.astimezone(UTC), running=True),
         prog_name="listserv")


if __name__ == "__main__":
    run(sys.argv[1:])
