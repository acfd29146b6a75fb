"""Outbound SMTP with STARTTLS or implicit TLS and AUTH, against a real aiosmtpd server."""

from __future__ import annotations

import pytest

from listserv.config import load_settings
from listserv.delivery.transports import Outcome, SmtpTransport

from .helpers import make_message, write_secret
from .submission_server import (  # noqa: F401 (fixtures)
    WARNING_FILTERS,
    certificate_fixture,
    submission_server_fixture,
)

pytestmark = WARNING_FILTERS


def outbound(tmp_path, port: int, tls: str, password: str = "app-password"):
    secret = write_secret(tmp_path / "smtp-password", password + "\n")
    return load_settings(None, data_dir=str(tmp_path), outbound={
        "transport": "smtp", "host": "127.0.0.1", "port": port, "tls": tls,
        "verify_cert": False, "username": "group@example.org",
        "password_file": str(secret)}).outbound


@pytest.mark.parametrize("submission_server,tls", [("starttls", "starttls"),
                                                   ("implicit", "implicit")],
                         indirect=["submission_server"])
def test_sends_over_tls_with_auth(tmp_path, submission_server, tls):
    port, recorder = submission_server
    transport = SmtpTransport(outbound(tmp_path, port, tls))
    data = make_message()
    results = transport.send("group@example.org", ["jane@example.org"], data)
    transport.close()
    assert results["jane@example.org"].outcome is Outcome.SENT
    [(sender, rcpts, content, encrypted)] = recorder.messages
    assert (sender, rcpts, encrypted) == ("group@example.org", ["jane@example.org"], True)
    assert content == data


@pytest.mark.parametrize("submission_server", ["starttls"], indirect=True)
def test_wrong_password_is_a_temporary_failure_kept_for_retry(tmp_path, submission_server):
    port, recorder = submission_server
    transport = SmtpTransport(outbound(tmp_path, port, "starttls", password="wrong"))
    results = transport.send("group@example.org", ["jane@example.org"], make_message())
    assert results["jane@example.org"].outcome is Outcome.TEMPORARY
    assert "535" in results["jane@example.org"].reason
    assert recorder.messages == []


@pytest.mark.parametrize("submission_server", ["starttls"], indirect=True)
def test_certificate_is_verified_unless_told_otherwise(tmp_path, submission_server):
    port, _ = submission_server
    settings = load_settings(None, data_dir=str(tmp_path), outbound={
        "transport": "smtp", "host": "127.0.0.1", "port": port, "tls": "starttls"}).outbound
    results = SmtpTransport(settings).send("a@example.org", ["b@example.org"], make_message())
    assert results["b@example.org"].outcome is Outcome.TEMPORARY
    assert "CERTIFICATE_VERIFY_FAILED" in results["b@example.org"].reason
