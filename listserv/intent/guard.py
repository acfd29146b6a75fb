"""The administrivia guard (SPEC §2): is a mail to the list address really a request?

``REQUEST`` only when the author's own text is short and is essentially a request about this
list, ``POST`` when request words are about something else (a panel, an author list, another
newsletter), negated, a topic, or only quoted, ``UNSURE`` (hold for the chair) otherwise.
"""

from __future__ import annotations

import email.message
from enum import StrEnum

from listserv.intent.commands import MAX_COMMANDS, command_mode, parse_command
from listserv.intent.freetext import Hit, Reading, free_text
from listserv.intent.invitation import accepts_invitation
from listserv.intent.model import (
    LIST_POST_CONFIDENCE,
    LIST_REQUEST_CONFIDENCE,
    LONG_REQUEST_CONFIDENCE,
    Model,
    best_request,
    read,
    shipped,
    word_count,
)
from listserv.intent.phrases import DEFAULT_LANG
from listserv.intent.request import Parsed, parse, read_command, understand
from listserv.intent.understanding import Command, Kind, Understanding
from listserv.mail.automatic import automatic
from listserv.mail.text import QUOTED

#: The guard's idea of "short": a post to the list is handled as a request only when the author's
#: own words (without greeting-free signature, quotes, disclaimers) are at most this many words.
GUARD_MAX_WORDS = 80
#: A bare phrase such as "sign me up!" that does not name the list is held (UNSURE) rather than
#: distributed only when the post is this short and is not a reply to a thread.
GUARD_BARE_MAX_WORDS = 25
#: A whole-line keyword ("UNSUBSCRIBE", "help") on the list address is a request only when the
#: author's own text is at most this many words (the keyword and a signature, say).
GUARD_KEYWORD_MAX_WORDS = 15
#: The guard searches at most this many characters of the author's own text for a request
#: (free text reads up to `MAX_FREE_TEXT` on -request): past `GUARD_MAX_WORDS` words a post is
#: never a request by its words, only held when a request is clearly about this list, and one
#: that comes this late (some 400 words in) is a discussion post. Reading 10,000 characters in
#: every phrase language cost ~70 ms of CPU per long post, inside the routing of each.
GUARD_FREE_TEXT = 3_000
#: The guard decodes at most this many characters of a post's first text part (after which
#: `_enough_for_guard` keeps what can change the verdict): room for `GUARD_FREE_TEXT` characters
#: of the author's words below a long quote, or a command mail of some 2,000 lines. A request
#: is a few lines; a post's words past this are discussion whatever they say, so the cost of
#: the guard does not grow with the post (a 25 MB post is read as its first 64 KB of text).
#: Attachments and later parts are never decoded.
GUARD_READ_CHARS = 64 * 1024


class Guard(StrEnum):
    REQUEST = "request"
    POST = "post"
    UNSURE = "unsure"


def _enough_for_guard(text: str) -> str:
    """The start of a body that can change the guard's verdict.

    Past `GUARD_MAX_WORDS` words of the author's own lines a post is never a request by its
    words (only UNSURE or POST), and free text is read only up to `GUARD_FREE_TEXT` characters:
    reading stops once both are passed. Quoted lines do not count, so a short reply above a
    long quote is read to its end (they are cheap to skip).
    """
    words = chars = pos = 0
    while pos < len(text) and (words <= GUARD_MAX_WORDS or chars < GUARD_FREE_TEXT):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        if not QUOTED.match(line):
            words += word_count(line)
            chars += len(line) + 1
        pos = end + 1
    return text[:pos]


def _mostly_commands(own: str, list_name: str, token: str | None) -> bool:
    """More command lines than the command limit, and most lines are commands ("help" and 500
    commands): a command mail however long, never a post."""
    lines = [line.strip() for line in own.split("\n") if line.strip()]
    # A command, or a command word with arguments we cannot read; not prose, not "end".
    parsed = (parse_command(line, list_name, token) for line in lines)
    commands = sum(1 for result in parsed if result is not None and result is not True)
    return commands > MAX_COMMANDS and 2 * commands > len(lines)


def guard(msg: email.message.EmailMessage, list_name: str, *,
          reader: Model | None = None) -> tuple[Guard, Understanding]:
    """The administrivia guard for mail to the list address.

    REQUEST: the author's own text is short and is essentially a request about this list (a
    classic command, or a request phrase that names the list or needs no object); the
    Understanding says which. POST: no request, or request words that are negated, have another
    object, name a topic or appear only in quoted text. UNSURE: a request that comes with a
    longer text or with discussion, or a bare "sign me up" that is not a reply to a thread
    (hold for the chair; the Understanding carries the candidate request). A short post's
    free-text verdict and every hold are then weighed by the statistical `reader`
    (`_second_opinion`), and a long post's join or leave too (`_long_request`). A short yes
    above a quoted invitation to join a list is a join (`intent.invitation`), but on a reply to
    the list's own mail.
    """
    if automatic(msg) is not None:
        return Guard.POST, Understanding(DEFAULT_LANG, ())
    p = parse(msg, list_name, enough=_enough_for_guard, limit=GUARD_READ_CHARS)
    own = p.body.own
    words = word_count(own)
    nothing = Understanding(p.lang, ())
    cmd = command_mode(own, list_name, p.token, MAX_COMMANDS)
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
        parsed = parse_command(p.subject, list_name, p.token)
        if isinstance(parsed, Command) and parsed.kind is not Kind.CONFIRM:
            return Guard.REQUEST, Understanding(p.lang, (parsed,))
    reading = free_text(own, p.subject, p.subject_is_reply, list_name, p.lang)
    verdict, understood = _by_rules(p, reading, words)
    asked = reading.command.kind if reading.command is not None else Kind.SUBSCRIBE
    if (verdict is not Guard.REQUEST and asked is Kind.SUBSCRIBE and not p.tagged
            and accepts_invitation(own, words, p.body.quoted)):
        # a yes to the chair's invitation, sent to the list (a reply to list mail is discussion)
        return _read_as(Kind.SUBSCRIBE, p, list_name)
    if words > GUARD_MAX_WORDS and verdict is not Guard.UNSURE:
        # a long post is a request by its words only as a join or leave both readers are sure of
        return _long_request(verdict, understood, p, reading, words, list_name,
                          reader or shipped())
    return _second_opinion(verdict, understood, p, reading, words, list_name,
                           reader or shipped())


