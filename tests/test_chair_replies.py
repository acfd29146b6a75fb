"""The chair decides by replying to notices and to the daily summary (SPEC §2, "The chair
replies"; issue 16 acceptance 1-3, issue 21 acceptance 3): real LMTP in, the strict sink out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from listserv.chair.replies import posts_it_may_approve
from listserv.intent.decision import item_reply, summary_reply

from .helpers import LIST, lmtp_send, make_message, parse, wait_settled
from .smtp_sink import mime_defects

CHAIR = "chair@example.org"
STRANGER = "stranger@else.org"
MEMBERS = ["ann@example.net", "ben@example.net"]
REQUEST = "shma-request@lists.example.org"
PEER_INPUT = "shma-peer-input@lists.example.org"


@pytest.fixture
def members(cli, shma):
    for member in MEMBERS:
        cli("members", "add", shma, member, "--no-welcome")
    return MEMBERS


def mails(sink, address: str):
    return [parse(d.data) for d in sink.messages_for(address)]


def wait_mails(sink, address: str, count: int, what: str):
    sink.wait_for(lambda s: len(s.messages_for(address)) >= count,
                  description=f"{count} {what} to {address}")
    return mails(sink, address)


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def hold_posts(daemon, sink, subjects: list[str]) -> list:
    """Non-member posts, held; returns the chair's notices, in order."""
    before = len(sink.messages_for(CHAIR))
    for subject in subjects:
        post = make_message(sender=f"Stranger <{STRANGER}>", subject=subject,
                            body=f"About {subject}.\n")
        assert lmtp_send(daemon.ports["lmtp"], STRANGER, [LIST], post) == {}
    notices = wait_mails(sink, CHAIR, before + len(subjects), "held notices")[before:]
    return sorted(notices, key=lambda n: str(n["Subject"]))


def reply(daemon, notice, body: str, sender: str = CHAIR, to: str | None = None,
          **headers: str) -> None:
    """Reply to a notice as a mail client does: the answer on top, the notice quoted below."""
    quoted = "\n".join(f"> {line}" for line in text_of(notice).splitlines())
    address = to or str(notice["Reply-To"])
    msg = make_message(sender=sender, to=address, subject=f"Re: {notice['Subject']}",
                       body=f"{body}\n\nOn Sunday, {LIST} wrote:\n{quoted}\n",
                       In_Reply_To=str(notice["Message-ID"]), **headers)
    assert lmtp_send(daemon.ports["lmtp"], sender, [address], msg) == {}


def held(cli) -> dict[str, str]:
    """Every held post's status, by id."""
    rows = json.loads(cli("log", "--json", "--limit", "1000").output)
    status = {}
    for row in rows:
        if row["action"] in ("held", "held-approved", "held-rejected", "held-discarded"):
            number = row["detail"].split()[0].lstrip("#")
            status[number] = row["action"].removeprefix("held-").replace("held", "waiting")
    return status


def copies_to_members(sink) -> list[str]:
    return sorted(str(m["Subject"]) for m in mails(sink, MEMBERS[0]))


@pytest.mark.both_backends
def test_the_held_post_notice_shows_the_post_and_attaches_it(cli, members, daemon, sink,
                                                             backend):
    [notice] = hold_posts(daemon, sink, ["Conference announcement"])
    assert str(notice["Reply-To"]).startswith("shma-confirm+")
    assert str(notice["Reply-To"]).endswith("@lists.example.org")
    body = text_of(notice)
    for shown in (STRANGER, "Conference announcement", "is not a member",
                  "About Conference announcement.", "approve and add", "reject REASON"):
        assert shown in body
    [attached] = [p for p in notice.walk() if p.get_content_type() == "message/rfc822"]
    original = attached.get_payload()[0]
    assert original["Subject"] == "Conference announcement"
    assert original["From"] == f"Stranger <{STRANGER}>"


