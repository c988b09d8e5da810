"""A tiny Flask app for tests/test_gunicorn.py, configured from the environment the way
a deployment would be (``app.config.from_prefixed_env()``: ``FLASK_REDISTIMERS_URL=...``
becomes ``app.config["REDISTIMERS_URL"]``).

    gunicorn --preload -w 2 tests._flask_app:app
    flask --app tests._flask_app:app redistimers worker

- ``POST /schedule`` schedules a timer on topic ``pings``, due at once; it answers with
  the timer id, the pid of the web process and whether its scheduler runs there; while
  Redis cannot be reached, 503 with ``Retry-After`` and the error.
- ``GET /health`` answers without Redis: the app boots and serves while Redis is down.
- The handler of ``pings`` RPUSHes ``"<pid> <timer id> <attempt> <app name>"`` to the
  Redis list ``$TEST_PREFIX:delivered`` (outside the redistimers namespace).

With ``TEST_CONNECT_BEFORE_FORK`` set, the app creates its scheduler (and a connection)
at import: in the gunicorn master, with ``--preload``. With ``TEST_PARENT_PID`` set, the
process that imports the module (the gunicorn master, the worker) exits when that parent
dies, so a crashed test run leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import threading

import redis
from flask import Flask, Response, current_app, jsonify

from redistimers import Delivery, RedisUnavailableError
from redistimers.contrib.flask import Timers
from tests._process_helpers import exit_with_parent

TOPIC = "pings"
PREFIX = os.environ.get("TEST_PREFIX", "test")

logging.basicConfig(
    level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
)

timers = Timers()


@timers.handler(TOPIC, lease_ttl=5)
def record(payload: dict[str, int], delivery: Delivery) -> None:
    results = redis.Redis.from_url(current_app.config["REDISTIMERS_URL"])  # needs the app context
    try:
        results.rpush(
            f"{PREFIX}:delivered",
            f"{os.getpid()} {delivery.timer_id} {delivery.attempt} {current_app.name}",
        )
    finally:
        results.close()


def create_app() -> Flask:
    app = Flask("timers_test_app")
    app.config.from_prefixed_env()
    timers.init_app(app)
    if os.environ.get("TEST_CONNECT_BEFORE_FORK"):  # a scheduler and a pooled connection
        with app.app_context():                     # made in the gunicorn master
            timers.scheduler.topics()

    @app.post("/schedule")
    def schedule() -> object:
        timer_id = timers.set_timer(TOPIC, {"n": 1}, activate_in=0)
        return jsonify(timer_id=timer_id, pid=os.getpid(), running=timers.scheduler.running)

    @app.get("/health")
    def health() -> object:
        return jsonify(pid=os.getpid())

    @app.errorhandler(RedisUnavailableError)
    def redis_down(exc: RedisUnavailableError) -> tuple[Response, int, dict[str, str]]:
        return jsonify(error=str(exc), pid=os.getpid()), 503, {"Retry-After": "1"}

    return app


if os.environ.get("TEST_PARENT_PID"):
    threading.Thread(
        target=exit_with_parent, args=(int(os.environ["TEST_PARENT_PID"]),), daemon=True
    ).start()

app = create_app()
