"""The chair's command line (SPEC §4): listings, errors, members, the log, list settings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, or_, select

from cli import main
from listserv.store.models.core import AuditEntry, Held, Inbound, Member
from listserv.store.models.outgoing import AutoMail, OutMessage, OutRecipient

from .helpers import LIST, lmtp_send, make_message, parse, wait_settled, write_config

OTHER_DOMAIN_LIST = "shma@other.example.org"


def as_json(cli, *args: str) -> object:
    result = cli(*args, "--json")
    return json.loads(result.stdout)


def wait_for_held(cli, n: int, timeout: float = 10.0) -> list[dict[str, str]]:
    """The held list once it has at least `n` messages (the daemon handles mail in the back)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = as_json(cli, "held", "list")
        assert isinstance(rows, list)
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, f"only {len(rows)} held after {timeout}s"
        time.sleep(0.05)


def post(daemon, sender: str, subject: str, to: str = LIST, body: str = "Hello.\n") -> None:
    message = make_message(sender=sender, to=to, subject=subject, body=body)
    assert lmtp_send(daemon.ports["lmtp"], sender, [to], message) == {}


def assert_one_line_error(result: Result, *fragments: str, exit_code: int = 1) -> str:
    """A chair error: non-zero exit, one `Error:` line on stderr, no traceback anywhere."""
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- --json on every listing -------------------------------------------------------------------


def test_lists_list_and_show_json(cli, shma):
    cli("lists", "set", shma, "description", "Self-help and mutual aid")
    rows = as_json(cli, "lists", "list")
    assert isinstance(rows, list) and len(rows) == 1
    (row,) = rows
    assert isinstance(row["id"], str) and row["id"].isdigit()
    assert row["list"] == LIST
    assert row["description"] == "Self-help and mutual aid"
    assert "chair@example.org" in row["owners"]

    info = as_json(cli, "lists", "show", shma)
    assert isinstance(info, dict)
    assert info["id"] == row["id"]
    assert info["list"] == LIST
    assert info["owners"] == ["chair@example.org"]
    assert info["policy"] == "confirm"
    assert info["nonmember_action"] == "hold"
    assert info["personalize"] is True
    assert info["addresses"]["request"] == "shma-request@lists.example.org"
    assert info["headers"]["List-Help"] == (
        "<mailto:shma-request@lists.example.org?subject=help>")
    assert as_json(cli, "lists", "show", "shma")["id"] == row["id"]


def test_members_list_json(cli, shma):
    cli("members", "add", shma, "jane@example.org", "--name", "Jane Doe", "--no-welcome")
    cli("members", "add", shma, "ann@example.org", "--no-welcome")
    rows = as_json(cli, "members", "list", shma)
    assert rows == [
        {"email": "ann@example.org", "name": "", "delivery": "regular", "language": "",
         "status": "active", "list": LIST},
        {"email": "jane@example.org", "name": "Jane Doe", "delivery": "regular",
         "language": "", "status": "active", "list": LIST},
    ]
    cli("lists", "create", "empty@lists.example.org", "--owner", "chair@example.org")
    assert as_json(cli, "members", "list", "empty") == []


@pytest.mark.both_backends
def test_members_list_json_streams_a_roster_of_thousands_as_one_valid_array(
        cli, shma, tmp_path):
    """Written in chunks as the rows are read (issue 15); the same JSON as any listing."""
    roster = [f"member{i:05d}@example.net" for i in range(3500)]
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("email,name\n" + "".join(f"{m},Member {m[6:11]}\n" for m in roster))
    cli("members", "import", shma, str(csv_file))
    output = cli("members", "list", shma, "--json").stdout
    rows = json.loads(output)
    assert [r["email"] for r in rows] == roster  # address order, each once
    assert all(r["name"] == f"Member {r['email'][6:11]}" and r["list"] == LIST for r in rows)
    assert output == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.both_backends