def test_an_8bit_post_is_attached_clean_for_the_wire(cli, members, daemon, sink):
    raw = ("From: Zoë <zoe@else.org>\r\nTo: shma@lists.example.org\r\n"
           "Subject: =?utf-8?q?R=C3=A9union?=\r\nMessage-ID: <r1@else.org>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nOrdre du jour : café à 16 h.\r\n"
           ).encode()
    lmtp_send(daemon.ports["lmtp"], "zoe@else.org", [LIST], raw)
    sink.wait_for(lambda s: s.messages_for(CHAIR), description="held notice")
    [delivery] = sink.messages_for(CHAIR)
    assert sink.refusals == [] and mime_defects(delivery.data) == []
    assert delivery.data.isascii()  # the relay has no 8BITMIME: re-encoded inside the part
    notice = parse(delivery.data)
    assert "Ordre du jour : café à 16 h." in text_of(notice)
    [attached] = [p for p in notice.walk() if p.get_content_type() == "message/rfc822"]
    original = attached.get_payload()[0]
    assert original.get_content().rstrip() == "Ordre du jour : café à 16 h."
    assert original["Message-ID"] == "<r1@else.org>"


def test_the_notice_shows_only_the_first_40_lines(cli, members, daemon, sink):
    post = make_message(sender=STRANGER, subject="Long",
                        body="".join(f"line {n}\n" for n in range(1, 61)))
    lmtp_send(daemon.ports["lmtp"], STRANGER, [LIST], post)
    [notice] = wait_mails(sink, CHAIR, 1, "held notice")
    body = text_of(notice)
    assert "  line 40" in body and "line 41" not in body and "20 more not shown" in body


@pytest.mark.both_backends
def test_approve_by_reply_in_five_languages_distributes(cli, members, daemon, sink, backend):
    words = {"A English": "Approve", "B Spanish": "Sí", "C French": "oui",
             "D German": "Ja, bitte", "E Portuguese": "Aprovar"}
    notices = hold_posts(daemon, sink, list(words))
    for notice, word in zip(notices, words.values(), strict=True):
        reply(daemon, notice, word)
    sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 5, description="5 copies")
    assert copies_to_members(sink) == [f"[shma] {subject}" for subject in words]
    assert set(held(cli).values()) == {"approved"}
    results = wait_mails(sink, CHAIR, 10, "result replies")[5:]
    assert all("done: post" in text_of(r) and "approved" in text_of(r) for r in results)
    assert json.loads(cli("held", "list", "--json").output) == []


@pytest.mark.both_backends
def test_reject_with_reason_and_discard_by_reply(cli, members, daemon, sink, store, backend):
    first, second = hold_posts(daemon, sink, ["A job offer", "B advert"])
    reply(daemon, first, "reject off topic\n\nThanks, Chair")
    [rejection] = wait_mails(sink, STRANGER, 1, "rejection")
    assert "off topic" in rejection.get_content()
    reply(daemon, second, "Discard.")
    wait_mails(sink, CHAIR, 4, "result replies")
    assert held(cli) == {"1": "rejected", "2": "discarded"}
    assert len(sink.messages_for(STRANGER)) == 1  # a discard tells nobody
    assert sink.messages_for(MEMBERS[0]) == []


@pytest.mark.both_backends
def test_replies_that_must_change_nothing(cli, members, daemon, sink, store, backend):
    first, second = hold_posts(daemon, sink, ["A first", "B second"])
    # From someone who is not an owner, even with the right token: nothing, no answer.
    reply(daemon, first, "approve", sender="mallory@else.org")
    # Automatic mail from the chair's own address (an out-of-office): nothing.
    reply(daemon, first, "approve", Auto_Submitted="auto-replied")
    # Not a decision: nothing done, the chair is told how to answer (the token stays usable).
    reply(daemon, first, "Who is this person?")
    # A made-up token: nothing.
    reply(daemon, first, "approve", to="shma-confirm+aaaaaaaaaaaaaaaaaaaaaaaa@lists.example.org")
    wait_settled(store)
    assert held(cli) == {"1": "waiting", "2": "waiting"}
    assert mails(sink, "mallory@else.org") == []
    [not_understood] = wait_mails(sink, CHAIR, 3, "the answer to an unclear reply")[2:]
    assert "nothing was done" in text_of(not_understood)
    # The token of the second notice decides the second post only, and only once.
    reply(daemon, second, "discard")
    wait_mails(sink, CHAIR, 4, "result")
    reply(daemon, second, "approve")
    used = wait_mails(sink, CHAIR, 5, "result")[4]
    assert "answered already" in text_of(used)
    assert held(cli) == {"1": "waiting", "2": "discarded"}
    # Another list's token sent to this list's confirm address: nothing.
    cli("lists", "create", "other@lists.example.org", "--owner", CHAIR)
    other = make_message(sender=STRANGER, to="other@lists.example.org", subject="Other")
    lmtp_send(daemon.ports["lmtp"], STRANGER, ["other@lists.example.org"], other)
    other_notice = wait_mails(sink, CHAIR, 6, "the other list's notice")[5]
    token = str(other_notice["Reply-To"]).split("+")[1].split("@")[0]
    reply(daemon, first, "approve", to=f"shma-confirm+{token}@lists.example.org")
    wait_settled(store)
    assert held(cli)["1"] == "waiting"
    assert sink.messages_for(MEMBERS[0]) == []


