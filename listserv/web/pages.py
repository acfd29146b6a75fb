"""The endpoint's pages: server-rendered from `templates/web/` (jinja2, escaped), in the
member's language, else the browser's (Accept-Language), else English.

A page template (`confirm.html`, …) holds the markup once; each language's `LANG/texts.html`
holds its sentences as macros and variables, so a language is one file and a page one file.
The operator's `templates_dir/web/` is searched first, as for mail.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from listserv.web.actions import Page

#: The built-in page templates, installed inside the package as `listserv.templates` (as the
#: mail templates are: setup.py, pyproject.toml's package data).
TEMPLATES = Path(str(resources.files("listserv.templates").joinpath("web")))
#: The languages the pages speak (SPEC §2: the five of free-text understanding).
LANGUAGES = ("en", "es", "fr", "de", "pt")
#: What every page may show; a page's own values override these.
_DEFAULTS: dict[str, Any] = {"list_name": "", "list_address": "", "email": "", "kind": "",
                             "delivery": "", "result": "", "already": False, "expired": False,
                             "form_token": "", "notice": False}


def choose_language(own: str, accept_language: str) -> str:
    """`own` (a member's or request's language) if the pages speak it; else the browser's
    most preferred language they speak (RFC 9110 `Accept-Language`, q-values); else English."""
    if own[:2].lower() in LANGUAGES:
        return own[:2].lower()
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else "en"


class Pages:
    """The one jinja2 Environment of the pages: autoescaped, StrictUndefined."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir is not None:
            loaders.append(jinja2.FileSystemLoader(templates_dir / "web"))
        loaders.append(jinja2.FileSystemLoader(TEMPLATES))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders),
                                      undefined=jinja2.StrictUndefined, autoescape=True)

    def render(self, page: Page, lang: str, **extra: Any) -> str:
        """The HTML of `page` in `lang` (one of LANGUAGES)."""
        texts = self.env.get_template(f"{lang}/texts.html").module
        values = {**_DEFAULTS, **page.values, **extra}
        return self.env.get_template(page.template).render(lang=lang, t=texts, **values)

    def stylesheet(self) -> str:
        """The one stylesheet (served, not inline, so the CSP needs no 'unsafe-inline')."""
        source, _, _ = self.env.loader.get_source(self.env, "style.css")  # type: ignore[union-attr]
        return source
