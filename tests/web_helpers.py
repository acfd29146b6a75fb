"""Helpers for the web endpoint's tests: a daemon with `[web]` on, real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from .helpers import write_config


def write_web_config(path: Path, data_dir: Path, db_url: str, sink_port: int,
                     base_url: str = "") -> Path:
    """A test daemon's config (tests/helpers.py) with the web endpoint on a free port."""
    write_config(path, data_dir, db_url, sink_port)
    with path.open("a", encoding="utf-8") as config:
        config.write(f'[web]\nenabled = true\nhost = "127.0.0.1"\nport = 0\n'
                     f'base_url = "{base_url}"\n')
    return path


@dataclass
class Answer:
    """An HTTP answer: status, headers (names lower-case), body text."""

    status: int
    headers: dict[str, str]
    text: str


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> Answer:
    """One real HTTP request (urllib, as `curl` would send it); an error status is an answer."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()},
                          response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, {k.lower(): v for k, v in error.headers.items()},
                          error.read().decode("utf-8"))


def confirm_link_in(msg: EmailMessage) -> str:
    """The confirmation page's URL in a confirmation mail's text."""
    match = re.search(r"^[ \t]+(https?://\S+/c/[a-z2-7]+)\s*$", msg.get_content(), re.MULTILINE)
    assert match, msg.get_content()
    return match.group(1)
