"""Privacy commands (issue 14, acceptance 7): `members data` and `members remove --forget`.

A person is seeded through the product (the CLI, and real mail over LMTP to a running daemon:
a post, a held post, a request to join, a column submission with a file, a peer-input request,
a delivery report), then what the store and the data folder hold is read independently of the
code under test: every row of every table, every byte of the SQLite file and of every file.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, DateTime, Float, Integer, LargeBinary, String, select

from listserv.chair import forget, privacy
from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.meetings.times import zone
from listserv.store.models.base import Base
from listserv.store.models.core import Member, Request

from .helpers import (
    LIST,
    inbound_outcomes,
    lmtp_send,
    make_message,
    parse,
    wait_settled,
    wait_until,
)
from .test_bounces_corpus import CORPUS
from .test_column import PDF, submission

JANE = "jane.private@example.net"
OTHER = "other@lists.example.org"
COLUMN = "shma-column@lists.example.org"
PEER_INPUT = "shma-peer-input@lists.example.org"


# -- reading everything, independently of the code under test -----------------------------------


def rows_naming(store, address: str) -> set[tuple[str, int]]:
    """(table, id) of every row, in every table of the schema, with a value naming `address`."""
    needle = address.lower()
    found = set()
    with store.reading() as session:
        for table in Base.metadata.sorted_tables:
            (key,) = table.primary_key.columns
            for row in session.execute(select(table)).mappings():
                for value in row.values():
                    if isinstance(value, bytes):
                        text = value.decode("utf-8", "replace")
                    elif isinstance(value, dict | list):
                        text = json.dumps(value)
                    else:
                        text = str(value)
                    if needle in text.lower():
                        found.add((table.name, row[key.name]))
    return found


def files_naming(folder: Path, address: str) -> set[str]:
    """Files under `folder` whose name or bytes name `address` (any case)."""
    needle = address.lower()
    return {str(path) for path in folder.rglob("*") if path.is_file()
            and (needle in str(path).lower() or needle.encode() in path.read_bytes().lower())}


def as_json(cli, *args: str) -> Any:
    return json.loads(cli(*args).output)


# -- seeding a person across every table -----------------------------------------------------------


def deliver(daemon, sink, store, mail_from: str, to: str, data: bytes) -> None:
    handled = sum(1 for status, _ in inbound_outcomes(store) if status != "new")
    assert lmtp_send(daemon.ports["lmtp"], mail_from, [to], data) == {}
    sink.wait_for(lambda s: sum(1 for st, _ in inbound_outcomes(store) if st != "new")
                  > handled, description=f"the mail to {to} handled")


def mail(to: str, subject: str, body: str) -> bytes:
    return make_message(sender=f"Jane Private <{JANE}>", to=to, subject=subject, body=body)


def seed(cli, daemon, sink, store) -> None:
    cli("lists", "create", OTHER, "--owner", "chair@example.org")
    cli("members", "add", LIST, JANE, "--name", "Jane Private")  # a welcome: automatic mail
    sink.wait_for(lambda s: s.messages_for(JANE), description="the welcome")
    local = (datetime.now(UTC) + timedelta(days=20)).astimezone(zone("Europe/Berlin"))
    cli("meetings", "schedule", LIST, "--at", local.strftime("%Y-%m-%d %H:%M"),
        "--tz", "Europe/Berlin", "--duration", "60")
    deliver(daemon, sink, store, JANE, PEER_INPUT,
            mail(PEER_INPUT, "Tool library", "How do we lend tools?\nminutes: 20\n"))
    # The request proves nothing: it is booked once she confirms (SPEC §2).
    def confirmations() -> list[str]:
        return [str(m["Reply-To"]) for m in map(parse, (d.data for d in sink.messages_for(JANE)))
                if "peer-input request" in str(m["Subject"])]

    sink.wait_for(lambda s: confirmations(), description="the peer-input confirmation")
    [confirm] = confirmations()
    deliver(daemon, sink, store, JANE, confirm, mail(confirm, "Re: confirm", "OK\n"))
    deliver(daemon, sink, store, JANE, COLUMN,
            submission(f"Jane Private <{JANE}>", "Our tool library", "A story.\n",
                       [("story.pdf", PDF)]))
    deliver(daemon, sink, store, JANE, LIST, mail(LIST, "Hello all", "A post to the list.\n"))
    deliver(daemon, sink, store, JANE, OTHER, mail(OTHER, "Hello other", "Held: not a member\n"))
    deliver(daemon, sink, store, JANE, "other-request@lists.example.org",
            mail("other-request@lists.example.org", "", "subscribe\n"))
    with store.reading() as session:
        token = session.scalar(select(Member.bounce_token).where(Member.email == JANE))
    report = (CORPUS / "postfix-permanent-user-unknown.eml").read_bytes()
    deliver(daemon, sink, store, "", f"shma-bounces+{token}@lists.example.org",
            report.replace(b"bob@example.net", JANE.encode()))
    wait_settled(store)


# -- the checks ------------------------------------------------------------------------------------


def test_every_column_is_read_by_the_scans():
    """A new table or column holding text or mail is scanned without anyone remembering to:
    text columns by `privacy.mentions`, message bytes by `privacy.raw_mentions`."""
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            name = f"{table.name}.{column.name}"
            kind = privacy.stored_type(column)
            if isinstance(kind, LargeBinary):
                assert name in privacy.MESSAGE_BYTES, f"{name}: bytes that no scan reads"
            else:
                assert isinstance(kind, (*privacy.TEXT_TYPES, Integer, Float, Boolean,
                                         DateTime)), name


def test_every_table_with_an_address_column_has_its_section_in_members_data():
    """An address column (String(320), the longest address) puts its table in a section of
    `members data` by name; a new one fails here until it gets one (`privacy.SECTIONS`)."""
    with_addresses = {table.name for table in Base.metadata.sorted_tables
                      for column in table.columns
                      if isinstance(column.type, String) and column.type.length == 320}
    assert with_addresses >= {"members", "requests", "held", "column_submissions"}
    # Revisions are listed with their submission (or under revisions_of_others).
    assert with_addresses - {"column_revisions"} <= set(privacy.SECTIONS)


@pytest.mark.both_backends
def test_members_data_lists_every_record_of_a_person(cli, shma, daemon, sink, store, settings):
    seed(cli, daemon, sink, store)
    data = as_json(cli, "members", "data", JANE.upper())

    assert data["email"] == JANE
    assert [(m["list"], m["name"]) for m in data["memberships"]] == [(LIST, "Jane Private")]
    assert [(r["list"], r["kind"], r["status"]) for r in data["requests"]] \
        == [(LIST, "peer_input", "done"), (OTHER, "subscribe", "confirming")]
    [piece] = data["submissions"]
    [revision] = piece["revisions"]
    assert piece["title"] == "Our tool library"
    assert any(f.endswith(".pdf") for f in revision["files"])
    assert all(Path(f).is_file() and Path(f).is_relative_to(settings.data_dir)
               for f in revision["files"])
    assert [p["project"] for p in data["peer_input"]] == ["Tool library"]
    assert [e["kind"] for e in data["bounces"]["events"]] == ["permanent"]
    assert data["bounces"]["scores"][0]["score"] == 1.0
    assert [(h["list"], h["subject"]) for h in data["held"]] == [(OTHER, "Hello other")]
    assert {"welcome"} <= {m["kind"] for m in data["automatic_mail"]}
    # peer input and its confirmation, column, post, held post, request, report
    assert len(data["inbound"]) == 7
    assert data["outgoing"] and all(r["email"] == JANE for r in data["outgoing"])
    assert data["outgoing_mentions"]
    assert {"member-added", "column-submission"} <= {e["action"] for e in data["log"]}

    # Nothing in any table names her that the listing leaves out.
    naming = rows_naming(store, JANE)
    assert {"members", "requests", "column_submissions", "column_revisions", "peer_input",
            "bounce_events", "held", "auto_mail", "inbound", "out_recipients", "out_messages",
            "audit_log"} <= {table for table, _ in naming}
    others = {(m["table"], m["id"]) for m in data["other_mentions"]}
    assert naming <= privacy.listed(data) | others


@pytest.mark.both_backends
def test_forget_leaves_the_address_nowhere_and_the_log_a_pseudonym(cli, shma, daemon, sink,
                                                                   store, settings):
    seed(cli, daemon, sink, store)
    folder = settings.data_dir
    assert files_naming(folder / "submissions", JANE)  # her mail, stored with the piece
    log = as_json(cli, "log", "--limit", "1000", "--json")
    lines_before = [e for e in log if JANE in e["detail"]]

    done = as_json(cli, "members", "remove", LIST, JANE, "--forget", "--json")

    assert done["kept"] == []
    assert done["removed"]["memberships"] == 1
    for what in ("requests", "column_submissions", "column_revisions", "peer_input",
                 "bounce_events", "bounce_scores", "held", "automatic_mail", "inbound",
                 "out_recipients", "out_messages"):
        assert done["removed"].get(what), what
    alias = done["pseudonym"]
    assert re.fullmatch(r"forgotten-[0-9a-f]{16}", alias)
    assert rows_naming(store, JANE) == set()
    assert files_naming(folder, JANE) == set()
    assert not list((folder / "submissions").glob("SHMA-*/*"))  # the piece's files are gone
    if settings.sqlite_path is not None:
        for path in folder.glob("listserv.db*"):  # the file, its WAL: no stale bytes either
            assert JANE.encode() not in path.read_bytes().lower(), path

    # The log keeps its lines, with the pseudonym for her address.
    log = as_json(cli, "log", "--limit", "1000", "--json")
    with_alias = [e for e in log if alias in e["detail"]]
    assert len(with_alias) >= len(lines_before) + 1
    assert log[-1]["action"] == "member-forgotten" and alias in log[-1]["detail"]
    # Typing her address again finds only those lines (by the same pseudonym).
    again = as_json(cli, "members", "data", JANE)
    assert [e["id"] for e in again["log"]] == [int(e["id"]) for e in with_alias]
    assert all(not again[section] for section in privacy.SECTIONS.values()
               if section != "log")


def test_a_published_piece_and_an_export_are_kept_and_reported(cli, shma, daemon, sink, store,
                                                               settings, tmp_path):
    deliver(daemon, sink, store, JANE, COLUMN,
            submission(f"Jane Private <{JANE}>", "Published piece", "Text.\n",
                       [("piece.pdf", PDF)]))
    cli("submissions", "publish", "1", "--issue", "Spring 2026")
    export = tmp_path / "export"
    cli("submissions", "export", "1", "--to", str(export))
    cli("members", "add", LIST, JANE, "--no-welcome")

    out = cli("members", "remove", LIST, JANE, "--forget").output

    assert "column piece SHMA-" in out and "published in Spring 2026" in out
    assert "the export of SHMA-" in out and str(export) in out
    kept_rows = {(table, int(n)) for table, n in re.findall(r"^    (\w+) #(\d+)$", out, re.M)}
    kept_files = set(re.findall(r"^    (/\S+)$", out, re.M))
    assert kept_rows and rows_naming(store, JANE) <= kept_rows
    database = {str(p) for p in settings.data_dir.glob("listserv.db*")}  # the kept rows
    assert files_naming(settings.data_dir, JANE) - database <= kept_files
    assert as_json(cli, "members", "list", LIST, "--json") == []
    [listed] = as_json(cli, "submissions", "list", "--json")
    assert listed["status"] == "published"


def test_forget_numbers_no_other_piece_with_a_forgotten_id(cli, shma, daemon, sink, store):
    deliver(daemon, sink, store, JANE, COLUMN,
            submission(f"Jane Private <{JANE}>", "First", "Text.\n", []))
    [first] = as_json(cli, "submissions", "list", "--json")
    cli("members", "remove", LIST, JANE, "--forget")
    assert as_json(cli, "submissions", "list", "--json") == []
    deliver(daemon, sink, store, "ken@example.net", COLUMN,
            submission("ken@example.net", "Second", "Text.\n", []))
    [second] = as_json(cli, "submissions", "list", "--json")
    assert second["id"] != first["id"]


@pytest.mark.both_backends
def test_an_old_undo_does_not_bring_back_someone_the_chair_removed(cli, shma, daemon, sink,
                                                                   store):
    cli("lists", "set", LIST, "policy", "confirm+approve")
    cli("members", "add", LIST, JANE)
    sink.wait_for(lambda s: s.messages_for(JANE), description="the welcome")
    welcome = parse(sink.messages_for(JANE)[0].data).get_content()
    leave = re.search(r"(shma-leave\+[a-z0-9]+@lists\.example\.org)", welcome).group(1)
    deliver(daemon, sink, store, JANE, leave, mail(leave, "unsubscribe", ""))
    sink.wait_for(lambda s: len(s.messages_for(JANE)) >= 2, description="the goodbye")
    undo = str(parse(sink.messages_for(JANE)[1].data)["Reply-To"])
    assert undo.startswith("shma-confirm+")
    # She is added again (say, approved later), then the chair removes her.
    cli("members", "add", LIST, JANE, "--no-welcome")
    cli("members", "remove", LIST, JANE)

    deliver(daemon, sink, store, JANE, undo, mail(undo, "Re: You have left", "undo\n"))

    assert as_json(cli, "members", "list", LIST, "--json") == []
    with store.reading() as session:
        statuses = set(session.scalars(select(Request.status).where(Request.email == JANE)))
    assert statuses == {"revoked"}
    assert as_json(cli, "log", "--json")[-1]["action"] == "confirm-unknown"


def test_someone_elses_mail_naming_them_is_kept_until_it_is_done_with(cli, shma, daemon, sink,
                                                                      store):
    request_address = "shma-request@lists.example.org"
    cli("members", "add", LIST, JANE, "--no-welcome")
    # Ken, not a member, posts about Jane: held, waiting for the chair.
    deliver(daemon, sink, store, "ken@example.net", LIST,
            make_message(sender="ken@example.net", subject="About Jane",
                         body=f"Write to {JANE} about it.\n"))
    # Jane asks for Bob to be subscribed: that confirmation is Bob's.
    deliver(daemon, sink, store, JANE, request_address,
            mail(request_address, "", "subscribe shma bob@example.net\n"))
    wait_settled(store)

    first = as_json(cli, "members", "remove", LIST, JANE, "--forget", "--json")

    [held] = first["kept"]
    assert held["what"].startswith("post #") and "ken@example.net" in held["what"]
    assert "waiting for a decision" in held["why"]
    with store.reading() as session:
        [bob] = session.scalars(select(Request).where(Request.email == "bob@example.net"))
        assert (bob.status, bob.requested_by) == ("confirming", first["pseudonym"])
    [waiting] = as_json(cli, "held", "list", "--json")
    cli("held", "discard", waiting["id"])

    second = as_json(cli, "members", "remove", LIST, JANE, "--forget", "--json")

    assert second["kept"] == [] and second["removed"]["inbound"] == 1
    assert second["pseudonym"] == first["pseudonym"]  # stable
    assert rows_naming(store, JANE) == set()


def test_outbox_files_only_for_them_go_and_the_others_are_kept(config_path, cli, shma, store,
                                                               clock):
    config_path.write_text(config_path.read_text().replace('transport = "smtp"',
                                                           'transport = "maildir"'))
    settings = load_settings(config_path)
    outbox = settings.outbox_dir / "new"
    daemon = Daemon(settings, clock=clock).start()
    try:
        cli("members", "add", LIST, "ken@example.net", "--no-welcome")
        cli("members", "add", LIST, JANE)  # her welcome
        lmtp_send(daemon.ports["lmtp"], JANE, [LIST], mail(LIST, "Hello", "Hello Ken.\n"))
        # One copy each (personalised): hers, and Ken's, which names her in its From.
        wait_until(lambda: len(list(outbox.iterdir())) == 3 if outbox.is_dir() else 0,
                   what="three files in the outbox")
        wait_settled(store)
        hers = files_naming(outbox, JANE) - files_naming(outbox, "ken@example.net")

        done = as_json(cli, "members", "remove", LIST, JANE, "--forget", "--json")
    finally:
        daemon.stop()

    assert set(done["files_removed"]) >= hers and len(hers) == 2
    [kept] = done["kept"]
    assert kept["what"] == "a message in the outbox" and "other recipients" in kept["why"]
    assert files_naming(settings.data_dir, JANE) == set(kept["files"])
    assert rows_naming(store, JANE) == set()


def test_mail_that_comes_between_the_scan_and_the_forgetting_goes_too(cli, shma, daemon, sink,
                                                                      store, settings):
    """The stored messages are read before the write transaction (SQLite: the write lock is
    not held meanwhile); what arrives after that read is read inside it."""
    cli("members", "add", LIST, JANE, "--no-welcome")
    deliver(daemon, sink, store, JANE, LIST, mail(LIST, "Before", "Read ahead.\n"))
    wait_settled(store)
    with store.reading() as session:
        ahead = forget.scan_ahead(session, JANE)
    assert ahead is not None and len(ahead.inbound) == 1
    deliver(daemon, sink, store, "ken@example.net", "shma-request@lists.example.org",
            make_message(sender="ken@example.net", to="shma-request@lists.example.org",
                         subject="help", body=f"Is {JANE} on the list?\n"))
    wait_settled(store)

    with store.unit_of_work() as session:
        done = forget.forget(session, settings.data_dir, settings.outbox_dir, JANE, None,
                             datetime.now(UTC), "chair", ahead)

    assert done.removed["inbound"] == 2 and done.kept == []
    assert rows_naming(store, JANE) == set()


@pytest.mark.both_backends
def test_forget_removes_her_archived_posts_and_keeps_others_that_quote_her(cli, shma, daemon,
                                                                          sink, store):
    """SPEC §7: her posts leave the archive; a reply by someone else quoting her is the
    group's record, kept whole and reported (docs/archive.md)."""
    bob = "bob@example.net"
    cli("members", "add", LIST, JANE, "--name", "Jane Private", "--no-welcome")
    cli("members", "add", LIST, bob, "--no-welcome")
    deliver(daemon, sink, store, JANE, LIST, mail(LIST, "My news", "I moved house.\n"))
    deliver(daemon, sink, store, bob, LIST, make_message(
        sender=bob, to=LIST, subject="Re: My news",
        body=f"Jane Private <{JANE}> wrote:\n> I moved house.\nCongratulations!\n"))
    deliver(daemon, sink, store, bob, LIST, make_message(sender=bob, to=LIST,
                                                         subject="Other", body="Unrelated.\n"))
    wait_settled(store)
    data = as_json(cli, "members", "data", JANE)
    assert [(p["subject"], p["by_them"]) for p in data["archive"]] == [
        ("My news", True), ("Re: My news", False)]

    done = as_json(cli, "members", "remove", LIST, JANE, "--forget", "--json")

    assert done["removed"]["archived_posts"] == 1
    [kept] = done["kept"]
    quoted = data["archive"][1]["id"]
    assert kept["rows"] == [f"archived_posts #{quoted}"]
    assert f"archive remove {quoted}" in kept["why"]
    left = as_json(cli, "archive", "list", LIST, "--json")
    assert [p["subject"] for p in left] == ["Re: My news", "Other"]
    assert as_json(cli, "archive", "search", LIST, "moved", "--json")[0]["subject"] \
        == "Re: My news"
    assert rows_naming(store, JANE) == {("archived_posts", quoted)}
