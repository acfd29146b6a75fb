"""Starts and stops everything: intake servers on an asyncio loop, worker threads beside it."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import weakref
from pathlib import Path

from aiosmtpd.smtp import SMTP

from listserv.bounces.feedback import DeliveryBounces
from listserv.delivery.limits import SendLimits
from listserv.delivery.transports import make_transport
from listserv.delivery.worker import DeliveryWorker
from listserv.errors import ListservError
from listserv.files import private_folder, replace_private, tighten
from listserv.intake.group_commit import GroupCommit
from listserv.intake.listening import cannot_listen
from listserv.mail.render import Renderer
from listserv.mail.signing import Signer
from listserv.operations.scheduled import ScheduledBackups
from listserv.operations.upgrade import stale_schema
from listserv.router.dispatch import Router
from listserv.store.engine import Store
from listserv.web.links import one_click_base, public_url
from listserv.web.server import WebEndpoint

from .clock import Clock, SystemClock
from .config import Settings
from .intake.imap import ImapPoller
from .intake.smtp import IntakeHandler, start_server
from .scheduler import Scheduler

log = logging.getLogger(__name__)


def secure_data_folder(settings: Settings) -> str:
    """Create the data folder (0700) and make private what an earlier run left readable by
    group or others: everything in it, and a SQLite database kept elsewhere (SPEC §7).

    Returns a line saying what was tightened, or "" when nothing was.
    """
    database = settings.sqlite_path
    extra = [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm")] \
        if database is not None else []
    changed = tighten(private_folder(settings.data_dir), *extra)
    if not changed:
        return ""
    return (f"made {changed} files and folders in {settings.data_dir} private (0600, folders "
            "0700): they were readable by group or others")


async def _cancel_other_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Daemon:
    """The running service: `run()` in the foreground, or `start()`/`stop()` around a thread."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = Store(settings.database.url)
        # One for LMTP and SMTP alike: DATA arriving together on either shares a commit.
        self.committer = GroupCommit(self.store)
        # Its confirmation links are set once the web endpoint (if on) knows its port.
        self.renderer = Renderer(settings.templates_dir, settings.outbound.eightbitmime)
        self.stopping = threading.Event()
        self.route_wake = threading.Event()
        self.deliver_wake = threading.Event()
        self.schedule_wake = threading.Event()
        self.ports: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._web: WebEndpoint | None = None
        self.signer: Signer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or `stop()`); returns after a clean stop."""
        tightened = secure_data_folder(self.settings)
        if tightened:
            log.warning("%s", tightened)
        stale = stale_schema(self.store)
        if stale:
            raise ListservError(stale)
        # The DKIM keys are read now: a missing or readable key stops the start with one line.
        self.signer = Signer.from_settings(self.settings.dkim)
        self.store.migrate()  # a first start on an empty database creates the schema
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            servers = loop.run_until_complete(self._start_servers(loop))
            if install_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, self._request_stop)
            self._start_workers()
            self._write_ports()
            log.info("listserv serving: %s", ", ".join(f"{k} on port {v}"
                                                       for k, v in self.ports.items()))
            self._ready.set()
            loop.run_forever()
            self._close_intake(loop, servers)
        finally:
            self._stop_workers()
            loop.close()
            self.store.dispose()
            if self._ready.is_set():  # it never served otherwise: the error says why
                log.info("listserv stopped")

    def start(self) -> Daemon:
        """Run in a background thread (tests); returns once the ports are bound."""

        def target() -> None:
            try:
                self.run(install_signals=False)
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=target, name="daemon", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and join every thread."""
        self._request_stop()
        if self._thread is not None:
            self._thread.join(30)

    def _request_stop(self) -> None:
        self.stopping.set()
        for event in (self.route_wake, self.deliver_wake, self.schedule_wake):
            event.set()
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)

    def wake_scheduler(self) -> None:
        """Run the due work now instead of at the next tick."""
        self.schedule_wake.set()

    def run_scheduler(self, timeout: float = 30.0) -> None:
        """Run the due work now and return once that run has finished."""
        next(w for w in self._workers if isinstance(w, Scheduler)).run_now(timeout)

    # -- parts -----------------------------------------------------------------------------

    async def _start_servers(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Server]:
        intake = self.settings.intake
        hostname = self.settings.daemon.hostname or socket.getfqdn()
        servers = []
        for label, conf, lmtp in (("lmtp", intake.lmtp, True), ("smtp", intake.smtp, False)):
            if not conf.enabled:
                continue
            handler = IntakeHandler(self.store, self.clock, self.route_wake.set, lmtp=lmtp,
                                    limits=self.settings.intake, committer=self.committer)
            try:
                server = await start_server(loop, handler, conf.host, conf.port,
                                            conf.max_message_kb * 1024, hostname,
                                            self._connections)
            except OSError as exc:
                for started in servers:
                    started.close()
                raise ListservError(
                    cannot_listen(label.upper(), conf.host, conf.port, exc)) from None
            self.ports[label] = server.sockets[0].getsockname()[1]
            servers.append(server)
        if self.settings.web.enabled:
            await self._start_web(servers)
        return servers

    async def _start_web(self, servers: list[asyncio.Server]) -> None:
        """The web endpoint (`[web] enabled`) on this loop; its port joins the others."""
        web = self.settings.web
        endpoint = WebEndpoint(self.settings, self.store, self.renderer, self.clock,
                               self.deliver_wake.set)
        try:
            port = await endpoint.start()
        except OSError as exc:
            for started in servers:
                started.close()
            raise ListservError(cannot_listen("web", web.host, web.port, exc, "web")) from None
        self._web = endpoint
        self.ports["web"] = port
        self.renderer.web_url = public_url(self.settings, port)

    def _close_intake(self, loop: asyncio.AbstractEventLoop,
                      servers: list[asyncio.Server]) -> None:
        """Stop listening, hang up on clients (unacknowledged mail is the MTA's to retry)."""
        for server in servers:
            server.close()
        if self._web is not None:
            loop.run_until_complete(self._web.stop())
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        loop.run_until_complete(_cancel_other_tasks())
        for server in servers:
            loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(loop.shutdown_default_executor())

    def _start_workers(self) -> None:
        s = self.settings
        self._workers = [
            Router(self.store, s, self.renderer, self.clock, self.route_wake, self.stopping,
                   self.deliver_wake),
            Scheduler(self.store, self.renderer, self.clock, s.daemon.scheduler_tick_seconds,
                      self.schedule_wake, self.stopping, self.deliver_wake, s.retention,
                      ScheduledBackups(s)),
        ]
        limits = SendLimits.of(s.outbound)
        feedback = DeliveryBounces()
        for index in range(s.outbound.max_connections):
            self._workers.append(DeliveryWorker(
                self.store, s.outbound,
                make_transport(s.outbound, s.outbox_dir, s.hosted_sender if s.hosted else ""),
                self.clock,
                self.deliver_wake, self.stopping, s.daemon.poll_seconds, f"delivery-{index}",
                limits, feedback=feedback, one_click_base=one_click_base(s),
                signer=self.signer,
            ))
        if s.intake.imap.enabled:
            self._workers.append(ImapPoller(self.store, s, self.clock, self.route_wake.set,
                                            self.stopping))
        for worker in self._workers:
            worker.start()

    def _stop_workers(self) -> None:
        self.stopping.set()
        for event in (self.route_wake, self.deliver_wake, self.schedule_wake):
            event.set()
        for worker in self._workers:
            worker.join(30)

    def _write_ports(self) -> None:
        run_dir: Path = self.settings.run_dir
        private_folder(run_dir)
        replace_private(run_dir / "ports.json", (json.dumps(self.ports, indent=2) + "\n").encode())
