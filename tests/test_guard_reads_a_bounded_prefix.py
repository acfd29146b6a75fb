"""The administrivia guard's work per message is bounded (issue 15): it decodes at most
`GUARD_READ_CHARS` of the first text part, searches at most `GUARD_FREE_TEXT` characters of
the author's words, and never decodes an attachment. Asserted on what is read, not on time."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from listserv.intent import guard as guard_module
from listserv.intent import request as request_module
from listserv.intent.guard import GUARD_FREE_TEXT, GUARD_READ_CHARS, Guard, guard
from listserv.mail.message import parse

LIST = "shma"
PROSE = "The committee discussed the venue and the schedule for next spring at length.\n"


def _post(text: str, attachment: bytes = b"", cte: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ana@example.org", "shma@lists.example.org", "Notes"
    msg.set_content(text, cte=cte) if cte else msg.set_content(text)
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="a.pdf")
    return parse(msg.as_bytes())


@pytest.fixture
def read_by_free_text(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The own text the guard hands to the free-text reader, for each call."""
    seen: list[str] = []
    real = guard_module.free_text

    def spy(own: str, *args: object) -> object:
        seen.append(own)
        return real(own, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(guard_module, "free_text", spy)
    return seen


def test_a_request_short_enough_is_still_read() -> None:
    assert guard(_post("Please unsubscribe me from the shma list.\n"), LIST)[0] is Guard.REQUEST


def test_a_request_phrase_after_the_free_text_bound_is_not_read(
        read_by_free_text: list[str]) -> None:
    body = PROSE * (2 * GUARD_FREE_TEXT // len(PROSE)) + "Please remove me from the shma list.\n"
    verdict, understood = guard(_post(body), LIST)
    assert (verdict, understood.commands) == (Guard.POST, ())
    assert read_by_free_text and all("remove me" not in own for own in read_by_free_text)
    assert all(len(own) < GUARD_FREE_TEXT + len(PROSE) for own in read_by_free_text)


@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_a_huge_text_part_is_decoded_only_up_to_the_read_bound(
        cte: str, monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _post(PROSE * (8 * 1024 * 1024 // len(PROSE)), cte=cte)  # 8 MB of text
    decoded: list[int] = []
    real = request_module.body_text

    def spy(m: EmailMessage, limit: int | None = None) -> str:
        text = real(m, limit)
        decoded.append(len(text))
        return text

    monkeypatch.setattr(request_module, "body_text", spy)
    assert guard(msg, LIST)[0] is Guard.POST
    assert decoded and max(decoded) <= GUARD_READ_CHARS


def test_a_25_mb_attachment_is_never_decoded() -> None:
    msg = _post("Slides from today's session attached.\n", attachment=b"%PDF" * (25 << 18))
    attachment = next(msg.iter_attachments())
    decoded: list[object] = []
    real = attachment.get_payload

    def spy(*args: object, **kw: object) -> object:
        if kw.get("decode") or (len(args) > 1 and args[1]):
            decoded.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    attachment.get_payload = spy  # type: ignore[method-assign]
    attachment.get_content = lambda *a, **k: decoded.append(a)  # type: ignore[method-assign]
    assert guard(msg, LIST)[0] is Guard.POST
    assert decoded == []
