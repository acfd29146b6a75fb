"""Joining and leaving by email (SPEC §2), through LMTP and an SMTP sink."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from listserv.store.models.core import Member

from .helpers import LIST, inbound_outcomes, lmtp_send, make_message, parse, wait_handled

REQUEST = "shma-request@lists.example.org"
JANE = "jane@example.org"


def send(daemon, sender: str, to: str, subject: str, body: str, name: str = "",
         **headers: str) -> None:
    From = f"{name} <{sender}>" if name else sender
    lmtp_send(daemon.ports["lmtp"], sender, [to],
              make_message(sender=From, to=to, subject=subject, body=body, **headers))


def mails_to(sink, address: str):
    return [parse(d.data) for d in sink.messages_for(address)]


def wait_mails(sink, address: str, count: int = 1, what: str = "mail"):
    sink.wait_for(lambda s: len(s.messages_for(address)) >= count,
                  description=f"{count} {what} to {address}")
    return mails_to(sink, address)


def members(cli) -> dict[str, dict[str, str]]:
    return {m["email"]: m for m in json.loads(cli("members", "list", LIST, "--json").output)}


def confirm_address(msg) -> str:
    return str(msg["Reply-To"])


def leave_address(store, email: str) -> str:
    """A member's own `-leave+TOKEN` address (her welcome and her copies' footers name it)."""
    with store.reading() as session:
        token = session.scalar(select(Member.leave_token).where(Member.email == email))
    return f"shma-leave+{token}@lists.example.org"


def test_free_text_add_me_then_reply_ok_makes_a_member_with_her_name(cli, shma, daemon, sink,
                                                                    store):
    send(daemon, JANE, REQUEST, "Joining",
         "Hi, could you please add me to the listserv? Thanks — Jane\n", name="Jane Doe")
    [confirmation] = wait_mails(sink, JANE, what="confirmation")
    token = re.search(r"confirm ([a-z0-9]+)\)", str(confirmation["Subject"])).group(1)
    assert confirm_address(confirmation) == f"shma-confirm+{token}@lists.example.org"
    assert confirmation["Auto-Submitted"] == "auto-replied"
    assert JANE not in members(cli)
    send(daemon, JANE, confirm_address(confirmation), f"Re: {confirmation['Subject']}",
         "OK\n\n> To confirm, simply reply to this message\n", name="Jane Doe")
    mails = wait_mails(sink, JANE, 2, "welcome")
    assert mails[1]["Subject"] == "Welcome to the shma list"
    assert members(cli)[JANE]["name"] == "Jane Doe"
    # The token is single use.
    send(daemon, JANE, confirm_address(confirmation), "Re: again", "OK")
    wait_handled(sink, store, 3)
    assert len(mails_to(sink, JANE)) == 2


@pytest.mark.parametrize("lang,body,word", [
    ("es", "Hola, ¿me pueden agregar a la lista, por favor? Gracias, Ana", "confirmar"),
    ("fr", "Bonjour, pourriez-vous m'inscrire à la liste ? Merci, Anne", "confirmer"),
    ("de", "Hallo, bitte nehmen Sie mich in die Mailingliste auf. Danke, Anna", "bestätigung"),
    ("pt", "Olá, gostaria de me inscrever na lista, por favor. Obrigada, Ana", "confirmar"),
])
def test_confirmation_is_in_the_requesters_language(cli, shma, daemon, sink, lang, body, word):
    send(daemon, "ana@example.org", REQUEST, "", body, name="Ana")
    [confirmation] = wait_mails(sink, "ana@example.org", what="confirmation")
    assert word in confirmation.get_content().lower()


def test_request_for_someone_else_goes_to_them_only_and_quotes_nothing(cli, shma, daemon,
                                                                       sink):
    send(daemon, "bob@example.org", REQUEST, "Add my colleague Alice, she is great",
         "Please add my colleague alice@example.net to the list. Bob's secret words.\n",
         name="Bob Mischief")
    [confirmation] = wait_mails(sink, "alice@example.net", what="confirmation")
    text = confirmation.as_string()
    for phrase in ("Bob", "secret", "colleague", "she is great", "bob@example.org"):
        assert phrase not in text
    assert "alice@example.net" not in members(cli)
    assert not any("alice" in m for m in members(cli))
    # Bob hears what was done; alice is never a member without her own reply.
    assert all("Please confirm" not in str(m["Subject"])
               for m in mails_to(sink, "bob@example.org"))


def test_twenty_forged_requests_send_at_most_three_mails(cli, shma, daemon, sink, store):
    for i in range(20):
        send(daemon, f"forger{i}@evil.example", REQUEST, "subscribe",
             "Please add victim@example.net to the list.\n")
    wait_handled(sink, store, 20, timeout=30)
    daemon.deliver_wake.set()
    sink.wait_for(lambda s: len(s.messages_for("forger19@evil.example")) >= 1,
                  description="the last forger's answer")
    assert 1 <= len(mails_to(sink, "victim@example.net")) <= 3
    log = json.loads(cli("log", "--json", "--limit", "1000").output)
    assert any(e["action"] == "cap-suppressed" for e in log)


def test_out_of_office_replies_confirm_nothing_and_undo_nothing(cli, shma, daemon, sink, store):
    send(daemon, JANE, REQUEST, "subscribe", "subscribe")
    [confirmation] = wait_mails(sink, JANE, what="confirmation")
    send(daemon, JANE, confirm_address(confirmation), "Automatic reply: Please confirm",
         "I am out of the office until Monday.", Auto_Submitted="auto-replied")
    cli("members", "add", LIST, "ann@example.net", "--no-welcome")
    send(daemon, "ann@example.net", leave_address(store, "ann@example.net"), "bye", "")
    [goodbye] = wait_mails(sink, "ann@example.net", what="goodbye")
    send(daemon, "ann@example.net", confirm_address(goodbye), "Out of Office: bye",
         "I am away.", X_Autoreply="yes")
    wait_handled(sink, store, 4)
    assert JANE not in members(cli) and "ann@example.net" not in members(cli)
    log = json.loads(cli("log", "--json", "--limit", "1000").output)
    assert [e["action"] for e in log].count("ignored") == 2


def test_confirm_and_approve_policy_waits_for_the_chair(cli, shma, daemon, sink):
    cli("lists", "set", LIST, "policy", "confirm+approve")
    for who in (JANE, "tom@example.org"):
        send(daemon, who, "shma-join@lists.example.org", "", "")
        [confirmation] = wait_mails(sink, who, what="confirmation")
        send(daemon, who, confirm_address(confirmation), "Re: confirm", "yes please")
        wait_mails(sink, who, 2, "waiting notice")
    waiting = json.loads(cli("requests", "list", "--json").output)
    assert [(r["email"], r["kind"], r["status"]) for r in waiting] == [
        (JANE, "subscribe", "waiting"), ("tom@example.org", "subscribe", "waiting")]
    assert len(wait_mails(sink, "chair@example.org", 2, "owner notices")) == 2
    cli("requests", "approve", waiting[0]["id"])
    cli("requests", "deny", waiting[1]["id"], "--reason", "This list is for researchers.")
    assert wait_mails(sink, JANE, 3, "welcome")[2]["Subject"] == "Welcome to the shma list"
    denial = wait_mails(sink, "tom@example.org", 3, "denial")[2]
    assert "This list is for researchers." in denial.get_content()
    assert JANE in members(cli) and "tom@example.org" not in members(cli)
    assert json.loads(cli("requests", "list", "--json").output) == []


@pytest.mark.parametrize("how", ["leave-address", "signoff", "token"])
def test_leaving_takes_a_proof_or_a_confirmation_and_one_reply_undoes_it(cli, shma, daemon,
                                                                          sink, how):
    cli("members", "add", LIST, JANE, "--name", "Jane Doe")
    [welcome] = wait_mails(sink, JANE, what="welcome")
    if how == "token":  # her own leave address proves her: she leaves at once
        token_address = re.search(r"(shma-leave\+[a-z0-9]+@lists\.example\.org)",
                                  welcome.get_content()).group(1)
        send(daemon, "forwarder@else.org", token_address, "unsubscribe", "")
    else:  # a plain mail proves nothing (SPEC §2): she confirms first
        if how == "leave-address":
            send(daemon, JANE, "shma-leave@lists.example.org", "", "")
        else:
            send(daemon, JANE, REQUEST, "", "SIGNOFF SHMA\n")
        confirmation = wait_mails(sink, JANE, 2, "confirmation")[1]
        assert "leave" in str(confirmation["Subject"])
        assert JANE in members(cli)
        send(daemon, JANE, confirm_address(confirmation), "Re: confirm", "OK")
    goodbye = wait_mails(sink, JANE, 3 if how != "token" else 2, "goodbye")[-1]
    assert goodbye["Subject"] == "You have left the shma list"
    assert JANE not in members(cli)
    send(daemon, JANE, confirm_address(goodbye), "Re: You have left", "undo")
    welcome_back = wait_mails(sink, JANE, 4 if how != "token" else 3, "welcome back")[-1]
    assert welcome_back["Subject"] == "Welcome to the shma list"
    assert members(cli)[JANE]["name"] == "Jane Doe"


def test_free_text_remove_me_asks_first(cli, shma, daemon, sink):
    cli("members", "add", LIST, JANE, "--no-welcome")
    send(daemon, JANE, REQUEST, "", "Please remove me from this mailing list, thank you.")
    [confirmation] = wait_mails(sink, JANE, what="confirmation")
    assert "leave" in str(confirmation["Subject"])
    assert JANE in members(cli)
    send(daemon, JANE, confirm_address(confirmation), "Re: confirm", "OK")
    wait_mails(sink, JANE, 2, "goodbye")
    assert JANE not in members(cli)


def test_unclear_mail_gets_help_and_reaches_the_chair(cli, shma, daemon, sink):
    send(daemon, "visitor@else.org", REQUEST, "Question about your group",
         "What time zone are you all in? I might visit Chicago next spring.")
    [help_text] = wait_mails(sink, "visitor@else.org", what="help")
    assert "subscribe" in help_text.get_content()
    [request] = json.loads(cli("requests", "list", "--json").output)
    assert (request["email"], request["kind"], request["status"]) == (
        "visitor@else.org", "unclear", "waiting")


def test_long_command_mail_is_processed_to_a_limit_and_answered_once(cli, shma, daemon, sink,
                                                                    store):
    cli("members", "add", LIST, JANE, "--no-welcome")
    body = "set nomail\n" + "info\n" * 499
    send(daemon, JANE, REQUEST, "", body)
    wait_handled(sink, store, 1)
    daemon.deliver_wake.set()
    results = [m for m in wait_mails(sink, JANE, 2, "results and the confirmation")
               if "results" in str(m["Subject"])]
    sink.wait_for(lambda s: True)
    assert len(results) == 1
    text = results[0].get_content()
    # An unproven sender's `set nomail` waits for her confirmation (SPEC §2).
    assert f"set nomail: a confirmation was sent to {JANE}" in text and "Ignored" in text
    assert members(cli)[JANE]["delivery"] == "regular"
    assert len(mails_to(sink, JANE)) <= 11


def test_a_command_mail_to_the_list_is_answered_once_within_the_limit_never_distributed(
        cli, shma, daemon, sink, store):
    # "help" and 500 command lines (issue 12, 7): a request, 10 lines handled, one reply.
    cli("members", "add", LIST, JANE, "--no-welcome")
    cli("members", "add", LIST, "ann@example.net", "--no-welcome")
    send(daemon, JANE, LIST, "commands",
         "help\n" + "subscribe address=x@example.net\n" * 500)
    [confirmation] = wait_mails(sink, "x@example.net", what="confirmation")
    assert "Please confirm" in str(confirmation["Subject"])
    [reply] = wait_mails(sink, JANE, what="the results")
    text = reply.get_content()
    assert "results of your request" in str(reply["Subject"])
    assert "help: below" in text
    assert "subscribe: any confirmation goes to x@example.net itself" in text
    assert "Ignored (491 more lines" in text  # 10 of the 501 lines handled
    [(status, outcome)] = inbound_outcomes(store)
    assert status == "done" and outcome.startswith("request:")
    assert not mails_to(sink, "ann@example.net")
    assert json.loads(cli("held", "list", "--json").output) == []
    assert len(mails_to(sink, JANE)) == 1


@pytest.mark.parametrize("to,subject,body", [
    (REQUEST, "", "subscribe address=newcomer@example.net"),
    (REQUEST, "subscribe address=newcomer@example.net", ""),
    (REQUEST, "", "SUBSCRIBE SHMA address=<newcomer@example.net>"),
    (REQUEST, "", "Please subscribe address=newcomer@example.net to the list, thanks."),
    (LIST, "", "subscribe address=newcomer@example.net"),
    (LIST, "subscribe address=newcomer@example.net", ""),
], ids=["request-body", "request-subject", "request-angle", "request-free-text", "list-body",
        "list-subject"])
def test_mailmans_address_form_works_wherever_commands_are_read(cli, shma, daemon, sink, to,
                                                                subject, body):
    cli("members", "add", LIST, JANE, "--no-welcome")
    send(daemon, JANE, to, subject, body)
    [confirmation] = wait_mails(sink, "newcomer@example.net", what="confirmation")
    assert "Please confirm" in str(confirmation["Subject"])
    assert "newcomer@example.net" not in members(cli)


@pytest.mark.parametrize("to", [REQUEST, LIST])
def test_unsubscribe_in_mailmans_address_form_asks_the_address_itself(cli, shma, daemon, sink,
                                                                      to):
    cli("members", "add", LIST, JANE, "--no-welcome")
    cli("members", "add", LIST, "ann@example.net", "--no-welcome")
    send(daemon, JANE, to, "", "unsubscribe address=ann@example.net")
    [confirmation] = wait_mails(sink, "ann@example.net", what="confirmation")
    assert "leave" in str(confirmation["Subject"])
    assert "ann@example.net" in members(cli)


def test_add_me_on_the_list_address_is_handled_as_a_request(cli, shma, daemon, sink):
    cli("members", "add", LIST, "ann@example.net", "--no-welcome")
    send(daemon, JANE, LIST, "add me", "Please add me to the list. Thanks!")
    [confirmation] = wait_mails(sink, JANE, what="confirmation")
    assert "Please confirm" in str(confirmation["Subject"])
    assert not mails_to(sink, "ann@example.net")
    assert json.loads(cli("held", "list", "--json").output) == []


@pytest.mark.parametrize("sender,headers", [
    ("jane@example.org", {"Auto_Submitted": "auto-replied"}),
    ("MAILER-DAEMON@mx.example.org", {}),
])
def test_automatic_mail_to_the_request_address_gets_no_answer(cli, shma, daemon, sink, store,
                                                              sender, headers):
    send(daemon, sender, REQUEST, "Re: subscribe", "please add me", **headers)
    wait_handled(sink, store, 1)
    assert json.loads(cli("requests", "list", "--json").output) == []
    daemon.deliver_wake.set()
    assert not sink.messages_for(sender)
    assert [e["action"] for e in json.loads(cli("log", "--json").output)][-1] == "ignored"


def test_info_names_the_next_meeting_and_gives_the_dial_in_only_to_members(cli, shma, daemon,
                                                                          sink, store):
    year = datetime.now(UTC).year + 1  # always ahead
    cli("meetings", "schedule", LIST, "--at", f"{year}-01-16 12:00", "--tz", "America/Chicago",
        "--duration", "60", "--dial-in", "+1 555 0100, code 4321")
    cli("members", "add", LIST, JANE)
    [welcome] = wait_mails(sink, JANE, what="welcome")
    day = f"16 January {year}"
    assert day in welcome.get_content() and "4321" in welcome.get_content()
    send(daemon, JANE, REQUEST, "info", "info")
    send(daemon, "visitor@else.org", REQUEST, "info", "info")
    member_info = wait_mails(sink, JANE, 2, "info")[1].get_content()
    visitor_info = wait_mails(sink, "visitor@else.org", what="info")[0].get_content()
    assert day in member_info and "4321" in member_info
    assert day in visitor_info and "4321" not in visitor_info
