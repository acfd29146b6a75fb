"""Intake benchmark: a burst of posts from the members of a 10-member list, over LMTP.

It builds a fresh data folder outside the repository with the real command line (`listserv
init`, `lists create`, `members import` of 10 members), starts the daemon as a real subprocess
(`listserv --config FILE serve`, SMTP delivery to a counting sink in a process of its own,
`max_messages_per_sender_per_hour = 0` so the trust limit does not refuse the burst), then sends
N posts, each from one of the members in turn, by C concurrent LMTP clients (one connection
each, one post per transaction). It reports:

- accepted posts/s: N over the time from the first MAIL to the last post's 250 after DATA;
- delivered posts/s: N over the time from the first MAIL to the sink having counted every
  member's copy of every post;
- RCPT latency p50/p99: the time from sending RCPT TO to its reply, over all posts;
- the daemon's peak resident memory (VmHWM).

    .venv/bin/python bench/intake.py                       # 400 posts, 1 and 8 clients, SQLite
    .venv/bin/python bench/intake.py --posts 200 --clients 8
    .venv/bin/python bench/intake.py --posts 200 --clients 8 --sign   # ARC and DKIM per copy
    .venv/bin/python bench/intake.py --postgresql postgresql+psycopg://postgres@127.0.0.1/test

Each client count gets a fresh data folder (and, with --postgresql, a fresh schema). It prints
a table and writes nothing into the repository. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import (  # noqa: E402  (the repository on sys.path first)
    LIST,
    Schemas,
    Setup,
    SinkProcess,
    machine,
    peak_rss_mb,
    run_cli,
    running_daemon,
    set_up_list,
)

MEMBERS = 10
DEFAULT_TIMEOUT = 600.0


def member(i: int) -> str:
    return f"member{i % MEMBERS:02d}@example.net"


def make_post(n: int, body_kb: int) -> bytes:
    """Post number `n`, from member n mod 10, as a mail client writes it."""
    msg = EmailMessage()
    msg["From"] = f"Member {n % MEMBERS} <{member(n)}>"
    msg["To"] = LIST
    msg["Subject"] = f"Re: the conference programme ({n})"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
    msg["Date"] = "Thu, 26 Nov 2026 09:00:00 +0000"
    line = f"Count me in for the session on day {n % 3 + 1}; I will bring the slides.\n"
    msg.set_content(line * max(1, body_kb * 1024 // len(line)))
    return msg.as_bytes(policy=SMTP_POLICY)


def prepare(base: Path, name: str, sink_port: int, db_url: str, sign: bool = False) -> Setup:
    """A fresh data folder with a list of 10 members, made with the command line (`sign`:
    with `[dkim]`, every copy ARC-sealed and DKIM-signed)."""
    setup, roster = set_up_list(base / name, [member(i) for i in range(MEMBERS)], db_url,
                                sink_port, intake="max_messages_per_sender_per_hour = 0\n",
                                sign=sign)
    run_cli(setup, "members", "import", LIST, str(roster))
    return setup


@dataclass
class Measured:
    clients: int
    posts: int
    accepted_rate: float
    delivered_rate: float
    rcpt_p50_ms: float
    rcpt_p99_ms: float
    peak_mb: float
    copies: int


def send_burst(port: int, posts: list[bytes], clients: int) -> tuple[float, list[float]]:
    """Send `posts` over `clients` LMTP connections; (time of the last 250, RCPT latencies)."""
    lock = threading.Lock()
    queue = list(enumerate(posts))
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with smtplib.LMTP("127.0.0.1", port, timeout=120) as lmtp:
                lmtp.ehlo_or_helo_if_needed()
                while True:
                    with lock:
                        if not queue:
                            return
                        n, data = queue.pop(0)
                    code, reply = lmtp.mail(member(n))
                    if code != 250:
                        raise RuntimeError(f"MAIL refused: {code} {reply!r}")
                    before = time.monotonic()
                    code, reply = lmtp.rcpt(LIST)
                    latencies.append(time.monotonic() - before)
                    if code != 250:
                        raise RuntimeError(f"RCPT refused: {code} {reply!r}")
                    code, reply = lmtp.data(data)
                    if code != 250:
                        raise RuntimeError(f"DATA refused: {code} {reply!r}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return time.monotonic(), latencies


def measure(setup: Setup, sink: SinkProcess, clients: int, count: int, body_kb: int,
            timeout: float) -> Measured:
    """One burst through a fresh daemon."""
    log_path = setup.directory / "daemon.log"
    with running_daemon(setup, log_path) as (daemon, ports):
        sink.clear()
        posts = [make_post(n, body_kb) for n in range(count)]
        wanted = count * MEMBERS  # every member gets every post, the author's own copy too
        start = time.monotonic()
        accepted, latencies = send_burst(ports["lmtp"], posts, clients)
        copies, _, _, delivered = sink.wait(wanted, timeout)
        if copies < wanted:
            raise RuntimeError(f"the sink counted {copies} of {wanted} copies in {timeout:g} s;"
                               f" daemon log:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)  # anything more would be a duplicate
        copies, _ = sink.count()
        peak = peak_rss_mb(daemon.pid)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Measured(clients, count, count / (accepted - start), count / (delivered - start),
                    cuts[49] * 1000, cuts[98] * 1000, peak, copies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=400, help="posts per burst (default 400)")
    parser.add_argument("--clients", default="1,8",
                        help="comma-separated concurrent LMTP clients (default: 1,8)")
    parser.add_argument("--body-kb", type=int, default=2, help="size of each post's body")
    parser.add_argument("--postgresql", metavar="URL", default="",
                        help="run on PostgreSQL instead of SQLite: a server URL such as "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test; each run gets "
                             "a schema of its own, dropped at the end")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for the burst's delivery")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary data folders (and the daemon logs)")
    parser.add_argument("--sign", action="store_true",
                        help="configure [dkim] (a key from `listserv dkim keygen`): every copy "
                             "ARC-sealed and DKIM-signed")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]

    database = "PostgreSQL" if args.postgresql else "SQLite (WAL, synchronous = FULL)"
    print(f"machine: {machine()}")
    print(f"{args.posts} posts from {MEMBERS} members, body {args.body_kb} KB, "
          f"database: {database}, {'signed (ARC and DKIM)' if args.sign else 'not signed'}")
    base = Path(tempfile.mkdtemp(prefix="listserv-bench-intake-"))
    sink = SinkProcess()
    schemas = Schemas()
    results: list[Measured] = []
    try:
        for clients in counts:
            db_url = schemas.create(args.postgresql) if args.postgresql else ""
            setup = prepare(base, f"clients-{clients}", sink.port, db_url, args.sign)
            result = measure(setup, sink, clients, args.posts, args.body_kb, args.timeout)
            results.append(result)
            print(f"  {clients} clients: accepted {result.accepted_rate:.0f} posts/s, delivered "
                  f"{result.delivered_rate:.0f} posts/s", flush=True)
    finally:
        sink.stop()
        schemas.drop_all()
        if args.keep:
            print(f"data kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    header = (f"{'clients':>7} {'posts':>6} {'accepted/s':>10} {'delivered/s':>11} "
              f"{'RCPT p50 ms':>11} {'RCPT p99 ms':>11} {'peak MB':>8} {'copies':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.clients:>7} {r.posts:>6} {r.accepted_rate:>10.1f} {r.delivered_rate:>11.1f} "
              f"{r.rcpt_p50_ms:>11.1f} {r.rcpt_p99_ms:>11.1f} {r.peak_mb:>8.1f} {r.copies:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
