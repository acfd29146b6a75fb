"""Request understanding measured on the frozen corpus (issue 4, acceptance 1).

Every file in tests/data/requests/manifest.json is run the way the daemon would run it: mail to
-request and -join through `understand`, mail to the list address (requests and posts) through
`guard`. Prints, per language, precision and recall per intent and overall, the guard's
precision and language detection; asserts the targets:

* recall >= 0.95 in every language (a request is recalled when its first command has the right
  kind -- and the right delivery for `set` -- and, on the list address, the guard said REQUEST);
* zero subscribe <-> unsubscribe confusions;
* administrivia-guard precision >= 0.98, and no post classified REQUEST (UNSURE -- held for the
  chair -- is allowed but counted);
* language detection accuracy >= 0.9.

The corpus is frozen: tune listserv/phrases/*.toml and listserv/intent/, never the data.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from listserv.intent.guard import Guard, guard
from listserv.intent.request import understand
from listserv.intent.understanding import Kind

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "requests" / "manifest.json"
LIST = "shma"
LANGS = ("en", "es", "fr", "de", "pt")
INTENTS = ("subscribe", "unsubscribe", "help", "info", "set")


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
    def correct(self) -> bool:
        if self.got != self.want:
            return False
        return self.want != "set" or self.got_delivery == self.want_delivery


def _run(path: str, meta: dict) -> Outcome:
    msg = email.message_from_bytes((DATA / path).read_bytes(), policy=email.policy.default)
    decision = None
    if meta["to"] == "post":
        decision, u = guard(msg, LIST)
    else:
        u = understand(msg, LIST)
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
        path=path, lang=meta["lang"], to=meta["to"], want=meta["intent"],
        want_delivery=meta["delivery"], want_address=meta["address"], got=got,
        got_delivery=first.delivery if first else None,
        got_address=first.address if first else None, got_lang=u.lang, guard=decision,
        sender=(msg["From"].addresses[0].addr_spec.lower() if msg["From"] else ""),
    )


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return [_run(path, meta) for path, meta in sorted(manifest.items())]


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def _table(outcomes: list[Outcome]) -> str:
    lines = ["", "Request understanding on the frozen corpus",
             f"{'lang':<5}{'intent':<13}{'n':>4}{'prec':>8}{'recall':>8}"]
    for lang in LANGS:
        mine = [o for o in outcomes if o.lang == lang]
        for intent in INTENTS:
            labelled = [o for o in mine if o.want == intent]
            predicted = [o for o in mine if o.got == intent]
            hits = sum(o.correct for o in labelled)
            lines.append(f"{lang:<5}{intent:<13}{len(labelled):>4}"
                         f"{_ratio(sum(o.correct for o in predicted), len(predicted)):>8.3f}"
                         f"{_ratio(hits, len(labelled)):>8.3f}")
        requests = [o for o in mine if o.is_request]
        predicted = [o for o in mine if o.got in INTENTS]
        lines.append(f"{lang:<5}{'ALL':<13}{len(requests):>4}"
                     f"{_ratio(sum(o.correct for o in predicted), len(predicted)):>8.3f}"
                     f"{_ratio(sum(o.correct for o in requests), len(requests)):>8.3f}")
    on_list = [o for o in outcomes if o.to == "post"]
    intercepted = [o for o in on_list if o.guard is Guard.REQUEST]
    posts = [o for o in outcomes if not o.is_request]
    requests_on_list = [o for o in on_list if o.is_request]
    lines += [
        "",
        f"guard: {len(on_list)} mails to the list ({len(requests_on_list)} requests, "
        f"{len(posts)} posts); REQUEST {len(intercepted)}, precision "
        f"{_ratio(sum(o.is_request for o in intercepted), len(intercepted)):.3f} "
        f"(right intent {_ratio(sum(o.correct for o in intercepted), len(intercepted)):.3f}); "
        f"posts: {Counter(o.guard.value for o in posts if o.guard)}",
        "guard on requests to the list: "
        f"{Counter(o.guard.value for o in requests_on_list if o.guard)}",
    ]
    by_lang = Counter(o.lang for o in outcomes)
    right = Counter(o.lang for o in outcomes if o.got_lang == o.lang)
    lines.append("language detection: " + ", ".join(
        f"{lang} {right[lang]}/{by_lang[lang]}" for lang in LANGS)
        + f"; overall {_ratio(sum(right.values()), len(outcomes)):.3f}")
    with_address = [o for o in outcomes if o.want_address]
    digest_subscribe = [o for o in outcomes if o.want == "subscribe" and o.want_delivery]
    lines.append(
        f"other address: {sum(o.got_address == o.want_address for o in with_address)}"
        f"/{len(with_address)} right; subscribe with delivery: "
        f"{sum(o.got_delivery == o.want_delivery for o in digest_subscribe)}"
        f"/{len(digest_subscribe)} right")
    misses = [o for o in outcomes if (o.is_request and not o.correct)
              or (not o.is_request and o.guard is not Guard.POST)]
    for o in misses:
        lines.append(f"  miss {o.path}: want {o.want}/{o.want_delivery}, "
                     f"got {o.got}/{o.got_delivery}")
    return "\n".join(lines)


def test_print_table(outcomes: list[Outcome], capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(_table(outcomes))


def test_corpus_is_complete(outcomes: list[Outcome]) -> None:
    assert len(outcomes) == 315
    assert sum(o.is_request for o in outcomes) == 185
    assert Counter(o.lang for o in outcomes if o.is_request) == {lang: 37 for lang in LANGS}


@pytest.mark.parametrize("lang", LANGS)
def test_recall_per_language(outcomes: list[Outcome], lang: str) -> None:
    requests = [o for o in outcomes if o.lang == lang and o.is_request]
    missed = [o.path for o in requests if not o.correct]
    recall = _ratio(len(requests) - len(missed), len(requests))
    assert recall >= 0.95, f"{lang} recall {recall:.3f}, missed {missed}"


def test_no_subscribe_unsubscribe_confusion(outcomes: list[Outcome]) -> None:
    pairs = {("subscribe", "unsubscribe"), ("unsubscribe", "subscribe")}
    confused = [o.path for o in outcomes if (o.want, o.got) in pairs]
    assert confused == []


def test_guard_precision(outcomes: list[Outcome]) -> None:
    intercepted = [o for o in outcomes if o.guard is Guard.REQUEST]
    wrong = [o.path for o in intercepted if not o.is_request]
    assert _ratio(len(intercepted) - len(wrong), len(intercepted)) >= 0.98, wrong


def test_no_post_distributed_as_request_or_swallowed(outcomes: list[Outcome]) -> None:
    posts = [o for o in outcomes if not o.is_request]
    assert [o.path for o in posts if o.guard is Guard.REQUEST] == []
    unsure = [o.path for o in posts if o.guard is Guard.UNSURE]
    print(f"posts held as UNSURE: {len(unsure)} {unsure}")
    assert len(unsure) <= 5, unsure  # held for the chair, not lost -- but keep it rare


def test_language_detection(outcomes: list[Outcome]) -> None:
    right = sum(o.got_lang == o.lang for o in outcomes)
    wrong = [(o.path, o.got_lang) for o in outcomes if o.got_lang != o.lang]
    assert _ratio(right, len(outcomes)) >= 0.9, wrong


def test_other_addresses(outcomes: list[Outcome]) -> None:
    """Requests for a colleague's or an old/new address carry that address."""
    with_address = [o for o in outcomes if o.want_address]
    wrong = [(o.path, o.got_address) for o in with_address if o.got_address != o.want_address]
    assert _ratio(len(with_address) - len(wrong), len(with_address)) >= 0.9, wrong
    # the handler compares with the sender; any other address found is spurious
    spurious = [(o.path, o.got_address) for o in outcomes
                if o.is_request and o.correct and not o.want_address and o.got_address
                and o.got_address != o.sender]
    assert spurious == []
