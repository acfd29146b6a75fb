"""Fan-out benchmark: one post to N members, against a local counting SMTP sink.

For each member count (10,000 and 100,000 by default) it builds a fresh data folder *outside the
repository* with the real command line (`listserv init`, `lists create`, `members import`, the
import timed), then for each delivery mode starts the daemon as a real subprocess
(`listserv --config FILE serve`, SMTP delivery to the sink, intake on port 0), sends one post
over LMTP, and measures from the send to the sink having counted every member. Before stopping
the daemon with SIGTERM it reads the daemon's peak resident memory (VmHWM in /proc/PID/status).

In the same run it measures the ceiling: a bare client with the same number of connections
(threads) and the same batch size sending the same number of recipients, with the same message,
to the same sink; once with smtplib's sendmail (the ceiling of the targets) and once with
PIPELINING, as listserv's own transport sends. The sink (tests/smtp_sink.py, counting only) runs
in a process of its own so it does not share a GIL with the daemon or the ceiling client.
docs/benchmarks.md has the figures and the targets.

    .venv/bin/python bench/fanout.py                 # 10,000 and 100,000 members, both modes
    .venv/bin/python bench/fanout.py --quick         # 10,000 members only (about 15 s)
    .venv/bin/python bench/fanout.py --members 10000 --modes batched
    .venv/bin/python bench/fanout.py --repeat 3      # best of three runs of everything
    .venv/bin/python bench/fanout.py --postgresql postgresql+psycopg://postgres@127.0.0.1/test

It prints a table and writes nothing into the repository (the data folders live in a temporary
directory, removed at the end unless --keep).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LIST_NAME = "bench"
DOMAIN = "lists.example.org"
LIST = f"{LIST_NAME}@{DOMAIN}"
OWNER = "chair@example.org"
BATCH = 500  # max_recipients_per_transaction
CONNECTIONS = 4  # max_connections
MODES = ("batched", "personalized")
DEFAULT_TIMEOUT = 900.0


def listserv_executable() -> list[str]:
    """The `listserv` console script next to this interpreter, else `python -m` via cli."""
    script = Path(sys.executable).parent / "listserv"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from cli import main; sys.exit(main())"]


# -- the sink, in a process of its own -------------------------------------------------------


def _sink_main(conn: Connection) -> None:
    """Child process: run a counting SmtpSink and answer the parent's questions."""
    from tests.smtp_sink import SmtpSink

    sink = SmtpSink(keep_messages=False).start()
    conn.send(sink.port)
    try:
        while True:
            request = conn.recv()
            command = request[0]
            if command == "count":
                conn.send((sink.recipients, sink.transactions))
            elif command == "clear":
                sink.clear()
                conn.send(True)
            elif command == "wait":
                # Poll here, beside the sink, so the time stamps are the sink's own.
                _, wanted, timeout = request
                deadline = time.monotonic() + timeout
                first = None
                while True:
                    count = sink.recipients
                    now = time.monotonic()
                    if first is None and count > 0:
                        first = now
                    if count >= wanted or now >= deadline:
                        break
                    time.sleep(0.001)
                conn.send((count, sink.transactions, first, now))
            elif command == "stop":
                break
    finally:
        sink.stop()
        conn.close()


