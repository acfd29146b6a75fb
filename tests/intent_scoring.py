"""Scoring request understanding on a labelled corpus of mails (shared by the corpus tests).

A mail is run the way the daemon runs it: mail to -request and -join through `understand`,
mail to the list address (requests and posts) through the administrivia `guard`. An
:class:`Outcome` records what was wanted and what was read; :func:`table` prints precision
and recall per language and intent, the guard's verdicts on posts and the misses.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from listserv.intent.guard import Guard, guard
from listserv.intent.model import Model
from listserv.intent.request import understand
from listserv.intent.understanding import Kind

LIST = "shma"
LANGS = ("en", "es", "fr", "de", "pt")
DATA = Path(__file__).parent / "data"
#: The first corpus (issue 4), written after the phrase files: one manifest for all languages.
OLD = DATA / "requests"
#: The fresh corpus (issue 21), written blind: manifest-{lang}.json, a tuning and a sealed half.
FRESH = DATA / "requests-fresh"
#: The blind sets after the first (issue 21), by name: each written blind, frozen with its hashes,
#: and scored once after the tuning on the one before (docs/understanding.md has every table).
BLIND_SETS = {name: DATA / f"requests-fresh-{n}" for n, name in enumerate(
    ("second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
     "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
     "seventeenth", "eighteenth", "nineteenth", "twentieth", "twenty-first"),
    start=2)}
#: The newest blind set is still sealed: never opened, never tuned on; every earlier one was
#: opened after it was scored and is training material now.
NEWEST = "twenty-first"


@dataclass(frozen=True)
class Outcome:
    path: str
    lang: str
    to: str
    want: str  # intent label: a request intent or "post"
    want_delivery: str | None
    want_address: str | None
    got: str  # predicted: a request kind, "post", "unsure" or "unclear"
    got_delivery: str | None
    got_address: str | None
    got_lang: str
    guard: Guard | None
    sender: str

    @property
    def is_request(self) -> bool:
        return self.want != "post"

    @property
    def recognised_post(self) -> bool:
        """A post left alone: distributed by the guard (POST), or -- sent to -request by
        mistake, where nothing is distributed -- read as nothing to act on: unclear (the sender
        gets the help text, the chair sees it), a question the list's info or help text
        answers ("when is the next meeting?"), or a request for peer-input time at a meeting,
        one of the kinds a request is read as (SPEC §4, §5), which is what such a mail asks."""
        if self.is_request:
            return False
        return self.got == "post" if self.to == "post" else self.got in ("unclear", "info",
                                                                         "help", "peer_input")

    @property
    def correct(self) -> bool:
        if self.got != self.want:
            return False
        return self.want != "set" or self.got_delivery == self.want_delivery


def run(root: Path, path: str, *, lang: str, to: str, want: str,
        delivery: str | None = None, address: str | None = None,
        reader: Model | None = None) -> Outcome:
    """Read the mail `root`/`path`, sent to `to` ("request", "join" or "post": the list), with
    the statistical `reader` (default: the shipped one)."""
    msg = email.message_from_bytes((root / path).read_bytes(), policy=email.policy.default)
    decision = None
    if to == "post":
        decision, u = guard(msg, LIST, reader=reader)
    else:
        u = understand(msg, LIST, reader=reader)
    first = u.commands[0] if u.commands else None
    if decision is Guard.POST:
        got = "post"
    elif decision is Guard.UNSURE:
        got = "unsure"
    elif first is None:
        got = Kind.UNCLEAR.value
    else:
        got = first.kind.value
    return Outcome(
        path=path, lang=lang, to=to, want=want, want_delivery=delivery,
        want_address=address, got=got,
        got_delivery=first.delivery if first else None,
        got_address=first.address if first else None, got_lang=u.lang, guard=decision,
        sender=(msg["From"].addresses[0].addr_spec.lower() if msg["From"] else ""),
    )


def old_corpus() -> list[Outcome]:
    """Every mail of the first corpus, read."""
    manifest = json.loads((OLD / "manifest.json").read_text(encoding="utf-8"))
    return [run(DATA, path, lang=meta["lang"], to=meta["to"], want=meta["intent"],
                delivery=meta["delivery"], address=meta["address"])
            for path, meta in sorted(manifest.items())]


def fresh_corpus(half: str, root: Path = FRESH, reader: Model | None = None) -> list[Outcome]:
    """Every mail of one half ("tuning" or "sealed") of a blind corpus under `root`, read (with
    the statistical `reader`; default: the shipped one)."""
    out = []
    for lang in LANGS:
        manifest = json.loads((root / f"manifest-{lang}.json").read_text(encoding="utf-8"))
        out += [run(root, path, lang=lang, to=meta["to"], want=meta["want"],
                    address=meta["address"], reader=reader)
                for path, meta in sorted(manifest.items()) if path.startswith(f"{half}/")]
    return out


class Sealed(list[Outcome]):
    """The sealed half's outcomes: a list that never shows its items (a failing test prints its
    arguments; the sealed half's per-mail results are never printed)."""

    def __repr__(self) -> str:
        return f"<the sealed half: {len(self)} mails>"