def test_held_list_and_show_json(cli, shma, daemon):
    post(daemon, "stranger@example.net", "Buy now")
    post(daemon, "other@example.net", "Question")
    rows = wait_for_held(cli, 2)
    assert isinstance(rows, list) and len(rows) == 2
    for row in rows:
        assert {"id", "list", "sender", "subject", "reason"} <= row.keys()
        assert isinstance(row["id"], str) and row["id"].isdigit()
        assert row["list"] == LIST
    first = rows[0]
    assert first["sender"] == "stranger@example.net"
    assert first["subject"] == "Buy now"
    assert "not a member" in first["reason"]
    assert as_json(cli, "held", "list", shma) == rows

    shown = as_json(cli, "held", "show", first["id"])
    assert isinstance(shown, dict)
    assert {k: shown[k] for k in ("id", "list", "sender", "subject", "reason")} == {
        k: first[k] for k in ("id", "list", "sender", "subject", "reason")}
    assert shown["text"].strip() == "Hello."

    text = cli("held", "show", first["id"]).stdout
    assert "sender: stranger@example.net" in text and "Hello." in text

    # A decided message can still be shown, but not decided again.
    cli("held", "discard", first["id"])
    assert as_json(cli, "held", "show", first["id"])["status"] == "discarded"
    assert_one_line_error(cli("held", "approve", first["id"], ok=False), "already discarded")
    assert [r["id"] for r in as_json(cli, "held", "list")] == [rows[1]["id"]]


@pytest.mark.both_backends
def test_queue_and_log_json(cli, shma):
    cli("members", "add", shma, "jane@example.org")  # a welcome waits: no daemon runs
    rows = as_json(cli, "queue")
    assert isinstance(rows, list) and len(rows) == 1
    (row,) = rows
    assert isinstance(row["id"], str)
    assert row["direction"] == "outgoing"
    assert row["kind"] == "welcome"
    assert row["list"] == LIST
    assert row["recipients"] == "1"
    assert row["reason"]

    log = as_json(cli, "log")
    assert isinstance(log, list)
    assert [e["action"] for e in log] == ["list-created", "member-added"]
    for entry in log:
        assert isinstance(entry["id"], str)
        assert entry["actor"].startswith("chair")
        assert entry["list"] == LIST
        assert entry["at"]
    assert as_json(cli, "log", "--limit", "1") == log[-1:]


def test_listings_without_json_are_text(cli, shma):
    assert "(none)" in cli("members", "list", shma).stdout
    assert "(none)" in cli("held", "list").stdout
    assert "(none)" in cli("queue").stdout
    text = cli("lists", "list").stdout
    assert text.splitlines()[0].split() == ["ID", "LIST", "OWNERS", "DESCRIPTION"]
    assert LIST in text


# -- errors: one line, non-zero, no traceback ---------------------------------------------------


def test_unknown_list(cli, shma):
    assert_one_line_error(cli("members", "list", "nosuch", ok=False), "no list named nosuch")
    assert_one_line_error(cli("lists", "show", "nosuch@lists.example.org", ok=False),
                          "no list nosuch@lists.example.org")
    assert_one_line_error(cli("held", "list", "nosuch", ok=False), "nosuch")


def test_ambiguous_name_needs_the_full_address(cli, shma):
    cli("lists", "create", OTHER_DOMAIN_LIST, "--owner", "chair@example.org")
    line = assert_one_line_error(cli("members", "add", "shma", "jane@example.org", ok=False),
                                 "several lists are named shma", "full address")
    assert LIST in line and OTHER_DOMAIN_LIST in line
    assert_one_line_error(cli("lists", "show", "shma", ok=False), "several lists")

    cli("members", "add", OTHER_DOMAIN_LIST, "jane@example.org", "--no-welcome")
    assert [r["email"] for r in as_json(cli, "members", "list", OTHER_DOMAIN_LIST)] == [
        "jane@example.org"]
    assert as_json(cli, "members", "list", LIST) == []
    # Case and spacing of the full address do not matter.
    assert as_json(cli, "lists", "show", "SHMA@Other.Example.ORG")["list"] == OTHER_DOMAIN_LIST


@pytest.mark.parametrize("email", ["not-an-address", "jane@", "jane@example", "two@@x.org",
                                   "Jane Doe <jane@example.org>"])
def test_members_add_refuses_a_bad_address(cli, shma, email):
    assert_one_line_error(cli("members", "add", shma, email, ok=False),
                          "is not an email address")
    assert as_json(cli, "members", "list", shma) == []


def test_members_add_refuses_a_duplicate(cli, shma):
    cli("members", "add", shma, "jane@example.org", "--no-welcome")
    assert_one_line_error(cli("members", "add", shma, "Jane@EXAMPLE.org", ok=False),
                          "jane@example.org is already a member of " + LIST)
    assert len(as_json(cli, "members", "list", shma)) == 1


def test_members_remove_of_a_non_member(cli, shma):
    assert_one_line_error(cli("members", "remove", shma, "ghost@example.org", ok=False),
                          "ghost@example.org is not a member")


