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

With --fanout-members N it measures instead, on a list of N members (`members import`): the time
of `listserv members list LIST --json` and that command's peak memory, then, while one post
to the list is queued and sent to the sink, the RCPT latency p50/p99 of a client probing the
list address (MAIL, RCPT, RSET, over and over), the fan-out's time and the daemon's peak memory.

    .venv/bin/python bench/intake.py                       # 400 posts, 1 and 8 clients, SQLite
    .venv/bin/python bench/intake.py --posts 200 --clients 8
    .venv/bin/python bench/intake.py --posts 200 --clients 8 --sign   # ARC and DKIM per copy
    .venv/bin/python bench/intake.py --postgresql postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/intake.py --fanout-members 100000  # RCPT during a fan-out, listing

Each client count gets a fresh data folder (and, with --postgresql, a fresh schema). It prints
a table and writes nothing into the repository. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import statistics
import subprocess
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
    listserv_executable,
    machine,
    peak_rss_mb,
    run_cli,
    running_daemon,
    set_up_list,
)
from bench.fanout import make_post as fanout_post  # noqa: E402
from bench.fanout import member_address as fanout_member  # noqa: E402

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


@dataclass
class FanoutMeasured:
    members: int
    listing_seconds: float  # `members list LIST --json`, the whole command
    listing_cpu: float  # its CPU seconds (user and system): what a loaded machine leaves out
    listing_peak_mb: float
    fanout_seconds: float  # from the post's send to the sink counting every member
    probes: int
    rcpt_p50_ms: float
    rcpt_p99_ms: float
    rcpt_max_ms: float
    peak_mb: float


def timed_listing(setup: Setup) -> tuple[float, float, float, int]:
    """`listserv members list LIST --json` as a subprocess: (seconds, CPU seconds, peak MB,
    members)."""
    out_path = setup.directory / "members.json"
    start = time.monotonic()
    with open(out_path, "wb") as out:
        child = subprocess.Popen(
            [*listserv_executable(), "--config", str(setup.config), "members", "list", LIST,
             "--json"], stdout=out, stderr=subprocess.DEVNULL, cwd=setup.directory,
            env=setup.env)
        _, status, usage = os.wait4(child.pid, 0)  # its own peak memory, not the bench's
    seconds = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"members list --json exited with {child.returncode}")
    with open(out_path, "rb") as listing:
        count = len(json.load(listing))
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, count


def probe_rcpt(port: int, stop: threading.Event, latencies: list[float],
               errors: list[BaseException]) -> None:
    """MAIL, RCPT TO the list, RSET on one LMTP connection until `stop`; RCPT times kept."""
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=120) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            while not stop.is_set():
                lmtp.mail(fanout_member(1))
                before = time.monotonic()
                code, reply = lmtp.rcpt(LIST)
                latencies.append(time.monotonic() - before)
                if code != 250:
                    raise RuntimeError(f"RCPT refused: {code} {reply!r}")
                lmtp.rset()
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def measure_fanout(base: Path, sink: SinkProcess, members: int, db_url: str,
                   timeout: float) -> FanoutMeasured:
    """The member listing, then RCPT latency while one post fans out to `members`."""
    setup, roster = set_up_list(base / f"fanout-{members}",
                                [fanout_member(i) for i in range(members)], db_url, sink.port,
                                intake="max_messages_per_sender_per_hour = 0\n")
    run_cli(setup, "members", "import", LIST, str(roster))
    run_cli(setup, "lists", "set", LIST, "personalize", "false")
    listing_seconds, listing_cpu, listing_peak, listed = timed_listing(setup)
    if listed != members:
        raise RuntimeError(f"members list --json gave {listed} members of {members}")
    log_path = setup.directory / "daemon.log"
    with running_daemon(setup, log_path) as (daemon, ports):
        sink.clear()
        stop = threading.Event()
        latencies: list[float] = []
        errors: list[BaseException] = []
        prober = threading.Thread(target=probe_rcpt,
                                  args=(ports["lmtp"], stop, latencies, errors))
        start = time.monotonic()
        prober.start()
        try:
            with smtplib.LMTP("127.0.0.1", ports["lmtp"]) as client:
                refused = client.sendmail(fanout_member(0), [LIST],
                                          fanout_post(fanout_member(0), 2))
            if refused:
                raise RuntimeError(f"the daemon refused the post: {refused}")
            count, _, _, done = sink.wait(members, timeout)
        finally:
            stop.set()
            prober.join()
        if errors:
            raise RuntimeError(f"the RCPT probe failed: {errors[0]!r}")
        if count < members:
            raise RuntimeError(f"the sink counted {count} of {members} recipients; daemon "
                               f"log:\n{log_path.read_text()[-3000:]}")
        peak = peak_rss_mb(daemon.pid)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return FanoutMeasured(members, listing_seconds, listing_cpu, listing_peak, done - start,
                          len(latencies), cuts[49] * 1000, cuts[98] * 1000,
                          max(latencies) * 1000, peak)


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
    parser.add_argument("--fanout-members", type=int, default=0, metavar="N",
                        help="instead of the burst: time `members list --json` on a list of "
                             "N members and the RCPT latency while a post fans out to them")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary data folders (and the daemon logs)")
    parser.add_argument("--sign", action="store_true",
                        help="configure [dkim] (a key from `listserv dkim keygen`): every copy "
                             "ARC-sealed and DKIM-signed")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]

    database = "PostgreSQL" if args.postgresql else "SQLite (WAL, synchronous = FULL)"
    print(f"machine: {machine()}")
    if args.fanout_members:
        return fanout_main(args, database)
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


def fanout_main(args: argparse.Namespace, database: str) -> int:
    """--fanout-members: the listing and the RCPT latency during a fan-out, printed."""
    print(f"{args.fanout_members} members, database: {database}")
    base = Path(tempfile.mkdtemp(prefix="listserv-bench-intake-"))
    sink = SinkProcess()
    schemas = Schemas()
    try:
        db_url = schemas.create(args.postgresql) if args.postgresql else ""
        r = measure_fanout(base, sink, args.fanout_members, db_url, args.timeout)
    finally:
        sink.stop()
        schemas.drop_all()
        if args.keep:
            print(f"data kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(f"members list --json: {r.listing_seconds:.2f} s ({r.listing_cpu:.2f} s of CPU), "
          f"peak {r.listing_peak_mb:.1f} MB")
    print(f"fan-out of one post: {r.fanout_seconds:.2f} s; daemon peak {r.peak_mb:.1f} MB")
    print(f"RCPT during the fan-out: {r.probes} probes, p50 {r.rcpt_p50_ms:.1f} ms, "
          f"p99 {r.rcpt_p99_ms:.1f} ms, max {r.rcpt_max_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
