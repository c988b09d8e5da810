"""What the webhook tests (tests/test_webhook_*.py) share: a real HTTP server on 127.0.0.1
that answers as each test scripts it, and Webhooks allowed to reach it."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs

from redistimers import RetryPolicy, Router, TimerScheduler
from redistimers.contrib.webhook import Webhooks

from .helpers import FAST_RETRY, SchedulerFactory

#: Every delivery is the last one allowed: a failure goes straight to the dead letters.
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)


@attrs.frozen
class Answer:
    """How the receiver answers one request: a status, or hang / trickle (never finish)."""

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    behaviour: str = "answer"  # "answer", "hang", "trickle"


@attrs.frozen
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class Receiver:
    """A real HTTP server in a thread. `script(path, *answers)`: the answers to the
    requests to `path`, in turn; the last one repeats. Unscripted paths get 200."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.release = threading.Event()
        self._scripts: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts[path] = list(answers)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            answers = self._scripts.get(request.path.partition("?")[0], [Answer()])
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._answer(
                    Received(self.command, self.path, headers, body, time.monotonic())
                )
                try:
                    if answer.behaviour == "hang":
                        receiver.release.wait(10)
                        return
                    if answer.behaviour == "trickle":  # a header, one byte at a time
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while not receiver.release.wait(0.05):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                        return
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client hung up, as it should on a timeout
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@contextlib.contextmanager
def running_receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A Receiver, closed at the end."""
    server = Receiver(tls)
    try:
        yield server
    finally:
        server.close()


def local_webhooks(**options: Any) -> Webhooks:
    """Webhooks that may reach the local receiver: it is on 127.0.0.1, a loopback address."""
    settings: dict[str, Any] = {"allow_private": True, "timeout": 2.0, **options}
    return Webhooks(["127.0.0.1"], **settings)


def webhook_scheduler(
    make_scheduler: SchedulerFactory, webhooks: Webhooks, retry: RetryPolicy = FAST_RETRY
) -> TimerScheduler:
    router = Router()
    webhooks.register(router, retry=retry)
    return make_scheduler(router)
