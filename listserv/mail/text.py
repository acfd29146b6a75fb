"""Text extraction: a message's body as plain text, and the author's own words in it.

* :func:`body_text` -- the text/plain part, or the HTML part converted (:func:`html_to_text`).
* :func:`message_text` -- the author's own words: the body without quoted history, signatures,
  closings, disclaimers and mobile footers (:func:`split_body` keeps what was cut).

Where the own words end is language-specific: the ``[quotes]`` and ``[footer]`` tables of the
phrase files (``listserv/phrases/<lang>.toml``, one per language) say it, compiled here into
:class:`Markers`; request understanding (``listserv.intent``) reads the same files for the rest.
All patterns are matched accent- and case-insensitively (:func:`fold`).
"""

from __future__ import annotations

import copy
import email.message
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

#: The phrase files, package data found with importlib.resources (in a wheel as in a checkout).
PHRASES_DIR = resources.files("listserv").joinpath("phrases")
#: Body lines beyond this many are not looked at (a command mail is cut far earlier).
MAX_LINES = 5_000


# --------------------------------------------------------------------------------------------
# Text normalisation: a 1:1 character fold, so positions in the folded text are positions in
# the original text.

_PUNCT_FOLD = str.maketrans({
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u200b": " ", "\ufeff": " ",
})


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    if c.isascii():
        return c
    stripped = "".join(ch for ch in unicodedata.normalize("NFKD", c)
                       if not unicodedata.combining(ch))
    return stripped if len(stripped) == 1 else c


def fold(text: str) -> str:
    """Accents off, typographic quotes and dashes to ASCII; same length as `text`."""
    text = text.translate(_PUNCT_FOLD)
    if text.isascii():
        return text
    return "".join(_fold_char(c) for c in text)


# --------------------------------------------------------------------------------------------
# Markers from the phrase files


def compile_patterns(patterns: Iterable[str], *, whole: bool = False) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of `patterns` (folded); `whole`: a whole line."""
    parts = [fold(p) for p in patterns if p]
    if not parts:
        return None
    body = "|".join(f"(?:{p})" for p in parts)
    if whole:
        body = rf"^\W*(?:{body})\W*$"
    return re.compile(body, re.I)


def match_any(languages: Iterable[object], attr: str, text: str,
              how: str = "search") -> re.Match[str] | None:
    """The first match of `text` by the pattern `attr` of any of `languages` (none: None)."""
    for language in languages:
        pattern = getattr(language, attr)
        if pattern is not None:
            m = getattr(pattern, how)(text)
            if m:
                return m
    return None


@dataclass(frozen=True)
class Markers:
    """One language's compiled ``[quotes]`` and ``[footer]`` tables: where own words end."""

    reply_header: re.Pattern[str] | None
    separator: re.Pattern[str] | None
    header_from: re.Pattern[str] | None
    header_field: re.Pattern[str] | None
    mobile: re.Pattern[str] | None
    disclaimer: re.Pattern[str] | None
    closing: re.Pattern[str] | None
    greeting: re.Pattern[str] | None
    away: re.Pattern[str] | None  # an out-of-office note's words ("I am out of the office")


#: What may follow a closing on its line: nothing, punctuation and a few words ("Thanks, Jo
#: Bloggs"), or a capitalised name ("Cheers Dev") -- so "Best practice is..." is not a closing.
_NAME = r"(?-i:[A-Z])[\w.'-]*"
_TAIL = (rf"(?:\W*|[,.;:!\-]+\s*(?:[^\s,.;:!]+[\s,.;:!]*){{0,3}}"
         rf"|\s+{_NAME}(?:\s+{_NAME}){{0,2}}[\s.!]*)")


