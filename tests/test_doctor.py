"""`listserv doctor` (issue 18, acceptance 4): each finding with its fix, exit 2 while one fails.

DNS comes from the loopback DNS server of tests/dns_stub.py (every resolver of the test points
at it), the relay is the SMTP sink or a submission server with STARTTLS and AUTH, the web
endpoint a small HTTP server on a free port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

from .dkim_keys import dkim_record_of, new_dkim_key
from .helpers import LIST, free_port, lmtp_send, make_message, write_config, write_secret
from .submission_server import (  # noqa: F401 (fixtures)
    ACCOUNT,
    PASSWORD,
    WARNING_FILTERS,
    SubmissionServer,
    certificate_fixture,
)

pytestmark = WARNING_FILTERS

DOMAIN = "lists.example.org"
# write_config names this machine lists.example.org ([daemon] hostname): mail leaves from there.
HOST_IP = "192.0.2.25"
SELECTOR = "s2027"
DKIM_NAME = f"{SELECTOR}._domainkey.{DOMAIN}"


def publish_mail_records(zone) -> None:
    """MX, the sending host's address and an SPF record that lets it send: all but DKIM and
    DMARC, which the tests set themselves."""
    zone.mx[DOMAIN] = [(10, DOMAIN)]
    zone.hosts[DOMAIN] = [HOST_IP]
    zone.records[DOMAIN] = ["v=spf1 a -all"]


def sign_with(config_path: Path, key: bytes) -> None:
    """Turn DKIM signing on for the list domain with this key (0600, as keygen writes it)."""
    key_file = config_path.parent / "dkim.pem"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    with config_path.open("a") as config:
        config.write(f'[dkim]\nselector = "{SELECTOR}"\nprivate_key_file = "{key_file}"\n')


def doctor(cli, *args: str) -> tuple[int, dict[str, dict]]:
    """Run `doctor --json`: its exit code and its findings by check name."""
    result = cli("doctor", "--json", *args, ok=False)
    assert result.exit_code in (0, 2), result.output
    report = json.loads(result.output)
    return result.exit_code, {f["check"]: f for f in report["checks"]}


def joined(zone_text: str) -> str:
    """A TXT record as the zone-file strings of a fix print it, put back together."""
    return zone_text.replace('" "', "")


@pytest.mark.both_backends
def test_a_missing_dmarc_record_and_a_dkim_key_mismatch_are_reported_with_fixes_then_clear(
        cli, shma, config_path, dns_zone):
    key = new_dkim_key()
    sign_with(config_path, key)
    publish_mail_records(dns_zone)
    dns_zone.records[DKIM_NAME] = [dkim_record_of(new_dkim_key()).decode()]  # another key

    code, found = doctor(cli)

    assert code == 2
    assert found["dmarc"]["status"] == "fail"
    assert "no DMARC record" in found["dmarc"]["detail"]
    assert f'_dmarc.{DOMAIN}. IN TXT "v=DMARC1; p=none;' in found["dmarc"]["fix"]
    assert found["dkim"]["status"] == "fail"
    assert f"key mismatch at {DKIM_NAME}" in found["dkim"]["detail"]
    assert found["dkim"]["fix"].startswith(f"replace the record with: {DKIM_NAME}. IN TXT")
    assert dkim_record_of(key).decode() in joined(found["dkim"]["fix"])
    assert {found[c]["status"] for c in ("mx", "spf", "relay", "queue")} == {"ok"}
    text = cli("doctor", ok=False)
    assert text.exit_code == 2
    assert f"FAIL  dmarc {DOMAIN}: no DMARC record" in text.output
    assert f"      fix: publish: _dmarc.{DOMAIN}. IN TXT" in text.output
    assert text.output.endswith("2 problem(s) found\n")

    dns_zone.records[f"_dmarc.{DOMAIN}"] = ["v=DMARC1; p=quarantine"]
    dns_zone.records[DKIM_NAME] = [dkim_record_of(key).decode()]

    code, found = doctor(cli, LIST)
    assert code == 0
    assert {c: f["status"] for c, f in found.items()} == {
        "mx": "ok", "spf": "ok", "dkim": "ok", "dmarc": "ok", "relay": "ok", "web": "skip",
        "queue": "ok"}
    assert found["dkim"]["detail"].endswith("(2048 bits)")
    assert cli("doctor").output.endswith("all clear\n")


def test_dmarc_of_the_organisational_domain_counts(cli, shma, config_path, dns_zone):
    publish_mail_records(dns_zone)
    dns_zone.records["_dmarc.example.org"] = ["v=DMARC1; p=reject"]
    _, found = doctor(cli)
    assert found["dmarc"]["status"] == "ok"
    assert "p=reject (at example.org, the organisational domain)" in found["dmarc"]["detail"]
    # Without [dkim], signing is off: worth knowing, not a failure of its own.
    assert found["dkim"]["status"] == "warn"
    assert found["dkim"]["fix"].startswith(f"listserv dkim keygen {DOMAIN}")


def test_spf_that_leaves_out_the_sending_host_names_the_address_to_add(cli, shma, dns_zone):
    publish_mail_records(dns_zone)
    dns_zone.records[DOMAIN] = ["v=spf1 mx:other.example include:_spf.provider.example ~all"]
    dns_zone.records["_spf.provider.example"] = ["v=spf1 ip4:203.0.113.0/24 -all"]
    dns_zone.mx["other.example"] = [(5, "mx.other.example")]
    dns_zone.hosts["mx.other.example"] = ["198.51.100.7"]

    _, found = doctor(cli)
    assert found["spf"]["status"] == "fail"
    assert f"softfail ({DOMAIN}: ~all)" in found["spf"]["detail"]
    assert found["spf"]["fix"].startswith(f"add ip4:{HOST_IP} ")

    # Covered through an include and a redirect: pass.
    dns_zone.records["_spf.provider.example"] = ["v=spf1 redirect=_spf2.provider.example"]
    dns_zone.records["_spf2.provider.example"] = ["v=spf1 ip4:192.0.2.0/24 -all"]
    _, found = doctor(cli)
    assert found["spf"]["status"] == "ok", found["spf"]

    del dns_zone.records[DOMAIN]
    dns_zone.hosts[DOMAIN] = [HOST_IP]
    _, found = doctor(cli)
    assert found["spf"]["fix"] == f'publish: {DOMAIN}. IN TXT "v=spf1 ip4:{HOST_IP} -all"'


def test_no_mx_record_is_a_problem_with_the_record_to_publish(cli, shma, dns_zone):
    publish_mail_records(dns_zone)
    del dns_zone.mx[DOMAIN]
    code, found = doctor(cli)
    assert code == 2
    assert found["mx"]["status"] == "fail"
    assert found["mx"]["fix"].startswith(f"publish: {DOMAIN}. IN MX 10 {DOMAIN}.")


@pytest.fixture
def submission(certificate) -> Iterator[SubmissionServer]:
    """A relay that wants STARTTLS, then AUTH (a provider's port 587)."""
    server = SubmissionServer(certificate, implicit=False).start()
    yield server
    server.stop()


@pytest.mark.parametrize("password", [PASSWORD, "wrong"])
def test_the_relay_is_asked_for_tls_and_auth(cli, shma, tmp_path, db_url, submission,
                                             password):
    config = write_config(tmp_path / "relay.toml", tmp_path / "data", db_url, submission.port,
                          tls="starttls", verify_cert=False, username=ACCOUNT,
                          password_file=str(write_secret(tmp_path / "pw", password)))
    result = cli("--config", str(config), "doctor", "--json", ok=False)
    relay = {f["check"]: f for f in json.loads(result.output)["checks"]}["relay"]
    assert relay["subject"] == f"127.0.0.1:{submission.port}"
    if password == PASSWORD:
        assert relay["status"] == "ok"
        assert "TLSv1." in relay["detail"] and "(certificate not checked)" in relay["detail"]
        assert f"AUTH as {ACCOUNT} accepted" in relay["detail"]
    else:
        assert relay["status"] == "fail" and result.exit_code == 2
        assert relay["detail"].startswith("login refused: 535")
        assert "password_file" in relay["fix"]


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_web_base_url_must_answer_when_the_endpoint_is_on(cli, shma, config_path):
    port = free_port()
    with config_path.open("a") as config:
        config.write(f'[web]\nenabled = true\nbase_url = "http://127.0.0.1:{port}/"\n')
    _, found = doctor(cli)
    assert found["web"]["status"] == "fail"
    assert found["web"]["detail"].startswith("does not answer")

    server = HTTPServer(("127.0.0.1", port), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _, found = doctor(cli)
    finally:
        server.shutdown()
        server.server_close()
    # It answers (a 404 for / is an answer), but a plain http:// URL cannot carry one-click.
    assert found["web"]["status"] == "warn"
    assert "answers 404, but not over https" in found["web"]["detail"]


def test_an_unknown_list_is_one_line(cli, shma):
    result = cli("doctor", "nosuch", ok=False)
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no list named nosuch"


def queue_finding(config_path, clock) -> dict:
    """The queue check of `doctor --json`, on the daemon's clock."""
    result = CliRunner().invoke(main, ["--config", str(config_path), "doctor", "--json"],
                                obj=clock)
    return {f["check"]: f for f in json.loads(result.output)["checks"]}["queue"]


@pytest.mark.sink_refusals
def test_the_queue_fails_on_a_high_failure_rate_and_an_old_item_then_recovers(
        cli, shma, daemon, sink, config_path, clock):
    for number in range(10):
        cli("members", "add", shma, f"m{number}@example.net", "--no-welcome")
    assert queue_finding(config_path, clock)["status"] == "ok"

    sink.mail_from_response = "421 4.3.0 Service not available"  # the relay is down
    lmtp_send(daemon.ports["lmtp"], "m0@example.net", [LIST], make_message("m0@example.net"))
    sink.wait_for(lambda s: "10 failed" in queue_finding(config_path, clock)["detail"],
                  description="ten temporary failures counted")
    queue = queue_finding(config_path, clock)
    assert queue["status"] == "fail" and queue["detail"].endswith("(100% failed)")
    assert "listserv queue --failed" in queue["fix"]

    clock.advance(timedelta(minutes=31))
    queue = queue_finding(config_path, clock)
    assert queue["status"] == "fail"
    assert queue["detail"].endswith("(waiting more than 30 min)")

    sink.mail_from_response = None  # the relay is back
    clock.advance(timedelta(minutes=10))
    daemon.deliver_wake.set()
    sink.wait_for(lambda s: queue_finding(config_path, clock)["status"] == "ok", timeout=30,
                  description="the queue drained")


def test_on_a_hosted_mailbox_the_account_domain_is_the_envelope(cli, shma, tmp_path, db_url,
                                                                sink, dns_zone):
    config = write_config(tmp_path / "hosted.toml", tmp_path / "data", db_url, sink.port,
                          username="group@provider.example")
    with config.open("a") as file:
        file.write('[intake.imap]\nenabled = true\nhost = "127.0.0.1"\ntls = "none"\n'
                   'username = "group@provider.example"\npassword_env = "HOME"\n')
    dns_zone.hosts[DOMAIN] = [HOST_IP]  # the relay is this machine: mail leaves from its name
    dns_zone.records["provider.example"] = ["v=spf1 include:_spf.provider.example -all"]
    dns_zone.records["_spf.provider.example"] = ["v=spf1 ip4:203.0.113.0/24 -all"]

    result = cli("--config", str(config), "doctor", "--json", ok=False)
    found = {f["check"]: f for f in json.loads(result.output)["checks"]}
    assert found["mx"]["status"] == "ok"
    assert found["mx"]["detail"].startswith("hosted mailbox group@provider.example")
    assert (found["spf"]["subject"], found["spf"]["status"]) == ("provider.example", "warn")
    assert "the include: your provider documents" in found["spf"]["fix"]


def test_a_relay_certificate_nobody_vouches_for_is_a_problem(cli, shma, tmp_path, db_url,
                                                             certificate):
    server = SubmissionServer(certificate, implicit=True).start()  # self-signed, port 465
    try:
        config = write_config(tmp_path / "relay.toml", tmp_path / "data", db_url, server.port,
                              tls="implicit", username=ACCOUNT,
                              password_file=str(write_secret(tmp_path / "pw", PASSWORD)))
        result = cli("--config", str(config), "doctor", "--json", ok=False)
    finally:
        server.stop()
    relay = {f["check"]: f for f in json.loads(result.output)["checks"]}["relay"]
    assert relay["status"] == "fail" and result.exit_code == 2
    assert relay["detail"].startswith("its certificate is not trusted: self-signed")
    assert "verify_cert = false only for a relay you run yourself" in relay["fix"]
