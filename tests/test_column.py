"""Column submissions (SPEC §6, issue 6): intake, tracking, review, export, calls.

Acceptance 1–6 through LMTP, the CLI and the SMTP sink, with the daemon's fake clock.
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from listserv.daemon import Daemon
from listserv.store.models.core import Once

from .helpers import lmtp_send, make_message, parse, wait_handled, wait_settled

COLUMN = "shma-column@lists.example.org"
CHAIR = "chair@example.org"
EDITOR = "editor@example.net"
JANE = "jane@example.net"
STRANGER = "stranger@example.com"


# -- files and mail as clients send them ---------------------------------------------------------


def _entry(name: str) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))


def docx_bytes(text: str = "A story about our tool library and how it grew.") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(_entry("[Content_Types].xml"), '<?xml version="1.0"?><Types/>')
        z.writestr(_entry("_rels/.rels"), "<Relationships/>")
        z.writestr(_entry("word/document.xml"),
                   f"<w:document><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p>"
                   "</w:body></w:document>")
    return out.getvalue()


def docm_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
        z.writestr("word/vbaProject.bin", b"\x00" * 16)
    return out.getvalue()


def plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("notes.txt", "just a zip")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200 + b"This program cannot be run in DOS mode"


def submission(sender: str, subject: str, body: str, files: list[tuple[str, bytes]],
               **headers: str) -> bytes:
    """A multipart/mixed mail; file names go out RFC 2231-encoded, exactly as given."""
    boundary = uuid.uuid4().hex
    lines = [f"From: {sender}", f"To: {COLUMN}", f"Subject: {subject}",
             f"Message-ID: <{uuid.uuid4().hex}@example.net>", "MIME-Version: 1.0",
             *[f"{k.replace('_', '-')}: {v}" for k, v in headers.items()],
             f'Content-Type: multipart/mixed; boundary="{boundary}"', "",
             f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", body]
    for name, data in files:
        encoded = quote(name.encode("utf-8"), safe="")
        lines += [f"--{boundary}", "Content-Type: application/octet-stream",
                  f"Content-Disposition: attachment; filename*=utf-8''{encoded}",
                  "Content-Transfer-Encoding: base64", "",
                  base64.encodebytes(data).decode("ascii").rstrip("\n")]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def send(daemon, sink, store, data: bytes, mail_from: str) -> None:
    handled = _handled(store)
    lmtp_send(daemon.ports["lmtp"], mail_from, [COLUMN], data)
    wait_handled(sink, store, handled + 1)


def _handled(store) -> int:
    from .helpers import inbound_outcomes

    return sum(1 for st, _ in inbound_outcomes(store) if st != "new")


def replies(sink, address: str) -> list:
    return [parse(d.data) for d in sink.messages_for(address)]


def wait_replies(sink, address: str, count: int) -> list:
    sink.wait_for(lambda s: len(s.messages_for(address)) >= count,
                  description=f"{count} mails to {address}")
    return replies(sink, address)


def text_of(msg) -> str:
    return " ".join(msg.get_body(("plain",)).get_content().split())


def utc_date(msg) -> datetime:
    """The Date header of our mail: UTC, written with the zone -0000."""
    return msg["Date"].datetime.replace(tzinfo=UTC)


def listing(cli, *args: str) -> list[dict]:
    return json.loads(cli("submissions", "list", *args, "--json").output)


@pytest.fixture
def desk(cli, shma):
    cli("lists", "set", shma, "column.name", "The Commons Page")
    cli("lists", "set", shma, "column.prefix", "TCP")
    cli("lists", "set", shma, "column.editors", EDITOR)
    cli("members", "add", shma, JANE, "--name", "Jane Doe", "--no-welcome")
    return shma


def tracking_id(year: int | None = None, number: int = 1) -> str:
    return f"TCP-{year or datetime.now(UTC).year}-{number:03d}"


# -- acceptance 1 ----------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_a_submission_with_a_docx_and_a_pdf_is_stored_acknowledged_and_announced(
        cli, desk, daemon, sink, store, settings):
    data = submission(f"Jane Doe <{JANE}>", "Our tool library", "Here is my piece.\n",
                      [("tool library.docx", docx_bytes()), ("photos.pdf", PDF)])
    send(daemon, sink, store, data, JANE)
    ack = wait_replies(sink, JANE, 1)[-1]
    tid = tracking_id()
    assert ack["Subject"] == f"Your submission {tid}: Our tool library"
    assert ack["From"] == COLUMN
    body = text_of(ack)
    assert tid in body and "tool library.docx" in body and "photos.pdf" in body
    for who in (CHAIR, EDITOR):
        notice = wait_replies(sink, who, 1)[-1]
        assert tid in notice["Subject"]
        assert "tool library.docx" in text_of(notice) and JANE in text_of(notice)
    [row] = listing(cli)
    assert row["id"] == tid and row["title"] == "Our tool library"
    assert (row["sender"], row["status"], row["member"]) == (JANE, "received", True)
    assert row["files"] == ["tool library.docx", "photos.pdf"]
    assert datetime.fromisoformat(row["received"]).tzinfo is not None
    folder = settings.data_dir / "submissions" / tid / "rev-1"
    assert (folder / "tool library.docx").read_bytes() == docx_bytes()
    assert (folder / "photos.pdf").read_bytes() == PDF
    assert b"Here is my piece." in (folder / "message.eml").read_bytes()
    shown = json.loads(cli("submissions", "show", tid, "--json").output)
    assert [f["type"] for f in shown["revisions"][0]["files"]] == ["docx", "pdf"]
    assert "Here is my piece." in shown["text"]


def test_a_non_member_submission_is_accepted_marked_and_capped(cli, desk, daemon, sink, store):
    for n in range(12):
        send(daemon, sink, store,
             submission(STRANGER, f"Piece {n}", "Text.\n", []), STRANGER)
    rows = listing(cli)
    assert len(rows) == 12 and all(r["member"] is False for r in rows)
    assert rows[-1]["id"] == tracking_id(number=12)
    # The cap on automatic mail: at most 10 acknowledgements a day to one address.
    sink.wait_for(lambda s: len(s.messages_for(CHAIR)) >= 12, description="chair notices")
    assert len(sink.messages_for(STRANGER)) == 10
    assert "not a member" in text_of(replies(sink, CHAIR)[-1])
    log = json.loads(cli("log", "--json").output)
    assert sum(1 for e in log if e["action"] == "cap-suppressed"
               and STRANGER in e["detail"]) == 2


def test_automatic_mail_to_the_column_is_neither_stored_nor_answered(
        cli, desk, daemon, sink, store):
    data = make_message(sender=JANE, to=COLUMN, subject="Automatic reply: away",
                        Auto_Submitted="auto-replied")
    send(daemon, sink, store, data, JANE)
    assert listing(cli) == []
    assert sink.messages_for(JANE) == []


# -- acceptance 2 ----------------------------------------------------------------------------------


HOSTILE_NAMES = ["../../etc/passwd", "/etc/shadow", "a\x00b.pdf", "..", "CON",
                 "x" * 296 + ".pdf", "same.pdf", "same.pdf", "SAME.pdf", ".hidden.pdf",
                 "..\\..\\windows\\win.ini", "tab\tand\nnewline.pdf"]


def _tree(root: Path) -> set[Path]:
    return {Path(d) / f for d, _, files in os.walk(root) for f in files}


def test_hostile_attachment_names_land_inside_the_folder_with_safe_distinct_names(
        cli, desk, daemon, sink, store, settings, tmp_path):
    daemon.run_scheduler()
    data_dir = settings.data_dir
    outside_before = {p for p in _tree(tmp_path) if "submissions" not in p.parts}
    data = submission(JANE, "Names", "Body.\n", [(n, PDF) for n in HOSTILE_NAMES])
    send(daemon, sink, store, data, JANE)
    wait_replies(sink, JANE, 1)
    tid = tracking_id()
    folder = (data_dir / "submissions" / tid / "rev-1").resolve()
    # Nothing was written outside the submission's folder (the database, outbox and run
    # files aside, which are the daemon's own).
    new_files = _tree(tmp_path) - outside_before
    for path in new_files:
        if "submissions" in path.parts:
            assert path.resolve().parent == folder, path
        else:
            assert path.name.startswith(("listserv.db", "ports")) or "outbox" in path.parts, path
    assert not (tmp_path / "etc").exists() and not (data_dir / "etc").exists()
    names = sorted(p.name for p in folder.iterdir())
    [row] = listing(cli)
    files = row["files"]
    assert len(files) == len(HOSTILE_NAMES)
    assert len({f.casefold() for f in files}) == len(files)
    assert set(files) <= set(names)
    for name in files:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert name not in (".", "..") and all(ord(c) >= 32 for c in name)
        assert len(name.encode()) <= 120
        assert name.split(".")[0].upper() != "CON"
        assert (folder / name).resolve().parent == folder
        assert (folder / name).read_bytes() == PDF
    assert "passwd.pdf" in files and "shadow.pdf" in files
    assert {"same.pdf", "same (2).pdf", "SAME (3).pdf"} <= set(files)


def test_safe_name_and_sniffing_units():
    from listserv.mail.attachments import safe_name, sniff

    taken: set[str] = set()
    assert safe_name("nul.txt", taken) == "_nul.txt"
    assert safe_name("", taken) == "attachment"
    assert safe_name("report.pdf", taken, extension=".pdf") == "report.pdf"
    assert safe_name("report.docx", taken, extension=".pdf") == "report (2).pdf"
    assert sniff(docx_bytes()).kind == "docx"
    macro = sniff(docm_bytes())
    assert (macro.kind, macro.macros) == ("docm", True)
    assert sniff(plain_zip()).kind == "zip"
    assert sniff(EXE).kind == "exe"
    assert sniff(PDF).kind == "pdf"
    assert sniff(b"{\\rtf1 hello}").kind == "rtf"
    assert sniff(b"\x89PNG\r\n\x1a\n....").kind == "png"
    assert sniff("Grüße, plain text\n".encode()).kind == "txt"
    odt = io.BytesIO()
    with zipfile.ZipFile(odt, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<office:document-content/>")
    assert sniff(odt.getvalue()).kind == "odt"


# -- acceptance 3 ----------------------------------------------------------------------------------


def test_an_exe_renamed_pdf_a_plain_zip_and_an_oversized_file_are_refused_and_explained(
        cli, desk, daemon, sink, store, settings):
    cli("lists", "set", desk, "column.max_file_kb", "4")
    big = b"%PDF-1.4\n" + b"0" * 6000
    data = submission(JANE, "Mixed bag", "Three files.\n",
                      [("article.pdf", EXE), ("big.pdf", big), ("archive.docx", plain_zip()),
                       ("macro.docm", docm_bytes()), ("fine.pdf", PDF)])
    send(daemon, sink, store, data, JANE)
    ack = text_of(wait_replies(sink, JANE, 1)[-1])
    assert "These files were not kept" in ack
    assert "article.pdf: its content is an executable program" in ack
    assert "big.pdf: it is 6 KB, over the limit of 4 KB per file" in ack
    assert "archive.docx: its content is a zip archive (not an Office document)" in ack
    assert "fine.pdf" in ack and "macro.docm" in ack and "can carry macros" in ack
    [row] = listing(cli)
    assert row["files"] == ["macro.docm", "fine.pdf"]
    notice = text_of(wait_replies(sink, CHAIR, 1)[-1])
    assert "MACRO-ENABLED" in notice
    folder = settings.data_dir / "submissions" / row["id"] / "rev-1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "fine.pdf", "macro.docm", "message.eml", "message.txt"]


def test_the_total_limit_keeps_later_files_out(cli, desk, daemon, sink, store):
    cli("lists", "set", desk, "column.max_total_kb", "2")
    one = b"%PDF-1.4\n" + b"1" * 1200
    send(daemon, sink, store,
         submission(JANE, "Two", "x\n", [("one.pdf", one), ("two.pdf", one)]), JANE)
    ack = text_of(wait_replies(sink, JANE, 1)[-1])
    assert "two.pdf: with it the submission would pass the limit of 2 KB in all" in ack
    assert listing(cli)[0]["files"] == ["one.pdf"]


# -- acceptance 4 ----------------------------------------------------------------------------------


def _mail_with_subject(sink, address: str, words: str) -> list:
    sink.wait_for(lambda s: any(words in str(m["Subject"]) for m in replies(s, address)),
                  description=f"a mail to {address} saying {words!r}")
    return [m for m in replies(sink, address) if words in str(m["Subject"])]


@pytest.mark.both_backends
def test_proven_follow_ups_from_the_author_or_an_editor_are_revisions_the_rest_is_held(
        cli, desk, daemon, sink, store, settings):
    send(daemon, sink, store, submission(JANE, "Our tool library", "v1\n",
                                         [("draft.docx", docx_bytes())]), JANE)
    ack = wait_replies(sink, JANE, 1)[-1]
    tid = tracking_id()
    # A reply to the acknowledgement (which went to Jane alone) proves Jane: revision 2, found
    # by the id in its subject or by the reply itself.
    send(daemon, sink, store, submission(JANE, f"Re: {tid} new version", "v2\n",
                                         [("draft.docx", docx_bytes("Version two."))],
                                         In_Reply_To=ack["Message-ID"]), JANE)
    second = wait_replies(sink, JANE, 2)[-1]
    assert f"Your submission {tid} (revision 2)" in second["Subject"]
    [row] = listing(cli)
    assert (row["revision"], row["title"], row["files"]) == (2, "Our tool library",
                                                            ["draft.docx"])
    assert (settings.data_dir / "submissions" / tid / "rev-2" / "draft.docx").read_bytes() \
        == docx_bytes("Version two.")
    # A reply to the second acknowledgement, without the id in the subject, is revision 3.
    send(daemon, sink, store, submission(JANE, "Re: thanks", "v3\n", [],
                                         In_Reply_To=second["Message-ID"],
                                         References=ack["Message-ID"]), JANE)
    assert "(revision 3)" in wait_replies(sink, JANE, 3)[-1]["Subject"]
    # An editor's mail that proves nothing is held; her reply to the notice of revision 3
    # (sent to her alone) is revision 4.
    send(daemon, sink, store, submission(EDITOR, f"{tid} edited", "v4\n", []), EDITOR)
    assert listing(cli)[0]["revision"] == 3
    [notice] = _mail_with_subject(sink, EDITOR, f"revision 3 of {tid}")
    send(daemon, sink, store, submission(EDITOR, f"Re: {notice['Subject']}", "v4\n", [],
                                         In_Reply_To=notice["Message-ID"]), EDITOR)
    assert listing(cli)[0]["revision"] == 4
    send(daemon, sink, store, submission(STRANGER, f"Re: {tid}", "Let me in.\n",
                                         [("evil.pdf", PDF)]), STRANGER)
    # Found by subject: the chair's notice of revision 4 may still be arriving (two
    # delivery connections), so "the last mail to the chair" is not necessarily this one.
    held_subject = f"a follow-up to {tid} is held"
    sink.wait_for(lambda s: sum(held_subject in str(m["Subject"])
                                for m in replies(s, CHAIR)) >= 2,
                  description="the held follow-up notices to the chair")
    notices = [text_of(m) for m in replies(sink, CHAIR) if held_subject in str(m["Subject"])]
    assert any(STRANGER in t and "neither its author" in t for t in notices)
    assert any(EDITOR in t and "may be forged" in t for t in notices)
    [row] = listing(cli)
    assert (row["revision"], row["held_follow_ups"]) == (4, 2)
    shown = json.loads(cli("submissions", "show", tid, "--json").output)
    held = [r for r in shown["revisions"] if r["status"] == "held"]
    assert [(r["sender"], r["revision"]) for r in held] == [(EDITOR, None), (STRANGER, None)]
    assert sink.messages_for(STRANGER) == []
    # The author is told, once a day however many are held (forged follow-ups must not use up
    # her cap on automatic mail), with nothing the held mail said.
    wait_settled(store)
    [told] = _mail_with_subject(sink, JANE, "a follow-up is held")
    assert "Let me in" not in text_of(told) and STRANGER not in text_of(told)
    # The chair makes the editor's held follow-up revision 5 and drops the stranger's.
    editors, strangers = held[0]["id"], held[1]["id"]
    assert f"approve-follow-up {tid} {editors}" in " ".join(notices)
    assert "is revision 5" in cli("submissions", "approve-follow-up", tid, editors).output
    assert "discarded" in cli("submissions", "discard-follow-up", tid, strangers).output
    [row] = listing(cli)
    assert (row["revision"], row["held_follow_ups"]) == (5, 0)
    # The CLI queues the acknowledgement; the sink gets it a moment later.
    sink.wait_for(lambda s: any("Your submission" in str(m["Subject"])
                                and "(revision 5)" in str(m["Subject"])
                                for m in replies(s, EDITOR)),
                  description="the acknowledgement of revision 5")
    again = cli("submissions", "approve-follow-up", tid, strangers, ok=False)
    assert again.exit_code != 0 and f"no held follow-up {strangers}" in again.output


# -- issue 14, acceptance 2: a forged revision is held ------------------------------------------


@pytest.mark.both_backends
def test_a_forged_revision_is_held_and_the_author_told_a_reply_to_the_ack_is_revision_2(
        cli, shma, daemon, sink, store, settings):
    cli("members", "add", shma, JANE, "--name", "Jane Doe", "--no-welcome")
    send(daemon, sink, store, submission(JANE, "Our tool library", "The first draft.\n",
                                         [("draft.pdf", PDF)]), JANE)
    ack = wait_replies(sink, JANE, 1)[-1]
    tid = f"SHMA-{datetime.now(UTC).year}-001"
    assert tid in ack["Subject"]
    # Mallory forges Jane's From (and envelope): SHMA-YYYY-001 "revised".
    forged = submission(JANE, f"{tid} revised", "FORGED TEXT: replace it with this.\n",
                        [("takeover.pdf", PDF + b"%forged")])
    send(daemon, sink, store, forged, JANE)
    [told] = _mail_with_subject(sink, JANE, "a follow-up is held")
    assert tid in told["Subject"]
    assert "FORGED" not in told.as_string() and "takeover" not in told.as_string()
    [notice] = _mail_with_subject(sink, CHAIR, f"a follow-up to {tid} is held")
    assert "may be forged" in text_of(notice)
    [row] = listing(cli)
    assert (row["revision"], row["held_follow_ups"], row["files"]) == (1, 1, ["draft.pdf"])
    assert not (settings.data_dir / "submissions" / tid / "rev-2").exists()
    # Jane replies to the acknowledgement with a new attachment: revision 2.
    send(daemon, sink, store, submission(JANE, f"Re: {ack['Subject']}", "Here is v2.\n",
                                         [("draft-v2.pdf", PDF + b"%v2")],
                                         In_Reply_To=ack["Message-ID"],
                                         References=ack["Message-ID"]), JANE)
    [second] = _mail_with_subject(sink, JANE, "(revision 2)")
    assert tid in second["Subject"]
    [row] = listing(cli)
    assert (row["revision"], row["files"]) == (2, ["draft-v2.pdf"])
    assert (settings.data_dir / "submissions" / tid / "rev-2" / "draft-v2.pdf").read_bytes() \
        == PDF + b"%v2"


# -- issue 16: the chair decides a held follow-up by replying to its notice --------------------


def _answer_notice(daemon, sink, store, notice, body: str, sender: str = CHAIR) -> None:
    """Reply to the chair's notice as a mail client does: the answer on top, the notice
    quoted below."""
    address = str(notice["Reply-To"])
    quoted = "\n".join(f"> {line}" for line in
                       notice.get_body(("plain",)).get_content().splitlines())
    msg = make_message(sender=sender, to=address, subject=f"Re: {notice['Subject']}",
                       body=f"{body}\n\nOn Sunday, the list wrote:\n{quoted}\n",
                       In_Reply_To=str(notice["Message-ID"]))
    handled = _handled(store)
    assert lmtp_send(daemon.ports["lmtp"], sender, [address], msg) == {}
    wait_handled(sink, store, handled + 1)


@pytest.mark.both_backends
def test_a_held_follow_up_is_approved_or_discarded_by_the_chairs_reply(
        cli, shma, daemon, sink, store, settings, backend):
    cli("members", "add", shma, JANE, "--name", "Jane Doe", "--no-welcome")
    send(daemon, sink, store, submission(JANE, "Our tool library", "The first draft.\n",
                                         [("draft.pdf", PDF)]), JANE)
    tid = f"SHMA-{datetime.now(UTC).year}-001"
    held = f"a follow-up to {tid} is held"
    send(daemon, sink, store, submission(JANE, f"{tid} revised", "Version two.\n",
                                         [("v2.pdf", PDF + b"%v2")]), JANE)
    [first] = _mail_with_subject(sink, CHAIR, held)
    assert str(first["Reply-To"]).startswith("shma-confirm+")
    assert "approve" in text_of(first) and "discard" in text_of(first)

    # A reply from someone who is not an owner or moderator changes nothing.
    _answer_notice(daemon, sink, store, first, "approve", sender=STRANGER)
    [row] = listing(cli)
    assert (row["revision"], row["held_follow_ups"]) == (1, 1)
    assert replies(sink, STRANGER) == []

    before = len(replies(sink, CHAIR))
    _answer_notice(daemon, sink, store, first, "Approve")
    [row] = listing(cli)
    assert (row["revision"], row["held_follow_ups"], row["files"]) == (2, 0, ["v2.pdf"])
    result = wait_replies(sink, CHAIR, before + 1)[-1]
    assert "is revision 2" in text_of(result)

    send(daemon, sink, store, submission(JANE, f"{tid} again", "Another forgery.\n", []),
         JANE)
    def notices(s) -> list:
        return [m for m in replies(s, CHAIR) if str(m["Subject"]).startswith(held[:5])
                or held in str(m["Subject"]) and "Re:" not in str(m["Subject"])]

    sink.wait_for(lambda s: len(notices(s)) == 2, description="the second held notice")
    second = notices(sink)[-1]
    assert second["Reply-To"] != first["Reply-To"]
    before = len(replies(sink, CHAIR))
    _answer_notice(daemon, sink, store, second, "discard")
    wait_replies(sink, CHAIR, before + 1)
    [row] = listing(cli)
    assert (row["revision"], row["held_follow_ups"]) == (2, 0)
    shown = json.loads(cli("submissions", "show", tid, "--json").output)
    assert [r["status"] for r in shown["revisions"]] == ["stored", "stored", "discarded"]
    log = json.loads(cli("log", "--json", "--limit", "100").output)
    assert {"column-follow-up-approved", "column-follow-up-discarded"} <= {
        e["action"] for e in log}


# -- files appear with the commit (issue 13) ------------------------------------------------------


def _inbound(store):
    from listserv.store.models.core import Inbound

    with store.reading() as session:
        return session.scalars(select(Inbound)).one()


@pytest.mark.parametrize("failure", ["transient", "bug"])
def test_a_rolled_back_submission_leaves_no_files_and_its_retry_stores_them_once(
        cli, desk, daemon, sink, store, settings, clock, monkeypatch, failure):
    """A failure after the files were written rolls them back with the rows: a transient
    one (the whole unit of work; retried later) or a bug (the handler's savepoint; the row is
    marked failed in the same commit, and `queue retry` runs it again)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from listserv.column import submissions as column

    real_notify, calls = column.notify, []

    def notify_failing_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            if failure == "transient":
                raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
            raise KeyError("a bug after the files were written")
        return real_notify(*args, **kwargs)

    monkeypatch.setattr(column, "notify", notify_failing_once)
    submissions = settings.data_dir / "submissions"
    lmtp_send(daemon.ports["lmtp"], JANE, [COLUMN],
              submission(JANE, "Our tool library", "v1\n", [("draft.docx", docx_bytes())]))
    if failure == "transient":
        sink.wait_for(lambda s: _inbound(store).attempts == 1, description="a failed try")
    else:
        sink.wait_for(lambda s: _inbound(store).status == "failed", description="failed")
    assert len(calls) == 1
    assert _tree(submissions) == set() and listing(cli) == []

    if failure == "transient":
        clock.advance(timedelta(minutes=1))
        daemon.route_wake.set()
    else:
        cli("queue", "retry", f"in-{_inbound(store).id}")
    sink.wait_for(lambda s: _inbound(store).status == "done", description="handled")
    tid = tracking_id()
    [row] = listing(cli)
    assert (row["id"], row["files"]) == (tid, ["draft.docx"])
    folder = submissions / tid / "rev-1"
    assert _tree(submissions) == {folder / "message.eml", folder / "message.txt",
                                  folder / "draft.docx"}
    assert (folder / "draft.docx").read_bytes() == docx_bytes()
    assert {p.stat().st_mode & 0o777 for p in _tree(submissions)} == {0o600}
    assert wait_replies(sink, JANE, 1)[-1]["Subject"] == f"Your submission {tid}: Our tool library"


