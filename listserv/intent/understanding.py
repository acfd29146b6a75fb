"""What a request asks for: its kind, one command, and the understanding of a whole message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    HELP = "help"
    INFO = "info"
    SET = "set"
    CONFIRM = "confirm"
    PEER_INPUT = "peer_input"
    INDEX = "index"  # the archive's latest posts (SPEC §3)
    GET = "get"  # archived posts by number
    UNCLEAR = "unclear"


@dataclass(frozen=True, slots=True)
class Command:
    kind: Kind
    delivery: str | None = None  # "regular" | "digest" | "digest-plain" | "nomail" (SUBSCRIBE, SET)
    address: str | None = None  # another address named in the request, lower-case
    token: str | None = None  # for CONFIRM
    name: str | None = None  # from "SUBSCRIBE SHMA Jane Doe"
    language: str | None = None  # for SET: "set language es"
    line: str = ""  # the text it came from (for the reply's summary)
    numbers: tuple[int, ...] = ()  # for GET: the posts asked for, as written


@dataclass(frozen=True, slots=True)
class Understanding:
    lang: str
    commands: tuple[Command, ...]
    unrecognised: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