class SinkProcess:
    """The parent's handle on the sink process."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_sink_main, args=(child,), name="smtp-sink",
                                         daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            raise RuntimeError("the SMTP sink process did not start")
        self.port: int = self._conn.recv()

    def _ask(self, *request: object) -> object:
        self._conn.send(request)
        return self._conn.recv()

    def count(self) -> tuple[int, int]:
        recipients, transactions = self._ask("count")  # type: ignore[misc]
        return recipients, transactions

    def clear(self) -> None:
        self._ask("clear")

    def wait(self, wanted: int, timeout: float) -> tuple[int, int, float | None, float]:
        """(recipients, transactions, monotonic time of the first, time of the last poll)."""
        return self._ask("wait", wanted, timeout)  # type: ignore[return-value]

    def stop(self) -> None:
        try:
            self._conn.send(("stop",))
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()


# -- the post ---------------------------------------------------------------------------------


def make_post(sender: str, body_kb: int) -> bytes:
    """A plain-text post as a mail client writes it, about `body_kb` KB of body."""
    msg = EmailMessage()
    msg["From"] = f"Member Zero <{sender}>"
    msg["To"] = LIST
    msg["Subject"] = "Agenda for the next meeting"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
    msg["Date"] = "Thu, 26 Nov 2026 09:00:00 +0000"
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
    msg.set_content(line * max(1, body_kb * 1024 // len(line)))
    return msg.as_bytes(policy=SMTP_POLICY)


def member_address(i: int) -> str:
    return f"member{i:06d}@example.net"


# -- the ceiling: a bare smtplib client ------------------------------------------------------


def pipelined_sendmail(client: smtplib.SMTP, sender: str, recipients: list[str],
                       data: bytes) -> None:
    """A bare PIPELINING transaction (RFC 2920): MAIL, RCPTs and DATA in groups of 100."""
    commands = [f"MAIL FROM:<{sender}>\r\n", *(f"RCPT TO:<{r}>\r\n" for r in recipients),
                "DATA\r\n"]
    codes = []
    for start in range(0, len(commands), 100):
        group = commands[start : start + 100]
        client.send("".join(group).encode())
        codes += [client.getreply()[0] for _ in group]
    if codes[-1] != 354 or any(code != 250 for code in codes[:-1]):
        raise RuntimeError(f"refused: {codes}")
    client.send(re.sub(rb"(?m)^\.", b"..", data) + b".\r\n")
    code, reply = client.getreply()
    if code != 250:
        raise RuntimeError(f"refused: {code} {reply!r}")


def ceiling(sink: SinkProcess, members: int, batch: int, connections: int, data: bytes,
            timeout: float, pipelined: bool = False) -> float:
    """Recipients per second of a bare client: `connections` threads, `batch` per transaction.

    With batch == 1 each transaction has its own envelope sender and its own first header,
    like a personalized copy. `pipelined`: PIPELINING as listserv's transport does it, instead
    of smtplib's sendmail (one round trip per command).
    """
    sink.clear()
    chunks = [
        [member_address(i) for i in range(start, min(start + batch, members))]
        for start in range(0, members, batch)
    ]
    lock = threading.Lock()
    errors: list[BaseException] = []
    send = pipelined_sendmail if pipelined else smtplib.SMTP.sendmail

    def worker() -> None:
        try:
            with smtplib.SMTP(sink.host, sink.port, timeout=60) as client:
                client.ehlo()
                while True:
                    with lock:
                        if not chunks:
                            return
                        chunk = chunks.pop()
                    if batch == 1:
                        token = uuid.uuid4().hex
                        send(
                            client, f"{LIST_NAME}-bounces+{token}@{DOMAIN}", chunk,
                            f"List-Unsubscribe: <mailto:{LIST_NAME}-leave+{token}@{DOMAIN}>"
                            "\r\n".encode() + data,
                        )
                    else:
                        send(client, f"{LIST_NAME}-bounces@{DOMAIN}", chunk, data)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    count, _, _, done = sink.wait(members, timeout)
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"ceiling client failed: {errors[0]!r}")
    if count < members:
        raise RuntimeError(f"ceiling: the sink counted {count} of {members} recipients")
    return members / (done - start)


# -- the daemon under test -------------------------------------------------------------------


@dataclass
class Setup:
    directory: Path
    config: Path
    members: int
    import_seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


def run_cli(setup: Setup, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        [*listserv_executable(), "--config", str(setup.config), *args],
        input=stdin, capture_output=True, cwd=setup.directory, env=setup.env,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"listserv {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode(errors="replace")


def set_up_list(directory: Path, addresses: list[str], db_url: str, sink_port: int, *,
                intake: str = "", outbound: str = "", sign: bool = False,
                ) -> tuple[Setup, Path]:
    """A fresh data folder and config in `directory` (intake on free ports, mail to the sink;
    `intake` and `outbound` add keys to those sections), the list made with the command line
    and its roster written to a CSV file, not yet imported: returns the setup and the file.

    `sign`: `[dkim]` configured for the list's domain with a key from `listserv dkim keygen`,
    so every copy is ARC-sealed and DKIM-signed (docs/deliverability.md)."""
    directory.mkdir()
    config = directory / "listserv.toml"
    config.write_text(
        f'data_dir = "{directory / "data"}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[intake]\n{intake}"
        "[intake.lmtp]\nport = 0\n"
        "[intake.smtp]\nport = 0\n"
        f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {sink_port}\n{outbound}'
        f'[daemon]\nhostname = "{DOMAIN}"\n'
        + ('[dkim]\nselector = "bench"\nprivate_key_file = "dkim.pem"\n' if sign else "")
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LISTSERV_CONFIG", None)
    setup = Setup(directory, config, len(addresses), env=env)
    run_cli(setup, "init")
    if sign:
        run_cli(setup, "dkim", "keygen", DOMAIN)
    run_cli(setup, "lists", "create", LIST, "--owner", OWNER)
    roster = directory / "members.csv"
    with open(roster, "w", encoding="utf-8") as handle:
        handle.write("email,name\n")
        handle.writelines(f"{address},Member {i}\n" for i, address in enumerate(addresses))
    return setup, roster


def prepare(base: Path, members: int, sink_port: int, db_url: str,
            sign: bool = False) -> Setup:
    """A fresh data folder, list and roster, made with the command line; the import timed."""
    setup, roster = set_up_list(
        base / f"members-{members}", [member_address(i) for i in range(members)], db_url,
        sink_port, outbound=f"max_recipients_per_transaction = {BATCH}\n"
                            f"max_connections = {CONNECTIONS}\n", sign=sign)
    start = time.monotonic()
    out = run_cli(setup, "members", "import", LIST, str(roster))
    setup.import_seconds = time.monotonic() - start
    if f"imported {members} members" not in out:
        raise RuntimeError(f"unexpected import result: {out.strip()}")
    return setup


class Schemas:
    """Fresh PostgreSQL schemas for --postgresql, dropped at the end."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def create(self, server_url: str) -> str:
        from sqlalchemy import create_engine, text

        name = f"bench_{uuid.uuid4().hex[:12]}"
        engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        engine.dispose()
        self.made.append((server_url, name))
        separator = "&" if "?" in server_url else "?"
        return f"{server_url}{separator}options=-csearch_path%3D{name}"

    def drop_all(self) -> None:
        from sqlalchemy import create_engine, text

        for server_url, name in self.made:
            engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            engine.dispose()
        self.made.clear()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Measured:
    members: int
    mode: str
    seconds: float
    first_seconds: float
    rate: float
    ceiling_rate: float  # bare smtplib sendmail: the ceiling of the targets
    pipelined_rate: float  # bare client with PIPELINING, as listserv's transport sends
    peak_mb: float
    transactions: int
    import_seconds: float


