"""Mail to ``NAME-request@`` / ``NAME-join@``: what it asks (:func:`understand`).

Classic commands one per line (Mailman and LISTSERV forms), or one free-text request in any
phrase file's language, or (mail to ``-join@``) a subscription; else UNCLEAR. :func:`parse`
reads the parts of a message that say what it asks, for this and for the administrivia guard.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from listserv.intent.commands import (
    MAX_COMMANDS,
    command_mode,
    confirm_words,
    list_local,
    parse_command,
)
from listserv.intent.freetext import Reading, addresses, free_text
from listserv.intent.invitation import accepts_invitation
from listserv.intent.language import message_language
from listserv.intent.model import (
    OPPOSITE_CONFIDENCE,
    OTHER_CONFIDENCE,
    REQUEST_CONFIDENCE,
    Model,
    best_request,
    read,
    shipped,
    word_count,
)
from listserv.intent.understanding import Command, Kind, Understanding
from listserv.mail.text import Body, body_text, split_body

_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|antw|fwd?|wg|tr|res|rv|enc|sv|vs|r|ref|réf)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+",
    re.I)
_CONFIRM_TOKEN = re.compile(r"\bconfirm(?:ation)?\s*[:#]?\s*([A-Za-z0-9]{8,64})\b", re.I)


def _clean_subject(subject: str, list_name: str) -> tuple[str, bool, bool]:
    """The subject without reply prefixes and the [NAME] tag; whether it was a reply/forward,
    and whether it carried the tag (a reply to the list's own mail)."""
    s = " ".join(subject.split())
    is_reply = tagged = False
    tag = re.compile(rf"^\s*\[{re.escape(list_local(list_name))}\]\s*", re.I)
    for _ in range(5):
        before = s
        m = _REPLY_PREFIX.match(s)
        if m:
            is_reply = True
            s = s[m.end():]
        m = tag.match(s)
        if m:
            tagged = True
            s = s[m.end():]
        if s == before:
            break
    return s.strip(), is_reply, tagged


def _subject_token(subject: str) -> str | None:
    m = _CONFIRM_TOKEN.search(subject)
    return m.group(1).lower() if m else None


@dataclass
class Parsed:
    """The parts of a message that say what it asks."""

    body: Body
    subject: str  # cleaned
    subject_is_reply: bool
    token: str | None
    lang: str
    cut: bool = False  # only the start of the body was read
    tagged: bool = False  # the Subject carries the list's [NAME] tag: a reply to list mail


def parse(msg: email.message.EmailMessage, list_name: str, *,
          enough: Callable[[str], str] | None = None, limit: int | None = None) -> Parsed:
    """The parts of `msg` that say what it asks; `enough`: keeps only as much of the body as can
    change the verdict (the guard's `_enough_for_guard`); `limit`: at most this many characters
    of the body's text part are decoded at all (the guard's `GUARD_READ_CHARS`)."""
    text = body_text(msg, limit)
    read = enough(text) if enough is not None else text
    body = split_body(read)
    raw_subject = str(msg.get("Subject", "") or "")
    subject, is_reply, tagged = _clean_subject(raw_subject, list_name)
    lang = message_language(body.own, "" if is_reply else subject, body.rest)
    return Parsed(body, subject, is_reply, _subject_token(raw_subject), lang,
                  cut=len(read) < len(text) or (limit is not None and len(text) >= limit),
                  tagged=tagged)


def understand(msg: email.message.EmailMessage, list_name: str, *,
               max_commands: int = MAX_COMMANDS, reader: Model | None = None) -> Understanding:
    """What a mail to -request / -join asks for: classic commands (at most `max_commands`
    lines processed, the rest ignored), else one free-text request, else a join or leave the
    statistical `reader` (default: the shipped one) is confident of, else UNCLEAR."""
    p = parse(msg, list_name)
    own = p.body.own
    cmd = command_mode(own, list_name, p.token, max_commands)
    if cmd is not None and cmd[0]:
        commands, unrecognised, ignored = cmd
        return Understanding(p.lang, tuple(commands), tuple(unrecognised), tuple(ignored))
    unrecognised, ignored = (tuple(cmd[1]), tuple(cmd[2])) if cmd is not None else ((), ())
    if not own and p.subject:
        # empty body: the Subject may be a command ("subscribe", "confirm TOKEN")
        parsed = parse_command(p.subject, list_name, p.token)
        if isinstance(parsed, Command):
            return Understanding(p.lang, (parsed,))
    reading = free_text(own, p.subject, p.subject_is_reply, list_name, p.lang, to_request=True)
    if p.token and (reading.command is None or confirm_words(own)):
        return Understanding(p.lang, (Command(Kind.CONFIRM, token=p.token,
                                              line=own.split("\n", 1)[0][:300]),))
    words = word_count(own)
    if reading.command is None:
        if _is_join(msg, list_name):
            return Understanding(p.lang, (Command(Kind.SUBSCRIBE, line=p.subject[:300]),))
        if accepts_invitation(own, words, p.body.quoted):
            return Understanding(p.lang, (read_command(Kind.SUBSCRIBE, own, p.subject,
                                                       list_name),))
    chance = read(reader or shipped(), reading, p.lang, on_list=False,
                  is_reply=p.subject_is_reply, words=words, quoted=p.body.quoted)
    if reading.command is not None:
        return Understanding(p.lang, (_second_look(reading, chance,
                                                   _first_line(own, p.subject)),))
    kind, likely = best_request(chance)
    if likely >= REQUEST_CONFIDENCE and not unrecognised:  # not a command mail gone wrong
        return Understanding(p.lang, (read_command(kind, own, p.subject, list_name),))
    return Understanding(p.lang, (Command(Kind.UNCLEAR, line=_first_line(own, p.subject)),),
                         unrecognised, ignored)


def _second_look(reading: Reading, chance: dict[str, float], first_line: str) -> Command:
    """The rules' free-text request, looked at again with the reader's `chance`.

    A join the reader is `OPPOSITE_CONFIDENCE` sure is a leave is a leave, and the other way
    round: the rules read one sentence ("falls ich sie später löschen möchte"), the reader the
    whole mail ("Bitte nehmen Sie zusätzlich meine neue Adresse auf"); the address stays, the
    quoted line is the mail's first, as for any request the reader read. A join or leave read
    from word stems alone ("I'd like to receive the whole thing", of another newsletter) is
    unclear, for the chair, when the reader is `OTHER_CONFIDENCE` sure it is neither."""
    command = reading.command
    assert command is not None
    if (reading.hit is not None and reading.hit.stem and command.kind in (
            Kind.SUBSCRIBE, Kind.UNSUBSCRIBE) and chance["other"] >= OTHER_CONFIDENCE):
        return Command(Kind.UNCLEAR, line=first_line)
    opposite = {Kind.SUBSCRIBE: Kind.UNSUBSCRIBE, Kind.UNSUBSCRIBE: Kind.SUBSCRIBE}.get(
        command.kind)
    if opposite is None or chance[opposite.value] < OPPOSITE_CONFIDENCE:
        return command
    return replace(command, kind=opposite, line=first_line)


def read_command(kind: Kind, own: str, subject: str, list_name: str) -> Command:
    """A join or leave read from the whole mail, with no phrase to quote (by the statistical
    reader, or a yes to a quoted invitation): about the first address the author's own text
    names, if any, quoting its first line."""
    named = addresses(own, list_name)
    return Command(kind, address=named[0] if named else None, line=_first_line(own, subject))


def _first_line(own: str, subject: str) -> str:
    first = next((ln.strip() for ln in own.split("\n") if ln.strip()), "")
    return (first or subject)[:300]


def _is_join(msg: email.message.EmailMessage, list_name: str) -> bool:
    """Was the mail addressed to NAME-join@ (Delivered-To, X-Original-To, To, Cc)?"""
    local = re.escape(list_local(list_name))
    pattern = re.compile(rf"(?<![\w.+-]){local}-join@", re.I)
    for header in ("Delivered-To", "X-Original-To", "To", "Cc"):
        for value in msg.get_all(header, []) or []:
            if pattern.search(str(value)):
                return True
    return False
