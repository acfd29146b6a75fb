"""Request understanding (SPEC §2, issue 4): what does mail to -request, -join or the list ask?

Two entry points (the author's own words come from ``listserv.mail.text``):

* :func:`understand` -- for mail to ``NAME-request@`` / ``NAME-join@``: classic commands one per
  line (Mailman and LISTSERV forms) or one free-text request in English, Spanish, French, German
  or Portuguese.
* :func:`guard` -- the administrivia guard for mail to the list address: ``REQUEST`` only when the
  author's own text is short and is essentially a request about this list, ``POST`` when request
  words are about something else (a panel, an author list, another newsletter), negated, a topic,
  or only quoted, ``UNSURE`` (hold for the chair) otherwise.

Everything language-specific lives in ``listserv/phrases/<lang>.toml`` (the schema is documented
at the top of ``en.toml`` and in :func:`load_phrases`); a chair adds a language by adding a file.
All patterns are matched accent- and case-insensitively, so "me gustaria" matches "me gustaría".

The free-text classifier is deliberately simple and explainable: a request phrase (pattern) is
found in a sentence of the author's own text (or in the Subject when it is not a reply), then
discarded when it is negated ("please don't remove me"), or when its object is something other
than the list ("add me to the panel", "remove me from the author list"). The dominant intent is
the first remaining request, except that a pause ("stop sending me mail while I'm on leave",
"pause, don't remove me") wins over an unsubscribe, and a subscribe that names a delivery mode
wins over a delivery change.
"""

from __future__ import annotations

import email.message
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path

from listserv.mail.automatic import automatic
from listserv.mail.text import (
    PHRASES_DIR,
    QUOTED,
    Body,
    Markers,
    body_text,
    compile_patterns,
    fold,
    match_any,
    read_markers,
    split_body,
)

__all__ = [
    "Command",
    "Guard",
    "Kind",
    "Understanding",
    "detect_language",
    "guard",
    "load_phrases",
    "understand",
]

DEFAULT_LANG = "en"

#: The guard's idea of "short": a post to the list is handled as a request only when the author's
#: own words (without greeting-free signature, quotes, disclaimers) are at most this many words.
GUARD_MAX_WORDS = 80
#: A bare phrase such as "sign me up!" that does not name the list is held (UNSURE) rather than
#: distributed only when the post is this short and is not a reply to a thread.
GUARD_BARE_MAX_WORDS = 25
#: A whole-line keyword ("UNSUBSCRIBE", "help") on the list address is a request only when the
#: author's own text is at most this many words (the keyword and a signature, say).
GUARD_KEYWORD_MAX_WORDS = 15
#: Free text beyond this many characters of own text is not searched for requests.
MAX_FREE_TEXT = 10_000
#: Command lines processed per message (SPEC §2, "No oracle"); the rest are reported ignored.
MAX_COMMANDS = 10


class Kind(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    HELP = "help"
    INFO = "info"
    SET = "set"
    CONFIRM = "confirm"
    PEER_INPUT = "peer_input"
    UNCLEAR = "unclear"


@dataclass(frozen=True, slots=True)
class Command:
    kind: Kind
    delivery: str | None = None  # "regular" | "digest" | "nomail" for SUBSCRIBE (optional) and SET
    address: str | None = None  # another address named in the request, lower-case
    token: str | None = None  # for CONFIRM
    name: str | None = None  # from "SUBSCRIBE SHMA Jane Doe"
    line: str = ""  # the text it came from (for the reply's summary)


@dataclass(frozen=True, slots=True)
class Understanding:
    lang: str
    commands: tuple[Command, ...]
    unrecognised: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


class Guard(StrEnum):
    REQUEST = "request"
    POST = "post"
    UNSURE = "unsure"



_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)


def _mask(text: str) -> str:
    """Addresses and URLs replaced by filler of the same length (their dots end no sentence)."""
    text = _URL.sub(lambda m: "/" * len(m.group()), text)
    return _EMAIL.sub(lambda m: "@" * len(m.group()), text)



# --------------------------------------------------------------------------------------------
# Phrase files


def _compile_each(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fold(p), re.I) for p in patterns if p)


