"""Every outgoing mail is rendered here from a template in `templates/emails/`.

A template file holds the headers it sets, a blank line, then the body. Which file renders
template NAME for a list `LIST@DOMAIN` in language `xx` (`search_path`), first found wins:

1. `templates_dir/LIST@DOMAIN/xx/NAME` (that list's own text, in the reader's language),
2. `templates_dir/xx/NAME` (the operator's text for every list),
3. the built-in `xx/NAME`,

then the same three for English (`NAME` at the top of each folder). The reader's language comes
before whose text it is: a Spanish reader gets the built-in Spanish text rather than a list's
English override (Mailman 3 searches the same way). A chair adds a language by adding a folder
`templates_dir/xx/`. Every template gets `lang` and the filters `day`, `short_day`, `clock`,
`moment` and `number`, which write dates and numbers in that language (`listserv.mail.i18n`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from listserv.errors import ListservError
from listserv.mail import i18n
from listserv.mail.i18n import DEFAULT_LANG
from listserv.mail.links import confirm_link
from listserv.mail.tokens import message_id

#: The built-in templates: the repository's `templates/emails/`, which the build installs inside
#: the package as `listserv.templates` (setup.py), found the same way in a wheel and an editable
#: install. pip installs a package as plain files, so this is a real folder.
TEMPLATES = Path(str(resources.files("listserv.templates").joinpath("emails")))

#: Loader prefixes of the two places templates come from (`Renderer.search_path`).
OPERATOR, BUILTIN = "operator", "builtin"


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


def _lang(context: jinja2.runtime.Context) -> str:
    return str(context.get("lang") or DEFAULT_LANG)


def _as_day(value: date | str) -> date:
    """A date, a datetime, or an ISO date's text (`2027-01-21`) as a template may hold one."""
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value


@jinja2.pass_context
def _day(context: jinja2.runtime.Context, value: date | str) -> str:
    return i18n.day(_as_day(value), _lang(context))


@jinja2.pass_context
def _short_day(context: jinja2.runtime.Context, value: date | str) -> str:
    return i18n.short_day(_as_day(value), _lang(context))


@jinja2.pass_context
def _clock(context: jinja2.runtime.Context, value: datetime) -> str:
    return i18n.clock(value, _lang(context))


@jinja2.pass_context
def _moment(context: jinja2.runtime.Context, value: datetime, zone: str = "UTC") -> str:
    return i18n.moment(value, ZoneInfo(zone), _lang(context))


@jinja2.pass_context
def _number(context: jinja2.runtime.Context, value: float | int) -> str:
    return i18n.number(value, _lang(context))


#: The filters every template may use, beside jinja2's own.
FILTERS = {"one_line": one_line, "mailbox": mailbox, "day": _day, "short_day": _short_day,
           "clock": _clock, "moment": _moment, "number": _number}
#: Variables every template gets whatever its caller passes (`Renderer.text`).
GLOBAL_VARIABLES = frozenset({"lang"})


def search_path(name: str, lang: str = DEFAULT_LANG, list_address: str = "") -> list[str]:
    """The loader names tried for template `name` in `lang` for the list `list_address`
    (see the module docstring), first found wins."""
    names: list[str] = []
    for language in dict.fromkeys([lang or DEFAULT_LANG, DEFAULT_LANG]):
        local = name if language == DEFAULT_LANG else f"{language}/{name}"
        if list_address:
            names.append(f"{OPERATOR}:{list_address.lower()}/{local}")
        names += [f"{OPERATOR}:{local}", f"{BUILTIN}:{local}"]
    return names


def template_languages(templates_dir: Path | None = None) -> list[str]:
    """English, then every language folder (two or three letters) of the built-in templates
    and of `templates_dir`, sorted."""
    folders = [TEMPLATES, *([templates_dir] if templates_dir is not None else [])]
    found = {p.name for folder in folders if folder.is_dir() for p in folder.iterdir()
             if p.is_dir() and re.fullmatch(r"[a-z]{2,3}", p.name)}
    return [DEFAULT_LANG, *sorted(found - {DEFAULT_LANG})]


class _Environment(jinja2.Environment):
    """Resolves `{% include "NAME" %}` as the including template itself was found: the same
    list's and language's file first (`search_path`), so an included part follows along."""

    def join_path(self, template: str, parent: str) -> str:
        # A loaded template is named without its loader's prefix ("es/NAME", "LIST@DOMAIN/NAME").
        parts = parent.rpartition(":")[2].split("/")[:-1]
        list_address = parts.pop(0) if parts and "@" in parts[0] else ""
        lang = parts[0] if parts else DEFAULT_LANG
        for candidate in search_path(template, lang, list_address):
            try:
                self.get_template(candidate)
            except jinja2.TemplateNotFound:
                continue
            return candidate
        return template


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
        self.templates_dir = templates_dir
        loaders: dict[str, jinja2.BaseLoader] = {BUILTIN: jinja2.FileSystemLoader(TEMPLATES)}
        if templates_dir is not None:
            loaders[OPERATOR] = jinja2.FileSystemLoader(templates_dir)
        self.env = _Environment(
            loader=jinja2.PrefixLoader(loaders, delimiter=":"),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self.env.filters.update(FILTERS)
        # Read at render time: the daemon learns its web port (0 = free) after building this.
        self.env.globals["confirm_link"] = lambda token: confirm_link(self.web_url, token)

    def languages(self) -> list[str]:
        """The languages there are templates for: English, each built-in language folder and
        each the operator added (`templates_dir/xx/`), sorted after English."""
        return template_languages(self.templates_dir)

    def template(self, name: str, lang: str = DEFAULT_LANG,
                 list_address: str = "") -> jinja2.Template:
        """The template that renders `name` in `lang` for `list_address` (its `.filename` is
        the file); `jinja2.TemplatesNotFound` when there is none."""
        return self.env.select_template(search_path(name, lang, list_address))

    def text(self, name: str, lang: str = DEFAULT_LANG, **context: Any) -> str:
        """The rendered text of template `name` in `lang` (English when it has none); the
        context's `list_address` selects that list's own templates."""
        lang = lang or DEFAULT_LANG
        template = self.template(name, lang, str(context.get("list_address", "")))
        return template.render(**{**context, "lang": lang})

    def body(self, name: str, lang: str = DEFAULT_LANG, **context: Any) -> str:
        """Only the body of template `name` (to quote one mail's text inside another)."""
        return self.text(name, lang, **context).partition("\n\n")[2]

    def mail(self, name: str, *, domain: str, now: datetime, lang: str = DEFAULT_LANG,
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
