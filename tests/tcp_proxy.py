"""A loopback TCP proxy that can stop passing a client's bytes on when they contain a pattern.

For crash tests over a plain-text protocol (IMAP with tls = "none" on 127.0.0.1): it lets the
test catch the daemon right before a command reaches the server, and kill it there.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`; `hold_on` freezes matching traffic."""

    def __init__(self, target: int, hold_on: bytes = b"") -> None:
        self.target = target
        self.hold_on = hold_on
        self.held = threading.Event()  # set once a client sent `hold_on`
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if upstream and self.hold_on and self.hold_on in data.upper():
                    self.held.set()
                    return  # the command never reaches the server; the client waits
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not (upstream and self.held.is_set()):
                for sock in (source, sink):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            sock.close()