#: Request groups in a phrase file's [request] table, and what each means.
_GROUPS = (
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
_WEAK = {"subscribe_weak", "unsubscribe_weak"}
_GROUP_KIND = {
    "subscribe": Kind.SUBSCRIBE, "subscribe_weak": Kind.SUBSCRIBE,
    "unsubscribe": Kind.UNSUBSCRIBE, "unsubscribe_weak": Kind.UNSUBSCRIBE,
    "stop_mail": Kind.UNSUBSCRIBE, "pause": Kind.SET, "set": Kind.SET,
    "help": Kind.HELP, "info": Kind.INFO, "peer_input": Kind.PEER_INPUT,
}
#: Groups whose object decides whether the phrase is about this list (the other-object check).
_OBJECT_GROUPS = {"subscribe", "subscribe_weak", "unsubscribe", "unsubscribe_weak", "stop_mail"}


@dataclass(frozen=True)
class Phrases(Markers):
    """One language's compiled phrase file: its markers (quotes, footers) and request phrases."""

    lang: str
    name: str
    words: frozenset[str]
    chars: re.Pattern[str] | None
    groups: dict[str, tuple[re.Pattern[str], ...]]
    keywords: dict[Kind, re.Pattern[str]]
    confirm: re.Pattern[str] | None
    delivery: dict[str, re.Pattern[str]]
    instead_of: re.Pattern[str] | None
    list_words: re.Pattern[str] | None
    other_object: re.Pattern[str] | None
    negation: re.Pattern[str] | None
    keep: re.Pattern[str] | None
    object_before: bool = False


def _parse_phrase_file(path: Traversable) -> Phrases:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    lang = path.name.removesuffix(".toml")
    detect = data.get("detect", {})
    request = data.get("request", {})
    keywords = data.get("keywords", {})
    delivery = data.get("delivery", {})
    context = data.get("context", {})
    unknown = set(request) - set(_GROUPS) - {"confirm"}
    if unknown:
        raise ValueError(f"{path}: unknown [request] groups {sorted(unknown)}")
    return Phrases(
        **vars(read_markers(data)),
        lang=lang,
        name=data.get("name", lang),
        words=frozenset(fold(w).lower() for w in detect.get("words", [])),
        chars=re.compile(detect["chars"]) if detect.get("chars") else None,
        groups={g: _compile_each(request.get(g, [])) for g in _GROUPS},
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
        object_before=bool(context.get("object_before", False)),
    )


@lru_cache(maxsize=8)
def load_phrases(directory: str | Path | None = None) -> dict[str, Phrases]:
    """Every ``<lang>.toml`` in the phrases folder, compiled once (cached), English first.

    A phrase file has these tables (all optional; see ``en.toml`` for a commented example):
    ``[detect]`` words (and ``chars``) typical of the language, for language detection;
    ``[quotes]`` reply-header and separator patterns and Outlook header field names;
    ``[footer]`` mobile footers, disclaimer openers, closings and greetings;
    ``[request]`` request phrases per group (see ``_GROUPS``) and one-line confirmations;
    ``[keywords]`` words that are a request when they are a whole line or the whole Subject;
    ``[delivery]`` words for digest / regular / nomail and "instead of" phrases;
    ``[context]`` words naming the list, other objects, negations and keep-membership cues.
    Patterns are Python regular expressions, matched case- and accent-insensitively.
    """
    folder: Traversable = Path(directory) if directory else PHRASES_DIR
    files = [p for p in folder.iterdir() if p.name.endswith(".toml")]
    files.sort(key=lambda p: (p.name != f"{DEFAULT_LANG}.toml", p.name))
    return {p.name.removesuffix(".toml"): _parse_phrase_file(p) for p in files}


def _langs() -> Sequence[Phrases]:
    return tuple(load_phrases().values())


def _any(attr: str, text: str, how: str = "search") -> re.Match[str] | None:
    return match_any(_langs(), attr, text, how)


# --------------------------------------------------------------------------------------------
# Language


def _scores(text: str) -> dict[str, float]:
    langs = _langs()
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


def _message_language(own: str, subject: str, rest: str) -> str:
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


# --------------------------------------------------------------------------------------------
# Subject

_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|antw|fwd?|wg|tr|res|rv|enc|sv|vs|r|ref|réf)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+",
    re.I)
_CONFIRM_TOKEN = re.compile(r"\bconfirm(?:ation)?\s*[:#]?\s*([A-Za-z0-9]{8,64})\b", re.I)


def _clean_subject(subject: str, list_name: str) -> tuple[str, bool]:
    """The subject without reply prefixes and the [NAME] tag; True when it was a reply/forward."""
    s = " ".join(subject.split())
    is_reply = False
    for _ in range(5):
        before = s
        m = _REPLY_PREFIX.match(s)
        if m:
            is_reply = True
            s = s[m.end():]
        s = re.sub(rf"^\s*\[{re.escape(_local(list_name))}\]\s*", "", s, flags=re.I)
        if s == before:
            break
    return s.strip(), is_reply