@contextmanager
def running_daemon(setup: Setup, log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                    dict[str, int]]]:
    """`listserv serve` on `setup` as a subprocess, logging to `log_path`: yields the process
    and its ports once they are written, and stops it with SIGTERM (then a kill) on the way
    out, whatever happened."""
    ports_file = setup.directory / "data" / "run" / "ports.json"
    ports_file.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [*listserv_executable(), "--config", str(setup.config), "serve"],
            stdout=log, stderr=subprocess.STDOUT, cwd=setup.directory, env=setup.env,
        )
    try:
        deadline = time.monotonic() + 60
        while not ports_file.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield daemon, json.loads(ports_file.read_text())
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def measure(setup: Setup, sink: SinkProcess, mode: str, data_kb: int,
            timeout: float) -> tuple[float, float, int, float, bytes]:
    """One post through a fresh daemon: (seconds, to first, transactions, peak MB, post)."""
    run_cli(setup, "lists", "set", LIST, "personalize",
            "true" if mode == "personalized" else "false")
    log_path = setup.directory / f"daemon-{mode}.log"
    with running_daemon(setup, log_path) as (daemon, ports):
        sink.clear()
        sender = member_address(0)
        post = make_post(sender, data_kb)
        start = time.monotonic()
        with smtplib.LMTP("127.0.0.1", ports["lmtp"]) as client:
            refused = client.sendmail(sender, [LIST], post)
        if refused:
            raise RuntimeError(f"the daemon refused the post: {refused}")
        count, transactions, first, done = sink.wait(setup.members, timeout)
        if count < setup.members:
            raise RuntimeError(
                f"{mode}: the sink counted {count} of {setup.members} recipients in "
                f"{timeout:g} s; daemon log:\n{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.5)  # anything more would be a duplicate
        after, transactions = sink.count()
        if after != setup.members:
            raise RuntimeError(f"{mode}: {after} recipients counted for {setup.members} members")
        peak = peak_rss_mb(daemon.pid)
    if daemon.returncode != 0:
        raise RuntimeError(f"the daemon exited with {daemon.returncode}:\n"
                           f"{log_path.read_text()[-3000:]}")
    assert first is not None
    return done - start, first - start, transactions, peak, post


def copy_for_ceiling(post: bytes) -> bytes:
    """Roughly the bytes the daemon sends: the post plus the list headers and footer."""
    extra = (
        f"List-Id: <{LIST_NAME}.{DOMAIN}>\r\nList-Post: <mailto:{LIST}>\r\n"
        f"List-Help: <mailto:{LIST_NAME}-request@{DOMAIN}?subject=help>\r\n"
        f"List-Subscribe: <mailto:{LIST_NAME}-join@{DOMAIN}>\r\n"
        f"Precedence: list\r\nX-BeenThere: {LIST}\r\n"
    ).encode()
    footer = f"\r\n-- \r\n{LIST_NAME} mailing list -- {LIST}\r\n".encode()
    return extra + post + footer


# -- the report ------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model or platform.processor() or '?'}), {memory}, "
            f"Python {platform.python_version()}")