def _by_rules(p: Parsed, reading: Reading, words: int) -> tuple[Guard, Understanding]:
    """The rules' verdict on a post's free text (see `guard`)."""
    nothing = Understanding(p.lang, ())
    hits = reading.hits
    # request words about something else ("add me to the panel") make it a discussion post;
    # a negation ("pause it, don't remove me") is part of the request, not a discussion
    discussion = any(h.other for h in hits if not h.subject)
    command, hit = reading.command, reading.hit
    if command is None or hit is None or command.kind is Kind.PEER_INPUT:
        return Guard.POST, nothing
    candidate = Understanding(p.lang, (command,))

    def clear(h: Hit) -> bool:
        # a keyword line ("Help", "Info") only speaks for a mail that is little more than it
        return h.anchored and (not h.keyword or words <= GUARD_KEYWORD_MAX_WORDS)

    anchored = clear(hit) or any(h.valid and clear(h) and h.kind is hit.kind for h in hits)
    if anchored:
        if words <= GUARD_MAX_WORDS and not discussion:
            return Guard.REQUEST, candidate
        return Guard.UNSURE, candidate
    # a request read from stems that does not name the list ("I'd love to be included in
    # the next round") is too weak to hold a post for: a non-member's post is held anyway
    # and so is a bare request that goes on to somewhere else ("included in the next round");
    # a question to the list is discussion
    if (p.subject_is_reply or words > GUARD_BARE_MAX_WORDS or discussion or hit.stem
            or hit.elsewhere or hit.kind in (Kind.HELP, Kind.INFO)):
        return Guard.POST, nothing
    return Guard.UNSURE, candidate


def _second_opinion(verdict: Guard, understood: Understanding, p: Parsed, reading: Reading,
                    words: int, list_name: str, reader: Model) -> tuple[Guard, Understanding]:
    """The rules' verdict on a post, overruled where the statistical reader is confident of
    the contrary: a short post the rules would distribute is a join or a leave from
    `LIST_REQUEST_CONFIDENCE`, a join or leave the rules would act on or hold is a post from
    `LIST_POST_CONFIDENCE`, and a join or leave the rules hold is acted on from
    `LIST_REQUEST_CONFIDENCE`."""
    chance = _chance(reader, p, reading, words)
    if verdict is Guard.POST:
        kind, likely = best_request(chance)
        # where the rules judged a phrase of that kind not to ask ("remove me from the author
        # list", "don't remove me", "thanks for adding me", "sign me up for the workshop"),
        # their judgement stands: the reader speaks where the rules saw nothing
        judged = any(h.kind is kind and (not h.valid or h.elsewhere) for h in reading.hits)
        if likely >= LIST_REQUEST_CONFIDENCE and words <= GUARD_MAX_WORDS and not judged:
            return _read_as(kind, p, list_name)
        return verdict, understood
    command = understood.commands[0] if understood.commands else None
    if command is None or command.kind not in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
        return verdict, understood  # help, info, set: the rules' own
    if chance["other"] >= LIST_POST_CONFIDENCE:
        return Guard.POST, Understanding(p.lang, ())
    if verdict is Guard.UNSURE and chance[command.kind.value] >= LIST_REQUEST_CONFIDENCE:
        # a held join or leave the reader is as sure of is acted on: its sender is asked to
        # confirm (a bare "can you add me?", a join ending a long introduction, a goodbye
        # that asks to be taken off the list)
        return Guard.REQUEST, understood
    return verdict, understood


def _long_request(verdict: Guard, understood: Understanding, p: Parsed, reading: Reading,
                  words: int, list_name: str, reader: Model) -> tuple[Guard, Understanding]:
    """A long post the rules distribute is a join or a leave when they read one in its
    author's words (asked, not negated, about no other object or place) and the reader gives
    that kind `LONG_REQUEST_CONFIDENCE`."""
    kinds = {h.kind for h in reading.hits if h.kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE)
             and h.valid and not h.elsewhere and not h.subject}
    if verdict is not Guard.POST or len(kinds) != 1:
        return verdict, understood
    [kind] = kinds
    if _chance(reader, p, reading, words)[kind.value] < LONG_REQUEST_CONFIDENCE:
        return verdict, understood
    return _read_as(kind, p, list_name)


def _chance(reader: Model, p: Parsed, reading: Reading, words: int) -> dict[str, float]:
    """The statistical reader's probabilities for a mail to the list."""
    return read(reader, reading, p.lang, on_list=True, is_reply=p.subject_is_reply,
                words=words, quoted=p.body.quoted)


def _read_as(kind: Kind, p: Parsed, list_name: str) -> tuple[Guard, Understanding]:
    """A request of `kind` read from the whole mail, with no phrase to quote (by the reader, or
    a yes to a quoted invitation)."""
    return Guard.REQUEST, Understanding(p.lang, (read_command(kind, p.body.own, p.subject,
                                                              list_name),))