def summary_after_a_day(daemon, sink, clock, count: int):
    clock.advance(timedelta(days=1))
    daemon.run_scheduler()
    summary = wait_mails(sink, CHAIR, count, "daily summary")[-1]
    assert "waiting for your decision" in str(summary["Subject"])
    return summary


@pytest.mark.both_backends
def test_summary_answered_by_lines_acts_on_exactly_those_items(cli, members, daemon, sink,
                                                               clock, store, backend):
    hold_posts(daemon, sink, ["A one", "B two", "C three", "D four"])
    summary = summary_after_a_day(daemon, sink, clock, 5)
    assert str(summary["Reply-To"]).startswith("shma-confirm+")
    body = text_of(summary)
    for number in range(1, 5):
        assert f"#{number}  from {STRANGER}" in body
    # A post held after the summary: its "approve all" must not reach it.
    hold_posts(daemon, sink, ["E later"])
    reply(daemon, summary, "approve 1\ndiscard 2 3\napprove all\nplease hurry\n\n-- \nChair")
    result = wait_mails(sink, CHAIR, 7, "the summary's result")[6]
    sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 2, description="2 copies")
    assert copies_to_members(sink) == ["[shma] A one", "[shma] D four"]
    assert held(cli) == {"1": "approved", "2": "discarded", "3": "discarded",
                         "4": "approved", "5": "waiting"}
    text = text_of(result)
    for line in ("approve 1: done", "discard 2: done", "discard 3: done", "approve 4: done"):
        assert line in text
    assert "approve 5" not in text and "post 5" not in text
    assert "please hurry" in text.split("Not understood")[1]
    # The summary's token is spent: a second answer changes nothing.
    reply(daemon, summary, "approve 5")
    assert "answered already" in text_of(wait_mails(sink, CHAIR, 8, "result")[7])
    assert held(cli)["5"] == "waiting"


def test_summary_ids_not_listed_are_refused(cli, members, daemon, sink, clock):
    hold_posts(daemon, sink, ["A one"])
    summary = summary_after_a_day(daemon, sink, clock, 2)
    hold_posts(daemon, sink, ["B two"])
    reply(daemon, summary, "approve 2")
    result = wait_mails(sink, CHAIR, 4, "result")[3]
    assert "2 is not in this summary" in text_of(result)
    assert held(cli) == {"1": "waiting", "2": "waiting"}


def join_and_confirm(daemon, sink, who: str) -> None:
    send = make_message(sender=who, to="shma-join@lists.example.org", subject="join")
    lmtp_send(daemon.ports["lmtp"], who, ["shma-join@lists.example.org"], send)
    [confirmation] = wait_mails(sink, who, 1, "confirmation")
    address = str(confirmation["Reply-To"])
    lmtp_send(daemon.ports["lmtp"], who, [address],
              make_message(sender=who, to=address, subject="Re: confirm", body="yes"))
    wait_mails(sink, who, 2, "waiting notice")


@pytest.mark.both_backends
def test_join_under_confirm_and_approve_approved_by_reply(cli, shma, daemon, sink, backend):
    cli("lists", "set", LIST, "policy", "confirm+approve")
    join_and_confirm(daemon, sink, "jane@example.org")
    [notice] = wait_mails(sink, CHAIR, 1, "join notice")
    assert "asks to join" in str(notice["Subject"])
    reply(daemon, notice, "OK")
    welcome = wait_mails(sink, "jane@example.org", 3, "welcome")[2]
    assert welcome["Subject"] == "Welcome to the shma list"
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert emails == ["jane@example.org"]
    assert "subscribed jane@example.org" in text_of(wait_mails(sink, CHAIR, 2, "result")[1])


