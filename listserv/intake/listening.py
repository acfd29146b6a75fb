"""Why an intake server could not listen, in one line: the port, and who holds it if we can tell.

Who holds a port is read from Linux's /proc (the listening socket's inode in /proc/net/tcp*,
then the process with that socket among its open files); elsewhere, or for another user's
process, the line names the port only.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_LISTEN = "0A"  # the TCP state "listen" in /proc/net/tcp


def cannot_listen(label: str, host: str, port: int, exc: OSError, section: str = "") -> str:
    """The line `serve` prints when binding `host:port` for `label` (LMTP, SMTP, web) failed;
    `section` is the config table that sets the port (default `intake.LABEL`)."""
    # asyncio's message repeats the address; the system's reason alone is enough.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    line = f"cannot listen for {label} on {host}:{port}: {reason}"
    if exc.errno == errno.EADDRINUSE:
        owner = port_owner(port)
        line += (f"; port {port} is taken by {owner}" if owner else
                 f"; another program (another `listserv serve`?) is listening on port {port}")
        line += (f"; stop it, or choose another port in the config's "
                 f"[{section or 'intake.' + label.lower()}]")
    elif exc.errno == errno.EACCES and port < 1024:
        line += "; ports below 1024 need privileges (choose another port)"
    return line


def port_owner(port: int, proc: Path = Path("/proc")) -> str:
    """The process listening on TCP `port`, as "pid N (command line)"; "" when unknown."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return ""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            links = {link.readlink().as_posix() for link in (pid_dir / "fd").iterdir()}
            if not links & wanted:
                continue
            args = (pid_dir / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:  # another user's process, or one that just ended
            continue
        return f"pid {pid_dir.name} ({_command(args)})"
    return ""


def _command(args: list[str]) -> str:
    """A command line as the operator typed it: `listserv serve`, not the interpreter's path."""
    words = [a for a in args if a]
    while len(words) > 1 and os.path.basename(words[0]).startswith("python"):
        words.pop(0)
    if words:
        words[0] = os.path.basename(words[0])
    return " ".join(words) or "?"


def _listening_inodes(port: int, proc: Path) -> set[str]:
    """Inodes of the sockets listening on `port` (IPv4 and IPv6), from /proc/net/tcp*."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if len(fields) > 9 and fields[3] == _LISTEN \
                    and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes
