"""Free-text requests: one request in the author's own words, in any phrase file's language.

Deliberately simple and explainable: a request phrase (pattern) is found in a sentence of the
author's own text (or in the Subject when it is not a reply), then discarded when it is negated
("please don't remove me"), or when its object is something other than the list ("add me to
the panel", "remove me from the author list"). The dominant intent is the first remaining
request, except that a pause ("stop sending me mail while I'm on leave", "pause, don't remove
me") wins over an unsubscribe, and a subscribe that names a delivery mode wins over a delivery
change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from listserv.intent.commands import ADDRESS_ARG, EMAIL, list_local
from listserv.intent.phrases import (
    DEFAULT_LANG,
    GROUP_KIND,
    GROUPS,
    OBJECT_GROUPS,
    WEAK,
    Phrases,
    languages,
)
from listserv.intent.stems import StemHit, elsewhere, mention, names_list, read_stems
from listserv.intent.understanding import Command, Kind
from listserv.mail.text import fold, match_any

#: Free text beyond this many characters of own text is not searched for requests.
MAX_FREE_TEXT = 10_000

_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)


def _mask(text: str) -> str:
    """Addresses and URLs replaced by filler of the same length (their dots end no sentence)."""
    text = _URL.sub(lambda m: "/" * len(m.group()), text)
    return EMAIL.sub(lambda m: "@" * len(m.group()), text)


@dataclass
class Hit:
    """A request phrase or whole-line keyword found in the text, and what its context says."""

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
    stem: bool = False  # read from word stems (listserv.intent.stems), not a phrase
    mentioned: bool = False  # quoted or done, not asked ("thanks for adding me to the list")
    mail: bool = False  # a stem hit whose sentence names the mail ("stop sending me these emails")
    elsewhere: bool = False  # no list named, and the verb goes on to somewhere ("in the panel")

    @property
    def valid(self) -> bool:
        return not self.negated and not self.other and not self.mentioned

    @property
    def anchored(self) -> bool:
        """Clearly about this list: explicit phrase, keyword, or a weak phrase naming the list
        (for help and info: a sentence naming a list and no other object)."""
        if self.kind in (Kind.HELP, Kind.INFO, Kind.PEER_INPUT):
            return (self.listed and not self.other_in_sentence) or self.keyword
        if self.stem:  # a leave that names the mail needs no list: a misread asks to confirm
            return self.listed or (self.mail and self.kind is Kind.UNSUBSCRIBE)
        if self.elsewhere and not self.keyword:  # "sign up for an interview": no list named
            return False
        return self.group not in WEAK or self.listed or self.keyword


_SENT_END = re.compile(r"[.?!]+[\"')\]]*(?:\s+|$)|\n\s*\n")
_CLAUSE_END = re.compile(r"[.?!;:,(\n]| - | -- ")
_CLAUSE_START = re.compile(r"[.?!;:,)\n]| - | -- ")
#: A period after these does not end a sentence ("Dr. Mensah", "am 12. Juni", "z.B. hier").
_NO_BREAK_BEFORE = re.compile(
    r"(?:\b\d{1,4}|\b[^\W\d_]|\b(?:dr|prof|mr|mrs|ms|st|sr|sra|srta|nr|no|ca|bzw|vgl|ggf|"
    r"etc|vs|approx|dept|univ|mme|mlle|pr|av|tel|ph|hr|fr|art|abs)|\b(?:[^\W\d_]\.){1,3}[^\W\d_])$",
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


def prepared(original: str) -> tuple[str, list[tuple[int, int]]]:
    """`original` as the readers read it (folded, addresses and links masked, on one line; the
    same positions) and its sentences: a paragraph break ends one."""
    masked = _mask(fold(original))
    return masked.replace("\n", " "), _sentences(masked)


@dataclass
class _Analysis:
    text: str  # the folded, masked text analysed
    original: str  # the same positions in the author's text
    sentences: list[tuple[int, int]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)


def _list_pattern(list_name: str) -> re.Pattern[str]:
    local = re.escape(list_local(list_name))
    return re.compile(rf"(?<![\w@.-]){local}(?![\w@-])", re.I)


def _analyse(original: str, list_name: str, *, subject: bool = False, to_request: bool = False,
             lang: str = DEFAULT_LANG) -> _Analysis:
    original = original[:MAX_FREE_TEXT]
    text, sentences = prepared(original)
    analysis = _Analysis(text=text, original=original, sentences=sentences)
    langs = languages()
    own_list = _list_pattern(list_name)
    for s0, s1 in sentences:
        sent = text[s0:s1]
        listed = bool(own_list.search(sent)) or any(
            ph.list_words is not None and ph.list_words.search(sent) for ph in langs)
        folded = sent.casefold()
        names: dict[str, bool] = {}  # by language: does the sentence name the list in words
        for ph in langs:
            present = {n for n in ph.all_needles if n in folded}
            for group in GROUPS:
                for pattern, needles in zip(ph.groups[group], ph.needles[group], strict=True):
                    if needles is not None and present.isdisjoint(needles):
                        continue  # it cannot match here (`phrases._needles`)
                    for m in pattern.finditer(sent):
                        if m.end() == m.start():
                            continue
                        if not listed and ph.lexicon is not None:
                            # "add me to the group": the lexicon's names of this list
                            if ph.lang not in names:
                                names[ph.lang] = names_list(ph.lexicon, text, original,
                                                            (s0, s1))
                            listed = names[ph.lang]
                        hit = Hit(group, GROUP_KIND[group], s0 + m.start(), s0 + m.end(),
                                   (s0, s1), ph.lang, listed=listed, subject=subject)
                        _judge(hit, text, langs, own_list)
                        if hit.group in OBJECT_GROUPS and ph.lexicon is not None:
                            hit.mentioned = mention(ph.lexicon, text, original, (s0, s1),
                                                    hit.start)
                            hit.elsewhere = hit.elsewhere or not listed and elsewhere(
                                ph.lexicon, text, original, (s0, s1), hit.start, hit.end)
                        analysis.hits.append(hit)
        for ph in langs:
            # stems in every language, like the phrases: a short mail's language may be
            # misread ("PAREM DE ME MANDAR ESSES EMAILS")
            if ph.lexicon is not None:
                for sh in read_stems(ph.lexicon, text, original, [(s0, s1)],
                                     headline=subject, to_request=to_request):
                    analysis.hits.append(
                        _stem_hit(sh, ph.lang, listed, subject, text, original, langs, lang,
                                  own_list))
    # whole-line keywords ("UNSUBSCRIBE", "baja", "ABMELDEN!!!"), also as the one clause of a
    # short line that is not a greeting or a closing ("hello, unsubscribe please, thanks!")
    pos = 0
    for raw_line in _mask(fold(original)).split("\n"):
        for start, end, exclaimed in _keyword_spans(raw_line):
            clause = _POLITE_EDGES.sub("", raw_line[start:end]) or raw_line[start:end]
            for ph in langs:
                for kind, pattern in ph.keywords.items():
                    if exclaimed and kind not in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
                        continue  # "Help! The dial-in fails" is a question to the list
                    if pattern.match(clause):
                        analysis.hits.append(Hit(
                            "keyword", kind, pos + start, pos + end, (pos + start, pos + end),
                            ph.lang, listed=True, subject=subject, keyword=True))
        pos += len(raw_line) + 1
    analysis.hits.sort(key=lambda h: (h.start, -h.end))
    return analysis


_POLITE_WORDS = (r"(?:please|pls|plz|svp|s'?il vous pla[iî]t|stp|por favor|porfa|bitte|danke|"
                 r"thanks|thank you|thx|merci|gracias|obrigad[oa]|obg|vielen dank)")
_POLITE = re.compile(rf"^\W*{_POLITE_WORDS}\W*$", re.I)
_POLITE_EDGES = re.compile(rf"^(?:\W*{_POLITE_WORDS}\b)+|(?:\b{_POLITE_WORDS}\W*)+$", re.I)


#: A line's first word shouted on its own: "AUSTRAGEN!!! Ich habe das schon zweimal geschrieben."
_EXCLAIMED = re.compile(r"\s*([^\W\d_]+)\s*!+(?:\s|$)")


def _keyword_spans(line: str) -> list[tuple[int, int, bool]]:
    """Where to look for a whole-line keyword: the line, the one clause of a short line that
    is not a greeting, a closing or a please/thanks, or an exclaimed first word (then only a
    join or leave keyword counts: "UNSUBSCRIBE! I asked twice", not "Sign me up! I can do it").
    """
    stripped = line.strip()
    if not stripped or len(stripped) > 60:
        return []
    start = line.find(stripped)
    spans = [(start, start + len(stripped), False)]
    if len(stripped.split()) > 8:
        return spans
    clauses = [(m.start(), m.end()) for m in re.finditer(r"[^,;:.!?]+", line) if m.group().strip()]
    rest = [(a, b) for a, b in clauses
            if not _POLITE.match(line[a:b])
            and not match_any(languages(), "greeting", line[a:b].strip(), "match")
            and not match_any(languages(), "closing", line[a:b].strip(), "match")]
    if len(clauses) > 1 and len(rest) == 1:
        spans.append((*rest[0], False))
    shout = _EXCLAIMED.match(line)
    if shout and len(clauses) > 1:
        spans.append((shout.start(1), shout.end(1), True))
    return spans


def _stem_hit(sh: StemHit, lang: str, listed: bool, subject: bool, text: str, original: str,
              langs: Sequence[Phrases], mail_lang: str, own_list: re.Pattern[str]) -> Hit:
    """A request read from stems as a Hit: a weak phrase (it anchors on the list address only
    when its sentence names a list), judged for another object like a phrase; its negation was
    already read (a negated "receive" is the leave itself) -- in the stems' language, so the
    negations of the mail's own language `mail_lang` are applied to another language's stems
    ("Ne pas me retirer" read by Spanish stems, "não me retirem" by Spanish)."""
    group = ("subscribe_weak" if sh.join else "stop_mail" if sh.receive else "unsubscribe_weak")
    hit = Hit(group, GROUP_KIND[group], sh.start, sh.end, sh.sent, lang,
              listed=listed or sh.named, subject=subject, stem=True, mail=sh.mail)
    _judge(hit, text, langs, own_list)
    hit.negated = False
    if mail_lang != lang and not sh.receive:
        probe = Hit(group, hit.kind, sh.start, sh.end, sh.sent, mail_lang)
        _judge(probe, text, langs)
        hit.negated = probe.negated
    lexicon = next(ph.lexicon for ph in langs if ph.lang == lang)
    if lexicon is not None and not hit.listed:
        hit.elsewhere = hit.elsewhere or elsewhere(lexicon, text, original, sh.sent, sh.start,
                                                   sh.end)
    return hit


_WORD = re.compile(r"[^\W\d_]{3,}")


def _judge(hit: Hit, text: str, langs: Sequence[Phrases],
           own_list: re.Pattern[str] | None = None) -> None:
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
    if hit.group not in OBJECT_GROUPS:
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
        # "le forum SHMA", "the SHMA forum": an object named by this list's name is the list,
        # and so is "la liste de diffusion de votre réseau"
        hit.other = ((own_list is None or not own_list.search(window))
                     and not _owner_of_the_list(window, own))
    elif not hit.listed and not _WORD.search(after) and any(
            ph.other_object is not None and ph.other_object.search(text[s0:hit.start])
            for ph in own):
        # a phrase with no object of its own, after a clause about another one, goes there
        # ("Je veux bien participer à l'atelier du 14 octobre, merci de m'inscrire !")
        hit.elsewhere = True


def _owner_of_the_list(window: str, langs: Sequence[Phrases]) -> bool:
    """Every other object in `window` comes after a list word, just behind a second-person
    possessive: "the mailing list of your network", "la lista de su red" name this list."""
    for ph in langs:
        first = ph.list_words.search(window) if ph.list_words is not None else None
        if first is None or ph.other_object is None or ph.yours is None:
            continue
        others = list(ph.other_object.finditer(window))
        if others and all(m.start() > first.end() and any(
                y.end() <= m.start() <= y.end() + 25
                for y in ph.yours.finditer(window, first.end(), m.start())) for m in others):
            return True
    return False


def _delivery(analysis: _Analysis, hit: Hit) -> str | None:
    """The delivery mode a request asks for: words in the phrase, then after it in the sentence
    ("instead of ..." parts removed), then before it."""
    text = analysis.text
    s0, s1 = hit.sent
    langs = languages()

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


#: How far back, within its sentence, words make an address a contact (`_a_contact`).
CONTACT_CHARS = 120


def addresses(text: str, list_name: str) -> list[str]:
    """The addresses named in `text` that a request may be about, lower-case, in order:
    neither the list's own nor one given as a contact ("for urgent matters, x@y")."""
    local = list_local(list_name)
    out = []
    for m in EMAIL.finditer(text):
        addr = ADDRESS_ARG.sub("", m.group().strip(".").lower())
        lp = addr.split("@", 1)[0]
        if lp == local or lp.startswith((local + "-", local + "+")):
            continue
        if addr not in out and not _a_contact(text[max(0, m.start() - CONTACT_CHARS):m.start()]):
            out.append(addr)
    return out


