"""Sending one webhook over HTTP(S), with the standard library's http.client: to addresses
already checked (never a fresh DNS answer), within one deadline for the whole exchange, with
no redirects followed, no proxies, and a response body read only up to a bound."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import WebhookConnectionError, WebhookTimeout
from .payload import shown
from .response import WebhookResponse


def endpoint(url: str) -> tuple[str, int]:
    """The host and port `url` names (the scheme's default port when it names none)."""
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _connect(addresses: list[tuple[int, Any]], deadline: float) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers before `deadline`."""
    error: OSError = TimeoutError("no time left to connect")
    for family, sockaddr in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("connect timed out")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses already checked, never to a fresh DNS answer (the
    Host header and, for TLS, SNI and the certificate check still use the host name)."""

    def __init__(self, host: str, port: int, addresses: list[tuple[int, Any]], deadline: float,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=max(0.001, deadline - time.monotonic()))
        self._addresses, self._deadline, self._tls = addresses, deadline, tls
        if tls is not None:
            self.default_port = 443  # the Host header names no port when it is the default

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._deadline)
        if time.monotonic() >= self._deadline:
            raise TimeoutError("connected too late")
        if self._tls is not None:
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


@contextlib.contextmanager
def _deadline(seconds: float, connection: http.client.HTTPConnection) -> Iterator[threading.Event]:
    """Shut the connection's socket down once the whole exchange has taken `seconds`: a
    socket timeout bounds each read, not a receiver that trickles a byte at a time. The
    event yielded tells whether that happened."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        if connection.sock is not None:  # the plain socket's shutdown wakes a TLS read too
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)

    timer = threading.Timer(seconds, expire)
    timer.name, timer.daemon = "webhook-deadline", True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


def exchange(
    method: str,
    url: str,
    addresses: list[tuple[int, Any]],
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    timeout: float,
    max_response_bytes: int,
    ssl_context: ssl.SSLContext,
) -> WebhookResponse:
    """Send `method` `url` with `body` and `headers` to one of `addresses` (checked already)
    and return the answer, whatever its status.

    Raises WebhookTimeout when no complete answer came within `timeout` seconds,
    WebhookConnectionError when the connection failed or broke.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = endpoint(url)
    deadline = time.monotonic() + timeout
    connection = _PinnedConnection(
        host, port, addresses, deadline, ssl_context if parts.scheme == "https" else None
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with _deadline(timeout, connection) as expired:
            try:
                connection.request(method, target, body, dict(headers))
                response = connection.getresponse()
                if expired.is_set():  # cut off mid-headers reads as their end: not an answer
                    raise TimeoutError("cut off")
            except (OSError, http.client.HTTPException) as exc:
                if expired.is_set() or isinstance(exc, TimeoutError):
                    raise WebhookTimeout(
                        f"{method} {shown(url)}: no answer within {timeout:g}s"
                    ) from exc
                raise WebhookConnectionError(
                    f"{method} {shown(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            status = response.status
            data = b"" if 200 <= status < 300 else _read(response, max_response_bytes)
    finally:
        connection.close()
    names: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        names[key] = f"{names[key]}, {value}" if key in names else value
    return WebhookResponse(status, response.reason, names, data)


def _read(response: http.client.HTTPResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body; what arrived when the reading failed."""
    chunks: list[bytes] = []
    left = limit
    with contextlib.suppress(OSError, http.client.HTTPException):
        while left > 0:
            chunk = response.read(min(left, 16384))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    return b"".join(chunks)