@pytest.mark.parametrize(("key", "value", "fragments"), [
    ("colour", "blue", ("unknown list setting 'colour'", "known settings:")),
    ("address.nosuchrole", "a@example.org", ("unknown role 'nosuchrole'",)),
    ("address.request", "not an address", ("is not an email address",)),
    ("policy", "maybe", ("policy", "'maybe'", "confirm, confirm+approve")),
    ("nonmember_action", "bounce", ("nonmember_action", "hold, reject, discard")),
    ("reply_to", "everyone", ("reply_to",)),
    ("dmarc_mitigation", "sometimes", ("dmarc_mitigation",)),
    ("personalize", "perhaps", ("personalize", "true or false")),
    ("max_post_kb", "-3", ("max_post_kb", "'-3'", "0 or more")),
    ("max_post_kb", "lots", ("max_post_kb", "'lots'", "0 or more")),
    ("held_expiry_days", "1.5", ("held_expiry_days",)),
    ("description", "two\nlines", ("description", "one line")),
])
def test_lists_set_refuses_unknown_settings_and_bad_values(cli, shma, key, value, fragments):
    before = as_json(cli, "lists", "show", shma)
    assert_one_line_error(cli("lists", "set", shma, key, value, ok=False), *fragments)
    assert as_json(cli, "lists", "show", shma) == before


def test_lists_set_takes_values_that_start_with_a_dash(cli, shma):
    cli("lists", "set", shma, "footer", "-- \\nshma mailing list")
    cli("lists", "set", shma, "max_post_kb", "0")
    info = as_json(cli, "lists", "show", shma)
    assert info["footer"] == "-- \nshma mailing list"
    assert info["max_post_kb"] == 0


@pytest.mark.parametrize("held_id", ["999", "abc", "-1", "99999999999999999999999"])
def test_held_commands_with_an_unknown_id(cli, shma, held_id):
    for command in ("approve", "reject", "discard", "show"):
        result = cli("held", command, "--", held_id, ok=False)
        assert_one_line_error(result, f"no held message {held_id}")


@pytest.mark.parametrize("ref", ["999", "abc", "-1", "99999999999999999999999"])
def test_commands_on_requests_meetings_and_submissions_with_an_unknown_id(cli, shma, ref):
    """Each finds its row by the chair's number through one helper (store/lookup.py)."""
    for args, says in ((("requests", "approve"), "no request"),
                       (("requests", "deny"), "no request"),
                       (("peer-input", "approve"), "no peer-input request"),
                       (("meetings", "show"), "no meeting"),
                       (("submissions", "show"), "no submission"),
                       (("queue", "retry"), "no incoming message")):
        assert_one_line_error(cli(*args, "--", ref, ok=False), f"{says} {ref}")


@pytest.mark.parametrize("args", [
    ("members", "add"),
    ("members", "add", LIST),
    ("lists", "create", "x@lists.example.org"),          # --owner is required
    ("lists", "set", LIST, "policy"),
    ("members", "list", LIST, "--bogus"),
    ("held", "approve"),
    ("nosuchcommand",),
    ("log", "--limit", "0"),
])
def test_wrong_or_missing_arguments_are_usage_errors(cli, shma, args):
    result = cli(*args, ok=False)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert "Usage:" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def run_with_config(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], env=env)


def test_a_config_file_with_an_unknown_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('data_dir = "data"\n[outbound]\ntransport = "maildir"\ncolour = "blue"\n')
    for args in (("init",), ("lists", "list"), ("members", "list", LIST)):
        line = assert_one_line_error(run_with_config(bad, *args), str(bad))
        assert "colour" in line
    assert not (tmp_path / "data").exists()

    result = CliRunner().invoke(main, ["lists", "list"], env={"LISTSERV_CONFIG": str(bad)})
    assert "colour" in assert_one_line_error(result, str(bad))

    missing = tmp_path / "nowhere.toml"
    assert_one_line_error(run_with_config(missing, "lists", "list"), str(missing))


