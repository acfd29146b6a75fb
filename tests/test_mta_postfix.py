"""`listserv mta postfix` (issue 18, acceptance 5): its output, installed into a real Postfix
(tests/postfix.py), routes a post and a DSN to `-bounces+TOKEN` to the running daemon, and
Postfix itself refuses an address of the list domain that is no list's at RCPT TO.
"""

from __future__ import annotations

import json
import re
import smtplib
from pathlib import Path

from .helpers import LIST, parse, wait_until
from .test_postfix_e2e import post_through, relay_config, serving

JANE, ANN, CHAIR = "jane@example.net", "ann@example.net", "chair@example.org"


def install(printed: str, postfix) -> None:
    """Put `listserv mta postfix`'s blocks into the private Postfix: the `main.cf` lines
    after its own (Postfix keeps a parameter's last value), each map file where it says.

    The instance's `relay_transport` is an error ("no delivery outside the test"), which
    would refuse an unknown address of a relay domain by itself; as in a real Postfix, one
    that takes mail (here: discards it) leaves the refusing to the maps.
    """
    blocks: dict[str, list[str]] = {}
    current = None
    for line in printed.splitlines():
        if line.startswith("# ==> ") and line.endswith(" <=="):
            current = blocks.setdefault(line[6:-4], [])
        elif current is not None and line and not line.startswith("#"):
            current.append(line)
    with (postfix.conf / "main.cf").open("a") as main_cf:
        main_cf.write("relay_transport = discard:\n# listserv mta postfix\n"
                      + "".join(f"{line}\n" for line in blocks["main.cf"]))
    for name, lines in blocks.items():
        if name not in ("main.cf", "then"):
            Path(name).write_text("".join(f"{line}\n" for line in lines))


def dsn(member: str, bounce_address: str) -> bytes:
    """A delivery report (RFC 3464) saying `member`'s mailbox does not exist, CRLF only."""
    return "\r\n".join([
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)",
        f"To: {bounce_address}",
        "Subject: Undelivered Mail Returned to Sender",
        "Date: Sun, 06 Dec 2026 20:00:00 +0000",
        "Message-ID: <dsn.1@mx.example.net>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r1"',
        "",
        "--r1",
        "Content-Type: text/plain",
        "",
        f"<{member}>: host mx.example.net said: 550 5.1.1 no such mailbox",
        "",
        "--r1",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.net",
        "",
        f"Final-Recipient: rfc822; {member}",
        "Action: failed",
        "Status: 5.1.1",
        f"Diagnostic-Code: smtp; 550 5.1.1 <{member}>: no such mailbox",
        "",
        "--r1--",
        "",
    ]).encode()


def test_the_printed_postfix_config_routes_posts_and_dsns_and_refuses_unknown_addresses(
        cli, shma, postfix, tmp_path, db_url):
    for member in (JANE, ANN):
        cli("members", "add", shma, member, "--no-welcome")
    config = relay_config(tmp_path, db_url, postfix)
    with serving(config) as daemon:
        printed = cli("--config", str(config), "mta", "postfix", "--maps-dir",
                      str(postfix.conf)).output
        assert f"lmtp:inet:127.0.0.1:{daemon.ports['lmtp']}" in printed
        postfix.configure(mailboxes=[JANE, ANN, CHAIR])
        install(printed, postfix)
        postfix.start()
        assert postfix.postconf("recipient_delimiter") == "+"

        post_through(postfix, JANE, "Routed by the printed maps")
        copy = parse(postfix.wait_for_mail(ANN)[0])
        assert copy["Subject"] == "[shma] Routed by the printed maps"
        bounce_address = copy["Return-Path"].strip("<>")
        assert bounce_address.startswith("shma-bounces+")

        with smtplib.SMTP(postfix.host, postfix.port) as client:
            assert client.sendmail("", [bounce_address], dsn(ANN, bounce_address)) == {}
            client.rset()
            client.mail(JANE)
            code, answer = client.rcpt("nobody@lists.example.org")

        def events() -> list:
            return json.loads(cli("bounces", "show", ANN, "--json").output)["events"]

        [event] = wait_until(events, timeout=30, what="the DSN counted for ann")
        lmtp = daemon.ports["lmtp"]
    assert (event["source"], event["kind"], event["counted"]) == ("report", "permanent", True)
    # Refused by Postfix itself, at RCPT TO: the daemon never hears of it.
    assert code == 550
    assert b"5.1.1 <nobody@lists.example.org>" in answer
    assert b"User unknown in relay recipient table" in answer
    log = postfix.log()
    assert f"to=<{bounce_address}>, relay=127.0.0.1[127.0.0.1]:{lmtp}" in log
    assert "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@" in log
    assert "to=<nobody@lists.example.org>, relay=" not in log
    assert LIST in printed


def test_every_address_of_the_list_and_its_tokens_base_is_mapped(cli, shma, tmp_path, db_url):
    config = tmp_path / "production.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db_url}"\n'
                      '[intake.lmtp]\nhost = "0.0.0.0"\nport = 8024\n')
    printed = cli("--config", str(config), "mta", "postfix", "--map-type", "hash").output
    assert "postmap /etc/postfix/listserv-transport /etc/postfix/listserv-recipients" in printed
    assert "relay_recipient_maps = hash:/etc/postfix/listserv-recipients" in printed
    for local in ("shma", "shma-request", "shma-join", "shma-leave", "shma-owner",
                  "shma-bounces", "shma-confirm", "shma-column", "shma-peer-input"):
        assert f"\n{local}@lists.example.org " in printed
    assert "\nshma-peer-input@lists.example.org lmtp:inet:127.0.0.1:8024\n" in printed
    assert "\nrecipient_delimiter = +\nrelay_domains = lists.example.org\n" in printed


def test_without_a_known_lmtp_port_or_with_a_hosted_mailbox_it_says_why(cli, shma, tmp_path,
                                                                      db_url):
    config = tmp_path / "ports-zero.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db_url}"\n'
                      "[intake.lmtp]\nport = 0\n[intake.smtp]\nenabled = false\n")
    result = cli("--config", str(config), "mta", "postfix", ok=False)
    assert result.exit_code == 1
    assert "[intake.lmtp] port = 0 and no running daemon has written" in result.output

    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db_url}"\n'
                      "[intake.lmtp]\nenabled = false\n[intake.smtp]\nport = 2525\n")
    printed = cli("--config", str(config), "mta", "postfix").output
    assert re.search(r"\nshma@lists\.example\.org +smtp:\[127\.0\.0\.1\]:2525\n", printed)

    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db_url}"\n'
                      '[intake.imap]\nenabled = true\nusername = "group@example.org"\n'
                      'password_env = "HOME"\n')
    result = cli("--config", str(config), "mta", "postfix", ok=False)
    assert result.exit_code == 1 and "lists live on a hosted mailbox" in result.output
