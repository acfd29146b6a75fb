"""Shared fixtures: a config file and database per test, an SMTP sink, a running daemon, the CLI.

Tests marked `both_backends` run once on SQLite and once on the local PostgreSQL (each in a
schema of its own); those marked `postgresql_only` only on PostgreSQL. Without a reachable
server the PostgreSQL runs skip, unless LISTSERV_REQUIRE_PG=1 (set by .ci/run), where they fail.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from cli import main
from listserv.clock import FakeClock
from listserv.config import Settings, load_settings
from listserv.daemon import Daemon
from listserv.files import private_folder, write_new_private
from listserv.store.engine import Store

from .dns_stub import dns_zone, loopback_dns_server  # noqa: F401 (autouse: DNS on 127.0.0.1)
from .dovecot import INSTALL_HINT, Dovecot, DovecotError, ImapAccount, dovecot_binary
from .helpers import LIST, in_flight, wait_until, write_config
from .postfix import Postfix, postfix_problem
from .smtp_sink import SmtpSink

PG_ADMIN_URL = os.environ.get(
    "LISTSERV_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run on SQLite and on PostgreSQL")
    config.addinivalue_line(
        "markers", "postgresql_only: run on PostgreSQL only (several daemons on one database)")
    config.addinivalue_line(
        "markers", "sink_refusals: the test makes the strict SMTP sink refuse mail on purpose")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        backends = (["postgresql"] if marked("postgresql_only") is not None
                    else ["sqlite", "postgresql"] if marked("both_backends") is not None
                    else ["sqlite"])
        metafunc.parametrize("backend", backends)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts = {"sqlite": 0, "postgresql": 0}
    for report in terminalreporter.stats.get("passed", []):
        for backend in counts:
            if f"[{backend}" in report.nodeid or f"-{backend}" in report.nodeid:
                counts[backend] += 1
    terminalreporter.write_line(
        f"tests passed per backend: sqlite {counts['sqlite']}, "
        f"postgresql {counts['postgresql']}"
    )


def _pg_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: not reachable
        return str(exc).splitlines()[0]
    return None


@contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of its own (named `prefix` and random letters), dropped afterwards;
    yields the URL that makes it the search path."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'listserv.db'}"
        return
    problem = _pg_reachable()
    if problem is not None:
        message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {problem}"
        if os.environ.get("LISTSERV_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with pg_schema("t") as url:
        yield url


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    """A strict SMTP server on a free loopback port that records what it receives.

    It refuses what the strictest real servers refuse (tests/smtp_sink.py); any refusal fails
    the test, unless it is marked `sink_refusals`.
    """
    with SmtpSink() as server:
        yield server
    if request.node.get_closest_marker("sink_refusals") is None:
        server.assert_no_refusals()


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, sink: SmtpSink) -> Path:
    return write_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port)


@pytest.fixture
def settings(config_path: Path) -> Settings:
    return load_settings(config_path)


@pytest.fixture(scope="session")
def once_per_run(
        tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[], Any]], Any]:
    """`once_per_run(name, compute)`: what `compute()` returns, computed by the first test
    process that asks and read back (pickled) by the other xdist workers -- for the corpus
    readings that take a minute (tests/test_intent_*.py), which several workers may need."""
    base = tmp_path_factory.getbasetemp()
    # the workers of one xdist run share the parent of their folders; a run without workers
    # has a folder of its own (its parent holds earlier runs' folders: stale readings)
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base

    def get(name: str, compute: Callable[[], Any]) -> Any:
        path = shared / f"{name}.pickle"
        with (shared / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the first to finish
            if path.exists():
                return pickle.loads(path.read_bytes())
            value = compute()
            path.write_bytes(pickle.dumps(value))
            return value

    return get


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, once per test process (migrating a new
    file through every revision costs about 0.15 s; copying this one, a millisecond)."""
    path = tmp_path_factory.mktemp("template") / "listserv.db"
    template = Store(f"sqlite:///{path}")
    template.migrate()
    template.dispose()  # the last connection closes: the WAL is folded into the file
    return path


@pytest.fixture
def store(settings: Settings, migrated_sqlite: Path) -> Iterator[Store]:
    """The migrated database of this test (on SQLite a copy of `migrated_sqlite`; `migrate`
    then finds nothing to do, as on a daemon's restart)."""
    url = settings.database.url
    if url.startswith("sqlite:///"):
        target = Path(url.removeprefix("sqlite:///"))
        if not target.exists():
            private_folder(target.parent)
            write_new_private(target, migrated_sqlite.read_bytes())
    db = Store(url)
    db.migrate()
    yield db
    db.dispose()


