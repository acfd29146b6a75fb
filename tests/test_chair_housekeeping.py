"""The chair's housekeeping commands (SPEC §4, issue 16 acceptance 7): owners and moderators,
bans, `members set`, decisions on several items at once, `lists delete`, `--default`, `log`."""

from __future__ import annotations

import json

import pytest

from .helpers import LIST, lmtp_send, make_message, parse, wait_settled, wait_until

CHAIR = "chair@example.org"
COCHAIR = "cochair@example.org"
MODERATOR = "mod@example.org"


def post(daemon, sender: str, subject: str = "Hello", to: str = LIST) -> None:
    lmtp_send(daemon.ports["lmtp"], sender, [to],
              make_message(sender=sender, to=to, subject=subject))


def held(cli) -> list[dict[str, str]]:
    return json.loads(cli("held", "list", "--json").output)


def log(cli, *args: str) -> list[dict[str, str]]:
    return json.loads(cli("log", "--json", *args).output)


@pytest.mark.both_backends
def test_owners_changed_and_the_co_chair_and_moderator_get_the_next_held_notice(
        cli, shma, daemon, sink, store):
    cli("lists", "set", shma, "owners", f"{CHAIR}, {COCHAIR}")
    cli("lists", "set", shma, "moderators", MODERATOR)
    info = json.loads(cli("lists", "show", shma, "--json").output)
    assert info["owners"] == [CHAIR, COCHAIR] and info["moderators"] == [MODERATOR]
    bad = cli("lists", "set", shma, "owners", "not-an-address", ok=False)
    assert bad.exit_code != 0 and "not-an-address" in bad.output
    post(daemon, "stranger@else.org", "First")
    for chair in (CHAIR, COCHAIR, MODERATOR):
        sink.wait_for(lambda s, c=chair: s.messages_for(c), description=f"notice to {chair}")
        assert "held for your approval" in str(parse(sink.messages_for(chair)[0].data)["Subject"])
    # A handover: the old chair is no longer an owner, and no longer hears of held posts.
    cli("lists", "set", shma, "owners", COCHAIR)
    assert json.loads(cli("lists", "show", shma, "--json").output)["owners"] == [COCHAIR]
    post(daemon, "stranger@else.org", "Second")
    sink.wait_for(lambda s: len(s.messages_for(COCHAIR)) == 2, description="second notice")
    wait_settled(store)
    assert len(sink.messages_for(CHAIR)) == 1
    assert cli("lists", "set", shma, "owners", "none", ok=False).exit_code != 0


@pytest.mark.both_backends
def test_a_banned_senders_post_and_request_are_discarded_and_logged(cli, shma, daemon, sink,
                                                                     store, tmp_path):
    cli("members", "add", shma, "ann@example.net", "--no-welcome")
    cli("members", "ban", shma, "spammer@bad.example")
    cli("members", "ban", shma, "*@Junk.Example")
    cli("members", "ban", shma, r"^promo[0-9]+@")
    assert cli("members", "ban", shma, "^(unclosed", ok=False).exit_code != 0
    patterns = [b["pattern"] for b in json.loads(cli("members", "bans", shma,
                                                    "--json").output)]
    assert patterns == ["spammer@bad.example", "*@junk.example", r"^promo[0-9]+@"]
    for sender in ("spammer@bad.example", "anyone@junk.example", "promo42@else.org"):
        post(daemon, sender, f"Buy now from {sender}")
    post(daemon, "spammer@bad.example", "subscribe", to="shma-request@lists.example.org")
    post(daemon, "friend@else.org", "A real question")  # not banned: held as a non-member
    sink.wait_for(lambda s: s.messages_for(CHAIR), description="the one held notice")
    wait_settled(store)
    assert [h["sender"] for h in held(cli)] == ["friend@else.org"]
    assert not sink.messages_for("ann@example.net")
    assert not sink.messages_for("spammer@bad.example")  # no answer to the request either
    discarded = log(cli, "--action", "discarded", "--list", shma)
    assert len(discarded) == 4 and all("is banned" in e["detail"] for e in discarded)
    # A banned address cannot be added; unbanned, it can.
    refused = cli("members", "add", shma, "x@junk.example", ok=False)
    assert refused.exit_code != 0 and "banned" in refused.output
    # Nor imported: the row is skipped and named, the others are imported.
    roster = tmp_path / "roster.csv"
    roster.write_text("email\nbea@example.net\ny@junk.example\n")
    imported = cli("members", "import", shma, str(roster))
    assert "line 3: y@junk.example is banned (*@junk.example)" in imported.output
    assert "imported 1 members" in imported.output
    cli("members", "unban", shma, "*@junk.example")
    cli("members", "add", shma, "x@junk.example", "--no-welcome")
    assert [e["action"] for e in log(cli, "--action", "member-")] == [
        "member-added", *["member-banned"] * 3, "member-unbanned", "member-added"]
    assert log(cli, "--action", "members-imported")[0]["detail"] == "1 added, 1 skipped"