def test_join_refused_by_reply_with_reason(cli, shma, daemon, sink):
    cli("lists", "set", LIST, "policy", "confirm+approve")
    join_and_confirm(daemon, sink, "tom@example.org")
    [notice] = wait_mails(sink, CHAIR, 1, "join notice")
    reply(daemon, notice, "Rechazar: la lista es solo para investigadores")
    denial = wait_mails(sink, "tom@example.org", 3, "denial")[2]
    assert "solo para investigadores" in denial.get_content()
    assert json.loads(cli("members", "list", LIST, "--json").output) == []


UNCLEAR = ("Question about your group",
           "What time zone are you all in? I might visit Chicago next spring.")


def send_unclear(daemon, sink, who: str) -> None:
    msg = make_message(sender=who, to=REQUEST, subject=UNCLEAR[0], body=UNCLEAR[1])
    lmtp_send(daemon.ports["lmtp"], who, [REQUEST], msg)
    wait_mails(sink, who, 1, "help")


@pytest.mark.both_backends
def test_unclear_request_reaches_the_chair_and_subscribe_sends_a_confirmation(
        cli, shma, daemon, sink, clock, backend):
    send_unclear(daemon, sink, "visitor@else.org")
    [notice] = wait_mails(sink, CHAIR, 1, "unclear notice")
    body = text_of(notice)
    assert "visitor@else.org" in body and "Chicago next spring" in body
    assert "subscribe" in body and "ignore" in body and notice["Reply-To"]
    [request] = json.loads(cli("requests", "list", "--json").output)
    # It is in the daily summary too, with its one-word answers.
    summary = summary_after_a_day(daemon, sink, clock, 2)
    assert f"#{request['id']}  from visitor@else.org" in text_of(summary)
    reply(daemon, summary, f"subscribe {request['id']}")
    confirmation = wait_mails(sink, "visitor@else.org", 2, "confirmation")[1]
    assert "confirm" in str(confirmation["Subject"])
    # Nothing is subscribed before the requester confirms.
    assert json.loads(cli("members", "list", LIST, "--json").output) == []
    address = str(confirmation["Reply-To"])
    lmtp_send(daemon.ports["lmtp"], "visitor@else.org", [address],
              make_message(sender="visitor@else.org", to=address, subject="Re", body="OK"))
    wait_mails(sink, "visitor@else.org", 3, "welcome")
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert emails == ["visitor@else.org"]
    assert json.loads(cli("requests", "list", "--json").output) == []


def test_unclear_request_answered_on_its_notice_and_by_the_cli(cli, shma, daemon, sink):
    send_unclear(daemon, sink, "visitor@else.org")
    [notice] = wait_mails(sink, CHAIR, 1, "unclear notice")
    reply(daemon, notice, "ignore")
    wait_mails(sink, CHAIR, 2, "result")
    assert json.loads(cli("requests", "list", "--json").output) == []
    assert len(sink.messages_for("visitor@else.org")) == 1  # ignored: no mail
    # The command line does the same as a reply.
    cli("members", "add", LIST, "member@else.org", "--no-welcome")
    send_unclear(daemon, sink, "member@else.org")
    [request] = json.loads(cli("requests", "list", "--json").output)
    refused = cli("requests", "approve", request["id"], ok=False)
    assert refused.exit_code != 0 and "--as subscribe" in refused.output
    done = cli("requests", "approve", request["id"], "--as", "unsubscribe")
    assert "confirmation sent to member@else.org" in done.output
    confirmation = wait_mails(sink, "member@else.org", 2, "confirmation")[1]
    assert "leave" in str(confirmation["Subject"])
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert emails == ["member@else.org"]


def test_approve_and_add_subscribes_the_sender(cli, members, daemon, sink):
    [notice] = hold_posts(daemon, sink, ["Hello from a new colleague"])
    reply(daemon, notice, "Approve and add")
    sink.wait_for(lambda s: len(s.messages_for(MEMBERS[0])) == 1, description="the copy")
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert STRANGER in emails
    welcome = wait_mails(sink, STRANGER, 1, "welcome")[0]
    assert welcome["Subject"] == "Welcome to the shma list"