def ratio(a: int, b: int) -> float:
    """a / b, and 1.0 for nothing out of nothing."""
    return a / b if b else 1.0


def recall(outcomes: Sequence[Outcome]) -> float:
    """Share of the requests among `outcomes` read right."""
    requests = [o for o in outcomes if o.is_request]
    return ratio(sum(o.correct for o in requests), len(requests))


def precision(outcomes: Sequence[Outcome], intents: Sequence[str]) -> float:
    """Share right of the mails among `outcomes` read as one of `intents`."""
    predicted = [o for o in outcomes if o.got in intents]
    return ratio(sum(o.correct for o in predicted), len(predicted))


def confusions(outcomes: Sequence[Outcome]) -> list[str]:
    """Joins read as leaves and leaves read as joins."""
    pairs = {("subscribe", "unsubscribe"), ("unsubscribe", "subscribe")}
    return [o.path for o in outcomes if (o.want, o.got) in pairs]


def table(outcomes: Sequence[Outcome], title: str, intents: Sequence[str], *,
          misses: bool = True) -> str:
    """Precision and recall per language and intent, the guard on posts, language detection
    and (unless `misses` is False: a sealed half) the misses one per line."""
    lines = ["", title, f"{'lang':<5}{'intent':<13}{'n':>4}{'prec':>8}{'recall':>8}"]
    for lang in LANGS:
        mine = [o for o in outcomes if o.lang == lang]
        if not mine:
            continue
        for intent in intents:
            labelled = [o for o in mine if o.want == intent]
            lines.append(f"{lang:<5}{intent:<13}{len(labelled):>4}"
                         f"{precision(mine, [intent]):>8.3f}{recall(labelled):>8.3f}")
        requests = [o for o in mine if o.is_request]
        posts = [o for o in mine if not o.is_request]
        lines.append(f"{lang:<5}{'ALL':<13}{len(requests):>4}"
                     f"{precision(mine, intents):>8.3f}{recall(requests):>8.3f}")
        lines.append(f"{lang:<5}{'posts':<13}{len(posts):>4}  left alone "
                     f"{sum(o.recognised_post for o in posts)}/{len(posts)}")
    on_list = [o for o in outcomes if o.to == "post"]
    intercepted = [o for o in on_list if o.guard is Guard.REQUEST]
    posts = [o for o in outcomes if not o.is_request]
    requests_on_list = [o for o in on_list if o.is_request]
    lines += [
        "",
        f"guard: {len(on_list)} mails to the list ({len(requests_on_list)} requests, "
        f"{len(posts)} posts); REQUEST {len(intercepted)}, precision "
        f"{ratio(sum(o.is_request for o in intercepted), len(intercepted)):.3f} "
        f"(right intent {ratio(sum(o.correct for o in intercepted), len(intercepted)):.3f}); "
        f"posts: {Counter(o.guard.value for o in posts if o.guard)}",
        "guard on requests to the list: "
        f"{Counter(o.guard.value for o in requests_on_list if o.guard)}",
    ]
    by_lang = Counter(o.lang for o in outcomes)
    right = Counter(o.lang for o in outcomes if o.got_lang == o.lang)
    lines.append("language detection: " + ", ".join(
        f"{lang} {right[lang]}/{by_lang[lang]}" for lang in LANGS if by_lang[lang])
        + f"; overall {ratio(sum(right.values()), len(outcomes)):.3f}")
    with_address = [o for o in outcomes if o.want_address]
    digest_subscribe = [o for o in outcomes if o.want == "subscribe" and o.want_delivery]
    lines.append(
        f"other address: {sum(o.got_address == o.want_address for o in with_address)}"
        f"/{len(with_address)} right; subscribe with delivery: "
        f"{sum(o.got_delivery == o.want_delivery for o in digest_subscribe)}"
        f"/{len(digest_subscribe)} right")
    if misses:
        for o in outcomes:
            if (o.is_request and not o.correct) or (not o.is_request and not o.recognised_post):
                lines.append(f"  miss {o.path}: want {o.want}/{o.want_delivery}, "
                             f"got {o.got}/{o.got_delivery}")
    return "\n".join(lines)
