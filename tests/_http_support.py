"""What the HTTP admin API's tests (tests/test_http_api_*.py) share: a real HTTP server on
127.0.0.1 (werkzeug's, in a thread), a real HTTP client (http.client), and readers of
what the API left in the session's redis-server."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import flask
import redis
from werkzeug.serving import make_server

from redistimers import Delivery, RetryPolicy, Router, TimerScheduler
from redistimers.contrib.http_api import create_app

from .helpers import SchedulerFactory

TOKEN = "s3cret-token-for-tests"
#: No body at all (None would be sent as JSON null).
NO_BODY: Any = object()
_OWN_TOKEN: Any = object()
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)


@attrs.frozen
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class Api:
    """A real HTTP client of a server on 127.0.0.1."""

    def __init__(self, port: int, token: str | None = TOKEN) -> None:
        self.port, self.token = port, token

    def call(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        token: str | None = _OWN_TOKEN,
        headers: dict[str, str] | None = None,
        data: bytes | Iterable[bytes] | None = None,
    ) -> Reply:
        token = self.token if token is _OWN_TOKEN else token
        sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not NO_BODY:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


@contextlib.contextmanager
def http_server(app: flask.Flask) -> Iterator[int]:
    """Serve `app` on a free port of 127.0.0.1 in a thread; yields the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


ServeFactory = Callable[..., Api]


@contextlib.contextmanager
def api_servers(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    """serve(scheduler=None, token=TOKEN, **create_app options) -> Api of a live server;
    every server is shut down at the end."""
    with contextlib.ExitStack() as stack:

        def serve(scheduler: TimerScheduler | None = None, token: str | None = TOKEN,
                  **options: Any) -> Api:
            app = create_app(scheduler or make_scheduler(), token=token, **options)
            return Api(stack.enter_context(http_server(app)), token)

        yield serve


def redis_state(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key and its serialized value: equal snapshots mean nothing was written."""
    return {key: client.dump(key) for key in sorted(client.keys("*"))}  # type: ignore[misc]


def create(api: Api, topic: str = "invoices", /, **body: Any) -> Reply:
    when = {} if "at" in body or "every" in body else {"in": "1h"}
    reply = api.call("POST", f"/topics/{topic}/timers", {"payload": {"n": 1}, **when, **body})
    assert reply.status == 201, reply.raw
    return reply


def dead_letter_scheduler(
    make_scheduler: SchedulerFactory, *timer_ids: str, topic: str = "jobs"
) -> TimerScheduler:
    """A scheduler of `topic` whose handler always fails, with `timer_ids` dead."""
    router = Router()

    @router.handler(topic, retry=ONE_ATTEMPT)
    def fail(payload: Any, delivery: Delivery) -> None:
        raise ValueError(f"card declined: {payload}")

    scheduler = make_scheduler(router)
    for timer_id in timer_ids:
        scheduler.set_timer(topic, {"job": timer_id}, activate_in=0, timer_id=timer_id,
                            headers={"tenant": "acme"})
        assert scheduler.run_pending() == 1
    return scheduler


def allowed(reply: Reply) -> set[str]:
    return {method.strip() for method in reply.headers["Allow"].split(",")}