def read_markers(data: Mapping[str, Any]) -> Markers:
    """The markers of one parsed phrase file (see ``en.toml`` for the tables)."""
    quotes = data.get("quotes", {})
    footer = data.get("footer", {})
    # a closing or greeting is a whole line, optionally followed by a short name
    closing = compile_patterns(footer.get("closing", []))
    if closing is not None:
        closing = re.compile(rf"^\W*(?:{closing.pattern}){_TAIL}$", re.I)
    greeting = compile_patterns(footer.get("greeting", []))
    if greeting is not None:
        greeting = re.compile(rf"^\W*(?:{greeting.pattern}){_TAIL}$", re.I)
    return Markers(
        reply_header=compile_patterns(quotes.get("reply_header", [])),
        separator=compile_patterns(quotes.get("separator", []), whole=True),
        header_from=compile_patterns(quotes.get("header_from", [])),
        header_field=compile_patterns(quotes.get("header_fields", [])),
        mobile=compile_patterns(footer.get("mobile", []), whole=True),
        disclaimer=compile_patterns(footer.get("disclaimer", [])),
        closing=closing,
        greeting=greeting,
        away=compile_patterns(footer.get("away", [])),
    )


@lru_cache(maxsize=1)
def _markers() -> tuple[Markers, ...]:
    """Every phrase file's markers, compiled once."""
    files: list[Traversable] = sorted((p for p in PHRASES_DIR.iterdir()
                                       if p.name.endswith(".toml")), key=lambda p: p.name)
    return tuple(read_markers(tomllib.loads(p.read_text(encoding="utf-8"))) for p in files)


def _any(attr: str, text: str, how: str = "search") -> re.Match[str] | None:
    return match_any(_markers(), attr, text, how)


# --------------------------------------------------------------------------------------------
# HTML to text

_SKIP = {"head", "style", "script", "title", "xml", "template"}
_BLOCK = {
    "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "dl", "dt", "dd", "section", "article", "header", "footer", "address",
    "center", "form", "fieldset",
}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr", "source"}
_SIGNATURE_CLASS = re.compile(r"signature", re.I)


class _HTMLText(HTMLParser):
    """Blocks become lines, <blockquote> becomes '> ' lines, <hr> an Outlook separator line;
    head/style/script and elements whose class or id names a signature are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.buf: list[str] = []
        self.depth = 0  # blockquote depth
        self.skip = 0  # inside head/style/script
        self.pre = 0
        self.dropping = 0  # open elements inside a dropped (signature) element

    def _flush(self, blank: bool = False) -> None:
        """End the current line; an empty one is kept only when `blank` (an empty <p>, a <br>)."""
        text = "".join(self.buf)
        self.buf = []
        if not self.pre:
            text = re.sub(r"[ \t\r\n\f\v\u00a0]+", " ", text).strip()
        if not text and not blank:
            return
        for line in text.split("\n") if self.pre else [text]:
            self.lines.append("> " * self.depth + line.rstrip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.dropping:
            if tag not in _VOID:
                self.dropping += 1
            return
        if tag in _SKIP:
            self.skip += 1
            return
        if tag == "br":
            self._flush(blank=True)
            return
        if tag == "hr":
            self._flush()
            self.lines.append("> " * self.depth + "_" * 32)
            return
        if tag in _BLOCK or tag == "blockquote":
            self._flush()
        if tag == "blockquote":
            self.depth += 1
        if tag == "pre":
            self.pre += 1
        cls = " ".join(v or "" for k, v in attrs if k in ("class", "id"))
        if tag not in _VOID and _SIGNATURE_CLASS.search(cls):
            self.dropping = 1

    def handle_endtag(self, tag: str) -> None:
        if self.dropping:
            self.dropping -= 1
            return
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag in _BLOCK or tag == "blockquote":
            self._flush(blank=tag == "p")
        if tag == "blockquote":
            self.depth = max(0, self.depth - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if not self.skip and not self.dropping:
            self.buf.append(data)

    def text(self) -> str:
        self.close()
        self._flush()
        out: list[str] = []
        for line in self.lines:
            if not line.strip("> ") and out and not out[-1].strip("> "):
                continue  # collapse runs of blank lines
            out.append(line)
        return "\n".join(out).strip("\n")


def html_to_text(html: str) -> str:
    """Plain text of an HTML body (standard library parser; tolerant of broken markup)."""
    parser = _HTMLText()
    parser.feed(html)
    return parser.text()


# --------------------------------------------------------------------------------------------
# The author's own words


#: Encoded characters of a part kept per decoded character wanted: base64 takes 4 for 3,
#: quoted-printable up to 3 for 1 (mostly about 1); cut at a line end, so decoding is whole.
_ENCODED_PER_CHAR = 3
#: HTML characters read per character of text wanted (markup and styles take room).
_HTML_PER_CHAR = 4


def _prefix(part: email.message.EmailMessage, limit: int) -> email.message.EmailMessage:
    """`part` with only enough of its encoded body to decode `limit` characters: a huge text
    part is not decoded whole to read its start. The copy shares the headers, not the body."""
    payload = part.get_payload()
    keep = limit * _ENCODED_PER_CHAR
    if not isinstance(payload, str) or len(payload) <= keep:
        return part
    cut = payload.rfind("\n", 0, keep) + 1 or keep - keep % 4  # base64 lines end in whole quads
    trimmed = copy.copy(part)
    trimmed.set_payload(payload[:cut])
    return trimmed


def _part_text(part: email.message.EmailMessage, limit: int | None = None) -> str:
    if limit is not None:
        part = _prefix(part, limit)
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return content if limit is None else content[:limit]


def body_text(msg: email.message.EmailMessage, limit: int | None = None) -> str:
    """The message body as plain text: the text/plain part, else the HTML part converted.

    `limit`: only (about) the first `limit` characters are decoded and returned, however big
    the part; attachments are never decoded either way.
    """
    try:
        plain = msg.get_body(preferencelist=("plain",))
    except (KeyError, AttributeError):
        plain = None
    text = _part_text(plain, limit) if plain is not None else ""
    if text.strip():
        return text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        html = msg.get_body(preferencelist=("html",))
    except (KeyError, AttributeError):
        html = None
    if html is not None:
        if limit is None:
            return html_to_text(_part_text(html))
        return html_to_text(_part_text(html, limit * _HTML_PER_CHAR))[:limit]
    return text


#: A quoted line ("> ..."): quoted history wherever it is.
QUOTED = re.compile(r"^\s*>")
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_SIG_DASHES = re.compile(r"^(?:--|\u2014|-- .{0,40})\s*$")


@dataclass
class Body:
    """A body split into the author's own words and what is not theirs."""

    own: str  # the author's own words
    rest: str  # what was cut below them: signature, closing, disclaimer, footer
    quoted: str  # quoted history


