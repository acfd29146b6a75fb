"""The chair's view of the mail templates (`listserv templates list|show|check`); no database.

`sources` says which file renders each template for a list and language (the search order is
`listserv.mail.render`'s). `check` reads every file in `templates_dir` and compares it with the
built-in template it replaces: it must parse, use only filters we have, and use no variable the
built-in one is not given (from jinja2's syntax tree, so a typo such as `{{ list_nmae }}` is
named by its file and line before any mail fails on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import meta, nodes

from listserv.mail.i18n import DEFAULT_LANG
from listserv.mail.render import BUILTIN, GLOBAL_VARIABLES, TEMPLATES, Renderer

_LANG_FOLDER = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in an override: its file, the line (1 when it is the whole file)."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Source:
    """Which file renders template `name` in `lang`, and whose it is."""

    name: str
    lang: str
    origin: str  # "built-in", "operator" or "list"
    path: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "lang": self.lang, "origin": self.origin, "file": self.path}


def builtin_names() -> list[str]:
    """The names of the built-in templates (the English ones: every template has one)."""
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_file() and p.suffix == ".txt")


def source(renderer: Renderer, name: str, lang: str, list_address: str = "") -> Source:
    """Which file renders `name` in `lang` for `list_address`; `jinja2.TemplatesNotFound`
    when there is none."""
    template = renderer.template(name, lang, list_address)
    path = template.filename or ""
    if renderer.templates_dir is not None and Path(path).is_relative_to(renderer.templates_dir):
        rel = Path(path).relative_to(renderer.templates_dir)
        origin = "list" if "@" in rel.parts[0] else "operator"
    else:
        origin = "built-in"
    return Source(name, lang, origin, path)


def sources(renderer: Renderer, list_address: str = "", lang: str | None = None
            ) -> list[Source]:
    """Each built-in template's source in each language (or only `lang`)."""
    langs = [lang] if lang else renderer.languages()
    return [source(renderer, name, code, list_address)
            for name in builtin_names() for code in langs]


def _variables(env: jinja2.Environment, tree: nodes.Template, seen: set[str]) -> set[str]:
    """The variables a template and the templates it includes are given by their caller."""
    names = set(meta.find_undeclared_variables(tree))
    for included in meta.find_referenced_templates(tree):
        if included is None or included in seen:
            continue
        seen.add(included)
        loaded = env.loader.get_source(env, f"{BUILTIN}:{included}")[0] if env.loader else ""
        names |= _variables(env, env.parse(loaded), seen)
    return names


def _first_line(tree: nodes.Template, name: str) -> int:
    return min((n.lineno for n in tree.find_all(nodes.Name)
                if n.name == name and n.ctx == "load"), default=1)


def _counterpart(rel: Path) -> tuple[Path | None, str]:
    """The built-in template an override at `rel` (inside `templates_dir`) replaces, and its
    language: `LIST@DOMAIN/` and a language folder are left out of the name."""
    parts = list(rel.parts)
    if parts and "@" in parts[0]:
        parts.pop(0)
    lang = parts.pop(0) if len(parts) == 2 and _LANG_FOLDER.fullmatch(parts[0]) else ""
    if len(parts) != 1:
        return None, lang
    own = TEMPLATES / lang / parts[0] if lang else None
    if own is not None and own.is_file():
        return own, lang
    english = TEMPLATES / parts[0]
    return (english if english.is_file() else None), lang


def _override_files(templates_dir: Path) -> Iterator[Path]:
    yield from sorted(p for p in templates_dir.rglob("*.txt") if p.is_file())


def check(renderer: Renderer) -> list[Problem]:
    """Every problem of the overrides in `templates_dir` (none: an empty list)."""
    if renderer.templates_dir is None or not renderer.templates_dir.is_dir():
        return []
    env = renderer.env
    problems: list[Problem] = []
    for path in _override_files(renderer.templates_dir):
        rel = path.relative_to(renderer.templates_dir)
        builtin, _ = _counterpart(rel)
        if builtin is None:
            problems.append(Problem(path, 1, f"no built-in template is named {path.name}; "
                                    "this file would never be used (see `templates list`)"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
            tree = env.parse(text, path.name, str(path))
            env.compile(tree, path.name, str(path))
        except UnicodeDecodeError:
            problems.append(Problem(path, 1, "not UTF-8 text"))
            continue
        except jinja2.TemplateSyntaxError as exc:
            problems.append(Problem(path, exc.lineno or 1, exc.message or "syntax error"))
            continue
        allowed = _variables(env, env.parse(builtin.read_text(encoding="utf-8")), set())
        allowed |= GLOBAL_VARIABLES | set(env.globals)  # lang, confirm_link, range, ...
        for name in sorted(_variables(env, tree, set()) - allowed,
                           key=lambda n: (_first_line(tree, n), n)):
            problems.append(Problem(path, _first_line(tree, name),
                                    f"unknown variable '{name}': {builtin.name} is given "
                                    f"only {', '.join(sorted(allowed))}"))
    return problems


def text_of(renderer: Renderer, name: str, lang: str = DEFAULT_LANG,
            list_address: str = "") -> tuple[Source, str]:
    """The source of `name` and its text as written (for `templates show`)."""
    found = source(renderer, name, lang, list_address)
    return found, Path(found.path).read_text(encoding="utf-8")