def _local(list_name: str) -> str:
    return list_name.split("@", 1)[0].strip().lower()


def _subject_token(subject: str) -> str | None:
    m = _CONFIRM_TOKEN.search(subject)
    return m.group(1).lower() if m else None


# --------------------------------------------------------------------------------------------
# Classic commands


_DELIVERY_ARGS = {
    "digest": "digest", "digests": "digest", "mime": "digest", "plain": "digest", "index": "digest",
    "regular": "regular", "nodigest": "regular", "mail": "regular", "normal": "regular",
    "ack": None, "noack": None,
    "nomail": "nomail", "nomails": "nomail", "vacation": "nomail", "postpone": "nomail",
}
_KW_SUBSCRIBE = {"subscribe", "sub", "join", "signup"}
_KW_UNSUBSCRIBE = {"unsubscribe", "unsub", "leave", "signoff", "signoff*", "remove"}
_KW_END = {"end", "stop", "quit", "exit", "thanks", "thank"}
_KEYWORDS = _KW_SUBSCRIBE | _KW_UNSUBSCRIBE | _KW_END | {"help", "info", "set", "confirm",
                                                         "review", "who", "echo", "query"}
_NOT_NAMES = {"me", "us", "please", "pls", "now", "thanks", "thank", "you", "to", "the", "list",
              "my", "mail", "i"}
_NAME_WORD = re.compile(r"[A-ZÀ-Þ][^\W\d_]*(?:[.'-][^\W\d_]*)*\.?")
_AFFIRMATIVE = re.compile(r"^\W*(?:ok(?:ay)?|yes|y|yep|sure|confirm(?:ed)?)\W*$", re.I)


def _is_list(word: str, list_name: str) -> bool:
    w = word.lower().strip("<>,;")
    local = _local(list_name)
    return w in (local, list_name.lower()) or w.split("@", 1)[0] == local and "@" in w or w == "*"


_ADDRESS_ARG = re.compile(r"^address=", re.I)  # Mailman's form: "subscribe address=x@y"


def _address(word: str) -> str | None:
    w = _ADDRESS_ARG.sub("", word.strip("<>()[],;:'\"")).strip("<>()[],;:'\"")
    return w.lower() if _EMAIL.fullmatch(w) else None


def _parse_command(line: str, list_name: str, subject_token: str | None
                   ) -> Command | None | bool:
    """A Command, None when the line is not a command, or False when it is a command keyword
    with arguments we cannot read (reported as not understood)."""
    words = line.split()
    if not words:
        return None
    verb = words[0].lower().rstrip(":")
    args = words[1:]
    if verb not in _KEYWORDS:
        return None
    has_list = bool(args) and _is_list(args[0], list_name)
    if has_list:
        args = args[1:]
    if verb in _KW_SUBSCRIBE:
        delivery = address = None
        rest: list[str] = []
        for a in args:
            low = a.lower()
            if low in ("digest=yes", "digest", "digest=mime", "digest=plain"):
                delivery = "digest"
            elif low in ("digest=no", "nodigest", "regular"):
                delivery = "regular"
            elif _address(a):
                address = _address(a)
            else:
                rest.append(a)
        if rest and not has_list and not all(re.fullmatch(_NAME_WORD, w)
                                             and w.lower() not in _NOT_NAMES for w in rest):
            return None  # "subscribe me please" is free text; "subscribe Jane Doe" is a name
        name = " ".join(rest).strip(" ,") or None
        if name is not None and not re.search(r"[^\W\d_]", name):
            return False
        return Command(Kind.SUBSCRIBE, delivery=delivery, address=address, name=name, line=line)
    if verb in _KW_UNSUBSCRIBE:
        if verb == "remove" and not has_list:
            return None
        address = None
        for a in args:
            if _address(a):
                address = _address(a)
            elif a.lower() not in ("me", "please", "pls"):
                return False if has_list else None
        return Command(Kind.UNSUBSCRIBE, address=address, line=line)
    if verb in ("help", "info"):
        if args and not has_list:
            return None  # "help me with ...", "info: next meeting" are prose
        return Command(Kind.HELP if verb == "help" else Kind.INFO, line=line)
    if verb == "set":
        vals = [a.lower() for a in args]
        if vals[:1] == ["delivery"] and vals[1:2] in (["on"], ["off"]):
            return Command(Kind.SET, delivery="regular" if vals[1] == "on" else "nomail",
                           line=line)
        if vals[:1] == ["digest"] and vals[1:2] in (["on"], ["off"], ["yes"], ["no"], ["mime"],
                                                     ["plain"]):
            on = vals[1] in ("on", "yes", "mime", "plain")
            return Command(Kind.SET, delivery="digest" if on else "regular", line=line)
        if len(vals) == 1 and _DELIVERY_ARGS.get(vals[0]):
            return Command(Kind.SET, delivery=_DELIVERY_ARGS[vals[0]], line=line)
        return False
    if verb == "confirm":
        if len(args) == 1 and re.fullmatch(r"[A-Za-z0-9]{8,64}", args[0]):
            return Command(Kind.CONFIRM, token=args[0].lower(), line=line)
        if not args:
            return Command(Kind.CONFIRM, token=subject_token, line=line)
        return False
    if verb in _KW_END:
        return None if args else True  # handled by the caller
    return False  # review, who, echo, query: known LISTSERV/Mailman verbs we do not offer


