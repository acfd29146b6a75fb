"""A small statistical reader of joins and leaves: a second opinion beside the rules (issue 21).

The rules (`freetext`, `stems`) are precise and explainable but only know the phrasings their
authors foresaw. This reader scores a mail with a multinomial logistic regression over the
evidence of its words alone: their Snowball stems and pairs of stems, the word classes of the
phrase file's ``[stems]`` table present in each sentence (a verb of joining, a list word, a
word for the sender, a wish, a negation, ...) and pairs of them in one sentence, whether it
went to the list or to -request, its length, whether it is a reply, and whether it names an
address, and what the rules noticed (a phrase or a stem of a kind, and whether it was negated,
done rather than asked, or about another object) -- not what they decided, so that it reads
anew where the rules read nothing.

The weights (``model.json`` beside this module) are made by `listserv.intent.training` from
mails we wrote ourselves (``tests/data``), and a test checks that the shipped file is what
training makes. How the two readers are combined: `request.understand` and `guard.guard`;
docs/understanding.md explains both.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from listserv.intent.freetext import Reading, prepared
from listserv.intent.lexicon import Lexicon
from listserv.intent.phrases import DEFAULT_LANG, languages
from listserv.intent.stems import sentence_words
from listserv.intent.understanding import Kind

#: What the reader tells apart: a join, a leave, and anything else (a post, a question).
CLASSES = ("subscribe", "unsubscribe", "other")
#: On -request, where the rules read nothing, the reader's join or leave is taken from this
#: probability (a free-text join or leave is always confirmed by its person first).
REQUEST_CONFIDENCE = 0.6
#: A free-text join or leave the rules read is the other kind when the reader is this sure of it.
OPPOSITE_CONFIDENCE = 0.95
#: ... and a join or leave the rules read from word stems alone is unclear (the chair's to
#: answer) when the reader is this sure it is neither.
OTHER_CONFIDENCE = 0.99
#: On the list address the reader overrules the administrivia guard from these probabilities:
#: a short post the guard would distribute becomes a join or leave (and one the guard would
#: hold is acted on when both readers see the same request) from `LIST_REQUEST_CONFIDENCE`;
#: a join or leave the guard would act on or hold is distributed as a post from
#: `LIST_POST_CONFIDENCE`. Chosen by cross-validation over the training corpora
#: (docs/understanding.md): a lower bar for "post" because a post held or answered as a
#: request is the costlier mistake.
LIST_REQUEST_CONFIDENCE = 0.8
LIST_POST_CONFIDENCE = 0.7
#: A long post (past the guard's "short") the rules would distribute is a join or a leave only
#: when they read one in its own words and the reader is at least this sure: the end of a long
#: self-introduction ("... est-ce que je pourrais être ajoutée ?") or a long goodbye ("... could
#: take my name off") asks its sender to confirm.
LONG_REQUEST_CONFIDENCE = 0.95
#: Only this much of the author's own text is read: a request is a few lines.
MAX_MODEL_CHARS = 2_000
#: The word classes paired within a sentence ("a verb of joining next to a list word").
_PAIRED = ("join", "join_alone", "leave", "leave_alone", "receive", "belong", "stay", "mail",
           "list_words", "named", "self_words", "passive", "wish", "polite", "negation",
           "others", "past", "idioms")
#: The word classes of the quoted history the reader sees: a reply to an invitation ("if you'd
#: like to be added to the mailing list, just reply") says what its "yes, put me down" asks.
_QUOTED = frozenset({"join", "join_alone", "leave", "leave_alone", "belong", "list_words",
                     "named"})
_LENGTHS = ((0, "0"), (5, "1-5"), (15, "6-15"), (40, "16-40"), (80, "41-80"))
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")


@dataclass(frozen=True)
class Model:
    """The weights of a multinomial logistic regression over binary features."""

    classes: tuple[str, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]

    def probabilities(self, features: Iterable[str]) -> dict[str, float]:
        """The probability of each class for a mail with `features`."""
        scores = list(self.bias)
        for f in set(features):
            w = self.weights.get(f)
            if w is not None:
                for k, x in enumerate(w):
                    scores[k] += x
        top = max(scores)
        exp = [math.exp(s - top) for s in scores]
        total = sum(exp)
        return {c: e / total for c, e in zip(self.classes, exp, strict=True)}

    def to_json(self) -> str:
        """The model as the JSON text of ``model.json`` (sorted, weights rounded)."""
        return json.dumps({
            "classes": list(self.classes),
            "bias": [round(b, 4) for b in self.bias],
            "weights": {f: [round(x, 4) for x in w] for f, w in sorted(self.weights.items())},
        }, indent=0, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Model:
        data = json.loads(text)
        return cls(tuple(data["classes"]), tuple(data["bias"]),
                   {f: tuple(w) for f, w in data["weights"].items()})


@lru_cache(maxsize=1)
def shipped() -> Model:
    """The model shipped with the package (``listserv/intent/model.json``)."""
    return Model.from_json(
        resources.files("listserv.intent").joinpath("model.json").read_text(encoding="utf-8"))


def _lexicon(lang: str) -> Lexicon | None:
    by_lang = {ph.lang: ph.lexicon for ph in languages()}
    return by_lang.get(lang) or by_lang.get(DEFAULT_LANG)


def _length(words: int) -> str:
    return next((name for most, name in _LENGTHS if words <= most), "81+")


def features(reading: Reading, lang: str, *, on_list: bool, is_reply: bool,
             words: int, quoted: str = "") -> list[str]:
    """What the reader sees of a mail: `reading` is the free-text reading of its own words and
    Subject (its analyses: the folded text and sentences), `lang` the author's language,
    `words` the number of words of the author's own text, `quoted` its quoted history."""
    out = {"to:list" if on_list else "to:request", f"len:{_length(words)}"}
    if is_reply:
        out.add("reply")
    for hit in reading.hits:
        # what the rules noticed, not what they decided: a phrase or stem of a kind, and why it
        # does not count ("thanks for adding me", "add me to the panel", "don't remove me")
        how = "stem" if hit.stem else "keyword" if hit.keyword else "phrase"
        why = ("negated" if hit.negated else "other" if hit.other else
               "mentioned" if hit.mentioned else "elsewhere" if hit.elsewhere else "valid")
        out.update({f"h:{hit.kind.value}:{how}", f"h:{hit.kind.value}:{why}"})
        if hit.anchored and hit.valid:
            out.add(f"h:{hit.kind.value}:anchored")
    lex = _lexicon(lang)
    for n, analysis in enumerate(reading.analyses):
        where = "w" if n == 0 else "s"  # the body, then the Subject
        if "@@@" in analysis.text[:MAX_MODEL_CHARS]:
            out.add("address")
        if "-request@" in analysis.original[:MAX_MODEL_CHARS].lower():
            out.add("request_address")  # tells how to ask ("write to shma-request@"), or asks
        if lex is None:
            continue
        for s0, s1 in analysis.sentences:
            if s0 >= MAX_MODEL_CHARS:
                break
            stemmed, classes = sentence_words(lex, analysis.text, analysis.original, s0,
                                              min(s1, MAX_MODEL_CHARS))
            out.update(f"{where}:{s}" for s in stemmed)
            out.update(f"{where}2:{a}_{b}" for a, b in zip(stemmed, stemmed[1:], strict=False))
            present = [c for c in _PAIRED if c in classes]
            out.update(f"c:{c}" for c in classes)
            out.update(f"cc:{a}+{b}" for i, a in enumerate(present) for b in present[i + 1:])
    if quoted and lex is not None:
        out.update(f"q:{c}" for c in _quoted_classes(lex, quoted))
    return sorted(out)


