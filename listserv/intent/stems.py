"""Requests read from word stems: a verb of joining or leaving, its subject, its object.

The phrase files' ``[request]`` patterns are whole phrasings; this reader generalizes beyond
them. Each language's ``[stems]`` table lists plain words, and a word of the text matches an
entry when both have the same Snowball stem (so "include" covers "included", "including";
"incluir" covers "incluida"), or with one typo for long words. A sentence asks to join or to
leave when it has

* a verb of joining (``join``: add, include, subscribe, sign up, put on ...) or of leaving
  (``leave``: remove, take off, unsubscribe, delete ...), not inside "double quotes";
* a subject that is the sender: a word for the sender right by the verb ("add *me*", "*mich*
  ... abmelden", "inscreva-*me*", Spanish "agregar*me*"), an address in the sentence, or a
  first-person wish ("I'd love to be included", "would it be possible to join");
* the form of a request: a wish or a polite word in the sentence ("please", "could you",
  "would it be possible", "me gustaría", "bitte"), or the verb opening the sentence (an
  imperative: "Hi, remove me from the list");
* and is not something done ("thanks for adding me") or an idiom ("join us for the launch").

A negation just before the verb ("please don't remove me") cancels a join or leave verb; it
turns a verb of getting the mail (``receive``: "I no longer wish to receive", "ya no quiero
recibir", "möchte keine Mails mehr bekommen") into a leave, while without negation such a verb
is a join only with a wish and a list named ("I'd like to receive the list's emails"). Whether
the sentence names this list (``named``) or the mail (``mail``) is recorded, not required: the
administrivia guard needs it, -request does not. The other-object check ("add me to the panel")
is the free-text reader's, as for phrases. docs/understanding.md explains it all with examples.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from listserv.intent.lexicon import DEFAULT_GAP, Entries, Lexicon, stems

#: How far (in words) a word for the sender may be from the verb ("remove my old address").
SELF_WINDOW = 3
#: How far before the verb a negation still negates it ("I don't want to be removed").
NEGATION_WINDOW = 4

#: The end of a German infinitive or participle: capitalised inside a sentence, a noun made
#: of the verb ("das Anmelden", "die Mitlesenden"), not the verb ("Anmeldung" is a noun anyway).
_VERBAL = re.compile(r"(?:en|end|ende|enden|ender|endes)$")
#: A gerund in the languages whose lexicon has `progressive` ("mandando", "pedindo").
_GERUND = re.compile(r"[aei]ndo$")
_WORD = re.compile(r"[^\W\d_]+")
#: A Romance infinitive, with a pronoun attached or not ("leer", "enterarme", "recevoir").
_INFINITIVE = re.compile(r"(?:ar|er|ir|or|re)(?:me|se|nos|te|lo|la)?$")
_QUOTED = re.compile(r'"[^"\n]{1,120}"')
_CLAUSE = re.compile(r"[.?!;:,()\n]| - ")


@dataclass(frozen=True)
class StemHit:
    """A verb of joining or leaving read as a request, with what its sentence says."""

    join: bool  # True: join, False: leave
    start: int  # the verb's span in the analysed text
    end: int
    sent: tuple[int, int]
    receive: bool  # a verb of getting the mail ("no longer receive")
    mail: bool  # the sentence names the mail ("these emails", "esses e-mails")
    named: bool  # the sentence names this list ("this group")


@dataclass
class _Words:
    """The words of one sentence: folded text, stems, spans, clause numbers, quoted flags."""

    words: list[str]
    stems: list[frozenset[str]]
    spans: list[tuple[int, int]]
    clause: list[int]
    quoted: list[bool]


_Stemmed = tuple[list[re.Match[str]], list[str], list[frozenset[str]]]


def _stemmed(lex: Lexicon, text: str, original: str, s0: int, s1: int) -> _Stemmed:
    """The words of the sentence text[s0:s1] with their stems: (matches, words, stems)."""
    matches = list(_WORD.finditer(text, s0, s1))
    words, stemmed = [], []
    for m in matches:
        w = m.group().lower()
        written = original[m.start():m.end()]
        st = stems(written, lex.language)
        bare = _clitic(lex, w)
        if bare:  # "agréguenme": also the verb without the sender
            st |= stems(written[:len(bare)], lex.language)
        words.append(w)
        stemmed.append(st)
    return matches, words, stemmed


def _words(lex: Lexicon, text: str, original: str, s0: int, s1: int,
           stemmed: _Stemmed | None = None) -> _Words:
    """The words of the sentence text[s0:s1] (`original`: the same positions as written);
    `stemmed`: its words and stems when `_stemmed` already read them."""
    matches, words, word_stems = stemmed or _stemmed(lex, text, original, s0, s1)
    sent = text[s0:s1]
    quoted = [(s0 + m.start(), s0 + m.end()) for m in _QUOTED.finditer(sent)]
    cuts = [s0 + m.start() for m in _CLAUSE.finditer(sent)]
    return _Words(
        words, word_stems, [m.span() for m in matches],
        [bisect_left(cuts, m.start()) for m in matches],
        [any(a < m.start() < b for a, b in quoted) for m in matches],
    )


def _find(entries: Entries, ws: _Words, gap: int,
          lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """(first, last) word indexes of every match of any entry in words lo..hi."""
    hi = len(ws.words) if hi is None else hi
    found = set()
    for i in range(max(0, lo), hi):
        for terms in entries.starting(ws.words[i], ws.stems[i]):
            j, ok = i, True
            for term in terms[1:]:
                nxt = next((k for k in range(j + 1, min(hi, j + gap + 2))
                            if term.matches(ws.words[k], ws.stems[k])), None)
                if nxt is None:
                    ok = False
                    break
                j = nxt
            if ok:
                found.add((i, j))
    return sorted(found)


def _has(entries: Entries, ws: _Words, lo: int, hi: int,
         gap: int = 0) -> list[tuple[int, int]]:
    return _find(entries, ws, gap, max(0, lo), min(len(ws.words), hi))


def _clause_span(ws: _Words, i: int) -> tuple[int, int]:
    c = ws.clause[i]
    lo = i
    while lo > 0 and ws.clause[lo - 1] == c:
        lo -= 1
    hi = i
    while hi + 1 < len(ws.words) and ws.clause[hi + 1] == c:
        hi += 1
    return lo, hi + 1


def _clitic(lex: Lexicon, word: str) -> str:
    """The verb of a word carrying the sender as a suffix ("agregar" of "agregarme", "quiten"
    of "quítenme", the polite imperative "agregue" of "agrégueme"), or ""."""
    for c in lex.clitics:
        bare = word[:-len(c)]
        if word.endswith(c) and len(bare) > 3 and bare.endswith(
                ("ar", "er", "ir", "ndo", "an", "en", "ad", "ed", "e", "a")):
            return bare
    return ""


def _done(lex: Lexicon, ws: _Words, i: int, c0: int, c1: int) -> bool:
    """Is the verb at word `i` something done, not asked ("thanks for adding me", "j'ai été
    ajoutée", "dass ihr mich aufgenommen habt")?"""
    if lex.verb_final:
        return bool(_past(lex, ws, c0, c1, 1))
    c0 = _before_vocative(ws, c0)
    return any(b >= i - 2 and not _in_progress(lex, ws, c0, a)
               for a, b in _past(lex, ws, max(c0, i - 5), i, 2))


def _past(lex: Lexicon, ws: _Words, lo: int, hi: int, gap: int) -> list[tuple[int, int]]:
    """The words of `lex.past` in words lo..hi, but those of a phrase of `lex.now` ("nimm mich
    *schon jetzt* von der Liste": right away, not already)."""
    now = _has(lex.now, ws, lo, hi + 2)
    return [(a, b) for a, b in _has(lex.past, ws, lo, hi, gap)
            if not any(n0 <= a and b <= n1 for n0, n1 in now)]


def _in_progress(lex: Lexicon, ws: _Words, c0: int, k: int) -> bool:
    """Does the clause from word `c0` put the words before word `k` in the progressive
    ("*estou mandando* e-mail e pedindo pra ser adicionada": asking now, not telling how)?"""
    return any(any(_GERUND.search(w) for w in ws.words[b + 1:k + 1])
               for _, b in _has(lex.progressive, ws, c0, k))


def _before_vocative(ws: _Words, c0: int) -> int:
    """Where the clause starting at word `c0` begins when a name in commas precedes it
    ("Gracias, Carol, por sumarme", "Thanks, Carol, for adding me"): the clause before the
    name, so that the thanks reach the verb."""
    if c0 < 2 or ws.clause[c0 - 1] == ws.clause[c0]:
        return c0
    name = [k for k in range(c0) if ws.clause[k] == ws.clause[c0 - 1]]
    if len(name) > 2 or name[0] == 0:
        return c0
    return next(k for k in range(name[0]) if ws.clause[k] == ws.clause[name[0] - 1])


def _supposed(lex: Lexicon, ws: _Words, i: int) -> bool:
    """Is the verb at word `i` in the main clause of a sentence that opens with a condition
    ("If I ever have time again, I'll sign up again")? Not when the condition is a courtesy
    formula ("if possible, ...")."""
    def condition(k: int) -> bool:
        return bool(lex.condition.starting(ws.words[k], ws.stems[k]))

    k = next((k for k in range(i)
              if condition(k) or not lex.opener.starting(ws.words[k], ws.stems[k])), None)
    # a condition has a clause of its own, before the verb's: "Sí, claro, anotame" opens with
    # a yes
    if (k is None or not condition(k) or ws.clause[k] == ws.clause[i] or k + 2 >= i
            or ws.clause[k + 2] != ws.clause[k]):
        return False
    return not any(a == k for a, _ in _has(lex.courtesy, ws, k, len(ws.words)))


def _antonym(lex: Lexicon, stemmed: frozenset[str], join: bool) -> bool:
    """Is a word read as a join (`join`) or a leave exactly, by its stem, a verb of the other
    kind? Then it matched by a typo ("abmeldung" one letter from "anmeldung")."""
    other = (lex.leave, lex.leave_alone) if join else (lex.join, lex.join_alone)
    mine = (lex.join, lex.join_alone) if join else (lex.leave, lex.leave_alone)
    exact = [any(st in e.by_stem for st in stemmed) for e in (*other, *mine)]
    return any(exact[:2]) and not any(exact[2:])


def mention(lex: Lexicon, text: str, original: str, sent: tuple[int, int], start: int) -> bool:
    """Is the request phrase starting at `start` (in sentence `sent`) quoted or done, not asked
    ("thanks for including me in the list")? The phrase reader asks this of its phrases."""
    ws = _words(lex, text, original, *sent)
    i = next((k for k, (a, b) in enumerate(ws.spans) if b > start), None)
    if i is None:
        return False
    c0, c1 = _clause_span(ws, i)
    return ws.quoted[i] or _done(lex, ws, i, c0, c1)


def elsewhere(lex: Lexicon, text: str, original: str, sent: tuple[int, int],
              start: int, end: int) -> bool:
    """Does the request verb at `start`..`end` go on to somewhere ("included *in* the next round
    of interviews", "mich *zum* Workshop anmelden")? Asked when its sentence names no list:
    then that somewhere is not this list."""
    ws = _words(lex, text, original, *sent)
    i = next((k for k, (a, b) in enumerate(ws.spans) if b > start), None)
    if i is None:
        return False
    c0, c1 = _clause_span(ws, i)
    if lex.verb_final:
        # a preposition closing the clause is the verb's own particle ("hört bitte *auf*, mir
        # ... zu schicken", "tragt mich *aus*"), not a place the request goes to
        return any(a < c1 - 1 for a, _ in _has(lex.prepositions, ws, c0, c1))
    k = next((k for k in range(i, c1) if ws.spans[k][0] >= end), c1)
    while k < c1 and _has(lex.self_words, ws, k, k + 1):
        k += 1
    k = next((last + 1 for first, last in _has(lex.adverbs, ws, k, c1) if first == k), k)
    if k + 1 < c1 and _has(lex.purpose, ws, k, k + 1) and _INFINITIVE.search(ws.words[k + 1]):
        return False  # "que me incluyeran para poder leer": what for, not where to
    if any(a == k for a, _ in _has(lex.person, ws, k, c1)):
        return False  # "dar de alta a mi doctorando": whom, not where to
    return k < c1 and bool(_has(lex.prepositions, ws, k, k + 1))


def names_list(lex: Lexicon, text: str, original: str, sent: tuple[int, int]) -> bool:
    """Does the sentence `sent` name this list in the lexicon's words ("add me to the group",
    "dieser Verteiler")?"""
    return bool(_find(lex.named, _words(lex, text, original, *sent), 0))


#: A Subject of at most this many words that names a list and a joining or leaving is a
#: request by the sender ("Aufnahme in die Mailingliste", "Petición de inclusión en la lista").
HEADLINE_WORDS = 8


def read_stems(lex: Lexicon, text: str, original: str,
               sentences: Sequence[tuple[int, int]], *, headline: bool = False,
               to_request: bool = False) -> list[StemHit]:
    """Every verb of joining or leaving in `text` (folded and masked; `original` as written, at
    the same positions) that is a request by the sender (see the module docstring).

    `headline`: `text` is a Subject; a short one that names a list asks with a noun alone, and so
    does one sent to -request (`to_request`: the address names the list: "Petición de
    suscripción")."""
    hits = []
    for s0, s1 in sentences:
        stemmed = _stemmed(lex, text, original, s0, s1)
        if not lex.verbs.any_starting(stemmed[1], stemmed[2]):
            continue  # no verb of joining or leaving begins here (most sentences of a post)
        ws = _words(lex, text, original, s0, s1, stemmed)
        if not _find(lex.verbs, ws, lex.gap):
            continue
        n = len(ws.words)
        listed = bool(_find(lex.list_words, ws, 1))
        mail = bool(_find(lex.mail, ws, 1))
        named = bool(_find(lex.named, ws, 0))
        address = "@@@" in text[s0:s1]
        # (span, join?, needs no object?, state: "receive" | "belong" | "")
        verbs = ([(m, True, False, "") for m in _find(lex.join, ws, lex.gap)]
                 + [(m, True, True, "") for m in _find(lex.join_alone, ws, lex.gap)]
                 + [(m, False, False, "") for m in _find(lex.leave, ws, lex.gap)]
                 + [(m, False, True, "") for m in _find(lex.leave_alone, ws, lex.gap)]
                 + [(m, True, True, "receive") for m in _find(lex.receive, ws, lex.gap)]
                 + [(m, True, True, "belong") for m in _find(lex.belong, ws, lex.gap)])
        polite_words = {k for a, b in _has(lex.courtesy, ws, 0, n) for k in range(a, b + 1)}
        # a courtesy word right after "has" reports another's kindness ("Carol has very
        # kindly switched my subscription"), it asks nothing
        polite = any(not _has(lex.past, ws, max(a - 3, _clause_span(ws, a)[0]), a)
                     for a, _ in _has(lex.polite, ws, 0, n, 2))
        seen: set[int] = set()
        for (i, j), join, alone, state in sorted(verbs, key=lambda v: (v[0][0], -v[0][1])):
            if i in seen or ws.quoted[i]:
                continue
            if not state and _antonym(lex, ws.stems[i], join):
                continue  # "Abmeldung" is no typo of "Anmeldung": the word is a leave as written
            if (lex.capitalised_nouns and not state and i > 0
                    and original[ws.spans[i][0]].isupper() and _VERBAL.search(ws.words[i])):
                continue  # "zu stillen Mitlesenden", "beim Anmelden": a verb made a noun
            c0, c1 = _clause_span(ws, i)
            # verb-final languages (German): negation, the sender and the auxiliary may be
            # anywhere in the clause ("nehmt mich bitte nicht ... raus", "aufgenommen werden")
            final = lex.verb_final
            negated = any(a not in polite_words for a, _ in _has(
                lex.negation, ws, c0 if final else max(c0, i - NEGATION_WINDOW),
                c1 if final else i, 1))
            if _done(lex, ws, i, c0, c1):
                continue
            wish = _has(lex.wish, ws, 0, i, 2)
            in_wish = {k for a, b in wish for k in range(a, b + 1)}  # "*me* gustaría"
            # someone else, or a condition, before the verb ("if you want to join"), but not
            # a word of the wish itself ("I'm emailing *you* to join")
            others = [o for o in _has(lex.others, ws, min([c0] + [w[1] for w in wish]), i)
                      if o[0] not in in_wish and o[0] not in polite_words]
            first_person = bool(wish) and not others
            lo, hi = (c0, c1) if final else (i - SELF_WINDOW, j + SELF_WINDOW + 1)
            own = (any(a not in in_wish for a, _ in _has(lex.self_words, ws, lo, hi))
                   or bool(_clitic(lex, ws.words[i]) or _clitic(lex, ws.words[j]))
                   or (address and not others))  # "whoever wants out writes to x@y": no ask
            passive = bool(_has(lex.passive, ws, i - 2, i)) or (
                final and bool(_has(lex.passive, ws, j + 1, j + 3)))
            # an imperative opens the sentence ("Hi, please remove me"), not a later clause
            # or a later clause when the sender is its object ("Carol, aye that'd be grand,
            # put me down for it")
            opens = all(lex.opener.starting(ws.words[k], ws.stems[k]) for k in range(
                c0 if _has(lex.self_words, ws, i + 1, i + 2) else 0, i))
            if not polite and _supposed(lex, ws, i):
                continue  # "Si algún día vuelvo a tener tiempo, ... me vuelvo a apuntar"
            if any(a == i for a, _ in _find(lex.idioms, ws, 0, i, n)):
                continue  # "join us for the launch", "add that", "leave a comment"
            if state:
                # getting the mail / being on the list: not any more -> leave; wanting it -> a
                # join, if the list is named ("receive the list's messages": wanting to receive
                # the digest, the instructions or the slides is no join) and not "stay on"
                if not (first_person or own):
                    continue
                if state == "receive" and not (listed or _has(
                        lex.mail, ws, c0 if final else j + 1, c1 if final else j + 7)):
                    continue  # "I no longer want to receive criticism": not the list's mail
                join, negated = not negated, False
                if join and (not first_person or _has(lex.stay, ws, c0, c1)
                             or (state == "receive" and not listed)):
                    continue
            if negated:
                continue
            subject = own or (first_person and (alone or passive))
            request = first_person or polite or opens
            if headline and alone and (listed or to_request) and n <= HEADLINE_WORDS:
                subject = request = True
            if subject and request:
                seen.update(range(i, j + 1))
                hits.append(StemHit(join, ws.spans[i][0], ws.spans[j][1], (s0, s1),
                                    bool(state) and not join, mail, named))
    return hits


#: The word classes of a ``[stems]`` table that the statistical reader sees
#: (`listserv.intent.model`), with the gap allowed between the words of one entry.
CLASSES: dict[str, int] = {
    "join": DEFAULT_GAP, "join_alone": DEFAULT_GAP, "leave": DEFAULT_GAP,
    "leave_alone": DEFAULT_GAP, "receive": DEFAULT_GAP, "belong": DEFAULT_GAP, "stay": 1,
    "mail": 1, "list_words": 1, "named": 0, "self_words": 0, "passive": 0, "wish": 2,
    "polite": 2, "negation": 1, "others": 0, "past": 1, "idioms": DEFAULT_GAP, "courtesy": 0,
    "purpose": 0, "person": 0, "prepositions": 0,
}


def sentence_words(lex: Lexicon, text: str, original: str, s0: int,
                   s1: int) -> tuple[list[str], set[str]]:
    """The sentence text[s0:s1] as the statistical reader sees it: each word's stem (folded) and
    the word classes of `CLASSES` present in it."""
    ws = _words(lex, text, original, s0, s1)
    found = {name for name, gap in CLASSES.items() if _find(getattr(lex, name), ws, gap)}
    return [min(st, key=lambda s: (len(s), s)) for st in ws.stems], found

