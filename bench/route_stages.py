"""Where a post's routing time goes: CPU per stage, in-process, for the 10-member list of
bench/intake.py (its posts, its data folder made with the command line).

N posts are stored as intake stores them, then routed one at a time as the daemon's router
does: `prepare_due` (parse, administrivia guard, DMARC and DKIM look-ups), then `route_due`
(the write transaction: claim, identity, guards, handler, the members' copy, queueing).
Each stage's CPU time (`time.process_time`, so other load on a shared machine counts little)
is divided by N; the parse and the guard are also timed alone. Delivery (the worker's SMTP
transaction) is not included: bench/intake.py's py-spy profile shows it small next to
routing (docs/benchmarks.md).

    .venv/bin/python bench/route_stages.py                 # 200 posts of 2 KB
    .venv/bin/python bench/route_stages.py --posts 5 --body-kb 1024 --max-post-kb 0

The phrase files are compiled (and the guard warmed) on one small post before the clock
starts. The list's size limit (`max_post_kb`, 1024 KB by default) holds larger posts unless
--max-post-kb 0 lifts it: a held post is routed too, but its notice to the chair is made
instead of the members' copy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from bench.fanout import LIST, machine, run_cli  # noqa: E402
from bench.intake import make_post, member, prepare  # noqa: E402
from listserv.clock import SystemClock  # noqa: E402
from listserv.config import load_settings  # noqa: E402
from listserv.intent.guard import guard  # noqa: E402
from listserv.mail.message import parse  # noqa: E402
from listserv.mail.render import Renderer  # noqa: E402
from listserv.router.dispatch import prepare_due, route_due  # noqa: E402
from listserv.store.engine import Store  # noqa: E402
from listserv.store.models.core import Inbound, MailingList  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--body-kb", type=int, default=2)
    parser.add_argument("--max-post-kb", type=int, default=None,
                        help="set the list's max_post_kb (0: no limit) before routing")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="listserv-bench-stages-"))
    try:
        setup = prepare(base, "stages", 9, "")  # port 9: nothing is sent
        if args.max_post_kb is not None:
            run_cli(setup, "lists", "set", LIST, "max_post_kb", str(args.max_post_kb))
        settings = load_settings(setup.config)
        store = Store(settings.database.url)
        renderer = Renderer(settings.templates_dir, settings.outbound.eightbitmime)
        clock = SystemClock()
        posts = [make_post(n, args.body_kb) for n in range(args.posts)]
        with store.unit_of_work() as session:
            list_id = session.scalars(select(MailingList.id)).one()
            for n, raw in enumerate(posts):
                session.add(Inbound(mail_from=member(n), rcpt=LIST, list_id=list_id,
                                    role="post", raw=raw, size=len(raw)))
        guard(parse(make_post(0, 2)), LIST)  # compiles the phrase files
        cpu = time.process_time
        start = cpu()
        parsed = [parse(raw) for raw in posts]
        parse_s = cpu() - start
        start = cpu()
        for msg in parsed:
            guard(msg, LIST)
        guard_s = cpu() - start
        prepare_s = route_s = 0.0
        routed = 0
        while True:
            start = cpu()
            prepared = prepare_due(store, clock.now(), 1)
            prepare_s += cpu() - start
            if not prepared:
                break
            start = cpu()
            routed += route_due(store, settings, renderer, clock, prepared, 1)
            route_s += cpu() - start
        with store.reading() as session:
            done = session.scalars(select(Inbound.outcome)).all()
        distributed = sum(1 for o in done if o.startswith("distributed"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    n = args.posts
    print(f"machine: {machine()}")
    print(f"{n} posts of {args.body_kb} KB to a 10-member list (SQLite); {routed} routed, "
          f"{distributed} distributed")
    print(f"CPU per post: parse {1000 * parse_s / n:.2f} ms, administrivia guard "
          f"{1000 * guard_s / n:.2f} ms (both alone); prepare_due {1000 * prepare_s / n:.2f} ms "
          f"(parse, guard, look-ups, copy); route_due {1000 * route_s / n:.2f} ms (the write "
          f"transaction); routing in all {1000 * (prepare_s + route_s) / n:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
