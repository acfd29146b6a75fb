"""The archive (SPEC §3, §4): every distributed post kept as the members got it, searched,
exported as mboxrd, removed at the author's request (issue 17)."""

from __future__ import annotations

import json
import mailbox
import stat
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from listserv.archive import mboxrd, search
from listserv.store.models.archive import ArchivedPost
from listserv.store.models.core import Inbound, Member
from listserv.store.models.outgoing import OutMessage

from .helpers import LIST, lmtp_send, make_message, wait_settled, wait_until

JANE = "jane@example.org"
BOB = "bob@example.net"


def post(daemon, sender: str, subject: str, body: str, name: str = "", date: str = "",
         **headers: str) -> str:
    """A post to the list by LMTP (dated `date`, else now); returns its Message-ID."""
    data = make_message(sender=f"{name} <{sender}>" if name else sender, subject=subject,
                        body=body, **headers)
    if date:
        data = data.replace(b"\r\nDate: ", f"\r\nDate: {date}\r\nX-Was: ".encode(), 1)
    lmtp_send(daemon.ports["lmtp"], sender, [LIST], data)
    return data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()


def archived(cli, count: int) -> list[dict]:
    """The list's archive once it holds `count` posts."""
    return wait_until(lambda: (rows := json.loads(cli("archive", "list", LIST, "--json").output))
                      and len(rows) >= count and rows, what=f"{count} archived posts")


@pytest.fixture
def members(cli, shma):
    cli("members", "add", LIST, JANE, "--name", "Jane Doe", "--no-welcome")
    cli("members", "add", LIST, BOB, "--no-welcome")
    return shma


@pytest.mark.both_backends
def test_a_post_is_kept_as_distributed_without_any_members_token(cli, members, daemon, store):
    first = post(daemon, JANE, "Budget for spring", "Shall we meet in March?\n", name="Jane Doe")
    [row] = archived(cli, 1)
    assert (row["list"], row["sender"], row["subject"], row["message_id"], row["number"]) == (
        LIST, JANE, "Budget for spring", first, 1)
    assert row["name"] == "Jane Doe" and row["thread"] == first
    reply = post(daemon, BOB, "Re: [shma] Budget for spring", "March suits me.\n",
                 In_Reply_To=first, References=first)
    second = archived(cli, 2)[1]
    assert (second["message_id"], second["in_reply_to"], second["thread"]) == (
        reply, first, first)
    with store.reading() as session:
        kept = session.scalar(select(ArchivedPost).where(ArchivedPost.number == 1))
        queued = session.scalar(select(OutMessage.raw).where(OutMessage.kind == "post")
                                .order_by(OutMessage.id).limit(1))
        tokens = list(session.scalars(select(Member.leave_token)))
    # Exactly the bytes queued for the members (list headers, prefix, footer), none of
    # the per-member parts the delivery worker adds.
    assert kept.raw == queued
    assert b"List-Id: " in kept.raw and b"Subject: [shma] Budget for spring" in kept.raw
    assert not any(token.encode() in kept.raw for token in tokens)
    shown = cli("archive", "show", row["id"]).output
    assert "Shall we meet in March?" in shown and "From: " in shown


@pytest.mark.both_backends
def test_search_finds_a_post_by_a_word_of_its_body_best_match_first(cli, members, daemon):
    post(daemon, JANE, "Picnic", "Bring blankets; the orchard is lovely in June.\n")
    post(daemon, BOB, "Orchard visit", "The orchard, the orchard: who drives?\n")
    post(daemon, JANE, "Minutes", "Nothing about fruit trees here.\n")
    archived(cli, 3)
    found = json.loads(cli("archive", "search", LIST, "orchard", "--json").output)
    # The one with the word in its subject too ranks first.
    assert [r["subject"] for r in found] == ["Orchard visit", "Picnic"]
    assert set(found[0]) >= {"id", "list", "date", "sender", "subject", "message_id"}
    assert json.loads(cli("archive", "search", LIST, "blankets", "JUNE", "--json").output)[0][
        "subject"] == "Picnic"
    assert json.loads(cli("archive", "search", LIST, "blankets", "trees", "--json").output) == []
    # By the author's name, and whatever the chair types is only words.
    assert {r["subject"] for r in json.loads(
        cli("archive", "search", LIST, "bob", "--json").output)} == {"Orchard visit"}
    assert len(json.loads(cli("archive", "search", LIST, 'orchard\" (*', "--json").output)) == 2
    refused = cli("archive", "search", LIST, "?!", ok=False)
    assert refused.exit_code != 0 and "give one or more words" in refused.output


def test_export_writes_mboxrd_that_reads_back_byte_identical(cli, members, daemon, store,
                                                             tmp_path):
    tricky = ("From the chair: a line that mbox readers take for a separator\n"
              ">From a quoted one, quoted again on the way in\n"
              ">>From deeper\nFrom \n")
    post(daemon, JANE, "Tricky lines", tricky)
    post(daemon, BOB, "Plain", "Nothing odd.\n")
    post(daemon, JANE, "Latin-1 café", "Un café, s'il vous plaît.\n")
    archived(cli, 3)
    target = tmp_path / "shma.mbox"
    assert "wrote 3 posts" in cli("archive", "export", LIST, "--mbox", str(target)).output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = target.read_bytes()
    with store.reading() as session:
        kept = list(session.scalars(select(ArchivedPost.raw).order_by(ArchivedPost.date,
                                                                      ArchivedPost.id)))
    assert list(mboxrd.read(data, crlf=True)) == kept
    assert b"\n>From the chair" in data and b"\n>>From a quoted" in data
    box = mailbox.mbox(target, create=False)
    try:
        assert len(box) == 3
        assert [str(m["Subject"]) for m in box][0] == "[shma] Tricky lines"
    finally:
        box.close()