def test_staged_folders_follow_the_transaction_and_its_savepoints(store, tmp_path):
    from listserv.store.staging import staged_folder

    final, staging = tmp_path / "final", tmp_path / "staging"
    with store.unit_of_work() as session:
        kept = staged_folder(session, final / "kept", staging)
        (kept / "a").write_bytes(b"a")
        with pytest.raises(KeyError), session.begin_nested():
            dropped = staged_folder(session, final / "dropped", staging)
            (dropped / "b").write_bytes(b"b")
            raise KeyError("the savepoint rolls back")
        assert not dropped.exists() and kept.exists() and not final.exists()
        with session.begin_nested():  # a savepoint that is released: part of the commit
            (staged_folder(session, final / "released", staging) / "c").write_bytes(b"c")
    assert _tree(final) == {final / "kept" / "a", final / "released" / "c"}
    assert list(staging.iterdir()) == []

    with pytest.raises(KeyError), store.unit_of_work() as session:
        (staged_folder(session, final / "never", staging) / "d").write_bytes(b"d")
        raise KeyError("everything rolls back")
    assert not (final / "never").exists() and list(staging.iterdir()) == []


# -- acceptance 5 ----------------------------------------------------------------------------------


def test_decline_mails_the_reason_publish_records_the_issue_export_writes_folder_and_zip(
        cli, desk, daemon, sink, store, tmp_path):
    deadline = (datetime.now(UTC) + timedelta(days=30)).date()
    cli("lists", "set", desk, "column.deadlines", deadline.strftime("%m-%d"))
    send(daemon, sink, store, submission(f"Jane Doe <{JANE}>", "Tool library",
                                         "Intro words here.\n",
                                         [("story.docx", docx_bytes()), ("Story.pdf", PDF)]),
         JANE)
    send(daemon, sink, store, submission(STRANGER, "Spam?", "Buy now.\n", []), STRANGER)
    send(daemon, sink, store, submission(JANE, "Second piece", "Short.\n", []), JANE)
    first, second, third = (tracking_id(number=n) for n in (1, 2, 3))
    assert {r["deadline"] for r in listing(cli)} == {deadline.isoformat()}

    out = cli("submissions", "decline", second, "--reason",
              "The column only takes pieces about the group's projects.").output
    assert f"declined {second}" in out
    declined = wait_replies(sink, STRANGER, 2)[-1]
    assert "The column only takes pieces about the group's projects." in text_of(declined)
    assert "not able to include it" in text_of(declined)
    cli("submissions", "accept", first)
    cli("submissions", "publish", first, "--issue", "Winter 2027")
    [published] = listing(cli, "--status", "published")
    assert (published["id"], published["issue"]) == (first, "Winter 2027")
    assert [r["id"] for r in listing(cli, "--status", "declined")] == [second]
    assert cli("submissions", "accept", second, ok=False).exit_code != 0

    folder = tmp_path / "export"
    cli("submissions", "export", "--deadline", deadline.isoformat(), "--to", str(folder))
    index = json.loads((folder / "index.json").read_text())
    assert [i["id"] for i in index] == [first, third]  # the declined one is left out
    entry = index[0]
    assert (entry["title"], entry["author"], entry["sender"]) == ("Tool library", "Jane Doe",
                                                                 JANE)
    assert entry["word_count"] == 3 + 10  # the mail's text and the .docx
    assert {f["name"] for f in entry["files"]} == {"story.docx", "Story.pdf"}
    assert (folder / first / "story.docx").read_bytes() == docx_bytes()
    assert (folder / first / "text.txt").read_text().startswith("Intro words here.")
    md = (folder / "index.md").read_text()
    assert f"## {first}: Tool library" in md and "Words: 13" in md

    archive = tmp_path / "deadline.zip"
    cli("submissions", "export", "--deadline", deadline.strftime("%m-%d"), "--to", str(archive))
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert "index.md" in names and "index.json" in names
        assert f"{first}/story.docx" in names and f"{first}/Story.pdf" in names
        assert len({n.casefold() for n in names}) == len(names)
        assert not any(n.startswith("/") or ".." in n.split("/") for n in names)
        assert json.loads(z.read("index.json"))[1]["id"] == third
    one = tmp_path / "one.zip"
    cli("submissions", "export", third, "--to", str(one))
    with zipfile.ZipFile(one) as z:
        assert f"{third}/text.txt" in z.namelist()
    again = cli("submissions", "export", third, "--to", str(one), ok=False)
    assert again.exit_code != 0 and "exists already" in again.output