def test_a_held_post_read_as_a_join_is_not_distributed_and_its_sender_is_asked(
        cli, members, daemon, sink, clock, store):
    [notice] = hold_posts(daemon, sink, ["Hello from Leeds"])
    assert "subscribe             not distributed" in text_of(notice)
    reply(daemon, notice, "subscribe")
    confirmation = wait_mails(sink, STRANGER, 1, "confirmation")[0]
    assert str(confirmation["Subject"]).startswith("Please confirm: join the shma list")
    result = text_of(wait_mails(sink, CHAIR, 2, "result")[1])
    assert f"subscribe confirmation sent to {STRANGER}" in result
    wait_settled(store)
    assert sink.messages_for(MEMBERS[0]) == []  # not distributed
    assert json.loads(cli("held", "list", "--json").output) == []
    emails = [m["email"] for m in json.loads(cli("members", "list", LIST, "--json").output)]
    assert STRANGER not in emails  # not before the sender confirms
    # "subscribe all" in a summary reads unclear requests, never every held post as a join
    other = "visitor@else.org"
    lmtp_send(daemon.ports["lmtp"], other, [LIST],
              make_message(sender=other, subject="Our new study", body="Hello all.\n"))
    wait_mails(sink, CHAIR, 3, "held notice")
    summary = summary_after_a_day(daemon, sink, clock, 4)
    reply(daemon, summary, "subscribe all")
    assert "nothing listed in this summary is waiting for that" in text_of(
        wait_mails(sink, CHAIR, 5, "result")[4])
    [waiting] = json.loads(cli("held", "list", "--json").output)
    # the command line does the same as the one-word reply, one message at a time
    refused = cli("held", "discard", "--all", "--as", "subscribe", ok=False)
    assert refused.exit_code == 2 and "--all" in refused.output
    done = cli("held", "discard", waiting["id"], "--as", "subscribe")
    assert f"subscribe confirmation sent to {other}" in done.output
    assert "join the shma list" in str(wait_mails(sink, other, 1, "confirmation")[0]["Subject"])
    assert json.loads(cli("held", "list", "--json").output) == []


def test_a_held_post_from_an_automatic_sender_is_not_read_as_a_join(cli, shma, daemon, sink):
    robot = "noreply@else.org"
    lmtp_send(daemon.ports["lmtp"], robot, [LIST],
              make_message(sender=robot, subject="Report", body="Hello.\n"))
    [notice] = wait_mails(sink, CHAIR, 1, "held notice")
    reply(daemon, notice, "subscribe")
    result = text_of(wait_mails(sink, CHAIR, 2, "result")[1])
    assert "cannot be asked to confirm" in result
    [waiting] = json.loads(cli("held", "list", "--json").output)  # still waiting
    assert waiting["sender"] == robot
    assert sink.messages_for(robot) == []


def test_an_old_notice_cannot_be_answered(cli, shma, daemon, sink, clock, store):
    cli("lists", "set", LIST, "policy", "confirm+approve")
    join_and_confirm(daemon, sink, "jane@example.org")
    [notice] = wait_mails(sink, CHAIR, 1, "join notice")
    clock.advance(timedelta(days=15))  # chair tokens expire like confirmations (14 days)
    # A router pass that began before the jump may still hold the old time: one round trip
    # through the router first, so the reply is handled at the new time.
    probe = make_message(sender="probe@example.net", to=REQUEST, subject="help", body="help")
    lmtp_send(daemon.ports["lmtp"], "probe@example.net", [REQUEST], probe)
    wait_mails(sink, "probe@example.net", 1, "help")
    reply(daemon, notice, "approve")
    # Found by its words: after the jump the scheduler may mail her a daily summary first.
    sink.wait_for(lambda s: any("too old" in text_of(m) for m in mails(s, CHAIR)),
                  description="the answer that the notice is too old")
    [waiting] = json.loads(cli("requests", "list", "--json").output)
    assert waiting["status"] == "waiting"


