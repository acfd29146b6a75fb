"""Archive search benchmark: `listserv archive search` over 100,000 archived posts.

It makes a data folder outside the repository with the real command line (`listserv init`,
`lists create`), fills the list's archive with N posts (100,000 by default) written straight
into the store in batches (the same rows `archive.keeping.keep` writes: the message bytes, the
author, subject and text, through the same triggers / generated column that index them), then
times searches of words of every frequency:

- in process: `listserv.archive.search.search` in a reading unit of work, the median of
  `--repeat` runs after one warm-up (the query itself);
- the command: `listserv archive search LIST WORDS --json` as a subprocess, wall time and CPU
  time (Python start-up, config and the query), the median of `--repeat` runs; and
  `listserv --version` alone, the start-up without the query.

The text of the posts is drawn from a vocabulary of 20,000 words with Zipf frequencies (the
commonest word is in nearly every post), plus marker words placed in a known number of posts.

    .venv/bin/python bench/archive_search.py                       # SQLite, 100,000 posts
    .venv/bin/python bench/archive_search.py --posts 10000         # quicker
    .venv/bin/python bench/archive_search.py --postgresql postgresql+psycopg://postgres@127.0.0.1:5432/test

docs/benchmarks.md has the figures (acceptance point 6 of issue 17: under a second).
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from bench.fanout import LIST, Schemas, machine, run_cli, set_up_list  # noqa: E402
from listserv.archive.search import search  # noqa: E402
from listserv.store.engine import Store  # noqa: E402
from listserv.store.models.archive import ArchivedPost  # noqa: E402
from listserv.store.models.core import MailingList  # noqa: E402

#: Words placed in a known share of the posts (word, share), so each query's hits are known.
MARKERS = (("orchard", 0.0002), ("budget", 0.01), ("volunteers", 0.1), ("meeting", 0.5))
#: What is searched: one word of each frequency, two words together, an author's name.
QUERIES = ("orchard", "budget", "volunteers", "meeting", "w0", "budget volunteers", "Nadia")
AUTHORS = ("Jane Doe", "Bob Roe", "Nadia Haddad", "Zoë Ñúñez", "Li Wei", "Ana Souza",
           "Anne Martin", "Jürgen Weiß")
BATCH = 2000
VOCABULARY = 20_000


def post_text(rng: random.Random, words: list[str], cumulative: list[float]) -> str:
    """About 200 words in lines of about 70 characters, with the markers at their shares."""
    chosen = rng.choices(words, cum_weights=cumulative, k=rng.randint(120, 280))
    chosen += [word for word, share in MARKERS if rng.random() < share]
    rng.shuffle(chosen)
    lines, line = [], []
    for word in chosen:
        line.append(word)
        if sum(len(w) + 1 for w in line) > 70:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def rows(count: int, list_id: int, seed: int = 17):
    """The archive's rows, BATCH at a time, as `keep` writes them."""
    rng = random.Random(seed)
    words = [f"w{n}" for n in range(VOCABULARY)]
    cumulative = list(itertools.accumulate(1 / (n + 1) for n in range(VOCABULARY)))
    start = datetime(2020, 1, 1, tzinfo=UTC)
    batch = []
    for number in range(1, count + 1):
        name = rng.choice(AUTHORS)
        address = name.split()[0].lower().encode("ascii", "ignore").decode() + "@example.org"
        subject = " ".join(rng.choices(words[:2000], k=rng.randint(2, 7)))
        text = post_text(rng, words, cumulative)
        message_id = f"<{number}.{seed}@example.org>"
        date = start + timedelta(minutes=30 * number)
        raw = (f"List-Id: <bench.lists.example.org>\r\nFrom: {address}\r\n"
               f"Subject: [bench] {subject}\r\nMessage-ID: {message_id}\r\n"
               f"Date: {date:%a, %d %b %Y %H:%M:%S +0000}\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n\r\n"
               + text.replace("\n", "\r\n")).encode()
        batch.append({"list_id": list_id, "number": number, "message_id": message_id,
                      "in_reply_to": "", "thread_id": message_id, "references": "",
                      "sender": address, "sender_name": name, "subject": subject,
                      "text": text, "date": date, "archived_at": date, "raw": raw,
                      "size": len(raw)})
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(store: Store, count: int) -> float:
    """Write `count` posts into the list's archive; returns the seconds it took."""
    began = time.monotonic()
    with store.reading() as session:
        list_id = session.scalar(select(MailingList.id))
    done = 0
    for batch in rows(count, list_id):
        with store.unit_of_work() as session:
            session.execute(ArchivedPost.__table__.insert(), batch)
        done += len(batch)
        print(f"\r  archived {done:,} posts", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if store.engine.dialect.name == "postgresql":
        # The statistics autovacuum gathers after such a load, which the planner needs.
        with store.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE archived_posts")
    return time.monotonic() - began


def in_process(store: Store, query: str, repeat: int) -> tuple[float, int]:
    """Median seconds of the search in a reading unit of work (after a warm-up), and hits."""
    times = []
    hits = 0
    for n in range(repeat + 1):
        began = time.monotonic()
        with store.reading() as session:
            ml = session.scalars(select(MailingList)).one()
            hits = len(search(session, ml, query))
        if n:
            times.append(time.monotonic() - began)
    return statistics.median(times), hits


def command(setup, args: tuple[str, ...], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (user + system, which a loaded machine does
    not inflate) of `listserv ARGS` as a subprocess."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.monotonic()
        run_cli(setup, *args)
        walls.append(time.monotonic() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def run(base: Path, posts: int, db_url: str, repeat: int, backend: str) -> list[str]:
    setup, _roster = set_up_list(base / backend, [], db_url, 9)
    store = Store(db_url)
    try:
        seconds = fill(store, posts)
        wall, cpu = command(setup, ("--version",), repeat)
        lines = [f"{backend}: {posts:,} posts archived in {seconds:.0f} s; "
                 f"`listserv --version` alone: {wall:.2f} s wall, {cpu:.2f} s CPU",
                 f"{'query':<20} {'hits':>5} {'search s':>9} {'command s':>10} {'CPU s':>6}"]
        for query in QUERIES:
            took, hits = in_process(store, query, repeat)
            wall, cpu = command(setup, ("archive", "search", LIST, *query.split(), "--json"),
                                repeat)
            lines.append(f"{query:<20} {hits:>5} {took:>9.3f} {wall:>10.3f} {cpu:>6.2f}")
            print(lines[-1], file=sys.stderr)
    finally:
        store.dispose()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgresql", metavar="URL", default="",
                        help="Run on PostgreSQL (a schema of its own, dropped at the end).")
    parser.add_argument("--keep", action="store_true", help="Keep the data folder.")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="listserv-bench-archive-"))
    schemas = Schemas()
    try:
        if args.postgresql:
            url, backend = schemas.create(args.postgresql), "postgresql"
        else:
            # In the data folder `set_up_list` makes for the backend.
            url, backend = f"sqlite:///{base / 'sqlite' / 'data' / 'listserv.db'}", "sqlite"
        lines = run(base, args.posts, url, args.repeat, backend)
    finally:
        schemas.drop_all()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(machine())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