def _a_contact(before: str) -> bool:
    """Do the words `before` an address, in its sentence, give it as a contact for while the
    sender is away (an out-of-office note pasted above a request)?"""
    start = [m.end() for m in _SENT_END.finditer(before)]
    return match_any(languages(), "contact", fold(before[start[-1] if start else 0:])) is not None


@dataclass
class Reading:
    """The free-text reading of one message."""

    command: Command | None
    hit: Hit | None
    hits: list[Hit]
    analyses: list[_Analysis]


def _keep_cue(analyses: Sequence[_Analysis], lang: str) -> bool:
    """Does the person want to stay a member ("until June", "don't unsubscribe me")?"""
    langs = [ph for ph in languages() if ph.lang in (lang, DEFAULT_LANG)]
    for a in analyses:
        if any(ph.keep is not None and ph.keep.search(a.text) for ph in langs):
            return True
        if any(h.kind is Kind.UNSUBSCRIBE and h.negated for h in a.hits):
            return True
    return False


_SEPARATOR = re.compile(r"^[ \t]*[-_=*~]{2,}[ \t]*$", re.M)


def _address_for(analysis: _Analysis, hit: Hit, list_name: str) -> str | None:
    """An address named in the request sentence, else in the sentences just before it ("her
    account x@y still gets the list. Please remove that address."), else one introduced as
    another person's just after it."""
    s0, s1 = hit.sent
    found = addresses(analysis.original[s0:s1], list_name)
    if found:
        return found[0]
    # ... but not above a separator line: that is another text (an out-of-office note on top:
    # "for urgent matters write to x@y", then "----" and the request)
    window = analysis.original[max(0, s0 - 400):s0]
    cuts = list(_SEPARATOR.finditer(window))
    before = addresses(window[cuts[-1].end():] if cuts else window, list_name)
    if before:
        return before[-1]
    # "... mit meiner neuen Geschäftsadresse in die Liste aufnehmen?" and the address alone on
    # the next line: the one the request is about
    following = next(((a, b) for a, b in analysis.sentences if a >= s1), None)
    if following is not None:
        line = analysis.original[following[0]:following[1]]
        alone = addresses(line, list_name)
        if len(alone) == 1 and not EMAIL.sub("", line).strip(" \t\n<>()[].:;,"):
            return alone[0]
    # "My supervisor would also like to join. Her email is x@y": an address after the request
    # only when it is introduced as someone else's
    after = analysis.text[s1:s1 + 300]
    for ph in languages():
        m = ph.their_address.search(after) if ph.their_address is not None else None
        if m:
            found = addresses(analysis.original[s1 + m.start():s1 + 300], list_name)
            if found:
                return found[0]
    return None


