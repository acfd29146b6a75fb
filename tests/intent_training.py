"""Training the statistical reader (`listserv.intent.model`) on the mails we wrote.

``python -m tests.intent_training`` writes ``listserv/intent/model.json`` from the labelled
corpora below; ``tests/test_intent_model.py`` checks that the shipped file is what this makes.
Training is deterministic: the examples in a fixed order, shuffled by a fixed seed, plain
floating point, weights rounded to four places.

The model is a multinomial logistic regression (softmax over join, leave, other) fitted by
stochastic gradient descent with AdaGrad steps and an L2 penalty; features seen in fewer than
`MIN_COUNT` mails are left out, so a name or a date in one mail teaches nothing.
"""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from listserv.intent.freetext import free_text
from listserv.intent.model import CLASSES, Model, features, word_count
from listserv.intent.request import parse
from tests.intent_scoring import BLIND_SETS, NEWEST

DATA = Path(__file__).parent / "data"
LIST = "shma"
MODEL_JSON = Path(__file__).parent.parent / "listserv" / "intent" / "model.json"
#: The corpora the shipped model is trained on: every labelled mail we have written, except
#: the newest blind set (still sealed: tests/intent_scoring.py).
CORPORA = ("requests", "requests-fresh",
           *(root.name for name, root in BLIND_SETS.items() if name != NEWEST),
           "understanding-dev", "requests-train")
MIN_COUNT = 2
EPOCHS = 10
RATE = 0.1
L2 = 1e-3
SEED = 21


@dataclass(frozen=True)
class Example:
    """One labelled mail: where it came from, its features and its class index."""

    name: str
    features: tuple[str, ...]
    label: int


def _label(want: str) -> int:
    return CLASSES.index(want) if want in CLASSES[:2] else CLASSES.index("other")


def _of_message(name: str, msg: email.message.EmailMessage, to: str, want: str) -> Example:
    p = parse(msg, LIST)
    reading = free_text(p.body.own, p.subject, p.subject_is_reply, LIST, p.lang,
                        to_request=to != "post")
    return Example(name, tuple(features(reading, p.lang, on_list=to == "post",
                                        is_reply=p.subject_is_reply,
                                        words=word_count(p.body.own),
                                        quoted=p.body.quoted)), _label(want))


def _read(path: Path) -> email.message.EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def corpus(name: str) -> list[Example]:
    """The labelled mails of one corpus under tests/data, as examples."""
    root = DATA / name
    out = []
    if name == "understanding-dev":  # want|to|text, one sentence-sized mail a line
        for n, line in enumerate((root / "cases.txt").read_text(encoding="utf-8").splitlines()):
            if line.strip() and not line.startswith("#"):
                want, to, text = line.split("|", 2)
                msg = email.message.EmailMessage()
                msg["To"] = f"{LIST}@lists.example.org"
                msg.set_content(text)
                out.append(_of_message(f"{name}:{n}", msg, to, want))
        return out
    manifests = sorted(root.glob("manifest*.json"))
    for manifest in manifests:
        for path, meta in sorted(json.loads(manifest.read_text(encoding="utf-8")).items()):
            mail = root / path if (root / path).exists() else DATA / path
            want = meta.get("want") or meta["intent"]
            out.append(_of_message(f"{name}/{path}", _read(mail), meta["to"], want))
    return out


def train(examples: Sequence[Example], *, epochs: int = EPOCHS, rate: float = RATE,
          l2: float = L2, seed: int = SEED) -> Model:
    """A multinomial logistic regression fitted to `examples` (see the module docstring)."""
    counts = Counter(f for e in examples for f in set(e.features))
    kept = {f for f, c in counts.items() if c >= MIN_COUNT}
    k = len(CLASSES)
    rows = [([f for f in e.features if f in kept], e.label) for e in examples]
    weights: dict[str, list[float]] = {f: [0.0] * k for f in sorted(kept)}
    squares: dict[str, list[float]] = {f: [1e-8] * k for f in sorted(kept)}
    bias, bias_sq = [0.0] * k, [1e-8] * k
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            feats, label = rows[i]
            scores = list(bias)
            for f in feats:
                for c, x in enumerate(weights[f]):
                    scores[c] += x
            top = max(scores)
            exp = [math.exp(s - top) for s in scores]
            total = sum(exp)
            grad = [e / total - (1.0 if c == label else 0.0) for c, e in enumerate(exp)]
            for c in range(k):
                bias_sq[c] += grad[c] ** 2
                bias[c] -= rate * grad[c] / math.sqrt(bias_sq[c])
            for f in feats:
                w, sq = weights[f], squares[f]
                for c in range(k):
                    g = grad[c] + l2 * w[c]
                    sq[c] += g * g
                    w[c] -= rate * g / math.sqrt(sq[c])
    return Model(CLASSES, tuple(bias),
                 {f: tuple(w) for f, w in weights.items() if max(abs(x) for x in w) >= 5e-3})


def examples(names: Iterable[str] = CORPORA) -> list[Example]:
    """Every labelled mail of the corpora `names` that exist."""
    return [e for name in names if (DATA / name).exists() for e in corpus(name)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_JSON)
    args = parser.parse_args(argv)
    found = examples()
    model = train(found)
    # through JSON and back, so the file is exactly what the package loads
    args.out.write_text(model.to_json(), encoding="utf-8")
    print(f"{len(found)} mails, {len(model.weights)} features -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
