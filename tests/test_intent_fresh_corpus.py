"""Request understanding on the fresh corpus, written blind (issue 21, acceptance 1 and 2).

tests/data/requests-fresh/ was written by helpers who never saw the phrase files, the intent
code or the first corpus; it is split into a tuning half (read while tuning) and a sealed half,
frozen by the hashes in sealed-{lang}.sha256. The sealed half was scored once after the first
tuning, missed the targets, and has since been opened and tuned on: it is tuning material now.
tests/data/requests-fresh-2/ is the second blind set (sealed only), scored once after that
tuning, then opened: it trains the statistical reader (listserv/intent/model.py) now.
tests/data/requests-fresh-3/ is the third blind set, written blind at the same time as the
reader's training corpus (tests/data/requests-train/) by other helpers, frozen before the reader
landed and scored once with it, then opened: it is training material now.
tests/data/requests-fresh-4/ to -7/ are the fourth to seventh blind sets, each frozen after the
one before was scored, scored once after the tuning on it, then opened and trained on too.
tests/data/requests-fresh-8/ is the eighth, frozen after the seventh was scored and scored once
after the tuning on it; where it missed a target the assertion is a strict xfail with the
figures then. Mails are read the way
the daemon reads them (tests/intent_scoring.py, shared with tests/test_intent_corpus.py).

Printed: precision and recall per language for the first corpus and every blind set, with the
misses of those no longer sealed. Asserted on each half of the fresh corpus, per language:

* recall >= 0.95 on joins and leaves together (a request to the list address counts only when
  the guard routes it as a request: UNSURE -- held for the chair -- is a miss);
* zero subscribe <-> unsubscribe confusions;
* every ordinary post recognised as a post: on the list address the guard says POST (a post
  held as UNSURE for the chair is not counted as recognised: its sender waits for a moderator
  for nothing); a post sent to -request by mistake, where nothing is distributed, is recognised
  when it is read as unclear (nothing acted on: the help text, and the chair's list).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.intent_scoring import (
    FRESH,
    FRESH_2,
    FRESH_3,
    FRESH_4,
    FRESH_5,
    FRESH_6,
    FRESH_7,
    FRESH_8,
    LANGS,
    Outcome,
    Sealed,
    confusions,
    fresh_corpus,
    old_corpus,
    recall,
    table,
)

TARGET_RECALL = 0.95
# One worker scores every corpus once for the whole module (some 15 s), not each worker again.
pytestmark = pytest.mark.xdist_group("intent")


@pytest.fixture(scope="module")
def tuning() -> list[Outcome]:
    return fresh_corpus("tuning")


@pytest.fixture(scope="module")
def sealed() -> list[Outcome]:
    return Sealed(fresh_corpus("sealed"))


@pytest.fixture(scope="module")
def second() -> list[Outcome]:
    return fresh_corpus("sealed", FRESH_2)


@pytest.fixture(scope="module")
def third() -> list[Outcome]:
    return fresh_corpus("sealed", FRESH_3)


@pytest.fixture(scope="module")
def fourth() -> list[Outcome]:
    return fresh_corpus("sealed", FRESH_4)


@pytest.fixture(scope="module")
def fifth() -> list[Outcome]:
    return fresh_corpus("sealed", FRESH_5)


@pytest.fixture(scope="module")
def sixth() -> list[Outcome]:
    return fresh_corpus("sealed", FRESH_6)


@pytest.fixture(scope="module")
def seventh() -> list[Outcome]:
    return fresh_corpus("sealed", FRESH_7)


@pytest.fixture(scope="module")
def eighth() -> list[Outcome]:
    return Sealed(fresh_corpus("sealed", FRESH_8))


def _hashes(root: Path, lang: str) -> dict[str, str]:
    recorded = {}
    for line in (root / f"sealed-{lang}.sha256").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            recorded[name.lstrip("*")] = digest
    return recorded


@pytest.mark.parametrize("root", [FRESH, FRESH_2, FRESH_3, FRESH_4, FRESH_5, FRESH_6, FRESH_7,
                                  FRESH_8],
                         ids=["first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                              "eighth"])
@pytest.mark.parametrize("lang", LANGS)
def test_sealed_half_is_untouched(root: Path, lang: str) -> None:
    """Every sealed file has the hash recorded at the freeze; none is missing, none added."""
    recorded = _hashes(root, lang)
    present = {f"sealed/{lang}/{p.name}" for p in (root / "sealed" / lang).glob("*")}
    assert recorded, f"no hashes for {lang}"
    assert sorted(present - set(recorded)) == [], "files added to the sealed half"
    assert sorted(set(recorded) - present) == [], "files missing from the sealed half"
    changed = [name for name, digest in recorded.items()
               if hashlib.sha256((root / name).read_bytes()).hexdigest() != digest]
    assert len(changed) == 0, f"{len(changed)} sealed files changed since the freeze"


def test_print_tables(tuning: list[Outcome], sealed: list[Outcome], second: list[Outcome],
                      third: list[Outcome], fourth: list[Outcome], fifth: list[Outcome],
                      sixth: list[Outcome], seventh: list[Outcome], eighth: list[Outcome],
                      capsys: pytest.CaptureFixture[str]) -> None:
    intents = ("subscribe", "unsubscribe")
    with capsys.disabled():
        print(table(old_corpus(), "First corpus (tests/data/requests)",
                    ("subscribe", "unsubscribe", "help", "info", "set"), misses=False))
        print(table(tuning, "Fresh corpus, tuning half", intents))
        print(table(sealed, "Fresh corpus, first sealed half (scored once, then tuned on)",
                    intents))
        print(table(second, "Second blind corpus (scored once, then trained on)", intents))
        print(table(third, "Third blind corpus (scored once, then trained on)", intents))
        print(table(fourth, "Fourth blind corpus (scored once, then trained on)", intents))
        print(table(fifth, "Fifth blind corpus (scored once, then trained on)", intents))
        print(table(sixth, "Sixth blind corpus (scored once, then trained on)", intents))
        print(table(seventh, "Seventh blind corpus (scored once, then trained on)", intents))
        print(table(eighth, "Eighth blind corpus, sealed (figures only)", intents, misses=False))
    assert len(second) == sum(1 for _ in (FRESH_2 / "sealed").glob("*/*.eml"))
    assert len(third) == sum(1 for _ in (FRESH_3 / "sealed").glob("*/*.eml"))
    assert len(fourth) == sum(1 for _ in (FRESH_4 / "sealed").glob("*/*.eml"))
    assert len(fifth) == sum(1 for _ in (FRESH_5 / "sealed").glob("*/*.eml"))
    assert len(sixth) == sum(1 for _ in (FRESH_6 / "sealed").glob("*/*.eml"))
    assert len(seventh) == sum(1 for _ in (FRESH_7 / "sealed").glob("*/*.eml"))
    assert len(eighth) == sum(1 for _ in (FRESH_8 / "sealed").glob("*/*.eml"))
    assert len(tuning) + len(sealed) == sum(
        1 for lang in LANGS for _ in (FRESH / "tuning" / lang).glob("*.eml")) + sum(
        1 for lang in LANGS for _ in (FRESH / "sealed" / lang).glob("*.eml"))


def _check(outcomes: list[Outcome], lang: str, what: str, *, sealed: bool) -> None:
    mine = [o for o in outcomes if o.lang == lang]
    requests = [o for o in mine if o.is_request]
    posts = [o for o in mine if not o.is_request]
    # only counts are asserted (the assertion shows its operands); the tuning half's failures
    # also name the mails, the sealed half's never do
    if what == "recall":
        got = recall(requests)
        missed = "" if sealed else str([(o.path, o.want, o.got)
                                        for o in requests if not o.correct])
        assert got >= TARGET_RECALL, f"{lang} recall {got:.3f} of {len(requests)} {missed}"
    elif what == "confusions":
        confused = len(confusions(mine))
        named = "" if sealed else str(confusions(mine))
        assert confused == 0, f"{lang}: {confused} confusions {named}"
    else:
        wrong = sum(not o.recognised_post for o in posts)
        named = "" if sealed else str([(o.path, o.to, o.got)
                                       for o in posts if not o.recognised_post])
        assert wrong == 0, f"{lang}: {wrong} of {len(posts)} posts not left alone {named}"


CHECKS = ("recall", "confusions", "posts")


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_tuning_half(tuning: list[Outcome], lang: str, what: str) -> None:
    _check(tuning, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_first_sealed_half_after_it_was_scored_and_tuned_on(sealed: list[Outcome], lang: str,
                                                            what: str) -> None:
    """The first sealed half was scored once (recall en 0.773, es 0.864, fr 0.850: below the
    target; docs/understanding.md), then opened and tuned on like the tuning half."""
    _check(sealed, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_second_blind_set_after_it_was_scored_and_trained_on(second: list[Outcome], lang: str,
                                                             what: str) -> None:
    """The second blind corpus was scored once (recall en 0.875, es 0.958, fr 0.875, de 0.833,
    pt 0.875; posts left alone en 14/16, fr 15/16, pt 13/16: docs/understanding.md), then
    opened: it is training material of the statistical reader now."""
    _check(second, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_third_blind_set_after_it_was_scored_and_trained_on(third: list[Outcome], lang: str,
                                                            what: str) -> None:
    """The third blind corpus was scored once with the statistical reader (en recall 0.917,
    es 14 of 16 posts left alone, every other target met: docs/understanding.md), then opened:
    it is training material now."""
    _check(third, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_fourth_blind_set_after_it_was_scored_and_trained_on(fourth: list[Outcome], lang: str,
                                                             what: str) -> None:
    """The fourth blind corpus was scored once (fr recall 0.875 with 1 confusion and 15 of 16
    posts, de recall 0.917, pt 14 of 16 posts; en and es met every target:
    docs/understanding.md), then opened: it is training material now."""
    _check(fourth, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_fifth_blind_set_after_it_was_scored_and_trained_on(fifth: list[Outcome], lang: str,
                                                            what: str) -> None:
    """The fifth blind corpus was scored once (es recall 0.917, 1 confusion in de; every other
    target met, every post of every language left alone: docs/understanding.md), then opened:
    it is training material now."""
    _check(fifth, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_sixth_blind_set_after_it_was_scored_and_trained_on(sixth: list[Outcome], lang: str,
                                                            what: str,
                                                            request: pytest.FixtureRequest) -> None:
    """The sixth blind corpus was scored once (en and de recall 0.917, every other target met,
    every post left alone, no confusion: docs/understanding.md), then trained on. Two English
    leaves stay missed by design: a long goodbye with the leave inside is held for the chair,
    and a mail whose Subject says "Automatic reply:" is an auto-reply to the guard whatever
    its author wrote below the out-of-office text."""
    if (lang, what) == ("en", "recall"):
        request.applymarker(pytest.mark.xfail(
            reason="by design: a long goodbye is held; an 'Automatic reply:' is not read",
            strict=True, run=True))
    _check(sixth, lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_seventh_blind_set_after_it_was_scored_and_trained_on(seventh: list[Outcome], lang: str,
                                                              what: str) -> None:
    """The seventh blind corpus was scored once (every target met but one: en 15 of 16 posts
    left alone; docs/understanding.md), then trained on."""
    _check(seventh, lang, what, sealed=False)


#: Where the eighth blind set missed a target when it was scored once, with the figures then.
EIGHTH_MISSES: dict[tuple[str, str], str] = {
    ("fr", "posts"): "scored once: 15 of 16 posts left alone",
    ("de", "recall"): "scored once: recall 0.917 (22 of 24; 0 confusions)",
}


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_eighth_sealed_set(eighth: list[Outcome], lang: str, what: str,
                           request: pytest.FixtureRequest) -> None:
    """The eighth blind corpus, never opened, scored once with the rules and the statistical
    reader as trained on everything else (its misses, if any, are strict xfails with the
    figures measured then: it is never tuned on)."""
    if (lang, what) in EIGHTH_MISSES:
        request.applymarker(pytest.mark.xfail(reason=EIGHTH_MISSES[(lang, what)], strict=True,
                                              run=True))
    _check(eighth, lang, what, sealed=True)
