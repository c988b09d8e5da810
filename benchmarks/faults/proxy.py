"""A TCP proxy that can freeze: a network partition between one worker and Redis.

Frozen, it stops forwarding both ways but closes nothing: bytes already read are held,
the rest waits in the kernel's buffers, and sockets stay open, as when packets stop
getting through. Thawed, everything held flows on (commands a client gave up on too, as
TCP would deliver them once the partition heals).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class FreezableProxy:
    """Forwards 127.0.0.1:<port> to `upstream`, one pair of pump threads per connection."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._thawed = threading.Event()
        self._thawed.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FreezableProxy:
        self._acceptor.start()
        return self

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    @property
    def frozen(self) -> bool:
        return not self._thawed.is_set()

    def close(self) -> None:
        """Close every socket and wait (briefly) for the threads."""
        self._closed.set()
        self._thawed.set()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in [self._acceptor, *threads]:
            if thread.is_alive():
                thread.join(1.0)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pumps = [
                threading.Thread(target=self._pump, args=(client, server), daemon=True),
                threading.Thread(target=self._pump, args=(server, client), daemon=True),
            ]
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
                self._threads += pumps
            for pump in pumps:
                pump.start()

    def _hold(self) -> bool:
        """Wait while frozen; False once the proxy is closed."""
        while not self._thawed.wait(0.1):
            if self._closed.is_set():
                return False
        return not self._closed.is_set()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while self._hold():
                readable, _, _ = select.select([source], [], [], 0.1)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                if not self._hold():  # frozen after the read: hold these bytes
                    break
                target.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
