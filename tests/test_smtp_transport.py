"""Outbound SMTP with STARTTLS or implicit TLS and AUTH, against a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from listserv.config import load_settings
from listserv.transports import Outcome, SmtpTransport

from .helpers import make_message

# aiosmtpd's own AUTH code touches its deprecated Session.login_data, and it warns about
# AUTH without STARTTLS even when the whole connection is implicit TLS.
pytestmark = [pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_DATA(self, server, session, envelope):
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content, encrypted))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"group@example.org" \
        and auth_data.password == b"app-password"
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def submission_server(request, certificate) -> Iterator[tuple[int, Recorder]]:
    """A submission server: STARTTLS required before AUTH (587), or implicit TLS (465)."""
    implicit = request.param == "implicit"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    recorder = Recorder()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    connections: list[SMTP] = []

    def factory() -> SMTP:
        connections.append(SMTP(recorder, tls_context=None if implicit else context,
                    require_starttls=not implicit, auth_required=True,
                    # aiosmtpd only knows TLS it started itself (STARTTLS); implicit is TLS too.
                    auth_require_tls=not implicit, authenticator=authenticate, loop=loop))
        return connections[-1]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(
            factory, "127.0.0.1", 0, ssl=context if implicit else None))
        holder["server"] = server
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        for protocol in connections:
            if protocol.transport is not None:
                protocol.transport.close()
        loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(asyncio.sleep(0.2))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield int(holder["port"]), recorder
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def outbound(tmp_path, port: int, tls: str, password: str = "app-password"):
    secret = tmp_path / "smtp-password"
    secret.write_text(password + "\n")
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
