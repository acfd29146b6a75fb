"""A language's ``[stems]`` table, compiled: words matched by their Snowball stem.

Every word of an entry is written as a person writes it and compared by its stem (the
`snowballstemmer` package: "include" covers "included", "incluir" covers "incluida"), or as a
prefix (``retir*``), a suffix (``-liste``), or -- for long verbs and list words -- with one typo
("unsubcribe"). :class:`Entries` indexes a table's entries by their first word so a sentence is
read in one pass; :class:`Lexicon` is one language's tables; `listserv.intent.stems` reads
requests with them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import snowballstemmer

from listserv.mail.text import fold

#: Most words allowed between the words of one entry ("sign me up", "take my address off").
DEFAULT_GAP = 3

#: Verbs and list words this long also match with one typo ("unsubcribe", "mailng"); wishes and
#: polite words from this length ("plese"). Shorter words have too many real neighbours.
VERB_TYPOS = 7
WORD_TYPOS = 6
#: `Entries.starting` remembers at most this many answers (word and entry table) in all: the
#: words of posts repeat (a post's own, and the common words of every post), and each sentence
#: asks for each word several times. Some 10 to 20 MB at most.
MAX_REMEMBERED = 40_000
_STARTING: dict[tuple[int, str, frozenset[str]], tuple[tuple[_Term, ...], ...]] = {}
_TOKENS = itertools.count()


@lru_cache(maxsize=8)
def _stemmer(name: str) -> Any:
    return snowballstemmer.stemmer(name)


@lru_cache(maxsize=65536)
def stems(word: str, language: str) -> frozenset[str]:
    """The Snowball stems of `word` in `language` ("english", "german"), folded: of the word as
    written and of the word without accents (people drop them: "retiree" for "retirée")."""
    stemmer = _stemmer(language)
    lower = word.lower()
    return frozenset({fold(str(stemmer.stemWord(lower))), str(stemmer.stemWord(fold(lower)))})


@dataclass(frozen=True)
class _Term:
    """One word of an entry: its stems, a prefix ("retir*") or a suffix ("-liste")."""

    texts: frozenset[str]
    how: str  # "stem" | "prefix" | "suffix"
    word: str = ""  # the entry's word, folded, when a one-letter typo of it also matches

    def matches(self, word: str, stemmed: frozenset[str]) -> bool:
        if self.how == "prefix":
            return any(word.startswith(t) for t in self.texts)
        if self.how == "suffix":
            return any(word.endswith(t) and word != t for t in self.texts)
        return not self.texts.isdisjoint(stemmed) or bool(self.word) and _typo(word, self.word)


def _typo(a: str, b: str) -> bool:
    """Is `a` `b` with one letter left out, added, changed or two swapped ("unsubcribe",
    "lsit")? The first letter must be right: typos rarely fall there."""
    if a == b or abs(len(a) - len(b)) > 1 or not a or a[0] != b[0]:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = a[i:i + 2] == b[i:i + 2][::-1] and a[i + 2:] == b[i + 2:]
        return a[i + 1:] == b[i + 1:] or swapped
    return a[i + 1:] == b[i:] if len(a) > len(b) else a[i:] == b[i + 1:]


def _terms(entry: str, language: str, typos: int = 0) -> tuple[_Term, ...]:
    """An entry's words; `typos`: words this long or longer also match with one typo."""
    out = []
    for w in entry.lower().split():
        if w.endswith("*"):
            out.append(_Term(frozenset({fold(w[:-1])}), "prefix"))
        elif w.startswith("-"):
            out.append(_Term(frozenset({fold(w[1:])}), "suffix"))
        else:
            typo = fold(w) if typos and len(w) >= typos else ""
            out.append(_Term(stems(w, language), "stem", typo))
    return tuple(out)


