"""The web app, under gunicorn: ``gunicorn 'reminders.web:create_app()'``.

It schedules; separate workers deliver (``redistimers worker reminders.tasks:router``).

- ``POST /reminders`` with ``{"user": "ada", "text": "stand up", "in": 90}`` schedules a
  reminder in 90 seconds and answers ``201 {"id": ...}``; while Redis cannot be reached,
  503.
- ``POST /trials/<user>`` ends the user's trial in 14 days (re-posting moves it).
- ``GET /healthz`` answers without touching Redis: the container's health check.
"""

from __future__ import annotations

import datetime as dt
import os

from flask import Flask, Response, jsonify, request

from redistimers import (
    InvalidTimerError,
    PayloadTooLargeError,
    PayloadTypeError,
    RedisUnavailableError,
)
from redistimers.contrib.flask import Timers

from .tasks import REMINDERS, TRIALS, Reminder, router

timers = Timers()
timers.include_router(router)  # payloads checked against the handlers' types


def create_app() -> Flask:
    app = Flask("reminders")
    app.config["REDISTIMERS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    app.config["REDISTIMERS_NAMESPACE"] = os.environ.get("REDISTIMERS_NAMESPACE", "redistimers")
    app.config.from_prefixed_env()  # FLASK_REDISTIMERS_... overrides
    timers.init_app(app)  # checks the settings; connects at the first call that needs Redis

    @app.post("/reminders")
    def add_reminder() -> tuple[Response, int]:
        body = request.get_json(force=True, silent=True) or {}
        user, text = body.get("user"), body.get("text")
        if not isinstance(user, str) or not isinstance(text, str):
            return jsonify(error="give a user and a text"), 400
        timer_id = timers.set_timer(REMINDERS, Reminder(user, text), activate_in=body.get("in", 0))
        return jsonify(id=timer_id), 201

    @app.post("/trials/<user>")
    def start_trial(user: str) -> tuple[Response, int]:
        timers.set_timer(TRIALS, user, activate_in=dt.timedelta(days=14), timer_id=user)
        return jsonify(id=user), 201

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(ok=True)

    @app.errorhandler(InvalidTimerError)
    @app.errorhandler(PayloadTypeError)
    @app.errorhandler(PayloadTooLargeError)
    def bad_request(exc: Exception) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    @app.errorhandler(RedisUnavailableError)
    def redis_down(exc: RedisUnavailableError) -> tuple[Response, int, dict[str, str]]:
        return jsonify(error=str(exc)), 503, {"Retry-After": "5"}

    return app
