"""The free-text reader tries a request phrase only on a sentence holding one of its needles
(`phrases._needles`): wherever a phrase matches, one of its needles is there."""

from __future__ import annotations

import re
from pathlib import Path

from listserv.intent.phrases import GROUPS, _needles, languages
from listserv.mail.message import parse
from listserv.mail.text import body_text, fold

DATA = Path(__file__).parent / "data"


def _lines() -> list[str]:
    """The folded lines of every request and post of the test corpora, each line once (quotes,
    signatures and disclaimers repeat)."""
    lines: set[str] = set()
    for path in sorted(DATA.glob("requests*/**/*.eml")):
        msg = parse(path.read_bytes())
        text = f"{msg.get('Subject', '')}\n{body_text(msg)}"
        lines.update(fold(line) for line in text.splitlines() if line.strip())
    return sorted(lines)


def test_every_phrase_has_needles_of_three_letters_or_more():
    for ph in languages():
        for group in GROUPS:
            for pattern, needles in zip(ph.groups[group], ph.needles[group], strict=True):
                assert needles, (ph.lang, pattern.pattern)
                assert min(map(len, needles)) >= 3, (ph.lang, pattern.pattern, needles)


def test_a_phrase_that_matches_a_line_of_the_corpora_has_a_needle_in_it():
    lines = _lines()
    assert len(lines) > 1000
    matched = 0
    for ph in languages():
        for group in GROUPS:
            for pattern, needles in zip(ph.groups[group], ph.needles[group], strict=True):
                for line in lines:
                    if pattern.search(line):
                        matched += 1
                        folded = line.casefold()
                        assert any(n in folded for n in needles), (pattern.pattern, line)
    assert matched > 100


def test_needles_of_branches_groups_and_repeats():
    assert _needles(re.compile(r"\b(add|put) me on\b", re.I)) == frozenset({" me on"})
    assert _needles(re.compile(r"\b(unsubscribe|opt out)\b", re.I)) == frozenset(
        {"unsubscribe", "opt out"})
    assert _needles(re.compile(r"\bplease (remove)+ me\b", re.I)) == frozenset({"please "})
    assert _needles(re.compile(r"\b(?:x)?\w+\b", re.I)) is None