@pytest.mark.both_backends
def test_commands_before_init_say_to_run_init_and_init_is_safe_twice(tmp_path, sink, db_url):
    """`db_url` is a fresh database (a SQLite file not yet made, or an empty schema)."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "fresh.toml", data, db_url, sink.port)
    for args in (("lists", "list"), ("lists", "create", LIST, "--owner", "chair@example.org"),
                 ("members", "list", LIST), ("held", "list"), ("queue",), ("log",)):
        assert_one_line_error(run_with_config(config, *args), "run `listserv init`")

    for _ in range(2):
        result = run_with_config(config, "init")
        assert result.exit_code == 0, result.output
        assert "listserv is ready" in result.stdout
    assert data.is_dir()
    assert run_with_config(config, "lists", "create", LIST, "--owner",
                           "chair@example.org").exit_code == 0
    result = run_with_config(config, "init")  # again, with data in it
    assert result.exit_code == 0, result.output
    assert json.loads(run_with_config(config, "lists", "list", "--json").stdout)[0]["list"] \
        == LIST


def test_init_on_the_test_database_again_is_fine(cli, shma):
    cli("init")
    assert as_json(cli, "lists", "show", shma)["list"] == LIST


def test_lists_create_errors(cli, shma):
    assert_one_line_error(cli("lists", "create", LIST, "--owner", "chair@example.org",
                              ok=False), "exists already")
    assert_one_line_error(cli("lists", "create", "no-domain", "--owner", "chair@example.org",
                              ok=False), "is not a list address")
    assert_one_line_error(cli("lists", "create", "shma-request@lists.example.org", "--owner",
                              "chair@example.org", ok=False), "ends like")
    assert_one_line_error(cli("lists", "create", "new@lists.example.org", "--owner", "chair",
                              ok=False), "owner 'chair' is not an email address")


# -- members: welcome, --no-welcome, --forget ----------------------------------------------------


def test_members_add_welcomes_by_default(cli, shma, daemon, sink):
    cli("members", "add", shma, "Jane@Example.org", "--name", "Jane  Doe")
    sink.wait_for_recipients(1)
    (delivery,) = sink.deliveries
    assert delivery.rcpt_tos == ["jane@example.org"]
    welcome = parse(delivery.data)
    assert welcome["To"] == "jane@example.org"
    assert welcome["From"] == '"SHMA (list owner)" <shma-owner@lists.example.org>'
    assert LIST in welcome["Subject"] or "shma" in welcome["Subject"]
    text = welcome.get_content()
    assert "Jane Doe" in text
    assert "To leave the list" in text
    assert "shma-leave+" in text  # the member's own one-step leave address
    assert delivery.mail_from.startswith("shma-bounces")


def test_members_add_no_welcome_sends_nothing(cli, shma, daemon, sink, store):
    cli("members", "add", shma, "quiet@example.org", "--no-welcome")
    with store.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(OutRecipient)) == 0
        assert session.scalar(select(func.count()).select_from(AutoMail)) == 0
    # The welcome of a later member is the only mail that arrives.
    cli("members", "add", shma, "loud@example.org")
    sink.wait_for_recipients(1)
    wait_settled(store)
    assert [d.rcpt_tos for d in sink.deliveries] == [["loud@example.org"]]
    assert sink.messages_for("quiet@example.org") == []


@pytest.mark.both_backends
def test_members_remove_forget_erases_the_address(cli, shma, daemon, sink, store):
    jane = "jane.forget@example.org"
    post(daemon, f"Jane Forget <{jane}>", "Please let me in")
    (held,) = wait_for_held(cli, 1)
    assert held["sender"] == jane
    cli("members", "add", shma, jane, "--name", "Jane Forget")
    cli("members", "add", shma, "keep@example.org", "--no-welcome")
    sink.wait_for(lambda s: s.messages_for(jane), description="the welcome")
    sink.wait_for(lambda s: s.messages_for("chair@example.org"), description="the held notice")
    with store.unit_of_work() as session:
        raws = session.scalars(select(OutMessage.raw)).all()
        assert sum(jane.encode() in raw for raw in raws) == 2  # the welcome, the notice
    assert any(jane in e["detail"] for e in as_json(cli, "log"))

    result = cli("members", "remove", shma, "JANE.Forget@example.org", "--forget")
    assert "forgot" in result.stdout

    assert [r["email"] for r in as_json(cli, "members", "list", shma)] == ["keep@example.org"]
    assert as_json(cli, "held", "list") == []
    assert_one_line_error(cli("held", "show", held["id"], ok=False), "no held message")
    log = as_json(cli, "log", "--limit", "1000")
    assert jane not in json.dumps(log).lower()
    assert "jane forget" not in json.dumps(log).lower()
    assert log[-1]["action"] == "member-forgotten" and log[-1]["list"] == LIST
    with store.unit_of_work() as session:
        for model, column in ((Member, Member.email), (Held, Held.sender),
                              (OutRecipient, OutRecipient.email),
                              (AutoMail, AutoMail.address)):
            assert session.scalar(select(func.count()).select_from(model)
                                  .where(func.lower(column) == jane)) == 0, model
        assert session.scalar(select(func.count()).select_from(Inbound).where(
            func.lower(Inbound.mail_from) == jane)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            or_(AuditEntry.detail.contains(jane), AuditEntry.actor.contains(jane)))) == 0
        assert not [raw for raw in session.scalars(select(OutMessage.raw)) if jane.encode() in raw]


def test_forget_erases_mail_sent_from_the_address_under_another_name(cli, shma, daemon, store):
    """Held mail whose envelope is the forgotten address goes too (its inbound row with it)."""
    jane = "jane@example.org"
    message = make_message(sender="Someone Else <else@example.net>", subject="Via Jane")
    assert lmtp_send(daemon.ports["lmtp"], jane, [LIST], message) == {}
    (held,) = wait_for_held(cli, 1)
    assert held["sender"] == "else@example.net"

    cli("members", "remove", shma, jane, "--forget")  # not a member: erasing is still fine

    assert as_json(cli, "held", "list") == []
    with store.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Inbound).where(
            func.lower(Inbound.mail_from) == jane)) == 0


def test_members_remove_keeps_other_data_without_forget(cli, shma):
    cli("members", "add", shma, "jane@example.org", "--no-welcome")
    cli("members", "remove", shma, "jane@example.org")
    assert as_json(cli, "members", "list", shma) == []
    actions = [(e["action"], e["detail"]) for e in as_json(cli, "log")]
    assert ("member-removed", "jane@example.org") in actions
    assert ("member-added", "jane@example.org") in actions


@pytest.mark.both_backends
def test_every_chair_action_is_in_the_log(cli, shma, daemon, tmp_path):
    for n in range(3):
        post(daemon, f"stranger{n}@example.net", f"Post {n}")
    held = wait_for_held(cli, 3)
    roster = tmp_path / "r.csv"
    roster.write_text("email\nimported@example.org\n")

    cli("lists", "set", shma, "reply_to", "list")
    cli("members", "add", shma, "jane@example.org", "--no-welcome")
    cli("members", "import", shma, str(roster))
    cli("members", "remove", shma, "jane@example.org")
    cli("members", "add", shma, "gone@example.org", "--no-welcome")
    cli("members", "remove", shma, "gone@example.org", "--forget")
    cli("held", "approve", held[0]["id"])
    cli("held", "reject", held[1]["id"], "--reason", "off topic")
    cli("held", "discard", held[2]["id"])

    log = as_json(cli, "log", "--limit", "1000")
    chair = [e for e in log if e["actor"].startswith("chair")]
    assert [e["action"] for e in chair] == [
        "list-created", "list-set", "member-added", "members-imported", "member-removed",
        "member-added", "member-forgotten", "held-approved", "held-rejected", "held-discarded",
    ]
    for entry in chair:
        assert entry["list"] == LIST
        assert entry["at"]
        assert isinstance(entry["id"], str)
    # Automatic decisions are there too, by the daemon.
    assert [e["action"] for e in log if e["actor"] == "listserv"].count("held") == 3
    assert "off topic" in next(e["detail"] for e in chair if e["action"] == "held-rejected")


# -- list settings ---------------------------------------------------------------------------


def test_public_request_address_changes_list_help(cli, shma, daemon, sink):
    result = cli("lists", "set", shma, "address.request", "Group+Request@Provider.Example")
    assert "address.request set" in result.stdout

    info = as_json(cli, "lists", "show", shma)
    assert info["addresses"]["request"] == "group+request@provider.example"
    assert info["headers"]["List-Help"] == "<mailto:group+request@provider.example?subject=help>"
    assert info["addresses"]["owner"] == "shma-owner@lists.example.org"  # others unchanged
    text = cli("lists", "show", shma).stdout
    assert "List-Help: <mailto:group+request@provider.example?subject=help>" in text

    # The distributed copies use it too.
    cli("members", "add", shma, "jane@example.org", "--no-welcome")
    post(daemon, "jane@example.org", "Hello all")
    sink.wait_for_recipients(1)
    copy = parse(sink.deliveries[0].data)
    assert copy["List-Help"] == "<mailto:group+request@provider.example?subject=help>"

    # An empty value goes back to the default.
    cli("lists", "set", shma, "address.request", "")
    assert as_json(cli, "lists", "show", shma)["headers"]["List-Help"] == (
        "<mailto:shma-request@lists.example.org?subject=help>")