def test_decisions_take_several_ids_or_all_and_name_the_ones_not_done(
        cli, desk, daemon, sink, store):
    for n in range(4):
        send(daemon, sink, store, submission(JANE, f"Piece {n}", "Words.\n", []), JANE)
    one, two, three, four = (tracking_id(number=n) for n in (1, 2, 3, 4))

    out = cli("submissions", "accept", one, two).output
    assert f"accepted {one}" in out and f"accepted {two}" in out
    mixed = cli("submissions", "accept", two, three, ok=False)
    assert mixed.exit_code != 0
    assert f"{two}: submission {two} is accepted" in mixed.output
    assert "1 of 2 not done" in mixed.output
    assert {r["id"] for r in listing(cli, "--status", "accepted")} == {one, two, three}

    cli("submissions", "decline", "--all", "--reason", "Full for this issue.")
    assert [r["id"] for r in listing(cli, "--status", "declined")] == [four]
    sink.wait_for(lambda _: any("Full for this issue." in text_of(m) for m in replies(sink, JANE)),
                  description="the courteous reply to the author")
    assert "no received submissions are waiting" in cli(
        "submissions", "accept", "--all", ok=False).output

    cli("submissions", "publish", "--all", "--list", desk, "--issue", "Spring 2027")
    assert {r["id"] for r in listing(cli, "--status", "published")} == {one, two, three}
    usage = cli("submissions", "publish", one, "--all", "--issue", "X", ok=False)
    assert usage.exit_code != 0 and "not both" in usage.output