# --------------------------------------------------------------------------------------------
# Free text


@dataclass
class _Hit:
    group: str
    kind: Kind
    start: int  # in the analysed text
    end: int
    sent: tuple[int, int]
    lang: str
    negated: bool = False
    other: bool = False
    listed: bool = False  # the sentence names the list
    subject: bool = False  # found in the Subject
    keyword: bool = False  # a whole line / whole subject keyword
    other_in_sentence: bool = False  # the sentence names another object (a network, a panel)

    @property
    def valid(self) -> bool:
        return not self.negated and not self.other

    @property
    def anchored(self) -> bool:
        """Clearly about this list: explicit phrase, keyword, or a weak phrase naming the list
        (for help and info: a sentence naming a list and no other object)."""
        if self.kind in (Kind.HELP, Kind.INFO, Kind.PEER_INPUT):
            return (self.listed and not self.other_in_sentence) or self.keyword
        return self.group not in _WEAK or self.listed or self.keyword


_SENT_END = re.compile(r"[.?!]+[\"')\]]*(?:\s+|$)|\n\s*\n")
_CLAUSE_END = re.compile(r"[.?!;:,(\n]| - | -- ")
_CLAUSE_START = re.compile(r"[.?!;:,)\n]| - | -- ")
#: A period after these does not end a sentence ("Dr. Mensah", "am 12. Juni", "z.B. hier").
_NO_BREAK_BEFORE = re.compile(
    r"(?:\b\d{1,4}|\b[^\W\d_]|\b(?:dr|prof|mr|mrs|ms|st|sr|sra|srta|nr|no|ca|bzw|vgl|ggf|"
    r"etc|vs|approx|dept|univ|mme|mlle|pr|av|tel|ph|hr|fr)|\b(?:[^\W\d_]\.){1,3}[^\W\d_])$",
    re.I)


