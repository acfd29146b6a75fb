"""Acceptance 1 of issue 20: every built-in template in the five languages.

Each exists in en, es, fr, de and pt with the same variables (from jinja2's syntax tree),
renders with a realistic context (dates written in the language being rendered, as the
features pass them), and its rendering reads as its own language by a stop-word count, not as
English. The context's own values (names, addresses, subjects) are kept language-neutral so
that only the template's words count.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from jinja2 import meta

from listserv.digests.posts import Attachment, Entry
from listserv.mail import i18n
from listserv.mail.render import TEMPLATES, Renderer
from listserv.mail.templates import builtin_names

LANGS = ("en", "es", "fr", "de", "pt")

#: Frequent function words of each language, none shared with another's list.
STOP_WORDS = {
    "en": {"the", "and", "to", "of", "is", "you", "your", "for", "it", "with", "this", "was",
           "be", "are", "we", "not", "will", "from", "has", "have", "at", "or", "that",
           "on", "by", "what", "when", "please", "our"},
    "es": {"el", "la", "los", "las", "de", "y", "que", "en", "su", "del", "para", "con", "por",
           "una", "un", "se", "no", "es", "lo", "le", "sus", "al", "está", "ha", "hemos",
           "usted", "puede", "como", "más", "este", "esta"},
    "fr": {"le", "la", "les", "de", "des", "et", "vous", "votre", "vos", "est", "un", "une",
           "pour", "du", "au", "aux", "ne", "pas", "sur", "nous", "il", "elle", "qui", "dans",
           "ce", "cette", "été", "avec", "sont", "par"},
    "de": {"der", "die", "das", "und", "ist", "sie", "ihre", "ihr", "ihnen", "nicht", "ein",
           "eine", "zu", "mit", "für", "von", "den", "dem", "des", "wir", "auf", "an", "wird",
           "wurde", "bitte", "noch", "auch", "bei", "oder", "es"},
    "pt": {"o", "a", "os", "as", "de", "do", "da", "dos", "das", "e", "que", "em", "no", "na",
           "um", "uma", "para", "com", "seu", "sua", "você", "não", "foi", "pelo", "pela",
           "ao", "é", "está", "mais", "este"},
}


def identify(text: str) -> str:
    """The language whose stop words are most frequent in `text` (ties go to English)."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    counts = {lang: sum(1 for w in words if w in stop) for lang, stop in STOP_WORDS.items()}
    return max(counts, key=lambda lang: (counts[lang], lang == "en"))


def variables(renderer: Renderer, lang: str, name: str) -> set[str]:
    path = TEMPLATES / name if lang == "en" else TEMPLATES / lang / name
    return set(meta.find_undeclared_variables(renderer.env.parse(path.read_text("utf-8"))))


class Results(list):
    """Both shapes templates call `results`: the chair's (a list of outcomes) and a command
    reply's (done, not understood, ignored, texts)."""

    def __init__(self, items: list, **parts: object) -> None:
        super().__init__(items)
        self.__dict__.update(parts)


NOW = datetime(2027, 1, 4, 9, 30, tzinfo=UTC)
START = datetime(2027, 1, 21, 18, 0, tzinfo=UTC)
CHICAGO = ZoneInfo("America/Chicago")