def test_export_refuses_unsafe_or_colliding_names():
    from listserv.column.export import _check_names
    from listserv.errors import ListservError

    for bad in (["../x"], ["/etc/x"], ["a/./b"], ["C:/x"], ["A/b.pdf", "a/B.pdf"]):
        with pytest.raises(ListservError):
            _check_names(bad)
    _check_names(["a/b.pdf", "a/c.pdf", "index.md"])


# -- acceptance 6 ----------------------------------------------------------------------------------


def _calls(sink) -> list:
    return [parse(d.data) for d in sink.deliveries
            if parse(d.data)["Subject"].startswith("[shma] Call for submissions")]


@pytest.mark.both_backends
def test_the_call_goes_out_21_days_before_exactly_once_across_a_restart_and_the_chair_gets_the_summary(  # noqa: E501
        cli, desk, daemon, sink, store, settings, clock):
    cli("members", "add", desk, "ken@example.net", "--no-welcome")
    now = clock.now()
    deadline = (now + timedelta(days=30)).date()
    cli("lists", "set", desk, "column.deadlines", deadline.strftime("%m-%d"))
    daemon.run_scheduler()
    assert _calls(sink) == []

    clock.advance(timedelta(days=8))  # 22 days before: not yet
    daemon.run_scheduler()
    assert _calls(sink) == []
    start = datetime.combine(deadline, datetime.min.time(), tzinfo=UTC)
    clock.advance(start - timedelta(days=21) - clock.now() + timedelta(minutes=1))
    daemon.run_scheduler()
    sink.wait_for(lambda s: len(_calls(s)) >= 2, description="the call to both members")
    call = _calls(sink)[0]
    body = text_of(call)
    assert "The Commons Page" in call["Subject"]
    assert f"{deadline.day} {deadline:%B %Y}" in body
    assert COLUMN in body and "How to submit" in body
    assert call["List-Id"] == "<shma.lists.example.org>"
    # Dated by the daemon's clock (three weeks ahead of the wall clock), not the wall clock.
    assert abs(utc_date(call) - clock.now()) < timedelta(minutes=5)
    daemon.run_scheduler()

    # A restart: a new daemon on the same store and a clock a day later sends nothing again.
    daemon.stop()
    from listserv.clock import FakeClock

    later = FakeClock(clock.now() + timedelta(days=1), running=True)
    second = Daemon(settings, clock=later).start()
    try:
        second.run_scheduler()
        with store.unit_of_work() as session:
            assert len(session.scalars(select(Once).where(Once.kind == "column-call")).all()) \
                == 1
        assert len(_calls(sink)) == 2

        send(second, sink, store, submission(JANE, "In time", "x\n", []), JANE)
        later.advance(start - later.now() + timedelta(hours=1))
        second.run_scheduler()
        # By subject: the submission's notice to the chair may still be on its way.
        sink.wait_for(lambda s: any("is today" in m["Subject"] for m in replies(s, CHAIR)),
                      description="the deadline summary")
        [summary] = [m for m in replies(sink, CHAIR) if "is today" in m["Subject"]]
        assert abs(utc_date(summary) - later.now()) < timedelta(minutes=5)
        text = text_of(summary)
        assert "Received: 1" in text and "Pending: 1" in text and "Accepted: 0" in text
        assert tracking_id() in text
        second.run_scheduler()
        assert len(_calls(sink)) == 2
        # Once, whatever else the chair got meanwhile (notices arrive over several connections).
        assert sum("is today" in m["Subject"] for m in replies(sink, CHAIR)) == 1
    finally:
        second.stop()


