"""Every outgoing mail is rendered here from a template in `templates/emails/`.

A template file holds the headers it sets, a blank line, then the body. Operator overrides
(`templates_dir`) are searched first; a language's folder (`es/NAME`) before the English one.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from listserv.errors import ListservError
from listserv.mail.links import confirm_link
from listserv.mail.tokens import message_id

#: The built-in templates: the repository's `templates/emails/`, which the build installs inside
#: the package as `listserv.templates` (setup.py), found the same way in a wheel and an editable
#: install. pip installs a package as plain files, so this is a real folder.
TEMPLATES = Path(str(resources.files("listserv.templates").joinpath("emails")))


class HeaderInjectionError(ListservError):
    """A header value carried CR or LF: it would have added a header of its own."""


def safe_header_value(name: str, value: str) -> str:
    """`value` unchanged if it is one line; refuses CR/LF so no value can add a header."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(f"refused a line break in the value of the {name} header")
    return value


def one_line(value: object) -> str:
    """Template filter: any text folded to one line (for subjects and names from senders)."""
    return " ".join(str(value).split())


def mailbox(name: object, address: str) -> str:
    """Template filter: `"Name" <address>`, the name a quoted string (one line, `"` and `\\`
    escaped); the message's policy encodes a name that is not ASCII when it is written."""
    quoted = one_line(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>' if quoted else address


class Renderer:
    """The one jinja2 Environment: StrictUndefined, operator overrides, then our templates.

    `eightbit` is the form of the mail it renders on the wire (`[outbound] eightbitmime`):
    whoever queues that mail passes it on to the serializer (`delivery.outbox.enqueue`).
    `web_url` is the web endpoint's public URL ("" when it is off): templates call
    `confirm_link(token)`, which is "" then, so confirmations carry a link only when it works.
    """

    def __init__(self, templates_dir: Path | None = None, eightbit: bool = False,
                 web_url: str = "") -> None:
        self.eightbit = eightbit
        self.web_url = web_url
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir is not None:
            loaders.append(jinja2.FileSystemLoader(templates_dir))
        loaders.append(jinja2.FileSystemLoader(TEMPLATES))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self.env.filters["one_line"] = one_line
        self.env.filters["mailbox"] = mailbox
        # Read at render time: the daemon learns its web port (0 = free) after building this.
        self.env.globals["confirm_link"] = lambda token: confirm_link(self.web_url, token)

    def text(self, name: str, lang: str = "en", **context: Any) -> str:
        """The rendered text of template `name` in `lang` (English when it has none)."""
        names = [f"{lang}/{name}", name] if lang != "en" else [name]
        return self.env.select_template(names).render(**context)

    def body(self, name: str, lang: str = "en", **context: Any) -> str:
        """Only the body of template `name` (to quote one mail's text inside another)."""
        return self.text(name, lang, **context).partition("\n\n")[2]

    def mail(self, name: str, *, domain: str, now: datetime, lang: str = "en",
             **context: Any) -> EmailMessage:
        """A complete message from template `name`: its headers, then its body; dated `now`
        (the caller's clock) unless the template sets a Date."""
        rendered = self.text(name, lang, **context)
        head, _, body = rendered.partition("\n\n")
        msg = EmailMessage()
        for line in head.splitlines():
            if not line.strip():
                continue
            key, colon, value = line.partition(":")
            if not colon:
                raise ListservError(f"template {name}: header line without a colon: {line!r}")
            value = value.strip()
            if value:
                msg[key.strip()] = safe_header_value(key.strip(), value)
        if "Date" not in msg:
            msg["Date"] = formatdate(now.timestamp())
        if "Message-ID" not in msg:
            msg["Message-ID"] = message_id(domain)
        plain = body.isascii() and all(len(line) < 998 for line in body.splitlines())
        msg.set_content(body, charset="utf-8", cte="7bit" if plain else "quoted-printable")
        return msg