def _sentences(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for m in _SENT_END.finditer(text):
        if m.group().startswith(".") and m.group().strip() == "." and \
                _NO_BREAK_BEFORE.search(text[max(0, m.start() - 12):m.start()]):
            continue
        if m.start() > start:
            punct = len(m.group()) - len(m.group().lstrip(".?!"))
            spans.append((start, m.start() + punct))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


@dataclass
class _Analysis:
    text: str  # the folded, masked text analysed
    original: str  # the same positions in the author's text
    hits: list[_Hit] = field(default_factory=list)


def _list_pattern(list_name: str) -> re.Pattern[str]:
    local = re.escape(_local(list_name))
    return re.compile(rf"(?<![\w@.-]){local}(?![\w@-])", re.I)


def _analyse(original: str, list_name: str, *, subject: bool = False) -> _Analysis:
    original = original[:MAX_FREE_TEXT]
    text = _mask(fold(original)).replace("\n", " ") if original else ""
    # paragraph breaks survive as sentence ends: compute sentences on the text with newlines
    sentences = _sentences(_mask(fold(original)))
    analysis = _Analysis(text=text, original=original)
    langs = _langs()
    own_list = _list_pattern(list_name)
    for s0, s1 in sentences:
        sent = text[s0:s1]
        listed = bool(own_list.search(sent)) or any(
            ph.list_words is not None and ph.list_words.search(sent) for ph in langs)
        for ph in langs:
            for group in _GROUPS:
                for pattern in ph.groups[group]:
                    for m in pattern.finditer(sent):
                        if m.end() == m.start():
                            continue
                        hit = _Hit(group, _GROUP_KIND[group], s0 + m.start(), s0 + m.end(),
                                   (s0, s1), ph.lang, listed=listed, subject=subject)
                        _judge(hit, text, langs)
                        analysis.hits.append(hit)
    # whole-line keywords ("UNSUBSCRIBE", "baja", "ABMELDEN!!!"), also as the one clause of a
    # short line that is not a greeting or a closing ("hello, unsubscribe please, thanks!")
    pos = 0
    for raw_line in _mask(fold(original)).split("\n"):
        for start, end in _keyword_spans(raw_line):
            clause = _POLITE_EDGES.sub("", raw_line[start:end]) or raw_line[start:end]
            for ph in langs:
                for kind, pattern in ph.keywords.items():
                    if pattern.match(clause):
                        analysis.hits.append(_Hit(
                            "keyword", kind, pos + start, pos + end, (pos + start, pos + end),
                            ph.lang, listed=True, subject=subject, keyword=True))
        pos += len(raw_line) + 1
    analysis.hits.sort(key=lambda h: (h.start, -h.end))
    return analysis


_POLITE_WORDS = (r"(?:please|pls|plz|svp|s'?il vous pla[iî]t|stp|por favor|porfa|bitte|danke|"
                 r"thanks|thank you|thx|merci|gracias|obrigad[oa]|obg|vielen dank)")
_POLITE = re.compile(rf"^\W*{_POLITE_WORDS}\W*$", re.I)
_POLITE_EDGES = re.compile(rf"^(?:\W*{_POLITE_WORDS}\b)+|(?:\b{_POLITE_WORDS}\W*)+$", re.I)


def _keyword_spans(line: str) -> list[tuple[int, int]]:
    """Where to look for a whole-line keyword: the line, or the one clause of a short line that
    is not a greeting, a closing or a please/thanks."""
    stripped = line.strip()
    if not stripped or len(stripped) > 60:
        return []
    start = line.find(stripped)
    spans = [(start, start + len(stripped))]
    if len(stripped.split()) > 8:
        return spans
    clauses = [(m.start(), m.end()) for m in re.finditer(r"[^,;:.!?]+", line) if m.group().strip()]
    rest = [(a, b) for a, b in clauses
            if not _POLITE.match(line[a:b])
            and not _any("greeting", line[a:b].strip(), "match")
            and not _any("closing", line[a:b].strip(), "match")]
    if len(clauses) > 1 and len(rest) == 1:
        spans.append(rest[0])
    return spans


def _judge(hit: _Hit, text: str, langs: Sequence[Phrases]) -> None:
    """Negated ("please don't remove me")? About another object ("add me to the panel")?

    Negations are those of the phrase's language; other objects those of the phrase's language
    and of English (words such as "newsletter" and "panel" travel)."""
    own = [ph for ph in langs if ph.lang in (hit.lang, DEFAULT_LANG)]
    s0, s1 = hit.sent
    # the clause before the phrase, for negations
    before = text[s0:hit.start]
    cut = [m.end() for m in _CLAUSE_START.finditer(before)]
    before = before[cut[-1]:] if cut else before
    before = before[-45:]
    mine = next((ph for ph in langs if ph.lang == hit.lang), None)
    negation = mine.negation if mine is not None else None
    if negation is not None and negation.search(before):
        hit.negated = True
    if hit.group not in _OBJECT_GROUPS:
        hit.other_in_sentence = any(ph.other_object is not None and
                                    ph.other_object.search(text[s0:s1]) for ph in own)
        return
    after = text[hit.end:s1]
    m = _CLAUSE_END.search(after)
    after = after[:m.start()] if m else after
    window = text[hit.start:hit.end] + after[:70]
    if mine is not None and mine.object_before:
        window = before + " " + window
    if any(ph.other_object is not None and ph.other_object.search(window) for ph in own):
        hit.other = True


def _delivery(analysis: _Analysis, hit: _Hit) -> str | None:
    """The delivery mode a request asks for: words in the phrase, then after it in the sentence
    ("instead of ..." parts removed), then before it."""
    text = analysis.text
    s0, s1 = hit.sent
    langs = _langs()

    def strip_instead(seg: str) -> str:
        for ph in langs:
            if ph.instead_of is not None:
                m = ph.instead_of.search(seg)
                if m:
                    seg = seg[:m.start()]
        return seg

    segments = [strip_instead(text[hit.start:hit.end]), strip_instead(text[hit.end:s1]),
                strip_instead(text[s0:hit.start])]
    for seg in segments:
        found: list[tuple[int, str]] = []
        for ph in langs:
            for mode, pattern in ph.delivery.items():
                m = pattern.search(seg)
                if m:
                    found.append((m.start(), mode))
        if found:
            return min(found)[1]
    return None


def _addresses(text: str, list_name: str) -> list[str]:
    local = _local(list_name)
    out = []
    for m in _EMAIL.finditer(text):
        addr = _ADDRESS_ARG.sub("", m.group().strip(".").lower())
        lp = addr.split("@", 1)[0]
        if lp == local or lp.startswith((local + "-", local + "+")):
            continue
        if addr not in out:
            out.append(addr)
    return out


@dataclass
class _Reading:
    """The free-text reading of one message."""

    command: Command | None
    hit: _Hit | None
    hits: list[_Hit]
    analyses: list[_Analysis]


def _keep_cue(analyses: Sequence[_Analysis], lang: str) -> bool:
    """Does the person want to stay a member ("until June", "don't unsubscribe me")?"""
    langs = [ph for ph in _langs() if ph.lang in (lang, DEFAULT_LANG)]
    for a in analyses:
        if any(ph.keep is not None and ph.keep.search(a.text) for ph in langs):
            return True
        if any(h.kind is Kind.UNSUBSCRIBE and h.negated for h in a.hits):
            return True
    return False


def _address_for(analysis: _Analysis, hit: _Hit, list_name: str) -> str | None:
    """An address named in the request sentence, else in the sentences just before it ("her
    account x@y still gets the list. Please remove that address.")."""
    s0, s1 = hit.sent
    found = _addresses(analysis.original[s0:s1], list_name)
    if found:
        return found[0]
    before = _addresses(analysis.original[max(0, s0 - 400):s0], list_name)
    return before[-1] if before else None


def _free_text(own: str, subject: str, subject_is_reply: bool, list_name: str) -> _Reading:
    analyses = [_analyse(own, list_name)]
    if subject and not subject_is_reply:
        analyses.append(_analyse(subject, list_name, subject=True))
    hits = [h for a in analyses for h in a.hits]
    valid = [(a, h) for a in analyses for h in a.hits if h.valid]

    def first(pred: Callable[[_Analysis, _Hit], bool]) -> tuple[_Analysis, _Hit] | None:
        return next(((a, h) for a, h in valid if pred(a, h)), None)

    chosen: tuple[_Analysis, _Hit] | None = None
    delivery: str | None = None
    pause = first(lambda a, h: h.group == "pause" or (
        h.group == "stop_mail" and _keep_cue(analyses, h.lang)))
    member = first(lambda a, h: h.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE))
    if pause:
        chosen, delivery = pause, "nomail"
    elif member:
        chosen = member
        if member[1].kind is Kind.SUBSCRIBE:
            delivery = _delivery(*member)
            delivery = None if delivery == "nomail" else delivery
    else:
        for kind in (Kind.SET, Kind.HELP, Kind.INFO, Kind.PEER_INPUT):
            chosen = first(lambda a, h, k=kind: h.kind is k and (
                k is not Kind.SET or _delivery(a, h) is not None))
            if chosen:
                delivery = _delivery(*chosen) if kind is Kind.SET else None
                break
    if chosen is None:
        return _Reading(None, None, hits, analyses)
    analysis, hit = chosen
    kind = Kind.SET if delivery == "nomail" else hit.kind
    address = None
    if kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
        address = _address_for(analysis, hit, list_name)
        if address is None and hit.subject:  # request in the Subject, the address in the body
            found = _addresses(own, list_name)
            address = found[0] if found else None
    command = Command(kind, delivery=delivery, address=address,
                      line=_sentence_text(analysis, hit))
    return _Reading(command, hit, hits, analyses)


