"""The phrase files of request understanding, one per language, compiled.

Everything language-specific lives in ``listserv/phrases/<lang>.toml`` (the schema is documented
at the top of ``en.toml`` and in :func:`load_phrases`); a chair adds a language by adding a file.
The ``[quotes]`` and ``[footer]`` tables are compiled by ``listserv.mail.text`` (where the
author's own words end), the request tables here. All patterns are matched accent- and
case-insensitively, so "me gustaria" matches "me gustaría".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path

from listserv.intent.stems import Lexicon, compile_lexicon
from listserv.intent.understanding import Kind
from listserv.mail.text import PHRASES_DIR, Markers, compile_patterns, fold, read_markers

DEFAULT_LANG = "en"


def _compile_each(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fold(p), re.I) for p in patterns if p)


#: Request groups in a phrase file's [request] table, and what each means.
GROUPS = (
    "subscribe",         # explicit: "subscribe me", "darme de alta", "abonnieren"
    "subscribe_weak",    # "add me", "sign me up", "join": on the list address only if it is named
    "unsubscribe",       # explicit: "unsubscribe me", "darme de baja", "abmelden"
    "unsubscribe_weak",  # "remove me", "take me off"
    "stop_mail",         # "no longer wish to receive": unsubscribe, or nomail with a keep cue
    "pause",             # "pause my subscription", "ruhen lassen": set nomail
    "set",               # "switch to the digest", "back to single messages": delivery from words
    "help",
    "info",
    "peer_input",
)
WEAK = {"subscribe_weak", "unsubscribe_weak"}
GROUP_KIND = {
    "subscribe": Kind.SUBSCRIBE, "subscribe_weak": Kind.SUBSCRIBE,
    "unsubscribe": Kind.UNSUBSCRIBE, "unsubscribe_weak": Kind.UNSUBSCRIBE,
    "stop_mail": Kind.UNSUBSCRIBE, "pause": Kind.SET, "set": Kind.SET,
    "help": Kind.HELP, "info": Kind.INFO, "peer_input": Kind.PEER_INPUT,
}
#: Groups whose object decides whether the phrase is about this list (the other-object check).
OBJECT_GROUPS = {"subscribe", "subscribe_weak", "unsubscribe", "unsubscribe_weak", "stop_mail"}


@dataclass(frozen=True)
class Phrases(Markers):
    """One language's compiled phrase file: its markers (quotes, footers) and request phrases."""

    lang: str
    name: str
    words: frozenset[str]
    chars: re.Pattern[str] | None
    groups: dict[str, tuple[re.Pattern[str], ...]]
    #: Every request phrase of `groups` in one pattern: a sentence it does not match holds
    #: none of them, so the free-text reader skips the phrase-by-phrase search (one regex pass
    #: instead of some 60 per sentence and language: most of a long post's guard time).
    any_request: re.Pattern[str] | None
    keywords: dict[Kind, re.Pattern[str]]
    confirm: re.Pattern[str] | None
    delivery: dict[str, re.Pattern[str]]
    instead_of: re.Pattern[str] | None
    list_words: re.Pattern[str] | None
    other_object: re.Pattern[str] | None
    negation: re.Pattern[str] | None
    keep: re.Pattern[str] | None
    their_address: re.Pattern[str] | None
    object_before: bool = False
    lexicon: Lexicon | None = None  # the [stems] table (listserv.intent.stems)
    #: The chair's answers ([chair] table: approve, reject, discard, … and "all"), each
    #: matching the first words of a line (`intent.decision`).
    chair: dict[str, re.Pattern[str]] = field(default_factory=dict)


def _parse_phrase_file(path: Traversable) -> Phrases:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    lang = path.name.removesuffix(".toml")
    detect = data.get("detect", {})
    request = data.get("request", {})
    keywords = data.get("keywords", {})
    delivery = data.get("delivery", {})
    context = data.get("context", {})
    unknown = set(request) - set(GROUPS) - {"confirm"}
    if unknown:
        raise ValueError(f"{path}: unknown [request] groups {sorted(unknown)}")
    groups = {g: _compile_each(request.get(g, [])) for g in GROUPS}
    return Phrases(
        **vars(read_markers(data)),
        lang=lang,
        name=data.get("name", lang),
        words=frozenset(fold(w).lower() for w in detect.get("words", [])),
        chars=re.compile(detect["chars"]) if detect.get("chars") else None,
        groups=groups,
        any_request=_any_of(p for g in GROUPS for p in groups[g]),
        keywords={Kind(k): p for k, v in keywords.items()
                  if (p := compile_patterns(v, whole=True)) is not None},
        confirm=compile_patterns(request.get("confirm", []), whole=True),
        delivery={k: p for k in ("digest", "regular", "nomail")
                  if (p := compile_patterns(delivery.get(k, []))) is not None},
        instead_of=compile_patterns(delivery.get("instead_of", [])),
        list_words=compile_patterns(context.get("list", [])),
        other_object=compile_patterns(context.get("other_object", [])),
        negation=compile_patterns(context.get("negation", [])),
        keep=compile_patterns(context.get("keep", [])),
        their_address=compile_patterns(context.get("their_address", [])),
        object_before=bool(context.get("object_before", False)),
        lexicon=compile_lexicon(data.get("stems", {})),
        chair={verb: _first_words(words) for verb, words in data.get("chair", {}).items()},
    )


def _any_of(patterns: Iterable[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern that matches where any of `patterns` (compiled with re.I) matches.

    Each is a group of its own in the alternation, so a search for the union finds a match
    exactly when one of them matches somewhere (the phrases use no backreferences).
    """
    body = "|".join(f"(?:{p.pattern})" for p in patterns)
    return re.compile(body, re.I) if body else None


def _first_words(words: Iterable[str]) -> re.Pattern[str]:
    """One pattern for the start of a line: any of `words` (folded), as whole words."""
    body = "|".join(f"(?:{fold(w)})" for w in words if w)
    return re.compile(rf"\W*(?:{body})(?!\w)", re.I)


@lru_cache(maxsize=8)
def load_phrases(directory: str | Path | None = None) -> dict[str, Phrases]:
    """Every ``<lang>.toml`` in the phrases folder, compiled once (cached), English first.

    A phrase file has these tables (all optional; see ``en.toml`` for a commented example):
    ``[detect]`` words (and ``chars``) typical of the language, for language detection;
    ``[quotes]`` reply-header and separator patterns and Outlook header field names;
    ``[footer]`` mobile footers, disclaimer openers, closings and greetings;
    ``[request]`` request phrases per group (see ``GROUPS``) and one-line confirmations;
    ``[keywords]`` words that are a request when they are a whole line or the whole Subject;
    ``[delivery]`` words for digest / regular / nomail and "instead of" phrases;
    ``[context]`` words naming the list, other objects, negations, keep-membership cues and
    how another person's address is introduced ("her email is");
    ``[stems]`` words of joining, leaving, the list, the sender, wishes and negations, compared
    by their Snowball stems (:mod:`listserv.intent.stems`).
    ``[chair]`` the chair's answers to notices and summaries (approve, reject, discard, …).
    Patterns are Python regular expressions, matched case- and accent-insensitively.
    """
    folder: Traversable = Path(directory) if directory else PHRASES_DIR
    files = [p for p in folder.iterdir() if p.name.endswith(".toml")]
    files.sort(key=lambda p: (p.name != f"{DEFAULT_LANG}.toml", p.name))
    return {p.name.removesuffix(".toml"): _parse_phrase_file(p) for p in files}


def languages() -> Sequence[Phrases]:
    """The languages of the phrase folder, English first."""
    return tuple(load_phrases().values())
