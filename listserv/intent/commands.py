"""Classic commands, one per line (Mailman and LISTSERV forms): ``subscribe``, ``SIGNOFF SHMA``,
``set digest on``, ``set language es``, ``confirm TOKEN``, ``end``; and a bare "OK" that
confirms."""

from __future__ import annotations

import re

from listserv.intent.phrases import languages
from listserv.intent.understanding import Command, Kind
from listserv.mail.text import fold, match_any

#: Command lines processed per message (SPEC §2, "No oracle"); the rest are reported ignored.
MAX_COMMANDS = 10

#: An address in running text (a command argument, a free-text request).
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")

_DELIVERY_ARGS = {
    "digest": "digest", "digests": "digest", "mime": "digest", "index": "digest",
    "mimedigest": "digest", "plain": "digest-plain", "nomime": "digest-plain",
    "plaindigest": "digest-plain", "digest-plain": "digest-plain", "textdigest": "digest-plain",
    "regular": "regular", "nodigest": "regular", "mail": "regular", "normal": "regular",
    "ack": None, "noack": None,
    "nomail": "nomail", "nomails": "nomail", "vacation": "nomail", "postpone": "nomail",
}
_KW_SUBSCRIBE = {"subscribe", "sub", "join", "signup"}
_KW_UNSUBSCRIBE = {"unsubscribe", "unsub", "leave", "signoff", "signoff*", "remove"}
_KW_END = {"end", "stop", "quit", "exit", "thanks", "thank"}
_KEYWORDS = _KW_SUBSCRIBE | _KW_UNSUBSCRIBE | _KW_END | {"help", "info", "set", "confirm",
                                                         "review", "who", "echo", "query",
                                                         "index", "get"}
#: Post numbers read from one `get` line (the handler sends at most `archive.by_mail.MAX_GET`).
MAX_GET_NUMBERS = 100
_NOT_NAMES = {"me", "us", "please", "pls", "now", "thanks", "thank", "you", "to", "the", "list",
              "my", "mail", "i"}
_NAME_WORD = re.compile(r"[A-ZÀ-Þ][^\W\d_]*(?:[.'-][^\W\d_]*)*\.?")
_AFFIRMATIVE = re.compile(r"^\W*(?:ok(?:ay)?|yes|y|yep|sure|confirm(?:ed)?)\W*$", re.I)


def list_local(list_name: str) -> str:
    """The list's local part, lower-case ("shma" for "SHMA@lists.example.org")."""
    return list_name.split("@", 1)[0].strip().lower()


def _is_list(word: str, list_name: str) -> bool:
    w = word.lower().strip("<>,;")
    local = list_local(list_name)
    return w in (local, list_name.lower()) or w.split("@", 1)[0] == local and "@" in w or w == "*"


ADDRESS_ARG = re.compile(r"^address=", re.I)  # Mailman's form: "subscribe address=x@y"


def _address(word: str) -> str | None:
    w = ADDRESS_ARG.sub("", word.strip("<>()[],;:'\"")).strip("<>()[],;:'\"")
    return w.lower() if EMAIL.fullmatch(w) else None


def parse_command(line: str, list_name: str, subject_token: str | None
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
            if low in ("digest=yes", "digest", "digest=mime"):
                delivery = "digest"
            elif low in ("digest=plain", "digest-plain"):
                delivery = "digest-plain"
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
    if verb in ("index", "get"):
        return _archive_command(verb, args, has_list, line)
    if verb == "set":
        vals = [a.lower() for a in args]
        if vals[:1] in (["language"], ["lang"]) and len(vals) == 2 \
                and re.fullmatch(r"[a-z]{2,3}", vals[1]):
            return Command(Kind.SET, language=vals[1], line=line)
        if vals[:1] == ["delivery"] and vals[1:2] in (["on"], ["off"]):
            return Command(Kind.SET, delivery="regular" if vals[1] == "on" else "nomail",
                           line=line)
        if vals[:1] == ["digest"] and vals[1:2] in (["on"], ["off"], ["yes"], ["no"], ["mime"]):
            on = vals[1] in ("on", "yes", "mime")
            return Command(Kind.SET, delivery="digest" if on else "regular", line=line)
        if sorted(vals) in (["digest", "plain"], ["digest", "text"]):
            return Command(Kind.SET, delivery="digest-plain", line=line)
        if sorted(vals) == ["digest", "mime"]:
            return Command(Kind.SET, delivery="digest", line=line)
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


def _archive_command(verb: str, args: list[str], has_list: bool, line: str
                     ) -> Command | None | bool:
    """`index [LIST]` and `get [LIST] N [M …]` (LISTSERV's notebook commands, by post number).

    Words that are not numbers make the line prose ("get me off this list", "index of
    what?"), unless the list was named (`GET SHMA LOG2612`, a LISTSERV file we do not keep:
    not understood)."""
    if verb == "index":
        if args:
            return False if has_list else None
        return Command(Kind.INDEX, line=line)
    numbers = [n for a in args for n in re.split(r"[,;]", a) if n]
    if not numbers or not all(n.isdigit() and len(n) <= 9 for n in numbers):
        return False if has_list or not args else None
    return Command(Kind.GET, numbers=tuple(int(n) for n in numbers[:MAX_GET_NUMBERS]),
                   line=line)


def command_mode(own: str, list_name: str, token: str | None, max_commands: int
                 ) -> tuple[list[Command], list[str], list[str]] | None:
    """Classic command mode, entered when the first line is a command; None otherwise."""
    lines = [ln.strip() for ln in own.split("\n")]
    first = next((ln for ln in lines if ln), None)
    if first is None:
        return None
    parsed = parse_command(first, list_name, token)
    if parsed is None or parsed is True:
        if len([ln for ln in lines if ln]) == 1 and (
                _AFFIRMATIVE.match(first)
                or match_any(languages(), "confirm", fold(first), "match")):
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
        result = parse_command(line, list_name, token)
        if result is True:  # end
            ignored.extend(ln for ln in lines[k:] if ln)
            break
        if isinstance(result, Command):
            processed += 1
            paragraph_has_command = True
            key = (result.kind, result.delivery, result.address, result.token, result.name,
                   result.numbers)
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


def confirm_words(own: str) -> bool:
    """Is `own` one line that confirms ("OK", "yes", "vale", "je confirme")?"""
    line = fold(own).strip()
    if not line or "\n" in line:
        return False
    return bool(_AFFIRMATIVE.match(line) or match_any(languages(), "confirm", line, "match"))
