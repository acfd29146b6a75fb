"""`listserv --config FILE serve` as a real subprocess: crash, restart, multi-daemon tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .helpers import write_config

LISTSERV = Path(sys.executable).with_name("listserv")
#: `listserv` on a fake clock (a subprocess cannot share the test's FakeClock).
FAKE_CLOCK_CLI = Path(__file__).with_name("fake_clock_cli.py")
START_TIMEOUT = 20.0


class DaemonProcess:
    """A daemon in a subprocess, its log in a file; optionally on a fake clock from `fake_now`
    (then through tests/fake_clock_cli.py instead of `program`); `serve_args` are added to
    `serve`."""

    def __init__(self, config: Path, run_dir: Path, log: Path, *,
                 fake_now: datetime | None = None, verbose: bool = False,
                 wait: bool = True, program: Path = LISTSERV,
                 environ: Mapping[str, str] = os.environ, serve_args: Sequence[str] = ()) -> None:
        self.log = log
        self.ports_file = run_dir / "ports.json"
        self.ports_file.unlink(missing_ok=True)  # a previous run's ports are not this one's
        command = [str(program)]
        if fake_now is not None:
            command = [sys.executable, str(FAKE_CLOCK_CLI), fake_now.isoformat()]
        command += ["--config", str(config), "serve", *(["-v"] if verbose else []), *serve_args]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=dict(environ))
        self.ports: dict[str, int] = {}
        if wait:
            self.wait_until(self.ports_file.exists, "start")

    def wait_until(self, done: Callable[[], bool], what: str,
                   timeout: float = START_TIMEOUT) -> None:
        """Poll `done`; fail with the log if the daemon exits or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n"
                                     f"{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not {what} in {timeout:g}s:\n"
                                     f"{self.log_text()}")
            time.sleep(0.05)
        if not self.ports and self.ports_file.exists():
            self.ports = json.loads(self.ports_file.read_text())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL: a crash. Returns the exit status (-9)."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(10)

    def terminate(self) -> tuple[int, float]:
        """SIGTERM: a clean stop. Returns the exit status and the seconds it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon ignored SIGTERM for 30s:\n{self.log_text()}"
                                 ) from None
        return code, time.monotonic() - started

    def reap(self) -> None:
        """Kill it if it still runs (fixture teardown)."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)


class PassingDaemon(DaemonProcess):
    """A daemon that logs its scheduler passes (`serve -v`), on a fake clock if given; `done`
    is the log line its scheduler writes after the work under test (reminders, digests)."""

    def __init__(self, config: Path, run_dir: Path, log: Path, done: str, timeout: float,
                 fake_now: datetime | None = None) -> None:
        super().__init__(config, run_dir, log, fake_now=fake_now, verbose=True, wait=False)
        self.done, self.timeout = done, timeout

    def wait_for_pass(self) -> None:
        """Until it serves and its scheduler's first pass is over."""
        self.wait_until(self.ports_file.exists, "start", self.timeout)
        self.wait_until(lambda: self.done in self.log_text(tail=1 << 20),
                        "finish a scheduler pass", self.timeout)


Start = Callable[..., PassingDaemon]


@contextmanager
def daemons_on_one_database(tmp_path: Path, db_url: str, sink_port: int, done: str,
                            timeout: float) -> Iterator[Start]:
    """`start(NAME, fake_now=None)` starts daemon NAME (its own data folder and ports, the
    shared database) without waiting; every daemon started is reaped at the end."""
    started: list[PassingDaemon] = []

    def run(name: str, fake_now: datetime | None = None) -> PassingDaemon:
        data = tmp_path / f"data-{name}"
        config = write_config(tmp_path / f"{name}.toml", data, db_url, sink_port)
        daemon = PassingDaemon(config, data / "run", tmp_path / f"{name}-{len(started)}.log",
                               done, timeout, fake_now)
        started.append(daemon)
        return daemon

    try:
        yield run
    finally:
        for daemon in started:
            daemon.reap()
