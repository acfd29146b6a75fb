"""What the chair's reply to a notice or a daily summary decides (SPEC §2, "The chair replies").

Pure: the words come from the `[chair]` tables of the phrase files, in any of their languages,
read from the chair's own words (quoted history, signatures and HTML handled as for requests,
`mail.text.message_text`).

- A reply to a notice about one item: the first words of the reply decide (`approve`, `ok`,
  `sí`, `oui`, `ja`, `sim`, …, `reject [reason]`, `discard`, `approve and add`, and for an
  unclear request `subscribe`, `unsubscribe`, `ignore`); a reason is the rest of that first
  paragraph.
- A reply to a daily summary: one decision a line, on the ids the summary showed (`approve 12`,
  `discard 13 14`, `reject 15 off topic`, `approve all`); a kind word may name which of two
  items with the same number is meant (`approve post 12`, `approve request 12`).
"""

from __future__ import annotations

import email.message
import re
from dataclasses import dataclass

from listserv.intent.phrases import languages
from listserv.mail.text import fold, message_text

#: The answers, longest first: "approve and add" before "approve".
VERBS = ("approve_add", "approve", "reject", "discard", "subscribe", "unsubscribe", "ignore")
#: Summary lines read from one reply; the rest are ignored (a pasted summary is not a program).
MAX_LINES = 100
#: Longest reason kept (it goes into a mail to the sender).
MAX_REASON = 500
#: Words naming which kind of item a number is (summary lines only).
KIND_WORDS = {"post": "held", "posts": "held", "message": "held", "messages": "held",
              "held": "held", "request": "request", "requests": "request",
              "join": "request", "peer-input": "peer_input", "peer": "peer_input"}
_ID = re.compile(r"#?(\d{1,18})[,;.]?$")


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer: the verb, the kind word if any, the ids (None: `all`; empty: none given),
    the reason (for `reject`), and the line it was read from."""

    verb: str
    reason: str
    line: str
    ids: tuple[int, ...] | None = ()
    kind: str = ""


def _verb(line: str) -> tuple[str, str] | None:
    """The verb a line starts with, and the text after it (original spelling)."""
    folded = fold(line)  # same length as `line`, so positions carry over
    for verb in VERBS:
        for language in languages():
            pattern = language.chair.get(verb)
            if pattern is not None and (found := pattern.match(folded)):
                return verb, line[found.end():].strip(" \t:-,.")
    return None


def _is_all(word: str) -> bool:
    word = fold(word).strip(".,;:!")
    return any((p := language.chair.get("all")) is not None and p.fullmatch(word)
               for language in languages())


def _own_lines(msg: email.message.EmailMessage) -> list[str]:
    return [line.strip() for line in message_text(msg).splitlines()]


def item_reply(msg: email.message.EmailMessage) -> Decision | None:
    """The decision of a reply to a notice about one item; None when its first words are none
    of the answers."""
    lines = _own_lines(msg)
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return None
    found = _verb(lines[0])
    if found is None:
        return None
    verb, rest = found
    paragraph = [rest]
    for line in lines[1:]:
        if not line:
            break
        paragraph.append(line)
    reason = " ".join(" ".join(paragraph).split())[:MAX_REASON]
    return Decision(verb, reason, lines[0])


def summary_reply(msg: email.message.EmailMessage) -> tuple[list[Decision], list[str]]:
    """The decisions of a reply to a daily summary, and the lines that are none (not blank)."""
    decisions: list[Decision] = []
    not_understood: list[str] = []
    for line in [ln for ln in _own_lines(msg) if ln][:MAX_LINES]:
        decision = _summary_line(line)
        if decision is None:
            not_understood.append(line)
        else:
            decisions.append(decision)
    return decisions, not_understood


def _summary_line(line: str) -> Decision | None:
    """`VERB [KIND] (all | ID [ID …]) [reason]`; None when it is not such a line."""
    found = _verb(line)
    if found is None:
        return None
    verb, rest = found
    words = rest.split()
    kind = ""
    if words and words[0].lower() in KIND_WORDS:
        kind = KIND_WORDS[words.pop(0).lower()]
    if words and _is_all(words[0]):
        return Decision(verb, " ".join(words[1:])[:MAX_REASON], line, None, kind)
    ids: list[int] = []
    while words and (number := _ID.match(words[0])):
        ids.append(int(number.group(1)))
        words.pop(0)
    if not ids:
        return None
    return Decision(verb, " ".join(words)[:MAX_REASON], line, tuple(ids), kind)
