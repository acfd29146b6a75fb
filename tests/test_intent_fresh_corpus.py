"""Request understanding on the blind corpora (issue 21, acceptance 1 and 2).

tests/data/requests-fresh/ was written by helpers who never saw the phrase files, the intent
code or the first corpus; it is split into a tuning half (read while tuning) and a sealed half.
Every later blind set (tests/data/requests-fresh-2/ to -21/, `BLIND_SETS`) was written by new
blind writers, frozen by the hashes in its sealed-{lang}.sha256 before any tuning on the set
before it landed, and scored once; each but the newest was then opened and is tuning and
training material now (its checks assert, like the tuning half's). The newest is still sealed:
where it missed a target when it was scored, the check is a strict xfail with the figures then.
docs/understanding.md has every set's table. Mails are read the way the daemon reads them
(tests/intent_scoring.py, shared with tests/test_intent_corpus.py).

Printed: precision and recall per language for the first corpus and every blind set, with the
misses of those no longer sealed. Asserted on each, per language:

* recall >= 0.95 on joins and leaves together (a request to the list address counts only when
  the guard routes it as a request: UNSURE -- held for the chair -- is a miss);
* zero subscribe <-> unsubscribe confusions;
* every ordinary post recognised as a post: on the list address the guard says POST (a post
  held as UNSURE for the chair is not counted as recognised: its sender waits for a moderator
  for nothing); a post sent to -request by mistake, where nothing is distributed, is recognised
  when nothing is acted on (unclear, or the info or help text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.intent_scoring import (
    BLIND_SETS,
    FRESH,
    LANGS,
    NEWEST,
    Outcome,
    Sealed,
    confusions,
    fresh_corpus,
    old_corpus,
    recall,
    table,
)

TARGET_RECALL = 0.95
CHECKS = ("recall", "confusions", "posts")
OPENED = [name for name in BLIND_SETS if name != NEWEST]
#: Where the newest blind set missed a target when it was scored once, with the figures then.
NEWEST_MISSES: dict[tuple[str, str], str] = {}
#: Checks of an opened set that miss by design, not by a misreading to tune away.
BY_DESIGN: dict[tuple[str, str, str], str] = {}
#: Checks of an opened set that still miss after the tuning on it: misreadings not mended yet.
NOT_MENDED: dict[tuple[str, str, str], str] = {
    ("fifteenth", "de", "posts"): "'... eine Freigabe verlangt, und die bekomme ich bis Ende "
                                  "Juli nicht mehr' (an approval) is read as a stop of mail: held",
}
# The corpora are read once per run, whichever workers run these tests (`once_per_run`); a test
# that waits for another worker's reading (a minute or more on a loaded machine) may take longer
# than the default timeout.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def tuning(once_per_run: Callable[[str, Callable[[], Any]], Any]) -> list[Outcome]:
    return once_per_run("intent-tuning", lambda: fresh_corpus("tuning"))


@pytest.fixture(scope="session")
def sealed(once_per_run: Callable[[str, Callable[[], Any]], Any]) -> list[Outcome]:
    return once_per_run("intent-sealed", lambda: fresh_corpus("sealed"))


@pytest.fixture(scope="session")
def blind(once_per_run: Callable[[str, Callable[[], Any]], Any]) -> dict[str, list[Outcome]]:
    """Every later blind set read, by name; the newest never shows its mails."""
    return once_per_run("intent-blind", lambda: {
        name: Sealed(fresh_corpus("sealed", root)) if name == NEWEST
        else fresh_corpus("sealed", root) for name, root in BLIND_SETS.items()})


def _hashes(root: Path, lang: str) -> dict[str, str]:
    recorded = {}
    for line in (root / f"sealed-{lang}.sha256").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            recorded[name.lstrip("*")] = digest
    return recorded


@pytest.mark.parametrize("root", [FRESH, *BLIND_SETS.values()], ids=["first", *BLIND_SETS])
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


def test_print_tables(tuning: list[Outcome], sealed: list[Outcome],
                      blind: dict[str, list[Outcome]],
                      capsys: pytest.CaptureFixture[str]) -> None:
    intents = ("subscribe", "unsubscribe")
    with capsys.disabled():
        print(table(old_corpus(), "First corpus (tests/data/requests)",
                    ("subscribe", "unsubscribe", "help", "info", "set"), misses=False))
        print(table(tuning, "Fresh corpus, tuning half", intents))
        print(table(sealed, "Fresh corpus, first sealed half (scored once, then tuned on)",
                    intents))
        for name, outcomes in blind.items():
            newest = name == NEWEST
            print(table(outcomes, f"{name.capitalize()} blind corpus, "
                        + ("sealed (figures only)" if newest
                           else "scored once, then trained on"), intents, misses=not newest))
    for name, root in BLIND_SETS.items():
        assert len(blind[name]) == sum(1 for _ in (root / "sealed").glob("*/*.eml"))
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
@pytest.mark.parametrize("name", OPENED)
def test_blind_set_after_it_was_scored_and_trained_on(blind: dict[str, list[Outcome]],
                                                      name: str, lang: str, what: str,
                                                      request: pytest.FixtureRequest) -> None:
    """A blind set opened after its one scoring (its figures then: docs/understanding.md) is
    tuning and training material: it meets the targets, but where a miss is by design or
    not mended yet."""
    why = BY_DESIGN.get((name, lang, what)) or NOT_MENDED.get((name, lang, what))
    if why:
        request.applymarker(pytest.mark.xfail(reason=why, strict=True, run=True))
    _check(blind[name], lang, what, sealed=False)


@pytest.mark.parametrize("what", CHECKS)
@pytest.mark.parametrize("lang", LANGS)
def test_newest_sealed_set(blind: dict[str, list[Outcome]], lang: str, what: str,
                           request: pytest.FixtureRequest) -> None:
    """The newest blind set, never opened, scored once with the rules and the statistical
    reader as trained on everything else (its misses are strict xfails with the figures
    measured then: it is never tuned on)."""
    if (lang, what) in NEWEST_MISSES:
        request.applymarker(pytest.mark.xfail(reason=NEWEST_MISSES[(lang, what)], strict=True,
                                              run=True))
    _check(blind[NEWEST], lang, what, sealed=True)