@pytest.mark.both_backends
def test_members_set_changes_name_delivery_and_language(cli, shma):
    cli("members", "add", shma, "ann@example.net", "--name", "Ann", "--no-welcome")
    cli("members", "set", shma, "ann@example.net", "--name", "Ann  Smith",
        "--delivery", "digest", "--language", "es")
    [member] = json.loads(cli("members", "list", shma, "--json").output)
    assert member == {**member, "name": "Ann Smith", "delivery": "digest", "language": "es"}
    assert cli("members", "set", shma, "ann@example.net", "--language", "xx",
               ok=False).exit_code != 0
    assert cli("members", "set", shma, "nobody@example.net", "--name", "N",
               ok=False).exit_code != 0
    assert cli("members", "set", shma, "ann@example.net", ok=False).exit_code != 0
    [entry] = log(cli, "--action", "member-changed")
    assert entry["detail"] == "ann@example.net: name, delivery digest, language es"


@pytest.mark.both_backends
def test_held_decisions_take_several_ids_or_all(cli, shma, daemon, sink, store):
    cli("members", "add", shma, "ann@example.net", "--no-welcome")
    for n in range(5):
        post(daemon, "stranger@else.org", f"Post {n}")
    wait_until(lambda: len(held(cli)) == 5, what="five held posts")
    result = cli("held", "discard", "1", "2")
    assert result.output.splitlines() == ["discarded 1", "discarded 2"]
    partly = cli("held", "reject", "3", "99", ok=False)
    assert partly.exit_code != 0 and "rejected 3" in partly.output and "99" in partly.output
    assert cli("held", "approve", ok=False).exit_code != 0  # neither ids nor --all
    cli("held", "approve", "--all")
    assert held(cli) == []
    sink.wait_for(lambda s: len(s.messages_for("ann@example.net")) == 2,
                  description="the two approved posts")
    subjects = sorted(str(parse(m.data)["Subject"]) for m in sink.messages_for("ann@example.net"))
    assert subjects == ["[shma] Post 3", "[shma] Post 4"]
    assert [e["detail"].split()[0] for e in log(cli, "--action", "held-")] == [
        "#1", "#2", "#3", "#4", "#5"]


def test_requests_approve_takes_several_ids(cli, shma, daemon, sink):
    cli("lists", "set", shma, "policy", "confirm+approve")
    people = ["jane@example.org", "tom@example.org", "ida@example.org"]
    for who in people:
        post(daemon, who, "", to="shma-join@lists.example.org")
        sink.wait_for(lambda s, w=who: s.messages_for(w), description=f"confirmation to {who}")
        confirmation = parse(sink.messages_for(who)[0].data)
        post(daemon, who, "Re: confirm", to=str(confirmation["Reply-To"]))
    wait_until(lambda: len([r for r in json.loads(cli("requests", "list", "--json").output)
                            if r["status"] == "waiting"]) == 3, what="three waiting requests")
    ids = [r["id"] for r in json.loads(cli("requests", "list", "--json").output)]
    cli("requests", "approve", ids[0], ids[1])
    cli("requests", "deny", "--all")
    emails = [m["email"] for m in json.loads(cli("members", "list", shma, "--json").output)]
    assert sorted(emails) == ["jane@example.org", "tom@example.org"]


@pytest.mark.both_backends
def test_lists_delete_asks_and_without_a_terminal_needs_yes(cli, shma, daemon, store,
                                                            settings):
    cli("members", "add", shma, "ann@example.net", "--no-welcome")
    post(daemon, "ann@example.net", "My piece", to="shma-column@lists.example.org")
    folder = settings.data_dir / "submissions"

    def stored() -> list[str]:  # the tracking ids' folders (not the staging area)
        return [p.name for p in folder.glob("*") if not p.name.startswith(".")]

    wait_until(stored, what="the submission's files")
    wait_settled(store)
    refused = cli("lists", "delete", shma, ok=False)
    assert refused.exit_code != 0
    assert "1 members" in refused.output and "--yes" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert [row["list"] for row in json.loads(cli("lists", "list", "--json").output)] == [LIST]
    assert "deleted" in cli("lists", "delete", shma, "--yes").output
    assert json.loads(cli("lists", "list", "--json").output) == []
    assert log(cli, "--action", "list-deleted")[0]["detail"].startswith(LIST)
    assert stored() == []  # the list's submissions went with it


@pytest.mark.both_backends
def test_a_setting_goes_back_to_its_default(cli, shma):
    cli("lists", "set", shma, "footer", "")
    cli("lists", "set", shma, "meetings.reminders", "7d")
    assert json.loads(cli("lists", "show", shma, "--json").output)["footer"] == ""
    cli("lists", "set", shma, "footer", "--default")
    cli("lists", "set", shma, "meetings.reminders", "--default")
    info = json.loads(cli("lists", "show", shma, "--json").output)
    assert info["footer"] is None and info["meetings.reminders"] == ["14d", "1d"]
    assert cli("lists", "set", shma, "footer", ok=False).exit_code != 0
    assert cli("lists", "set", shma, "owners", "--default", ok=False).exit_code != 0


def test_log_filters_by_list_time_and_action(cli, shma):
    cli("lists", "create", "other@lists.example.org", "--owner", CHAIR)
    cli("lists", "set", "other", "description", "Another")
    assert {e["list"] for e in log(cli, "--list", "other")} == {"other@lists.example.org"}
    assert [e["action"] for e in log(cli, "--action", "list-set")] == ["list-set"]
    assert log(cli, "--since", "2999-01-01") == []
    assert len(log(cli, "--since", "2000-01-01 00:00")) == 3
    assert cli("log", "--since", "yesterday", ok=False).exit_code != 0
