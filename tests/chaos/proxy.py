"""A TCP proxy between the ambulance and the broker that can cut the link or
throttle it, like a tunnel or a weak mobile connection."""

from __future__ import annotations

import socket
import threading
import time

from shared.broker import free_port


class LinkProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``."""

    def __init__(self, target: int, rate_bytes_per_s: float | None = None) -> None:
        self.target = target
        self.port = free_port()
        self.rate = rate_bytes_per_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._up = threading.Event()

    def restore(self) -> None:
        """Accept connections again."""
        server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        server.settimeout(0.2)
        self._server = server
        self._up.set()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a dead zone does."""
        self._up.clear()
        with self._lock:
            if self._server:
                self._server.close()
                self._server = None
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._up.is_set():
            try:
                client, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink, throttle in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(source, sink, throttle),
                                 daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, throttle: bool) -> None:
        try:
            while True:
                data = source.recv(16384)
                if not data:
                    break
                if throttle and self.rate:
                    time.sleep(len(data) / self.rate)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass
