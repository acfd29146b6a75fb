"""A private Dovecot IMAP server on 127.0.0.1 for the IMAP intake tests.

Everything the instance uses lives in one folder we write ourselves; /etc/dovecot is never
read and a system Dovecot (if any) is left alone::

    FOLDER/dovecot.conf  config         FOLDER/run/      base_dir (sockets, master.pid)
    FOLDER/cert.pem      certificate    FOLDER/state/    state_dir
    FOLDER/key.pem       its key        FOLDER/mail/     one maildir home per user
    FOLDER/users         passwd-file    FOLDER/dovecot.log, FOLDER/startup.log
    FOLDER/instance.json ports and paths, for `Dovecot.attach` and CI

Usage::

    with Dovecot(tmp_path / "dovecot") as server:   # our child until stopped at the end
        user, password = server.new_user()
        with server.client(user, password) as imap:
            imap.append("INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")

From a shell (CI starts one before the virtualenv exists, so this module imports only the
standard library; imapclient is imported inside `client()`)::

    python3 -m tests.dovecot start DIR     # writes DIR/instance.json; Dovecot daemonises
    python3 -m tests.dovecot stop DIR
"""

from __future__ import annotations

import grp
import imaplib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imapclient import IMAPClient

__all__ = ["Dovecot", "DovecotError", "ImapAccount", "dovecot_binary", "main"]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
USER_BATCH = 16  # users made at once by new_user()
INSTALL_HINT = "Dovecot not installed: apt-get install dovecot-imapd"
# Debian puts dovecot in /usr/sbin, which is not on a non-root user's PATH.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class DovecotError(RuntimeError):
    """Dovecot could not be set up, started or stopped; the message carries its log tail."""


@dataclass(frozen=True)
class ImapAccount:
    """A mailbox on a test Dovecot: what an IMAP client needs to reach it."""

    host: str
    imap_port: int
    imaps_port: int
    cert_path: Path
    username: str
    password: str
    server: Dovecot

    def client(self) -> IMAPClient:
        """A logged-in IMAPClient for this account (plain port, no TLS)."""
        return self.server.client(self.username, self.password)


def dovecot_binary() -> str | None:
    """The path of the `dovecot` executable, or None when Dovecot is not installed."""
    return shutil.which("dovecot", path=_SBIN_PATH)


