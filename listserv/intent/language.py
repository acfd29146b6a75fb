"""Which language a text is in, among the phrase files' languages, by the words typical of each."""

from __future__ import annotations

import re

from listserv.intent.phrases import DEFAULT_LANG, languages
from listserv.mail.text import fold


def _scores(text: str) -> dict[str, float]:
    langs = languages()
    folded = fold(text).lower()
    tokens = re.findall(r"[^\W\d_]+", folded)
    owners: dict[str, int] = {}
    scores = {ph.lang: 0.0 for ph in langs}
    for tok in set(tokens):
        owners[tok] = sum(tok in ph.words for ph in langs)
    for tok in tokens:
        n = owners[tok]
        if n:
            for ph in langs:
                if tok in ph.words:
                    scores[ph.lang] += 1.0 / n
    for ph in langs:
        if ph.chars is not None:
            scores[ph.lang] += min(3, len(ph.chars.findall(text))) * 0.5
    return scores


def _best(scores: dict[str, float]) -> tuple[str, float]:
    if not scores:
        return DEFAULT_LANG, 0.0
    lang = max(scores, key=lambda k: (scores[k], k == DEFAULT_LANG))
    return lang, scores[lang]


def detect_language(text: str) -> str:
    """The language of `text` among the phrase files' languages, by typical words; English when
    there is no evidence."""
    lang, score = _best(_scores(text))
    return lang if score >= 1.0 else DEFAULT_LANG


def has_language(text: str) -> bool:
    """Whether `text` has words enough to tell its language (else `detect_language` falls back
    to English: a bare "set language pt" or "help" says nothing of its author's language)."""
    return _best(_scores(text))[1] >= 1.0


def message_language(own: str, subject: str, rest: str) -> str:
    """The author's language: from their own words and Subject, then with what was cut below
    them (signature, disclaimer, mobile footer: "Enviado do meu iPhone"); English otherwise."""
    for text in (f"{subject}\n{own}", f"{subject}\n{own}\n{rest}"):
        lang, score = _best(_scores(text))
        if score >= 2.0:
            return lang
    lang, score = _best(_scores(f"{subject}\n{own}\n{rest}"))
    if score >= 1.0:
        return lang
    return DEFAULT_LANG