def test_held_peer_input_request_approved_by_reply(cli, members, daemon, sink):
    at = (datetime.now(UTC) + timedelta(days=20)).strftime("%Y-%m-%d 16:00")
    meeting = cli("meetings", "schedule", LIST, "--at", at, "--tz", "UTC",
                  "--duration", "60").output.strip()
    lmtp_send(daemon.ports["lmtp"], STRANGER, [PEER_INPUT],
              make_message(sender=f"Sam <{STRANGER}>", to=PEER_INPUT, subject="Repair cafe",
                           body="Volunteers?\nminutes: 15\n"))
    [notice] = wait_mails(sink, CHAIR, 1, "held notice")
    assert str(notice["Reply-To"]).startswith("shma-confirm+")
    reply(daemon, notice, "yes")
    approval = wait_mails(sink, STRANGER, 1, "approval")[0]
    assert "Confirmed" in str(approval["Subject"])
    [booked] = json.loads(cli("peer-input", "list", "--json").output)
    assert (booked["status"], booked["meeting_id"]) == ("approved", meeting)


def composed(body: str):
    """A reply as the chair's client writes it: plain text, or HTML for a body in tags."""
    msg = EmailMessage()
    msg["From"] = CHAIR
    msg.set_content(body, subtype="html" if body.startswith("<") else "plain")
    return msg


@pytest.mark.parametrize(("body", "verb", "reason"), [
    ("Approve\n\nSent from my iPhone", "approve", ""),
    ("Sí, adelante.", "approve", "adelante"),
    ("Rejeter : hors sujet\n\nCordialement,\nMarie", "reject", "hors sujet"),
    ("Verwerfen", "discard", ""),
    ("Aprovar e adicionar", "approve_add", ""),
    ("<div>Reject <b>off topic</b></div><blockquote>approve</blockquote>", "reject",
     "off topic"),
    ("Who is this?\n\n> approve", None, None),
])
def test_the_first_words_of_a_reply_decide(body, verb, reason):
    decision = item_reply(composed(body))
    assert (decision.verb, decision.reason) == (verb, reason) if verb else decision is None


def test_a_summary_reply_is_read_line_by_line():
    decisions, not_understood = summary_reply(composed(
        "Approve all.\nDiscard #3, #4\nreject post 5 spam, obviously\nhurry please\n\n"
        "On Monday, the list wrote:\n> approve 9\n"))
    assert [(d.verb, d.ids, d.kind, d.reason) for d in decisions] == [
        ("approve", None, "", ""), ("discard", (3, 4), "", ""),
        ("reject", (5,), "held", "spam, obviously")]
    assert not_understood == ["hurry please"]


def test_the_posts_a_reply_may_approve_are_looked_up_before_its_transaction(
        cli, members, daemon, sink, store, dns_zone):
    """The router looks up the DMARC policy of the held posts a chair's reply may approve
    before the reply's write transaction (as `held approve` does, issue 13): those are the
    waiting posts its token names, and none once the token is spent."""
    dns_zone.records["_dmarc.else.org"] = ["v=DMARC1; p=reject"]
    [notice] = hold_posts(daemon, sink, ["Conference"])
    token = str(notice["Reply-To"]).split("+")[1].split("@")[0]
    with store.reading() as session:
        [raw] = posts_it_may_approve(session, token)
    assert b"Subject: Conference" in raw
    reply(daemon, notice, "approve")
    sink.wait_for(lambda s: s.messages_for(MEMBERS[0]), description="the post")
    copy = parse(sink.messages_for(MEMBERS[0])[0].data)
    assert copy["From"] == "Stranger via SHMA <shma@lists.example.org>"
    with store.reading() as session:
        assert posts_it_may_approve(session, token) == []


def test_an_unclear_request_left_alone_expires_like_a_held_post(cli, shma, daemon, sink, clock):
    send_unclear(daemon, sink, "visitor@else.org")
    assert len(json.loads(cli("requests", "list", "--json").output)) == 1
    clock.advance(timedelta(days=15))  # held_expiry_days is 14
    daemon.run_scheduler()
    assert json.loads(cli("requests", "list", "--json").output) == []
    assert len(sink.messages_for("visitor@else.org")) == 1  # only the help text, then nothing