class Dovecot:
    """A private Dovecot instance in a folder of its own, listening only on 127.0.0.1.

    `Dovecot(folder)` prepares the folder (config, certificate, free ports) or reuses the one
    prepared there before; `start()` runs it. Without a folder a temporary one is made and
    removed by `close()`. `close()` (or leaving a `with` block) stops an instance this object
    started; an attached one (`Dovecot.attach`) is left running for its owner to stop.
    """

    host = HOST

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self._remove_folder = folder is None
        if folder is None:
            folder = tempfile.mkdtemp(prefix="dovecot-")
        self.folder = Path(folder).resolve()
        if any(c.isspace() or c in "\"'#<" for c in str(self.folder)):
            raise DovecotError(f"unusable folder for a Dovecot config: {self.folder!r}")
        self.config_path = self.folder / "dovecot.conf"
        self.cert_path = self.folder / "cert.pem"
        self.key_path = self.folder / "key.pem"
        self.passwd_path = self.folder / "users"
        self.mail_dir = self.folder / "mail"
        self.log_path = self.folder / "dovecot.log"
        self.startup_log_path = self.folder / "startup.log"
        self.pid_path = self.folder / "run" / "master.pid"
        self.info_path = self.folder / "instance.json"
        self._started_here = False
        self._process: subprocess.Popen[bytes] | None = None
        self._spare_users: list[tuple[str, str]] = []
        self._unconfirmed: tuple[str, str] | None = None  # the newest user, until seen
        if self.info_path.exists():  # prepared before (a restart, or another process's)
            info = json.loads(self.info_path.read_text())
            self.imap_port: int = info["imap_port"]
            self.imaps_port: int = info["imaps_port"]
        else:
            self._prepare()

    # -- setting up -------------------------------------------------------------------------

    def _prepare(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.passwd_path.touch()
        self._make_certificate()
        self.imap_port, self.imaps_port = _free_ports(2)
        if os.geteuid() == 0:
            # Dovecot refuses mail access as uid 0: the mail processes run as `dovecot`,
            # and mail/ is theirs (see the config for how they reach it).
            mail_user = _system_user("dovecot")
            os.chown(self.mail_dir, mail_user.pw_uid, mail_user.pw_gid)
        self.mail_dir.chmod(0o700)
        self.config_path.write_text(self._config())
        self.info_path.write_text(json.dumps(self.info(), indent=2) + "\n")

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise DovecotError("openssl not installed: apt-get install openssl")
        # A self-signed certificate valid for 127.0.0.1 and localhost, so clients can verify
        # it with cafile=cert_path. P-256 because it is generated much faster than RSA.
        # keyUsage/basicConstraints keep it acceptable under VERIFY_X509_STRICT (Python 3.13).
        command = [
            openssl, "req", "-x509", "-nodes", "-days", "3650",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
            "-addext", "extendedKeyUsage=serverAuth",
            "-keyout", str(self.key_path), "-out", str(self.cert_path),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DovecotError(f"openssl could not make the certificate:\n{done.stderr}")

    def _config(self) -> str:
        if os.geteuid() == 0:
            mail_user = _system_user("dovecot")
            _system_user("dovenull")  # the login processes' user, made by the package too
            accounts = f"""\
# Running as root. Helper processes run as the package's users, as usual; mail processes
# run as `dovecot` (uid 0 is refused). Our folder sits in 0700 tmp folders that `dovecot`
# cannot enter, so mail processes chroot into mail/ while still root, then drop to it.
default_internal_user = dovecot
default_login_user = dovenull
mail_chroot = {self.mail_dir}
valid_chroot_dirs = {self.mail_dir}
# For the same reason auth (normally `dovecot`) runs as root to read the passwd-file.
service auth {{
  user = root
}}
"""
            home = "/%u"  # inside the chroot: mail/<username>
        else:
            mail_user = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(os.getegid()).gr_name
            accounts = f"""\
# Not root (a developer's machine): every process runs as us, internal sockets belong to
# our group, and nothing can chroot (these two services do by default).
default_internal_user = {mail_user.pw_name}
default_internal_group = {group}
default_login_user = {mail_user.pw_name}
service imap-login {{
  chroot =
}}
service anvil {{
  chroot =
}}
"""
            home = f"{self.mail_dir}/%u"
        return f"""\
# Written by tests/dovecot.py: a private test instance; nothing from /etc/dovecot is used.
instance_name = listserv-test
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.log_path}
protocols = imap
listen = {HOST}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}

{accounts}
ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}
# Tests also log in without TLS (loopback, tls="none").
disable_plaintext_auth = no
auth_mechanisms = plain login
# Failed logins and why, for log_tail().
auth_verbose = yes
# Tests log in with wrong passwords on purpose, all from 127.0.0.1: answer failures at once
# (default 2 s; Dovecot still batches them every 0.5 s), and do not delay the later logins
# from that address (the "auth penalty", 2 s to 15 s): auth finds no penalty socket under
# its usual name in base_dir and goes without.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    path = anvil-auth-penalty-unused
  }}
}}

# Users are lines appended to this file; Dovecot re-reads it when it changed (looking at
# most once a second).
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.passwd_path}
}}
# All mailboxes belong to one system user; a home per username ('@' is fine in a path).
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={home}
}}
first_valid_uid = {mail_user.pw_uid}
first_valid_gid = {mail_user.pw_gid}
mail_location = maildir:~/Maildir
"""

    def info(self) -> dict[str, Any]:
        """What instance.json holds: host, ports and paths."""
        return {
            "host": HOST,
            "imap_port": self.imap_port,
            "imaps_port": self.imaps_port,
            "cert_path": str(self.cert_path),
            "config_path": str(self.config_path),
            "passwd_path": str(self.passwd_path),
            "log_path": str(self.log_path),
        }

    @classmethod
    def attach(cls, folder: str | os.PathLike[str]) -> Dovecot:
        """The instance already running in `folder` (its instance.json); `close()` leaves it."""
        if not (Path(folder) / "instance.json").exists():
            raise DovecotError(f"no Dovecot instance in {folder} (instance.json missing)")
        server = cls(folder)
        if not server.running():
            raise DovecotError(f"the Dovecot instance in {folder} is not running")
        return server

    # -- running ----------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The pid of this instance's master process if it is running, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        """Whether this instance's master process is running."""
        return self.master_pid() is not None

    def start(self, timeout: float = START_TIMEOUT, *, detach: bool = False) -> Dovecot:
        """Start Dovecot and wait until both ports greet; raises DovecotError with its log.

        Dovecot runs as a child of this process and gets SIGTERM if this process dies without
        stopping it, so a killed test run leaves no daemon behind. `detach=True` lets it
        daemonise and outlive us instead (`python3 -m tests.dovecot start`).
        """
        if self.running():
            raise DovecotError(f"Dovecot already runs in {self.folder}")
        binary = dovecot_binary()
        if binary is None:
            raise DovecotError(INSTALL_HINT)
        self.pid_path.unlink(missing_ok=True)  # a killed master's, not to be taken for ours
        with open(self.startup_log_path, "ab") as out:
            if detach:  # `dovecot` returns once the master has forked
                done = subprocess.run([binary, "-c", str(self.config_path)],
                                      stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=timeout, check=False)
                if done.returncode != 0:
                    raise DovecotError(f"dovecot exited with {done.returncode}:\n"
                                       f"{self.log_tail()}")
            else:
                # In the foreground (-F); setpriv (util-linux) has the kernel send it SIGTERM
                # when the thread that started it ends.
                setpriv = shutil.which("setpriv", path=_SBIN_PATH)
                tie = [setpriv, "--pdeathsig", "TERM"] if setpriv else []
                self._process = subprocess.Popen(
                    [*tie, binary, "-F", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)  # Ctrl-C reaches pytest, whose teardown stops it
        self._started_here = True
        deadline = time.monotonic() + timeout
        while (problem := self._probe()) is not None:
            failure = None
            if self._process is not None and self._process.poll() is not None:
                failure = f"dovecot exited with {self._process.returncode}"
            elif self.pid_path.exists() and not self.running():
                failure = "Dovecot stopped while starting"
            elif time.monotonic() > deadline:
                failure = f"Dovecot did not answer in {timeout:g}s ({problem})"
            if failure is not None:
                log = self.log_tail()  # before stopping adds to it
                self.stop()  # a half-started master keeps retrying its children: end it
                raise DovecotError(f"{failure}:\n{log}")
            time.sleep(0.05)
        return self

    def _probe(self) -> str | None:
        """None when both ports answer with an IMAP greeting, else what went wrong."""
        try:
            with socket.create_connection((HOST, self.imap_port), timeout=5) as plain:
                greeting = _read_line(plain)
            if not greeting.startswith(b"* OK"):
                return f"greeting on {self.imap_port}: {greeting!r}"
            with socket.create_connection((HOST, self.imaps_port), timeout=5) as raw, \
                    self.ssl_context().wrap_socket(raw, server_hostname=HOST) as tls:
                greeting = _read_line(tls)
            if not greeting.startswith(b"* OK"):
                return f"greeting on {self.imaps_port}: {greeting!r}"
        except OSError as exc:  # refused while starting; ssl.SSLError is an OSError too
            return str(exc)
        return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the master (SIGTERM; it stops its children) and wait until the ports close."""
        process = self._process
        if process is not None and process.poll() is None:
            pid: int | None = process.pid  # also before the master wrote master.pid
        else:
            pid = self.master_pid()
        children = _children(pid) if pid is not None else []
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        # The master leaves running imap processes behind (their clients stay connected to a
        # server that is gone); an outage should hang up on them, as a real one does.
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while (pid is not None and _alive(pid)) or self._port_open():
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot did not stop in {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.02)
        if self._process is not None:
            self._process.wait()  # reap our child
            self._process = None
        self._started_here = False

    def _port_open(self) -> bool:
        for port in (self.imap_port, self.imaps_port):
            try:
                socket.create_connection((HOST, port), timeout=1).close()
            except OSError:
                continue
            return True
        return False

    def close(self) -> None:
        """Stop the instance if this object started it; remove the folder if it made it."""
        if self._started_here:
            self.stop()
        if self._remove_folder and not self.running():
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        if not self.running():
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the instance's log and of what `dovecot` printed at start."""
        parts = []
        for path in (self.startup_log_path, self.log_path):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts) or f"(no log in {self.folder})"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this instance's certificate (verify 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    # -- users ------------------------------------------------------------------------------

    def add_user(self, username: str, password: str) -> None:
        """Add a login; returns once Dovecot accepts it (up to a second, see `_add_users`).

        Dovecot lower-cases usernames at login, so they are stored lower-case.
        """
        self._add_users([(username, password)])
        self._wait_until_users_visible()

    def new_user(self) -> tuple[str, str]:
        """A fresh user `group-<hex>@example.org` with a random password: (username, password).

        Users are added in batches ahead of need, so the wait for Dovecot to see new lines
        (up to a second) comes once per batch, not once per test.
        """
        if not self._spare_users:
            self._spare_users = [(f"group-{secrets.token_hex(6)}@example.org",
                                  secrets.token_urlsafe(12)) for _ in range(USER_BATCH)]
            self._add_users(self._spare_users)
        self._wait_until_users_visible()
        return self._spare_users.pop()

    def _add_users(self, users: list[tuple[str, str]]) -> None:
        lines = []
        for username, password in users:
            if not username or any(c in username for c in ":/\\") or _has_control(username):
                raise ValueError(f"unusable username for the passwd-file: {username!r}")
            if ":" in password or _has_control(password):
                raise ValueError("passwords for the passwd-file cannot hold ':' or control chars")
            lines.append(f"{username.lower()}:{{PLAIN}}{password}\n")
            self._make_home(username.lower())
        with open(self.passwd_path, "a", encoding="utf-8") as passwd:
            passwd.write("".join(lines))
        self._unconfirmed = users[-1]

    def _wait_until_users_visible(self, timeout: float = 10.0) -> None:
        """Until the newest user can log in.

        Dovecot's auth process looks at the passwd-file at most once per second (and re-reads
        it when its size or mtime changed): lines appended just after a login are seen from the
        next second on. A login is tried until it works, rather than sleeping to that second.
        """
        if self._unconfirmed is None:
            return
        username, password = self._unconfirmed
        deadline = time.monotonic() + timeout
        while True:
            try:
                with imaplib.IMAP4(HOST, self.imap_port, timeout=5) as imap:
                    imap.login(username.lower(), password)
                    imap.logout()
                break
            except (imaplib.IMAP4.error, OSError) as exc:
                if time.monotonic() > deadline:
                    raise DovecotError(f"Dovecot did not accept the new user {username} in "
                                       f"{timeout:g}s ({exc}):\n{self.log_tail()}") from None
            time.sleep(0.05)
        self._unconfirmed = None

    def _make_home(self, username: str) -> None:
        # Dovecot creates the maildir itself, but logs an error at each login until the home
        # exists; as root it must belong to the mail user, as mail/ does.
        home = self.mail_dir / username
        home.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            owner = self.mail_dir.stat()
            os.chown(home, owner.st_uid, owner.st_gid)

    def deliver(self, username: str, raw: bytes) -> None:
        """Put a message in `username`'s INBOX as a delivery agent does: into Maildir/new.

        Works while the server is stopped (mail that arrives during an outage).
        """
        maildir = self.mail_dir / username.lower() / "Maildir"
        owner = self.mail_dir.stat()
        for sub in ("", "tmp", "new", "cur"):
            (maildir / sub).mkdir(mode=0o700, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(maildir / sub, owner.st_uid, owner.st_gid)
        name = f"{time.time_ns()}.{secrets.token_hex(4)}.listserv-test"
        staged = maildir / "tmp" / name
        staged.write_bytes(raw)
        if os.geteuid() == 0:
            os.chown(staged, owner.st_uid, owner.st_gid)
        os.rename(staged, maildir / "new" / name)

    def new_account(self) -> ImapAccount:
        """A fresh user as an ImapAccount (host, ports, certificate, credentials)."""
        username, password = self.new_user()
        return ImapAccount(HOST, self.imap_port, self.imaps_port, self.cert_path,
                           username, password, self)

    def client(self, username: str, password: str, timeout: float = 10.0) -> IMAPClient:
        """An IMAPClient logged in as `username` on the plain port (no TLS); log it out after."""
        from imapclient import IMAPClient  # lazily: CI imports this module before the venv

        imap = IMAPClient(HOST, port=self.imap_port, ssl=False, timeout=timeout)
        try:
            imap.login(username, password)
        except BaseException:
            imap.shutdown()
            raise
        return imap


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (all held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise DovecotError(f"user {name!r} missing (the dovecot-core package creates it)"
                           ) from None


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc; [] where there is none)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by init, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours, but it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def main(argv: list[str] | None = None) -> int:
    """`python3 -m tests.dovecot start|stop DIR`: run an instance in DIR for CI and shells."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("start", "stop"):
        print("usage: python3 -m tests.dovecot start|stop DIR", file=sys.stderr)
        return 2
    action, folder = args
    try:
        if action == "start":
            Path(folder).mkdir(parents=True, exist_ok=True)
            server = Dovecot(folder)
            if not server.running():
                started = time.monotonic()
                server.start(detach=True)
                print(f"Dovecot started in {time.monotonic() - started:.2f}s", file=sys.stderr)
            print(server.info_path.read_text(), end="")
        else:
            if (Path(folder) / "instance.json").exists():
                Dovecot(folder).stop()
    except DovecotError as exc:
        print(f"tests.dovecot {action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