def _is_header_block(lines: list[str], i: int) -> bool:
    """An Outlook-style header block: "From: ..." then "Sent:/To:/Subject:" within a few lines."""
    line = fold(lines[i]).strip().lstrip("*").strip()
    if not _any("header_from", line, "match"):
        return False
    seen = 0
    for nxt in lines[i + 1:i + 6]:
        f = fold(nxt).strip().lstrip("*").strip()
        if _any("header_field", f, "match"):
            seen += 1
            if seen >= 2:
                return True
    return False


def _reply_header(lines: list[str], i: int) -> int:
    """How many lines (1 or 2) starting at i form an "On ... wrote:" attribution; 0 if none."""
    one = fold(lines[i]).strip()
    if not one or len(one) > 300:
        return 0
    if _any("reply_header", one, "fullmatch"):
        return 1
    if i + 1 < len(lines):
        two = one + " " + fold(lines[i + 1]).strip()
        if len(two) <= 300 and _any("reply_header", two, "fullmatch"):
            return 2
    return 0


_GREETING_END = re.compile(r"[,!:]")


def _greeting_after(lines: list[str], k: int) -> bool:
    """Does a greeting ("Hello Carol," -- alone, or opening the line: "Buenas tardes, les pido
    que ...") open the next text line after line `k`? A signature or a disclaimer below a line
    never starts so; a letter below a note does."""
    nxt = next((fold(ln).strip() for ln in lines[k + 1:k + 4] if ln.strip()), "")
    end = _GREETING_END.search(nxt)
    head = nxt[:end.start()] if end else ""
    return (bool(head) and len(head.split()) <= 6
            and _any("greeting", head, "match") is not None)


#: An out-of-office note on top is short; a letter below its line has a line of prose.
NOTE_WORDS = 100
PROSE_WORDS = 8