def _sentence_text(analysis: _Analysis, hit: _Hit) -> str:
    s0, s1 = hit.sent
    return " ".join(analysis.original[s0:s1].split())[:300]


# --------------------------------------------------------------------------------------------
# Entry points


@dataclass
class _Parsed:
    body: Body
    subject: str  # cleaned
    subject_is_reply: bool
    token: str | None
    lang: str
    cut: bool = False  # only the start of the body was read


def _parse(msg: email.message.EmailMessage, list_name: str, *, enough: bool = False
           ) -> _Parsed:
    """The parts of `msg` that say what it asks; `enough`: only as much of the body as can
    change the guard's verdict (see `_enough_for_guard`)."""
    text = body_text(msg)
    read = _enough_for_guard(text) if enough else text
    body = split_body(read)
    raw_subject = str(msg.get("Subject", "") or "")
    subject, is_reply = _clean_subject(raw_subject, list_name)
    lang = _message_language(body.own, "" if is_reply else subject, body.rest)
    return _Parsed(body, subject, is_reply, _subject_token(raw_subject), lang,
                   cut=len(read) < len(text))


def _commands(own: str, list_name: str, token: str | None, max_commands: int
              ) -> tuple[list[Command], list[str], list[str]] | None:
    """Classic command mode, entered when the first line is a command; None otherwise."""
    lines = [ln.strip() for ln in own.split("\n")]
    first = next((ln for ln in lines if ln), None)
    if first is None:
        return None
    parsed = _parse_command(first, list_name, token)
    if parsed is None or parsed is True:
        if len([ln for ln in lines if ln]) == 1 and (
                _AFFIRMATIVE.match(first) or _any("confirm", fold(first), "match")):
            return [Command(Kind.CONFIRM, token=token, line=first)], [], []
        return None
    commands: list[Command] = []
    unrecognised: list[str] = []
    ignored: list[str] = []
    processed = 0
    seen: set[tuple] = set()
    paragraph_has_command = False
    k = 0
    while k < len(lines):
        line = lines[k]
        k += 1
        if not line:
            paragraph_has_command = False
            continue
        if processed >= max_commands:
            ignored.append(line)
            continue
        result = _parse_command(line, list_name, token)
        if result is True:  # end
            ignored.extend(ln for ln in lines[k:] if ln)
            break
        if isinstance(result, Command):
            processed += 1
            paragraph_has_command = True
            key = (result.kind, result.delivery, result.address, result.token, result.name)
            if key not in seen:
                seen.add(key)
                commands.append(result)
            continue
        if result is None and not paragraph_has_command and (commands or unrecognised):
            # a paragraph of prose after the commands (a signature without "-- "): stop here
            ignored.append(line)
            ignored.extend(ln for ln in lines[k:] if ln)
            break
        processed += 1
        unrecognised.append(line)
    return commands, unrecognised, ignored


