"""Retention benchmark: the SQLite file after N posts to M members, before and after pruning.

It builds a data folder outside the repository with the real command line (`lists create`,
`members import`, `lists set LIST personalize false`), runs the daemon in this process on a
fake clock with SMTP delivery to a counting sink (tests/smtp_sink.py), sends N posts over LMTP
from the members in turn and waits until the sink has counted N x M recipients and every result is
recorded. Then it moves the clock past the retention (`[retention]` defaults: 30 and 14 days),
runs the scheduler once (`Daemon.run_scheduler`) and measures the file again. Sizes are taken
after a WAL checkpoint (TRUNCATE), so the figure is the database file alone.

    .venv/bin/python bench/retention.py                       # 1,000 posts to 1,000 members
    .venv/bin/python bench/retention.py --posts 100 --members 100

docs/benchmarks.md has the figures (acceptance point 4 of issue 14: under 20 MB after).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from cli import main  # noqa: E402
from listserv.clock import FakeClock  # noqa: E402
from listserv.config import load_settings  # noqa: E402
from listserv.daemon import Daemon  # noqa: E402
from listserv.store.engine import Store  # noqa: E402
from listserv.store.models.outgoing import OutRecipient  # noqa: E402
from tests.helpers import LIST, lmtp_send, make_message, write_config  # noqa: E402
from tests.smtp_sink import SmtpSink  # noqa: E402

#: A post of a usual size: a few paragraphs, about 4 KB.
BODY = "".join(f"Paragraph {n}: the agenda, the minutes and what we decided.\n" * 12
               for n in range(6))


def file_mb(path: Path) -> float:
    """The database file's size in MB after its WAL is checkpointed into it."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        connection.close()
    return path.stat().st_size / 1e6


def wait(predicate: object, what: str, timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def run(posts: int, members: int) -> None:
    with tempfile.TemporaryDirectory() as folder, SmtpSink(keep_messages=False) as sink:
        directory = Path(folder)
        db = directory / "data" / "listserv.db"
        config = write_config(directory / "listserv.toml", directory / "data",
                              f"sqlite:///{db}", sink.port,
                              max_recipients_per_transaction=500, max_connections=4)
        roster = directory / "members.csv"
        roster.write_text("email,name\n" + "".join(f"member{i}@example.net,Member {i}\n"
                                                   for i in range(members)))
        runner = CliRunner()
        for args in (["init"], ["lists", "create", LIST, "--owner", "chair@example.org"],
                     ["members", "import", LIST, str(roster)],
                     ["lists", "set", LIST, "personalize", "false"]):
            result = runner.invoke(main, ["--config", str(config), *args])
            if result.exit_code:
                raise RuntimeError(f"{args}: {result.output}")
        clock = FakeClock(datetime.now(UTC), running=True)
        daemon = Daemon(load_settings(config), clock=clock).start()
        store = Store(daemon.settings.database.url)
        try:
            start = time.monotonic()
            for n in range(posts):
                # Members take turns: one sender's 121st post in an hour would get 451 (the
                # per-sender limit of [intake], SPEC §7).
                sender = f"member{n % members}@example.net"
                lmtp_send(daemon.ports["lmtp"], sender, [LIST],
                          make_message(sender=sender, subject=f"Post {n}", body=BODY))
            wait(lambda: sink.recipients >= posts * members, "every copy delivered")

            def recorded() -> bool:
                with store.reading() as session:
                    return not session.scalar(select(func.count()).where(
                        OutRecipient.status == "queued"))

            wait(recorded, "every result recorded")
            seconds = time.monotonic() - start
            before = file_mb(db)
            clock.advance(timedelta(days=31))
            start = time.monotonic()
            daemon.run_scheduler(timeout=1800)
            pruning = time.monotonic() - start
            after = file_mb(db)
        finally:
            store.dispose()
            daemon.stop()
    print("| posts | members | recipients | send s | file before MB | pruning s "
          "| file after MB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {posts:,} | {members:,} | {posts * members:,} | {seconds:.0f} | {before:.1f} "
          f"| {pruning:.1f} | {after:.1f} |")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args()
    run(args.posts, args.members)


if __name__ == "__main__":
    main_()
