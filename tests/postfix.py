"""A private Postfix on 127.0.0.1 for the end-to-end tests, as strict as the real world.

Everything the instance uses lives in one folder we write ourselves (only the package's own
list of files, /etc/postfix/postfix-files, is read); a system Postfix, if any, is left alone::

    FOLDER/conf/main.cf, master.cf   config_directory (`postfix -c`, `postconf -c`)
    FOLDER/conf/transport            where each relayed domain goes (texthash)
    FOLDER/conf/mailboxes            the Maildirs of the mailbox domains (texthash)
    FOLDER/queue/, FOLDER/data/      queue_directory, data_directory
    FOLDER/mail/DOMAIN/LOCAL/        one Maildir per mailbox (new/, cur/, tmp/)
    FOLDER/postfix.log               maillog_file

It listens on one free loopback port and delivers only on the loopback: domains relayed by
LMTP to a port (listserv's intake; a recipient the LMTP server refuses is bounced with a
DSN to the envelope sender), mailbox domains delivered into Maildirs (virtual(8)), and
nothing else: an unknown mailbox is refused at RCPT TO, another domain is "Relay access
denied". Bare LF is refused as by an up-to-date Postfix facing the internet
(`smtpd_forbid_bare_newline = reject`, no exclusions: the default, `$mynetworks`, would exempt
loopback clients); the error tarpit keeps its defaults (smtpd_soft_error_limit 10,
smtpd_error_sleep_time 1s, smtpd_hard_error_limit 20).

Postfix runs as root (its master starts each service as the `postfix` user), so the folder is
made under the system's temporary folder, where those services can reach it. The master runs
as our child (`master -s`, with `-e` as a last resort) and gets SIGTERM if the thread that
started it ends, so a killed test run leaves no Postfix behind::

    with Postfix() as mta:                       # prepared: mta.port is known
        mta.configure(lmtp={"lists.example.org": lmtp_port}, mailboxes=["ann@example.net"])
        mta.start()
        mta.wait_for_mail("ann@example.net", 1)
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .helpers import free_port

__all__ = ["INSTALL_HINT", "Postfix", "PostfixError", "postfix_problem"]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
EXIT_AFTER_SECONDS = 1800  # the master's own deadline (-e), should a run never stop it
INSTALL_HINT = "Postfix not installed: apt-get install postfix"
# Debian puts postfix and postconf in /usr/sbin, which is not on a non-root user's PATH.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
# The services a relay needs, none chrooted (master.cf's columns: service type private
# unpriv chroot wakeup maxproc command). The smtpd line is added with the port.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix could not be set up, started or stopped; the message carries its log tail."""


def _binary(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH)


def postfix_problem() -> str | None:
    """Why a private Postfix cannot run here (None when it can)."""
    if _binary("postfix") is None or _binary("postconf") is None:
        return INSTALL_HINT
    if os.geteuid() != 0:
        return "a private Postfix needs root (its master starts services as the postfix user)"
    return None