def understand(msg: email.message.EmailMessage, list_name: str, *,
               max_commands: int = MAX_COMMANDS) -> Understanding:
    """What a mail to -request / -join asks for: classic commands (at most `max_commands`
    lines processed, the rest ignored), else one free-text request, else UNCLEAR."""
    p = _parse(msg, list_name)
    own = p.body.own
    cmd = _commands(own, list_name, p.token, max_commands)
    if cmd is not None and cmd[0]:
        commands, unrecognised, ignored = cmd
        return Understanding(p.lang, tuple(commands), tuple(unrecognised), tuple(ignored))
    unrecognised, ignored = (tuple(cmd[1]), tuple(cmd[2])) if cmd is not None else ((), ())
    if not own and p.subject:
        # empty body: the Subject may be a command ("subscribe", "confirm TOKEN")
        parsed = _parse_command(p.subject, list_name, p.token)
        if isinstance(parsed, Command):
            return Understanding(p.lang, (parsed,))
    reading = _free_text(own, p.subject, p.subject_is_reply, list_name)
    if p.token and (reading.command is None or _confirm_words(own)):
        return Understanding(p.lang, (Command(Kind.CONFIRM, token=p.token,
                                              line=own.split("\n", 1)[0][:300]),))
    if reading.command is not None:
        return Understanding(p.lang, (reading.command,))
    if _is_join(msg, list_name):
        return Understanding(p.lang, (Command(Kind.SUBSCRIBE, line=p.subject[:300]),))
    return Understanding(p.lang, (Command(Kind.UNCLEAR, line=_first_line(own, p.subject)),),
                         unrecognised, ignored)


def _confirm_words(own: str) -> bool:
    line = fold(own).strip()
    if not line or "\n" in line:
        return False
    return bool(_AFFIRMATIVE.match(line) or _any("confirm", line, "match"))


def _first_line(own: str, subject: str) -> str:
    first = next((ln.strip() for ln in own.split("\n") if ln.strip()), "")
    return (first or subject)[:300]


def _is_join(msg: email.message.EmailMessage, list_name: str) -> bool:
    """Was the mail addressed to NAME-join@ (Delivered-To, X-Original-To, To, Cc)?"""
    local = re.escape(_local(list_name))
    pattern = re.compile(rf"(?<![\w.+-]){local}-join@", re.I)
    for header in ("Delivered-To", "X-Original-To", "To", "Cc"):
        for value in msg.get_all(header, []) or []:
            if pattern.search(str(value)):
                return True
    return False


