"""Members read the archive by mail (SPEC §3, issue 17): `index` and `get N …` to `-request`,
LMTP in, the strict sink out; anyone else gets the help text and no post."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from listserv.store.models.archive import ArchivedPost

from .helpers import LIST, lmtp_send, make_message, parse, wait_settled, wait_until

REQUEST = "shma-request@lists.example.org"
JANE = "jane@example.org"
BOB = "bob@example.net"
VISITOR = "visitor@else.example"
SUBJECTS = ["Spring picnic", "Minutes of March", "Tool library hours", "Rides to the meeting"]


def send(daemon, sender: str, to: str, subject: str, body: str, name: str = "",
         **headers: str) -> str:
    data = make_message(sender=f"{name} <{sender}>" if name else sender, to=to,
                        subject=subject, body=body, **headers)
    lmtp_send(daemon.ports["lmtp"], sender, [to], data)
    return data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()


def mail_with(sink, address: str, words: str):
    """The mail to `address` whose subject has `words` (waiting for it)."""
    def found():
        return next((d for d in sink.messages_for(address)
                     if words in str(parse(d.data)["Subject"])), None)
    sink.wait_for(lambda _s: found(), description=f"a mail to {address} about {words!r}")
    delivery = found()
    return delivery, parse(delivery.data)


def text_of(msg) -> str:
    """The text part of a reply (the first, before any attached post)."""
    return msg.get_body(("plain",)).get_content()


def attached(msg) -> list:
    """The message/rfc822 parts of a mail, parsed."""
    return [part.get_payload()[0] for part in msg.walk()
            if part.get_content_type() == "message/rfc822"]


@pytest.fixture
def four_posts(cli, shma, daemon, sink, store):
    """Four posts by jane and bob, archived and delivered (the sink then forgets them)."""
    cli("members", "add", LIST, JANE, "--name", "Jane Doe", "--no-welcome")
    cli("members", "add", LIST, BOB, "--name", "Bob Roe", "--no-welcome")
    names = {JANE: "Jane Doe", BOB: "Bob Roe"}
    ids = [send(daemon, sender, LIST, subject, f"About {subject.lower()}.\n", names[sender])
           for sender, subject in zip([JANE, BOB, BOB, JANE], SUBJECTS, strict=True)]
    wait_until(lambda: len(json.loads(cli("archive", "list", LIST, "--json").output)) == 4,
               what="four archived posts")
    wait_settled(store)
    sink.clear()
    return ids


@pytest.mark.both_backends
def test_index_then_get_3_sends_the_third_post_to_her_only(cli, four_posts, daemon, sink,
                                                           store):
    send(daemon, JANE, REQUEST, "index", "index\n")
    _, index = mail_with(sink, JANE, "The latest posts")
    text = index.get_content()
    for number, subject in enumerate(SUBJECTS, start=1):
        assert f"{number:6d}  " in text and subject in text
    assert "Bob Roe" in text and "get 4" in text

    # A Reply-To naming someone else changes nothing: the posts go to her address only.
    send(daemon, JANE, REQUEST, "get", "get 3\n", Reply_To=VISITOR)
    delivery, reply = mail_with(sink, JANE, "Posts 3 from the shma archive")
    assert delivery.rcpt_tos == [JANE]
    [post] = attached(reply)
    assert str(post["Message-ID"]) == four_posts[2]
    assert str(post["Subject"]) == "[shma] Tool library hours"
    with store.reading() as session:
        kept = session.scalar(select(ArchivedPost.raw).where(ArchivedPost.number == 3))
    assert kept in delivery.data  # the archived bytes, as they are
    wait_settled(store)
    assert [d.rcpt_tos for d in sink.deliveries] == [[JANE], [JANE]]


def test_a_non_member_gets_the_help_text_and_no_post(cli, four_posts, daemon, sink, store):
    send(daemon, VISITOR, REQUEST, "index", "index\n")
    _, first = mail_with(sink, VISITOR, "Help for the shma list")
    assert "index" in first.get_content() and "get 3" in first.get_content()
    send(daemon, VISITOR, REQUEST, "", "get 3\n")
    sink.wait_for(lambda s: len(s.messages_for(VISITOR)) >= 2, description="the second help")
    wait_settled(store)
    replies = [parse(d.data) for d in sink.messages_for(VISITOR)]
    assert [str(m["Subject"]) for m in replies] == ["Help for the shma list"] * 2
    assert all(attached(m) == [] and "Tool library hours" not in m.as_string()
               for m in replies)
    assert [d for d in sink.deliveries if VISITOR not in d.rcpt_tos] == []


def test_several_commands_get_one_result_and_one_mail_with_every_post(cli, four_posts, daemon,
                                                                       sink, store):
    send(daemon, JANE, REQUEST, "", "index\nget 2 4\nget 9\n")
    _, results = mail_with(sink, JANE, "the results of your request")
    text = results.get_content()
    assert "Tool library hours" in text  # the index, inside the one reply
    assert "get: posts 2, 4 are in a separate message" in text
    assert "no post numbered 9" in text
    _, posts = mail_with(sink, JANE, "Posts 2, 4 from the shma archive")
    assert [str(p["Subject"]) for p in attached(posts)] == [
        "[shma] Minutes of March", "[shma] Rides to the meeting"]
    assert "no post numbered 9" in text_of(posts)


def test_get_sends_at_most_ten_and_says_so(cli, four_posts, daemon, sink):
    send(daemon, BOB, REQUEST, "", "get 1 2 3 4 5 6 7 8 9 10 11\n")
    _, reply = mail_with(sink, BOB, "Posts 1, 2, 3, 4 from")
    assert len(attached(reply)) == 4
    text = text_of(reply)
    assert "no post numbered 5, 6, 7, 8, 9, 10" in text and "Only the first 10" in text


def test_index_and_get_count_against_the_cap_on_automatic_mail(cli, four_posts, daemon, sink,
                                                               store):
    for n in range(11):
        send(daemon, JANE, REQUEST, f"index {n}", "index\n")
    wait_until(lambda: json.loads(cli("log", "--action", "cap-suppressed", "--json").output),
               what="the eleventh reply suppressed by the cap")
    wait_settled(store)
    assert len([d for d in sink.messages_for(JANE)
                if "The latest posts" in str(parse(d.data)["Subject"])]) == 10


def test_a_list_without_an_archive_answers_index_with_help(cli, four_posts, daemon, sink):
    cli("lists", "set", LIST, "archive.policy", "none")
    send(daemon, JANE, REQUEST, "index", "index\n")
    _, reply = mail_with(sink, JANE, "Help for the shma list")
    assert "Tool library hours" not in reply.get_content()