class Postfix:
    """A private Postfix instance in a folder of its own, listening only on 127.0.0.1.

    `Postfix()` prepares the folder and picks the port; `configure()` says where mail goes;
    `start()` runs it; `close()` (or leaving a `with` block) stops it and removes the folder.
    """

    host = HOST

    def __init__(self) -> None:
        problem = postfix_problem()
        if problem is not None:
            raise PostfixError(problem)
        self.folder = Path(tempfile.mkdtemp(prefix="listserv-postfix-"))
        self.folder.chmod(0o711)  # the postfix user passes through to its queue and Maildirs
        self.conf = self.folder / "conf"
        self.mail_dir = self.folder / "mail"
        self.log_path = self.folder / "postfix.log"
        self.port = free_port()
        self._owner = pwd.getpwnam("postfix")
        self._process: subprocess.Popen[bytes] | None = None
        self._mailboxes: dict[str, Path] = {}
        for sub in (self.conf, self.folder / "queue", self.mail_dir):
            sub.mkdir()
        os.chown(self.mail_dir, self._owner.pw_uid, self._owner.pw_gid)
        self.configure()

    # -- configuration ----------------------------------------------------------------------

    def configure(self, *, lmtp: dict[str, int] | None = None,
                  mailboxes: Iterable[str] = ()) -> None:
        """Where mail goes: `lmtp` domain -> port on 127.0.0.1; `mailboxes`, the addresses with
        a Maildir (their domains are mailbox domains). Takes effect at `start()`.
        """
        lmtp = lmtp or {}
        self._mailboxes = {a.lower(): self.mail_dir / a.lower().partition("@")[2]
                           / a.lower().partition("@")[0] for a in mailboxes}
        transport = [f"{domain} lmtp:inet:{HOST}:{port}" for domain, port in lmtp.items()]
        (self.conf / "transport").write_text("".join(f"{line}\n" for line in transport))
        (self.conf / "mailboxes").write_text("".join(
            f"{a} {path.relative_to(self.mail_dir)}/\n" for a, path in self._mailboxes.items()))
        domains = sorted({a.partition("@")[2] for a in self._mailboxes})
        f = self.folder
        (self.conf / "main.cf").write_text(f"""\
# Written by tests/postfix.py: a private test instance; nothing of /etc/postfix is used.
compatibility_level = 3.6
queue_directory = {f}/queue
data_directory = {f}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.log_path}
maillog_file_prefixes = {f}
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
lmtp_host_lookup = native
smtp_host_lookup = native

# As strict as a server facing the internet since the SMTP smuggling fixes (2023-24), for
# loopback clients too.
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =

# Loopback only: listed domains, nothing else (no permit_mynetworks: no open relay).
smtpd_relay_restrictions = reject_unauth_destination
relay_domains = {" ".join(lmtp)}
transport_maps = texthash:{self.conf}/transport
virtual_mailbox_domains = {" ".join(domains)}
virtual_mailbox_base = {self.mail_dir}
virtual_mailbox_maps = texthash:{self.conf}/mailboxes
virtual_uid_maps = static:{self._owner.pw_uid}
virtual_gid_maps = static:{self._owner.pw_gid}
virtual_minimum_uid = 1
default_transport = error:5.7.1 no delivery outside the test
relay_transport = error:5.7.1 no delivery outside the test
local_transport = error:5.7.1 no local delivery in the test
""")
        (self.conf / "master.cf").write_text(
            f"{HOST}:{self.port} inet n - n - - smtpd\n" + _SERVICES)

    def postconf(self, name: str) -> str:
        """The value of a parameter as this instance sees it, expanded (`postconf -c -xh`)."""
        done = subprocess.run([_binary("postconf") or "postconf", "-c", str(self.conf), "-xh",
                               name], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostfixError(f"postconf {name}: {done.stderr.strip()}")
        return done.stdout.strip()

    # -- running ----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> Postfix:
        """Check the configuration (making the queue), start the master, wait for a greeting."""
        if self.running():
            raise PostfixError(f"Postfix already runs in {self.folder}")
        check = subprocess.run([_binary("postfix") or "postfix", "-c", str(self.conf), "check"],
                               capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise PostfixError(f"postfix check failed:\n{check.stderr}{self.log_tail()}")
        master = Path(self.postconf("daemon_directory")) / "master"
        setpriv = _binary("setpriv")
        tie = [setpriv, "--pdeathsig", "TERM"] if setpriv else []
        with open(self.folder / "master.out", "ab") as out:
            self._process = subprocess.Popen(
                [*tie, str(master), "-c", str(self.conf), "-s", "-e", str(EXIT_AFTER_SECONDS)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while (problem := self._probe()) is not None:
            failure = None
            if self._process.poll() is not None:
                failure = f"the Postfix master exited with {self._process.returncode}"
            elif time.monotonic() > deadline:
                failure = f"Postfix did not answer in {timeout:g}s ({problem})"
            if failure is not None:
                log = self.log_tail()
                self.stop()
                raise PostfixError(f"{failure}:\n{log}")
            time.sleep(0.05)
        return self

    def _probe(self) -> str | None:
        """None when the SMTP port greets with 220, else what went wrong."""
        try:
            with socket.create_connection((HOST, self.port), timeout=5) as sock:
                greeting = sock.recv(512)
                sock.sendall(b"QUIT\r\n")
        except OSError as exc:
            return str(exc)
        return None if greeting.startswith(b"220") else f"greeting {greeting!r}"

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the master (it passes it on to its services); wait until it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise PostfixError(f"Postfix did not stop in {timeout:g}s:\n{self.log_tail()}"
                               ) from None

    def close(self) -> None:
        """Stop the instance and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the instance's log."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log in {self.folder})"
        return f"--- {self.log_path}\n" + "\n".join(text)

    def log(self) -> str:
        """The instance's whole log."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- the mailboxes ----------------------------------------------------------------------

    def messages(self, address: str) -> list[bytes]:
        """The messages delivered into `address`'s Maildir, oldest first (as virtual(8) wrote
        them: LF line ends, `Return-Path` and `Delivered-To` first)."""
        new = self._mailboxes[address.lower()] / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def wait_for_mail(self, address: str, count: int = 1, timeout: float = 30.0) -> list[bytes]:
        """Wait until `address` has at least `count` messages; returns them."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{address} has {len(found)} of {count} messages after "
                                     f"{timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return found