def _word_count(text: str) -> int:
    return len(re.findall(r"[^\W_]+(?:['-][^\W_]+)*", text))


def _enough_for_guard(text: str) -> str:
    """The start of a body that can change the guard's verdict.

    Past `GUARD_MAX_WORDS` words of the author's own lines a post is never a request by its
    words (only UNSURE or POST), and free text is read only up to `MAX_FREE_TEXT` characters:
    reading stops once both are passed. Quoted lines do not count, so a short reply above a
    long quote is read to its end (they are cheap to skip).
    """
    words = chars = pos = 0
    while pos < len(text) and (words <= GUARD_MAX_WORDS or chars < MAX_FREE_TEXT):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        if not QUOTED.match(line):
            words += _word_count(line)
            chars += len(line) + 1
        pos = end + 1
    return text[:pos]


def _mostly_commands(own: str, list_name: str, token: str | None) -> bool:
    """More command lines than the command limit, and most lines are commands ("help" and 500
    commands): a command mail however long, never a post."""
    lines = [line.strip() for line in own.split("\n") if line.strip()]
    # A command, or a command word with arguments we cannot read; not prose, not "end".
    parsed = (_parse_command(line, list_name, token) for line in lines)
    commands = sum(1 for result in parsed if result is not None and result is not True)
    return commands > MAX_COMMANDS and 2 * commands > len(lines)


def guard(msg: email.message.EmailMessage, list_name: str) -> tuple[Guard, Understanding]:
    """The administrivia guard for mail to the list address.

    REQUEST: the author's own text is short and is essentially a request about this list (a
    classic command, or a request phrase that names the list or needs no object); the
    Understanding says which. POST: no request, or request words that are negated, have another
    object, name a topic or appear only in quoted text. UNSURE: a request that comes with a
    longer text or with discussion, or a bare "sign me up" that is not a reply to a thread
    (hold for the chair; the Understanding carries the candidate request).
    """
    if automatic(msg) is not None:
        return Guard.POST, Understanding(DEFAULT_LANG, ())
    p = _parse(msg, list_name, enough=True)
    own = p.body.own
    words = _word_count(own)
    nothing = Understanding(p.lang, ())
    cmd = _commands(own, list_name, p.token, MAX_COMMANDS)
    if cmd is not None and cmd[0] and (
            (not cmd[1] and (not cmd[2] or words <= GUARD_KEYWORD_MAX_WORDS))
            or _mostly_commands(own, list_name, p.token)):
        commands, unrecognised, ignored = cmd
        if any(c.kind is Kind.CONFIRM and c.token is None for c in commands):
            return Guard.POST, nothing  # a bare "OK" on the list is a reply, not a confirmation
        if p.cut:  # a long command mail: its reply counts every line it leaves out
            return Guard.REQUEST, understand(msg, list_name)
        return Guard.REQUEST, Understanding(p.lang, tuple(commands), tuple(unrecognised),
                                            tuple(ignored))
    if not own and p.subject and not p.subject_is_reply:
        parsed = _parse_command(p.subject, list_name, p.token)
        if isinstance(parsed, Command) and parsed.kind is not Kind.CONFIRM:
            return Guard.REQUEST, Understanding(p.lang, (parsed,))
    reading = _free_text(own, p.subject, p.subject_is_reply, list_name)
    hits = reading.hits
    # request words about something else ("add me to the panel") make it a discussion post;
    # a negation ("pause it, don't remove me") is part of the request, not a discussion
    discussion = any(h.other for h in hits if not h.subject)
    command, hit = reading.command, reading.hit
    if command is None or hit is None or command.kind is Kind.PEER_INPUT:
        return Guard.POST, nothing
    candidate = Understanding(p.lang, (command,))

    def clear(h: _Hit) -> bool:
        # a keyword line ("Help", "Info") only speaks for a mail that is little more than it
        return h.anchored and (not h.keyword or words <= GUARD_KEYWORD_MAX_WORDS)

    anchored = clear(hit) or any(h.valid and clear(h) and h.kind is hit.kind for h in hits)
    if anchored:
        if words <= GUARD_MAX_WORDS and not discussion:
            return Guard.REQUEST, candidate
        return Guard.UNSURE, candidate
    if (p.subject_is_reply or words > GUARD_BARE_MAX_WORDS or discussion
            or hit.kind in (Kind.HELP, Kind.INFO)):  # a question to the list is discussion
        return Guard.POST, nothing
    return Guard.UNSURE, candidate

