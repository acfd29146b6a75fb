"""A mail submission server for tests: aiosmtpd requiring STARTTLS (587) or implicit TLS (465),
and AUTH, recording every transaction it accepts.

It is as strict about the message as the SMTP sink (tests/smtp_sink.py, `refusal`): what the
sink refuses, it answers with the same 5xx, and the fixtures fail the test at teardown.

Test modules import the fixtures `certificate` and `submission_server` (as
`certificate_fixture`, `submission_server_fixture`, so that test arguments do not shadow the
imports); `submission_server` is parametrized indirectly with "starttls" or "implicit". A
module's own fixture may start a `SubmissionServer` itself.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .smtp_sink import refusal

ACCOUNT = "group@example.org"
PASSWORD = "app-password"

# aiosmtpd's own AUTH code touches its deprecated Session.login_data, and it warns about
# AUTH without STARTTLS even when the whole connection is implicit TLS. Modules using the
# server add these to their `pytestmark`.
WARNING_FILTERS = [pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
                   pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


@dataclass(frozen=True, slots=True)
class Submission:
    """One accepted transaction."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    encrypted: bool
    login: bytes


class Recorder:
    """The aiosmtpd handler: keeps what it accepted, in order (read from any thread)."""

    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.refusals: list[str] = []  # the strict checks' replies, with what they refused

    @property
    def messages(self) -> list[tuple[str, list[str], bytes, bool]]:
        """(MAIL FROM, RCPT TOs, bytes, over TLS) of each transaction."""
        return [(s.mail_from, s.rcpt_tos, s.data, s.encrypted) for s in self.submissions]

    async def handle_DATA(self, server, session, envelope):
        options = [option.upper() for option in envelope.mail_options]
        refused = refusal(envelope.original_content, body_8bitmime="BODY=8BITMIME" in options,
                          smtputf8="SMTPUTF8" in options)
        if refused is not None:
            self.refusals.append(f"{refused}: {envelope.original_content[:300]!r}")
            return refused
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.submissions.append(Submission(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, encrypted,
            session.auth_data.login if isinstance(session.auth_data, LoginPassword) else b""))
        return "250 OK"

    def wait_for(self, condition: Callable[[Recorder], bool], timeout: float = 20.0,
                 description: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {description}; "
                                     f"{len(self.submissions)} transactions received")
            time.sleep(0.02)


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == ACCOUNT.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class SubmissionServer:
    """Runs on its own event loop in a thread, on a free loopback port, until `stop()`."""

    def __init__(self, certificate: tuple[Path, Path], implicit: bool) -> None:
        self.implicit = implicit
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*certificate)
        self.recorder = Recorder()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._connections: list[SMTP] = []
        self._thread = threading.Thread(target=self._serve, name="submission", daemon=True)
        self._ready = threading.Event()

    def _factory(self) -> SMTP:
        implicit = self.implicit
        self._connections.append(SMTP(
            self.recorder, tls_context=None if implicit else self.context,
            require_starttls=not implicit, auth_required=True,
            # aiosmtpd only knows TLS it started itself (STARTTLS); implicit is TLS too.
            auth_require_tls=not implicit, authenticator=authenticate, loop=self._loop))
        return self._connections[-1]

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(
            self._factory, "127.0.0.1", 0, ssl=self.context if self.implicit else None))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()
        for protocol in self._connections:
            if protocol.transport is not None:
                protocol.transport.abort()
        # The connections' handler tasks end before the loop closes (no waiting "long enough").
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(asyncio.sleep(0))  # let connection_lost run

    def start(self) -> SubmissionServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module", name="certificate")
def certificate_fixture(tmp_path_factory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(name="submission_server")
def submission_server_fixture(request, certificate) -> Iterator[tuple[int, Recorder]]:
    """A submission server: STARTTLS required before AUTH (587), or implicit TLS (465)."""
    server = SubmissionServer(certificate, implicit=request.param == "implicit").start()
    yield server.port, server.recorder
    server.stop()
    assert not server.recorder.refusals, server.recorder.refusals