def context(lang: str) -> dict:
    """A realistic context for any built-in template, dates written in `lang`."""
    ns = SimpleNamespace
    list_address = "shma@lists.example.org"
    request = ns(id=12, email="ana@example.net", name="Ana Lima", token="k3j4h5g6f7d8s9a0",
                 delivery="nomail", kind="subscribe", created_at=NOW, expires_at=NOW
                 + timedelta(days=14), project="Repair Café Nord", minutes=20,
                 requested_minutes=45, status="reserved", help="-", summary="SHMA 2027",
                 meeting=ns(id=3, start=START, tz="America/Chicago"))
    held = ns(id=7, sender="ana@example.net", subject="SHMA 2027", reason="max_post_kb",
              created_at=NOW, expires_at=NOW + timedelta(days=14))
    files = [ns(name="article.docx", label="Word", size=52_000, macros=False,
                original="article.docx", reason="-"),
             ns(name="macro.docm", label="Word", size=8_000, macros=True,
                original="run.exe", reason="exe")]
    submission = ns(tracking_id="TCP-2027-004", title="Tool library", name="Ana Lima",
                    sender="ana@example.net", deadline="2027-03-01", member=True,
                    status="received")
    revision = ns(id=3, number=2, title="Tool library", files=files[:1], refused=files[1:],
                  sender="bo@example.org", folder="TCP-2027-004/rev-2", received_at=NOW,
                  submission=submission)
    meeting = ns(duration=60)
    item = ns(code="subscribe-confirm-sent", address="ana@example.net", detail="nomail")
    when = i18n.moment(START, CHICAGO, lang)
    return {
        "to": "ana@example.net", "list": ns(name="shma"),
        "list_name": "shma", "display_name": "SHMA", "list_address": list_address,
        "owner_address": "shma-owner@lists.example.org",
        "request_address": "shma-request@lists.example.org",
        "join_address": "shma-join@lists.example.org",
        "leave_address": "shma-leave@lists.example.org",
        "post_address": list_address,
        "addresses": {"peer-input": "shma-peer-input@lists.example.org",
                      "column": "shma-column@lists.example.org"},
        "description": "SHMA", "resources": ["https://shma.example.org/"],
        "confirm_address": "shma-confirm+k3j4h5g6f7d8s9a0@lists.example.org",
        "reply_address": "shma-confirm+a1b2c3d4e5f6@lists.example.org",
        "undo_address": "shma-confirm+a1b2c3d4e5f6@lists.example.org",
        "leave_token_address": "shma-leave+a1b2c3d4e5f6@lists.example.org",
        "peer_input_address": "shma-peer-input@lists.example.org",
        "column_address": "shma-column@lists.example.org", "column_name": "TCP",
        "request": request, "held": held, "member": ns(email="ana@example.net",
                                                       name="Ana Lima"),
        "meeting": meeting, "when": when, "previous": i18n.moment(START - timedelta(days=7),
                                                                   CHICAGO, lang),
        "span": i18n.span(START, 60, CHICAGO, "America/Chicago", lang),
        "times": [i18n.span(START, 60, CHICAGO, "America/Chicago", lang),
                  i18n.span(START, 60, ZoneInfo("UTC"), "", lang)],
        "dial_in": "+1 555 0100\nPIN 4321#", "agenda": [{"name": "Ana Lima",
                                                        "project": "Repair Café Nord",
                                                        "minutes": 20}],
        "peer_minutes": 30, "group_minutes": 30, "free_minutes": 10, "max_minutes": 30,
        "signup_open": True, "signup_closes": i18n.moment(START - timedelta(days=2),
                                                          CHICAGO, lang),
        "meeting_when": when, "previous_when": i18n.moment(START - timedelta(days=7),
                                                           CHICAGO, lang),
        "meetings": [{"when": when, "dial_in": "+1 555 0100\nPIN 4321#"}],
        "minutes": 20, "received": NOW, "expires": NOW + timedelta(days=14),
        "duplicate": False, "note": "capped", "missing": "project", "why": "moved-up",
        "is_member": True, "for_someone_else": False, "already_member": False,
        "delivery": "nomail", "reason": "-", "subject": "SHMA 2027", "echo": True,
        "results": Results([ns(line="approve 7", done=True, outcome="7")], done=[item],
                           not_understood=["xyz 123"], ignored=["x"],
                           texts={"help": "shma-request@lists.example.org"}),
        "problem": "", "used_by": "", "summary": True, "not_understood": ["xyz 123"],
        "count": 2, "waiting": [held], "joins": [request], "unclear": [request],
        "peer_input": [request], "follow_ups": [revision],
        "submission": submission, "revision": revision, "ack_id": "<ack.1@x.org>",
        "deadline_text": i18n.day(date(2027, 3, 1), lang), "deadline_iso": "2027-03-01",
        "max_file_kb": 10240, "max_total_kb": 20480, "types": ("pdf", "docx"),
        "submissions": [submission], "accepted": 1, "declined": 0, "pending": 1,
        "author": "Ana Lima", "author_unproven": True, "sender": "bo@example.org",
        "inbound_id": 42, "text_lines": ["SHMA 2027"], "more_lines": 3, "attached": True,
        "email": "ana@example.net", "state": ns(score=5.0, last_reason="5.1.1"),
        "threshold": 5.0, "warning": 1, "warnings": 3, "removal": NOW + timedelta(days=21),
        "next_step": NOW + timedelta(days=7), "with_change": False,
        # a digest (digests.posts.Entry): its volume and issue, its posts, the list's footer
        "volume": 2, "number": 17, "final": False,
        "footer": "shma mailing list -- shma@lists.example.org",
        "posts": [Entry(1, "Ana Lima", "Ana Lima <ana@example.net>",
                        "Mon, 04 Jan 2027 10:00:00 +0000", "SHMA 2027", "<a@example.net>",
                        "SHMA 2027", [Attachment("article.docx", "application/msword", 52)])],
        # the archive by mail: `index` and `get N` (the posts above, numbered)
        "max_get": 10, "dropped": True,
    }


#: Where a template gives a shared name another meaning: `missing` is what a peer-input
#: request lacks, and the post numbers an archive `get` did not find.
OVERRIDES: dict[str, dict] = {"reply-archive-get.txt": {"missing": [99]}}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_template_exists_in_five_languages_with_the_same_variables(
        renderer, name):
    english = variables(renderer, "en", name)
    for lang in LANGS[1:]:
        assert (TEMPLATES / lang / name).is_file(), f"{lang}/{name} is missing"
        assert variables(renderer, lang, name) == english, f"{lang}/{name}"


@pytest.mark.parametrize("name", [n for n in builtin_names() if n != "dmarc-from-name.txt"])
def test_every_builtin_template_renders_and_reads_as_its_own_language(renderer, name):
    for lang in LANGS:
        text = renderer.text(name, lang, **{**context(lang), **OVERRIDES.get(name, {})})
        assert text.strip(), f"{lang}/{name} rendered nothing"
        assert identify(text) == lang, f"{lang}/{name} reads as {identify(text)}:\n{text}"


def test_the_munged_sender_name_is_said_in_each_language(renderer):
    """dmarc-from-name.txt is two words ("Ana via SHMA"): too short for stop words, so each
    language's own word is checked instead."""
    words = {"en": " via ", "es": " a través de ", "fr": " via ", "de": " über ",
             "pt": " via "}
    for lang, word in words.items():
        assert word in renderer.text("dmarc-from-name.txt", lang, **context(lang)), lang


def test_the_stop_word_check_tells_the_languages_apart():
    samples = {
        "en": "We have your request and will write to you when it is done.",
        "es": "Hemos recibido su solicitud y le escribiremos cuando esté lista.",
        "fr": "Nous avons bien reçu votre demande et nous vous écrirons dès que possible.",
        "de": "Wir haben Ihre Anfrage erhalten und schreiben Ihnen, sobald sie bereit ist.",
        "pt": "Recebemos o seu pedido e vamos escrever para você quando estiver pronto.",
    }
    assert {lang: identify(text) for lang, text in samples.items()} == {c: c for c in samples}