class SettlingClock(FakeClock):
    """A FakeClock that, once it knows the daemon's store, jumps only with no delivery in flight.

    A delivery worker records a copy as sent a moment after the server took it. A jump of the
    clock in between makes the claim's lease look lapsed, and another worker sends the copy
    again: a duplicate no real clock would cause. So `advance` first waits for those results.
    """

    def __init__(self, start: datetime) -> None:
        super().__init__(start, running=True)
        self.store: Store | None = None

    def advance(self, delta: timedelta) -> datetime:
        store = self.store
        if store is not None:
            wait_until(lambda: in_flight(store) == 0, what="the deliveries in flight recorded")
        return super().advance(delta)


@pytest.fixture
def clock() -> SettlingClock:
    """The daemon's clock: runs from the real time (as the CLI's does) and jumps on demand."""
    return SettlingClock(datetime.now(UTC))


@pytest.fixture
def daemon(settings: Settings, store: Store, clock: SettlingClock) -> Iterator[Daemon]:
    """A daemon running in this process on free ports, delivering to the sink."""
    clock.store = store
    running = Daemon(settings, clock=clock).start()
    yield running
    running.stop()


CliRun = Callable[..., Result]


@pytest.fixture
def cli(config_path: Path, store: Store) -> CliRun:
    """Run `listserv --config … ARGS`; fails the test on a non-zero exit unless told not to."""
    runner = CliRunner()

    def run(*args: str, ok: bool = True, input: str | None = None) -> Result:
        result = runner.invoke(main, ["--config", str(config_path), *args], input=input)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


@pytest.fixture
def shma(cli: CliRun) -> str:
    """The list shma@lists.example.org, owned by chair@example.org."""
    cli("lists", "create", LIST, "--owner", "chair@example.org")
    return LIST


# -- A real IMAP server (Dovecot, tests/dovecot.py) for the IMAP intake tests ------------------
# LISTSERV_TEST_DOVECOT names the folder of an instance already running (.ci/run starts one);
# otherwise the run starts its own. Without Dovecot the tests skip, or fail when
# LISTSERV_REQUIRE_IMAP=1 (set by .ci/run).


def _imap_unavailable(reason: str) -> NoReturn:
    if os.environ.get("LISTSERV_REQUIRE_IMAP") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _started_dovecot(folder: Path | None = None) -> Dovecot:
    """A Dovecot of our own in `folder`; None: a short temporary folder, removed on close.

    Its Unix sockets live in the folder, and a socket path has at most 107 bytes: a test's own
    tmp_path (longer still under pytest-xdist) is too long for them.
    """
    if dovecot_binary() is None:
        _imap_unavailable(INSTALL_HINT)
    server: Dovecot | None = None
    try:
        server = Dovecot(folder)
        return server.start()
    except DovecotError as exc:
        if server is not None:
            server.close()
        _imap_unavailable(f"Dovecot did not start: {exc}")


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot]:
    """One Dovecot for the whole run: .ci/run's instance if there is one, else our own."""
    folder = os.environ.get("LISTSERV_TEST_DOVECOT")
    if folder:
        try:
            attached: Dovecot | None = Dovecot.attach(folder)
        except DovecotError:
            attached = None  # not running there: start a private one after all
        if attached is not None:
            yield attached
            return
    server = _started_dovecot()
    yield server
    server.close()


@pytest.fixture
def imap_account(dovecot_server: Dovecot) -> ImapAccount:
    """A fresh, empty mailbox of its own on the shared Dovecot (a new user per test)."""
    return dovecot_server.new_account()


@pytest.fixture
def private_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of this test's own (to stop and restart), stopped and removed at the end."""
    server = _started_dovecot()
    yield server
    server.close()


# -- A real Postfix (tests/postfix.py) for the end-to-end tests of the way out ----------------
# Each test gets a private instance of its own. Without Postfix (or without root) the tests
# skip, or fail when LISTSERV_REQUIRE_POSTFIX=1 (set by .ci/run).


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    """A private Postfix on a free loopback port, prepared but not started: `configure()`
    where mail goes, then `start()`. Stopped and removed at the end."""
    problem = postfix_problem()
    if problem is not None:
        if os.environ.get("LISTSERV_REQUIRE_POSTFIX") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    with Postfix() as mta:
        yield mta