@dataclass(frozen=True)
class Entries:
    """Entries (word sequences) indexed by their first word, so that a sentence is read in one
    pass over its words whatever the number of entries."""

    by_stem: dict[str, list[tuple[_Term, ...]]]
    by_initial: dict[str, list[tuple[_Term, ...]]]  # prefix heads, by their first letter
    #: Heads that also match with a typo, by their first letter and each length a word one
    #: typo away can have (a typo keeps the first letter and changes the length by at most one).
    by_typo: dict[tuple[str, int], list[tuple[_Term, ...]]]
    others: list[tuple[_Term, ...]]  # suffix heads: tried on every word
    #: This table's key in `_STARTING` (never reused, unlike an object's id).
    token: int = field(default_factory=lambda: next(_TOKENS), compare=False, repr=False)

    @classmethod
    def of(cls, entries: Iterable[tuple[_Term, ...]]) -> Entries:
        by_stem: dict[str, list[tuple[_Term, ...]]] = {}
        by_initial: dict[str, list[tuple[_Term, ...]]] = {}
        by_typo: dict[tuple[str, int], list[tuple[_Term, ...]]] = {}
        others = []
        for terms in entries:
            head = terms[0]
            if head.how == "suffix":
                others.append(terms)
                continue
            if head.how == "prefix":
                for t in head.texts:
                    by_initial.setdefault(t[:1], []).append(terms)
                continue
            for t in head.texts:
                by_stem.setdefault(t, []).append(terms)
            if head.word:
                for length in range(len(head.word) - 1, len(head.word) + 2):
                    by_typo.setdefault((head.word[0], length), []).append(terms)
        return cls(by_stem, by_initial, by_typo, others)

    def starting(self, word: str, stemmed: frozenset[str]) -> tuple[tuple[_Term, ...], ...]:
        """The entries whose first word matches `word` (stems `stemmed`); an entry may be
        named twice (by its stem and by a typo)."""
        key = (self.token, word, stemmed)
        found = _STARTING.get(key)
        if found is None:
            if len(_STARTING) >= MAX_REMEMBERED:
                _STARTING.clear()  # a bound on memory; the common words come back at once
            found = _STARTING[key] = self._starting(word, stemmed)
        return found

    def _starting(self, word: str, stemmed: frozenset[str]) -> tuple[tuple[_Term, ...], ...]:
        out = [e for st in stemmed for e in self.by_stem.get(st, ())]
        initial = word[:1]
        out += [e for e in self.by_initial.get(initial, ()) if e[0].matches(word, stemmed)]
        out += [e for e in self.by_typo.get((initial, len(word)), ())
                if e[0].matches(word, stemmed)]
        out += [e for e in self.others if e[0].matches(word, stemmed)]
        return tuple(out)

    def any_starting(self, words: Sequence[str], stemmed: Sequence[frozenset[str]]) -> bool:
        """Whether an entry's first word matches any of `words` (with their stems)."""
        return any(self.starting(w, st) for w, st in zip(words, stemmed, strict=True))


@dataclass(frozen=True)
class Lexicon:
    """One language's ``[stems]`` table, compiled (see the module docstring and ``en.toml``)."""

    language: str  # the Snowball stemmer's name
    gap: int
    join: Entries
    join_alone: Entries
    leave: Entries
    leave_alone: Entries
    receive: Entries
    belong: Entries
    stay: Entries
    mail: Entries
    list_words: Entries
    named: Entries
    prepositions: Entries
    self_words: Entries
    clitics: tuple[str, ...]
    passive: Entries
    wish: Entries
    polite: Entries
    opener: Entries
    negation: Entries
    others: Entries
    past: Entries
    idioms: Entries
    person: Entries  # "dar de alta *a mi* doctorando": a person as the object, not a place
    purpose: Entries  # "para" before an infinitive: what for, not where to
    now: Entries  # "nimm mich *schon jetzt* von der Liste": a past word that asks for now
    progressive: Entries  # "*estou* mandando e-mail e pedindo": doing it now, not telling how
    adverbs: Entries  # "could I be added *as well*": after the verb, no place it goes to
    courtesy: Entries  # "si no es molestia": its "if" and "not" are no condition, no negation
    condition: Entries  # "if", "si", "wenn": a sentence opening with one supposes, not asks
    verb_final: bool
    capitalised_nouns: bool  # German: a verb's word capitalised inside a sentence is a noun
    verbs: Entries  # every verb entry above: a sentence with none of them is skipped at once


def compile_lexicon(table: Mapping[str, Any]) -> Lexicon | None:
    """A phrase file's ``[stems]`` table compiled, or None when it has none."""
    if not table.get("stemmer"):
        return None
    language = str(table["stemmer"])

    def entries(key: str, typos: int = 0) -> Entries:
        return Entries.of(t for e in table.get(key, []) if (t := _terms(e, language, typos)))

    return Lexicon(
        language=language, gap=int(table.get("gap", DEFAULT_GAP)),
        join=entries("join", VERB_TYPOS), join_alone=entries("join_alone", VERB_TYPOS),
        leave=entries("leave", VERB_TYPOS), leave_alone=entries("leave_alone", VERB_TYPOS),
        receive=entries("receive"), belong=entries("belong"), stay=entries("stay"),
        mail=entries("mail"), list_words=entries("list", VERB_TYPOS), named=entries("named"),
        prepositions=entries("prepositions"),
        self_words=entries("self"),
        clitics=tuple(fold(c).lower() for c in table.get("clitics", [])),
        passive=entries("passive"), wish=entries("wish", WORD_TYPOS),
        polite=entries("polite", WORD_TYPOS),
        opener=entries("opener"), negation=entries("negation"), others=entries("other_agent"),
        past=entries("past"), idioms=entries("idioms"), courtesy=entries("courtesy"),
        purpose=entries("purpose"), adverbs=entries("adverbs"),
        progressive=entries("progressive"), now=entries("now"), person=entries("person"),
        condition=entries("condition"),
        verb_final=bool(table.get("verb_final", False)),
        capitalised_nouns=bool(table.get("capitalised_nouns", False)),
        verbs=Entries.of(t for key in ("join", "join_alone", "leave", "leave_alone", "receive",
                                       "belong")
                         for e in table.get(key, [])
                         if (t := _terms(e, language, VERB_TYPOS if key[0] in "jl" else 0))),
    )
