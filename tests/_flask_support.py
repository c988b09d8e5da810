"""What the Flask tests (tests/test_flask_*.py) share: apps configured for the session's
Redis, and an app of a Redis that is down until the test starts it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from flask import Flask

from redistimers import RedisUnavailableError
from redistimers.contrib.flask import Timers
from redistimers.testing import RedisServer

DEADLINE = 30.0


@attrs.frozen
class Reminder:
    user: str


AppFactory = Callable[..., Flask]


def closed_port() -> int:
    """A local port nothing listens on (free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def flask_apps(redis_url: str) -> Iterator[AppFactory]:
    """Flask apps configured for the Redis at `redis_url` (namespace "web"); at the end
    every scheduler they created is stopped."""
    apps: list[Flask] = []

    def make(timers: Timers, name: str = "web_app", **config: Any) -> Flask:
        app = Flask(name)
        app.config.update(
            {"TESTING": True, "REDISTIMERS_URL": redis_url, "REDISTIMERS_NAMESPACE": "web"}
        )
        app.config.update(config)
        timers.init_app(app)
        apps.append(app)
        return app

    try:
        yield make
    finally:
        for app in apps:
            state = app.extensions["redistimers"]
            state.stop_here(timeout=5)
            if state.created:
                state.scheduler.stop(timeout=5)


@contextlib.contextmanager
def down_redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free port, not started: nothing listens there until the test
    calls start(). Closed at the end."""
    server = RedisServer(port=closed_port())
    try:
        yield server
    finally:
        server.close()


def redis_down_app(timers: Timers, server: RedisServer, **config: Any) -> Flask:
    """An app of `server` (maybe down): ``GET /health`` needs no Redis, ``POST /ping``
    schedules, and RedisUnavailableError is a 503 (as README's example does)."""
    app = Flask("down_app")
    app.config.update(REDISTIMERS_URL=server.url, REDISTIMERS_NAMESPACE="down", **config)
    timers.init_app(app)
    app.get("/health")(lambda: "ok")

    @app.post("/ping")
    def ping() -> dict[str, object]:
        return {"timer_id": timers.set_timer("pings", 1, activate_in=0),
                "running": timers.scheduler.running}

    @app.errorhandler(RedisUnavailableError)
    def redis_down(exc: RedisUnavailableError) -> tuple[str, int]:
        return str(exc), 503

    return app