def _letter_below_a_note(lines: list[str], k: int) -> bool:
    """Is the text above line `k` an out-of-office note ("Ich bin bis 25.04. nicht im Hause")
    and the text below it a letter, not the note's signature ("Sorry, der Text oben ist
    versehentlich mit reingerutscht. Eigentlich wollte ich nur sagen: ...")?"""
    above = fold("\n".join(lines[:k]))
    if len(above.split()) > NOTE_WORDS or _any("away", above, "search") is None:
        return False
    return any(len(line.split()) >= PROSE_WORDS for line in lines[k + 1:])


def _a_rule(folded: str) -> bool:
    """A signature's "-- " or a line of underscores."""
    return bool(_SIG_DASHES.match(folded) or _UNDERSCORES.match(folded))


def _ends_own_words(folded: str) -> bool:
    """A line below which nothing is the author's: a rule, a mobile footer, a disclaimer."""
    return (_a_rule(folded) or _any("mobile", folded, "match") is not None
            or _any("disclaimer", folded, "match") is not None)


def split_body(text: str) -> Body:
    """`text` split into the author's own words, what is cut below them, and quoted history."""
    lines = text.split("\n", MAX_LINES)[:MAX_LINES]
    own: list[str] = []
    quoted: list[str] = []
    i = 0
    cut = len(lines)
    while i < len(lines):
        line = lines[i]
        folded = fold(line).strip()
        if QUOTED.match(line):
            quoted.append(line)
            i += 1
            continue
        if folded and (_any("separator", folded, "match") or _is_header_block(lines, i)):
            cut = i
            break
        if _UNDERSCORES.match(line):
            nxt = next((k for k in range(i + 1, min(i + 4, len(lines))) if lines[k].strip()), None)
            if nxt is not None and _is_header_block(lines, nxt):
                cut = i
                break
        n = _reply_header(lines, i) if folded else 0
        if n:
            j = i + n
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j >= len(lines) or QUOTED.match(lines[j]):
                quoted.extend(lines[i:i + n])
                i += n
                continue
            cut = i
            break
        own.append(line)
        i += 1
    quoted.extend(lines[cut:])
    # Below the author's words: signature, closing, mobile footer, disclaimer.
    end = len(own)
    seen_text = False
    for k, line in enumerate(own):
        folded = fold(line).strip()
        if not folded:
            continue
        if _a_rule(folded) and (_greeting_after(own, k) or _letter_below_a_note(own, k)):
            continue  # an out-of-office note on top, a line, then "Hello Carol," and the mail
        if _ends_own_words(folded) or (seen_text and _any("closing", folded, "match")):
            end = k
            break
        seen_text = True
    mine, rest = "\n".join(own[:end]).strip(), own[end:]
    postscript = _postscript(rest)
    if postscript:  # "Best, Fatou" then "PS: could you add me to the list?": hers too
        a, b = postscript
        mine = "\n\n".join(part for part in (mine, "\n".join(rest[a:b]).strip()) if part)
        rest = rest[:a] + rest[b:]
    return Body(
        own=mine,
        rest="\n".join(rest).strip(),
        quoted="\n".join(quoted).strip(),
    )


_POSTSCRIPT = re.compile(r"^\W*(?:p\.?\s?-?p?\.?\s?s\b\.?|nb\b|n\.b\.)", re.I)
#: A postscript is found this many lines below the closing at most.
POSTSCRIPT_LINES = 8


def _postscript(lines: list[str]) -> tuple[int, int] | None:
    """Where a postscript ("PS: ...", "P.-S. ...") below the closing and the name starts and
    ends in `lines` (what was cut below the author's words): up to a blank line, a signature
    line or a footer; None when there is none."""
    start = next((k for k, line in enumerate(lines[:POSTSCRIPT_LINES])
                  if _POSTSCRIPT.match(line)), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and lines[end].strip():
        if _ends_own_words(fold(lines[end]).strip()):
            break
        end += 1
    return start, end


def message_text(msg: email.message.EmailMessage) -> str:
    """The author's own words: plain part or HTML converted, with quoted history, signatures,
    closings, disclaimers and mobile footers removed."""
    return split_body(body_text(msg)).own