_QUOTE_MARKS = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)


def prepared_quote(quoted: str, limit: int) -> tuple[str, str, list[tuple[int, int]]]:
    """The first `limit` characters of quoted history without their quote marks, as `prepared`
    reads them: (the text read, the original, its sentences)."""
    original = _QUOTE_MARKS.sub("", quoted[:limit])
    text, sentences = prepared(original)
    return text, original, sentences


def _quoted_classes(lex: Lexicon, quoted: str) -> set[str]:
    """The word classes of `_QUOTED` in the quoted history's sentences."""
    text, original, sentences = prepared_quote(quoted, MAX_MODEL_CHARS)
    return {c for s0, s1 in sentences for c in sentence_words(lex, text, original, s0, s1)[1]
            if c in _QUOTED}


def word_count(text: str) -> int:
    """The number of words in `text`, as the reader counts them."""
    return len(_WORD.findall(text))


def best_request(probabilities: dict[str, float]) -> tuple[Kind, float]:
    """The likelier of a join and a leave, and its probability."""
    kind = max(("subscribe", "unsubscribe"), key=lambda k: probabilities[k])
    return Kind(kind), probabilities[kind]


#: The word classes of which a mail must have one for the reader to speak: a signature alone
#: ("Jo Bloggs, Lecturer") to -request asks for nothing it could read.
_ABOUT_THE_LIST = frozenset(f"c:{c}" for c in ("join", "join_alone", "leave", "leave_alone",
                                               "receive", "belong", "mail", "list_words",
                                               "named"))


def read(model: Model, reading: Reading, lang: str, *, on_list: bool, is_reply: bool,
         words: int, quoted: str = "") -> dict[str, float]:
    """The probability of a join, a leave and anything else, by `model`; "anything else" for
    a mail with no word of joining, leaving, getting mail or the list, and no request phrase."""
    seen = features(reading, lang, on_list=on_list, is_reply=is_reply, words=words,
                    quoted=quoted)
    if not reading.hits and _ABOUT_THE_LIST.isdisjoint(seen):
        return {c: float(c == "other") for c in model.classes}
    return model.probabilities(seen)

