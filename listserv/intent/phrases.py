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
from re import _constants as re_constants  # type: ignore[attr-defined]
from re import _parser as re_parser  # type: ignore[attr-defined]
from typing import Any

from listserv.intent.lexicon import Lexicon, compile_lexicon
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
    #: Per group, beside each pattern of `groups`: strings one of which (casefolded) is in
    #: every text the pattern matches, or None when none could be read from it (`_needles`).
    #: The free-text reader tries a pattern only on a sentence holding one of them: a
    #: substring test instead of a regular expression run over the sentence (the phrase search
    #: was most of a long post's guard time).
    needles: dict[str, tuple[frozenset[str] | None, ...]]
    #: All of this language's needles: those in a sentence are found in one pass.
    all_needles: frozenset[str]
    keywords: dict[Kind, re.Pattern[str]]
    confirm: re.Pattern[str] | None
    delivery: dict[str, re.Pattern[str]]
    instead_of: re.Pattern[str] | None
    list_words: re.Pattern[str] | None
    other_object: re.Pattern[str] | None
    negation: re.Pattern[str] | None
    keep: re.Pattern[str] | None
    their_address: re.Pattern[str] | None
    #: Words before an address that make it a contact ("for urgent matters"), not a subject.
    contact: re.Pattern[str] | None
    #: A yes with no verb of joining ("count me in"), a join below a quoted invitation.
    accept: re.Pattern[str] | None
    #: Second-person possessives ("your", "votre"): "the list of your network" is this list.
    yours: re.Pattern[str] | None = None
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
    needles = {g: tuple(_needles(p) for p in groups[g]) for g in GROUPS}
    return Phrases(
        **vars(read_markers(data)),
        lang=lang,
        name=data.get("name", lang),
        words=frozenset(fold(w).lower() for w in detect.get("words", [])),
        chars=re.compile(detect["chars"]) if detect.get("chars") else None,
        groups=groups,
        needles=needles,
        all_needles=frozenset(n for g in GROUPS for each in needles[g] if each for n in each),
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
        contact=compile_patterns(context.get("contact", [])),
        accept=compile_patterns(context.get("accept", [])),
        yours=compile_patterns(context.get("yours", [])),
        object_before=bool(context.get("object_before", False)),
        lexicon=compile_lexicon(data.get("stems", {})),
        chair={verb: _first_words(words) for verb, words in data.get("chair", {}).items()},
    )


def _needles(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Strings, casefolded, one of which is in every text `pattern` matches; None when its
    syntax gives none (then it is tried on every sentence).

    Read from the parsed pattern: a run of literal characters must be in a match, so must one
    of a branch's alternatives' strings, and what a group or a repeat of at least one holds;
    of the requirements of a sequence the one with the longest shortest string is kept.
    Letters are compared casefolded, as the patterns match case-insensitively.
    """
    try:
        found = _required(re_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # an unusual pattern: no shortcut, never a wrong one
        return None
    return frozenset(n.casefold() for n in found) if found else None


def _required(items: Iterable[tuple[Any, Any]]) -> set[str] | None:
    candidates: list[set[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is re_constants.LITERAL:
            run.append(chr(av))
            continue
        if run:
            candidates.append({"".join(run)})
            run = []
        inner: set[str] | None = None
        if op is re_constants.SUBPATTERN:
            inner = _required(av[3])
        elif op is re_constants.BRANCH:
            alternatives = [_required(alternative) for alternative in av[1]]
            if all(alternatives):
                inner = set().union(*alternatives)  # type: ignore[arg-type]
        elif op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT) and av[0] >= 1:
            inner = _required(av[2])
        if inner:
            candidates.append(inner)
    if run:
        candidates.append({"".join(run)})
    return max(candidates, key=lambda c: min(map(len, c))) if candidates else None


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
    how another person's address is introduced ("her email is"), second-person possessives;
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