def print_table(results: list[Measured], out: Callable[[str], None] = print) -> None:
    header = (f"{'members':>8} {'mode':<13} {'import s':>8} {'seconds':>8} {'first s':>7} "
              f"{'rcpt/s':>8} {'smtplib':>8} {'%':>5} {'pipelin.':>8} {'%':>5} "
              f"{'txns':>7} {'peak MB':>8}")
    out(header)
    out("-" * len(header))
    for r in results:
        out(f"{r.members:>8,} {r.mode:<13} {r.import_seconds:>8.2f} {r.seconds:>8.2f} "
            f"{r.first_seconds:>7.2f} {r.rate:>8,.0f} "
            f"{r.ceiling_rate:>8,.0f} {100 * r.rate / r.ceiling_rate:>4.0f}% "
            f"{r.pipelined_rate:>8,.0f} {100 * r.rate / r.pipelined_rate:>4.0f}% "
            f"{r.transactions:>7,} {r.peak_mb:>8.1f}")


def check_targets(results: list[Measured]) -> list[str]:
    lines = []
    for r in results:
        if r.mode == "batched":
            share = r.rate / r.ceiling_rate
            lines.append(f"batched {r.members:,}: {share:.0%} of the smtplib ceiling "
                         f"(target >= 70%): {'met' if share >= 0.70 else 'MISSED'}; "
                         f"{r.rate / r.pipelined_rate:.0%} of the pipelined one")
        elif r.members == 10_000:
            lines.append(f"personalized 10,000: {r.rate:,.0f} recipients/s (target >= 1,000): "
                         f"{'met' if r.rate >= 1000 else 'MISSED'}")
        if r.members == 100_000:
            lines.append(f"{r.mode} 100,000: daemon peak {r.peak_mb:.0f} MB (target < 150 MB): "
                         f"{'met' if r.peak_mb < 150 else 'MISSED'}")
    imports = {r.members: r.import_seconds for r in results}
    if 10_000 in imports:
        s = imports[10_000]
        lines.append(f"members import of 10,000 rows: {s:.2f} s (target < 5 s): "
                     f"{'met' if s < 5 else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="10000,100000",
                        help="comma-separated member counts (default: 10000,100000)")
    parser.add_argument("--modes", default="batched,personalized",
                        help="comma-separated: batched, personalized (default: both)")
    parser.add_argument("--quick", action="store_true", help="only 10,000 members")
    parser.add_argument("--body-kb", type=int, default=2, help="size of the post's body")
    parser.add_argument("--postgresql", metavar="URL", default="",
                        help="run on PostgreSQL instead of SQLite: a server URL such as "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test; each member "
                             "count gets a schema of its own, dropped at the end")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for one post's delivery")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each measurement; the best is reported (default 1)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary data folders (and the daemon logs)")
    parser.add_argument("--sign", action="store_true",
                        help="configure [dkim] (a key from `listserv dkim keygen`): every copy "
                             "ARC-sealed and DKIM-signed")
    args = parser.parse_args(argv)

    counts = [10_000] if args.quick else [int(n) for n in args.members.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")

    print(f"machine: {machine()}")
    print(f"batch {BATCH} recipients/transaction, {CONNECTIONS} connections, "
          f"post body {args.body_kb} KB, database: {'PostgreSQL' if args.postgresql else 'SQLite'}"
          f", {'signed (ARC and DKIM)' if args.sign else 'not signed'}")
    base = Path(tempfile.mkdtemp(prefix="listserv-bench-"))
    sink = SinkProcess()
    schemas = Schemas()
    results: list[Measured] = []
    started = time.monotonic()
    try:
        for members in counts:
            db_url = ""
            if args.postgresql:
                db_url = schemas.create(args.postgresql)
            setup = prepare(base, members, sink.port, db_url, args.sign)
            print(f"{members:,} members: imported in {setup.import_seconds:.2f} s", flush=True)
            for mode in modes:
                # Best of --repeat runs, daemon and ceiling alike (other load on the machine
                # only ever slows a run down).
                runs = [measure(setup, sink, mode, args.body_kb, args.timeout)
                        for _ in range(args.repeat)]
                seconds, first, transactions, peak, post = min(runs)
                peak = max(run[3] for run in runs)
                batch = BATCH if mode == "batched" else 1
                data = copy_for_ceiling(post)
                tops = [
                    max(ceiling(sink, members, batch, CONNECTIONS, data, args.timeout, pipelined)
                        for _ in range(args.repeat))
                    for pipelined in (False, True)
                ]
                result = Measured(members, mode, seconds, first, members / seconds, *tops,
                                  peak, transactions, setup.import_seconds)
                results.append(result)
                print(f"  {mode}: {seconds:.2f} s, {result.rate:,.0f} recipients/s; ceiling "
                      f"{tops[0]:,.0f}/s (smtplib), {tops[1]:,.0f}/s (pipelined); "
                      f"daemon peak {peak:.1f} MB", flush=True)
    finally:
        sink.stop()
        schemas.drop_all()
        if args.keep:
            print(f"data kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print_table(results)
    print()
    print(f"ceilings: bare clients, {CONNECTIONS} connections, the same sink and recipients; "
          f"batched rows {BATCH} recipients per transaction, personalized rows 1 with its own "
          "envelope; smtplib = smtplib's sendmail (the ceiling of the targets), pipelin. = "
          "PIPELINING as listserv's transport sends")
    for line in check_targets(results):
        print(line)
    print(f"total run time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