def test_export_and_list_take_a_period(cli, members, daemon, tmp_path):
    post(daemon, JANE, "Old news", "From last year.\n", date="Tue, 01 Dec 2026 09:00:00 +0000")
    post(daemon, BOB, "Newer", "From this week.\n")
    archived(cli, 2)
    rows = json.loads(cli("archive", "list", LIST, "--until", "2026-12-01", "--json").output)
    assert [r["subject"] for r in rows] == ["Old news"]
    rows = json.loads(cli("archive", "list", LIST, "--since", "2026-12-02", "--json").output)
    assert [r["subject"] for r in rows] == ["Newer"]
    out = tmp_path / "december.mbox"
    cli("archive", "export", LIST, "--mbox", str(out), "--since", "2026-12-01",
        "--until", "2026-12-01")
    box = mailbox.mbox(out, create=False)
    try:
        assert len(box) == 1
    finally:
        box.close()
    bad = cli("archive", "list", LIST, "--since", "yesterday", ok=False)
    assert bad.exit_code != 0 and "--since 'yesterday'" in bad.output


@pytest.mark.both_backends
def test_remove_takes_a_post_out_of_list_search_and_export_with_a_log_line(cli, members,
                                                                          daemon, tmp_path):
    post(daemon, JANE, "Regret", "Please forget my phone number 555-0100.\n")
    post(daemon, BOB, "Fine", "Keep this one.\n")
    first, _ = archived(cli, 2)
    out = cli("archive", "remove", first["id"]).output
    assert "withdrawn at the author's request" in out
    assert [r["subject"] for r in json.loads(cli("archive", "list", LIST, "--json").output)] \
        == ["Fine"]
    assert json.loads(cli("archive", "search", LIST, "555", "--json").output) == []
    [line] = json.loads(cli("log", "--action", "archive-removed", "--json").output)
    assert "withdrawn at the author's request" in line["detail"] and JANE in line["detail"]
    assert cli("archive", "show", first["id"], ok=False).output.strip() == (
        f"Error: no archived post {first['id']}")
    # The next post takes a new number: a removed number is never given again.
    post(daemon, JANE, "Again", "Hello.\n")
    assert archived(cli, 2)[-1]["number"] == 3


def test_a_list_with_archive_policy_none_keeps_nothing(cli, members, daemon, sink):
    cli("lists", "set", LIST, "archive.policy", "none")
    post(daemon, JANE, "Not kept", "Ephemeral.\n")
    sink.wait_for(lambda s: s.messages_for(BOB), description="the copy to bob")
    assert json.loads(cli("archive", "list", LIST, "--json").output) == []
    refused = cli("lists", "set", LIST, "archive.policy", "public", ok=False)
    assert "one of private, none" in refused.output


def test_a_held_post_is_archived_when_the_chair_approves_it(cli, members, daemon, sink):
    post(daemon, "guest@else.example", "Visiting in May",
         "I will be in Lisbon in May, if anyone is near.\n")
    [held] = wait_until(lambda: json.loads(cli("held", "list", "--json").output),
                        what="the held post")
    assert json.loads(cli("archive", "list", LIST, "--json").output) == []
    cli("held", "approve", held["id"])
    [row] = archived(cli, 1)
    assert (row["sender"], row["subject"]) == ("guest@else.example", "Visiting in May")


@pytest.mark.both_backends
def test_a_word_in_very_many_posts_is_ranked_among_the_newest_that_have_it(cli, members,
                                                                           daemon, monkeypatch):
    """Only the newest RANK_WINDOW matching posts are ranked (docs/archive.md): the oldest
    post, the best match by its subject, is outside a window of two."""
    monkeypatch.setattr(search, "RANK_WINDOW", 2)
    post(daemon, JANE, "Orchard orchard", "The orchard.\n")
    post(daemon, BOB, "Fruit", "An orchard.\n")
    post(daemon, JANE, "Trees", "Orchard trees.\n")
    archived(cli, 3)
    found = json.loads(cli("archive", "search", LIST, "orchard", "--json").output)
    assert sorted(r["subject"] for r in found) == ["Fruit", "Trees"]


@pytest.mark.both_backends
def test_deleting_a_list_deletes_its_archive_and_its_search_index(cli, members, daemon, store):
    post(daemon, JANE, "Farewell", "The last word.\n")
    archived(cli, 1)
    cli("lists", "delete", LIST, "--yes")
    with store.reading() as session:
        assert session.scalars(select(ArchivedPost)).all() == []
        if session.get_bind().dialect.name == "sqlite":  # the triggers follow the cascade
            assert session.execute(text(
                "SELECT rowid FROM archive_fts WHERE archive_fts MATCH 'farewell'")).all() == []


def test_the_retention_prunes_handled_mail_but_never_the_archive(cli, members, daemon, store):
    post(daemon, JANE, "Kept for good", "Past any retention.\n")
    archived(cli, 1)
    wait_settled(store)
    daemon.clock.advance(timedelta(days=400))
    daemon.run_scheduler()
    with store.reading() as session:
        assert session.scalars(select(Inbound)).one().raw == b""  # the incoming bytes went
        kept = session.scalars(select(ArchivedPost)).one()
    assert b"Past any retention." in kept.raw
    assert [r["subject"] for r in json.loads(
        cli("archive", "search", LIST, "retention", "--json").output)] == ["Kept for good"]
