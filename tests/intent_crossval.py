"""Cross-validating the statistical reader with the guard and -request reading around it.

``python -m tests.intent_crossval`` splits every opened labelled mail into `FOLDS` parts by a
hash of its name, trains one reader per part on the other parts (as `tests.intent_training`
does), and reads each mail the way the daemon does with the reader that never saw it. It prints
the requests read right, the posts left alone and the joins taken for leaves or back, and with
``--compare`` the mails whose outcome changed since a saved run (``--out``): how a threshold or
a rule of the guard was chosen (docs/understanding.md). Takes some two minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from listserv.intent.model import Model
from tests.intent_scoring import BLIND_SETS, DATA, FRESH, NEWEST, run
from tests.intent_training import Example, examples, train

FOLDS = 5
#: The corpora read: every manifest corpus but the newest blind set (still sealed).
ROOTS = (FRESH, *(root for name, root in BLIND_SETS.items() if name != NEWEST),
         DATA / "requests-train")


def fold(name: str, folds: int = FOLDS) -> int:
    """The part a mail (by its corpus path, as `Example.name`) belongs to."""
    return zlib.crc32(name.encode()) % folds


def readers(found: Sequence[Example], folds: int = FOLDS) -> list[Model]:
    """One reader per part, each trained on the mails of the other parts."""
    return [train([e for e in found if fold(e.name, folds) != k]) for k in range(folds)]


def outcomes(trained: Sequence[Model], roots: Iterable[Path] = ROOTS) -> dict[str, list]:
    """Each mail of `roots` read with the reader of the other parts: name -> [want, got,
    address got, right?, to]."""
    out: dict[str, list] = {}
    for root in roots:
        for manifest in sorted(root.glob("manifest*.json")):
            for path, meta in sorted(json.loads(manifest.read_text("utf-8")).items()):
                name = f"{root.name}/{path}"
                want = meta.get("want") or meta["intent"]
                o = run(root, path, lang=meta.get("lang") or Path(path).parent.name[:2],
                        to=meta["to"], want=want, address=meta.get("address"),
                        reader=trained[fold(name, len(trained))])
                right = o.recognised_post if want == "post" else o.got == want
                out[name] = [want, o.got, o.got_address, right, meta["to"]]
    return out


def summary(read: dict[str, list]) -> str:
    """Requests read right, posts left alone, confusions."""
    requests = [v for v in read.values() if v[0] != "post"]
    posts = [v for v in read.values() if v[0] == "post"]
    confused = sum(1 for v in requests if v[1] in ("subscribe", "unsubscribe") and v[1] != v[0])
    return (f"requests {sum(v[3] for v in requests)}/{len(requests)}, posts left alone "
            f"{sum(v[3] for v in posts)}/{len(posts)}, confusions {confused}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="save the outcomes here (JSON)")
    parser.add_argument("--compare", type=Path, help="a saved run to list the changes against")
    args = parser.parse_args(argv)
    read = outcomes(readers(examples()))
    print(summary(read))
    if args.compare:
        before = json.loads(args.compare.read_text("utf-8"))
        for name, now in read.items():
            if name in before and before[name][3] != now[3]:
                print("gained" if now[3] else "lost", name, before[name][:3], "->", now[:3])
    if args.out:
        args.out.write_text(json.dumps(read), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