def test_column_settings_are_checked_and_shown(cli, shma):
    info = json.loads(cli("lists", "show", shma, "--json").output)
    assert (info["column.call_days"], info["column.max_file_kb"], info["column.max_total_kb"]) \
        == (21, 10240, 20480)
    assert info["column.name"] == ""
    assert info["column.editors"] == info["column.deadlines"] == []
    cli("lists", "set", shma, "column.deadlines", "12-01, 03-1,02-29")
    info = json.loads(cli("lists", "show", shma, "--json").output)
    assert info["column.deadlines"] == ["02-29", "03-01", "12-01"]
    for key, value in (("column.deadlines", "13-01"), ("column.prefix", "T/CP"),
                       ("column.editors", "not-an-address"), ("column.call_days", "-1"),
                       ("column.max_file_kb", "0"), ("column.types", "exe")):
        result = cli("lists", "set", shma, key, value, ok=False)
        assert result.exit_code != 0 and key in result.output
        assert "Traceback" not in result.output
    assert "no submission" in cli("submissions", "show", "TCP-2027-999", ok=False).output


def test_a_single_part_pdf_mail_keeps_the_pdf():
    from email import message_from_bytes, policy

    from listserv.column.submissions import _leaf_parts

    raw = (b"From: a@example.net\r\nTo: x@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/pdf; name=\"p.pdf\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(PDF))
    msg = message_from_bytes(raw, policy=policy.default)
    assert [p.get_payload(decode=True) for p in _leaf_parts(msg)] == [PDF]
    html = message_from_bytes(b"From: a@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
                              b"Content-Type: text/html\r\n\r\n<p>Hello</p>\r\n",
                              policy=policy.default)
    assert _leaf_parts(html) == []


def test_a_held_follow_up_is_listed_in_the_chairs_daily_summary(cli, shma, daemon, sink, store,
                                                                 clock):
    """SPEC §2: every held item appears in the daily summary while it waits; a held follow-up
    is listed there with how to decide it (its own notice, or the command line)."""
    cli("members", "add", shma, JANE, "--name", "Jane Doe", "--no-welcome")
    send(daemon, sink, store, submission(JANE, "Our tool library", "The first draft.\n", []),
         JANE)
    tid = f"SHMA-{datetime.now(UTC).year}-001"
    send(daemon, sink, store, submission(JANE, f"{tid} revised", "Version two.\n", []), JANE)
    _mail_with_subject(sink, CHAIR, f"a follow-up to {tid} is held")
    [held] = [r for r in json.loads(cli("submissions", "show", tid, "--json").output)["revisions"]
              if r["status"] == "held"]
    clock.advance(timedelta(days=1))
    daemon.run_scheduler()
    [summary] = _mail_with_subject(sink, CHAIR, "waiting for your decision")
    assert f"{tid} follow-up {held['id']} from {JANE}" in text_of(summary)
    assert "approve-follow-up" in text_of(summary)