def free_text(own: str, subject: str, subject_is_reply: bool, list_name: str,
              lang: str = DEFAULT_LANG, *, to_request: bool = False) -> Reading:
    """The one request in the author's own words `own` (and the Subject unless it is a reply)
    written in `lang`: every phrase found, and the dominant request as a Command (None when
    there is none). `to_request`: the mail went to -request (a short Subject naming a joining
    or leaving then needs no list word)."""
    analyses = [_analyse(own, list_name, lang=lang)]
    if subject and not subject_is_reply:
        analyses.append(_analyse(subject, list_name, subject=True, to_request=to_request,
                                 lang=lang))
    hits = [h for a in analyses for h in a.hits]
    # "please don't remove me" says what the mail is about: a leave read from stems elsewhere
    # in it ("... a message saying I'd be removed from the list") is reported, not asked
    kept = any(h.kind is Kind.UNSUBSCRIBE and h.negated and not h.stem for h in hits)
    valid = [(a, h) for a in analyses for h in a.hits
             if h.valid and not (kept and h.stem and h.kind is Kind.UNSUBSCRIBE)]

    def first(pred: Callable[[_Analysis, Hit], bool]) -> tuple[_Analysis, Hit] | None:
        return next(((a, h) for a, h in valid if pred(a, h)), None)

    chosen: tuple[_Analysis, Hit] | None = None
    delivery: str | None = None
    pause = first(lambda a, h: h.group == "pause" or (
        h.group == "stop_mail" and _keep_cue(analyses, h.lang)))
    # a request phrase first; the stem reader only where no phrase asks for anything
    member = first(lambda a, h: h.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE) and not h.stem)
    if pause:
        chosen, delivery = pause, "nomail"
    elif member:
        chosen = member
    else:
        chosen = first(lambda a, h: h.kind is Kind.SET and _delivery(a, h) is not None)
        delivery = _delivery(*chosen) if chosen else None
        # a join or leave read from stems that names the list ("me interesa recibir la
        # información que comparten en el grupo"), or is sent to the address that names it
        # ("¿cómo le hago para que me agreguen?"), outweighs a Subject "Información" or a
        # peer-input idea for some day
        def own_request(a: _Analysis, h: Hit) -> bool:
            return h.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE) and h.lang == lang and not h.subject

        chosen = chosen or first(lambda a, h: own_request(a, h) and h.listed)
        if to_request:
            chosen = chosen or first(own_request)
        for kind in (Kind.HELP, Kind.INFO, Kind.PEER_INPUT):
            chosen = chosen or first(lambda a, h, k=kind: h.kind is k)
        if chosen is None:  # stems: those of the mail's own language first, since a word of
            # another language can look like a request ("está inscrito" read as French)
            chosen = first(lambda a, h: h.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE)
                           and h.lang == lang) or first(
                lambda a, h: h.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE))
    if chosen is not None and delivery is None and chosen[1].kind is Kind.SUBSCRIBE:
        delivery = _delivery(*chosen)
        delivery = None if delivery == "nomail" else delivery
    if chosen is None:
        return Reading(None, None, hits, analyses)
    analysis, hit = chosen
    kind = Kind.SET if delivery == "nomail" else hit.kind
    address = None
    if kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
        address = _address_for(analysis, hit, list_name)
        if address is None and hit.subject:  # request in the Subject, the address in the body
            found = addresses(own, list_name)
            address = found[0] if found else None
    command = Command(kind, delivery=delivery, address=address,
                      line=_sentence_text(analysis, hit))
    return Reading(command, hit, hits, analyses)


def _sentence_text(analysis: _Analysis, hit: Hit) -> str:
    s0, s1 = hit.sent
    return " ".join(analysis.original[s0:s1].split())[:300]

