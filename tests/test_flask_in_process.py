"""The Flask extension's in-process mode (REDISTIMERS_RUN_IN_WEB): each web process delivers,
started on its first request (again after a fork), serving while Redis is down; against
real redis-servers."""


from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
import redis
from flask import current_app

from redistimers import Delivery
from redistimers.contrib.flask import Timers
from redistimers.testing import RedisServer

from ._flask_support import (
    DEADLINE,
    AppFactory,
    redis_down_app,
)
from .helpers import REPO, redistimers_threads, wait_for

# -- the in-process mode -----------------------------------------------------------------


def _started_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("started the timer scheduler")]


def test_in_process_mode_starts_once_per_process_on_the_first_request_and_delivers(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redistimers.flask")
    delivered: list[tuple[str, str]] = []
    lock = threading.Lock()
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: int, delivery: Delivery) -> None:
        with lock:
            delivered.append((current_app.name, delivery.timer_id))

    app = make_app(timers, name="inproc", REDISTIMERS_RUN_IN_WEB=True)

    @app.post("/ping")
    def schedule() -> dict[str, object]:
        return {
            "timer_id": timers.set_timer("pings", 1, activate_in=0),
            "running": timers.scheduler.running,
        }

    scheduler = timers.get_scheduler(app)
    assert not scheduler.running  # nothing starts before a request

    def post(_: int) -> dict[str, Any]:
        response = app.test_client().post("/ping")
        return response.get_json()  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # first requests arrive together
        answers = list(pool.map(post, range(24)))
    assert all(answer["running"] for answer in answers)
    assert len(_started_records(caplog)) == 1
    assert app.extensions["redistimers"].started_pid == os.getpid()
    assert timers.start_in_process(app) is False  # already running here

    expected = {answer["timer_id"] for answer in answers}
    wait_for(lambda: len(delivered) >= len(expected), DEADLINE)
    assert sorted(delivered) == sorted(("inproc", timer_id) for timer_id in expected)

    assert timers.stop_in_process(app) is True
    assert not scheduler.running
    app.test_client().post("/ping")  # a later request starts it again
    assert scheduler.running
    assert len(_started_records(caplog)) == 2


def test_the_app_boots_and_serves_while_redis_is_down_and_schedules_once_it_is_up(
    down_redis: RedisServer,
) -> None:
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: int) -> None: ...

    threads_before = redistimers_threads()
    app = redis_down_app(timers, down_redis)  # init_app does not connect
    client = app.test_client()
    health = client.get("/health")
    assert (health.status_code, health.text) == (200, "ok")
    down = client.post("/ping")
    assert down.status_code == 503
    assert f"cannot reach Redis at 127.0.0.1:{down_redis.port}" in down.text
    assert not timers.get_scheduler(app).running
    assert redistimers_threads() == threads_before  # nothing started in the background

    down_redis.start()
    up = client.post("/ping")  # the same process, the same scheduler: nothing to restart
    assert up.status_code == 200, up.text
    timer = timers.get_scheduler(app).get_timer("pings", up.get_json()["timer_id"])
    assert timer is not None
    assert timer.payload == 1


def test_in_process_mode_serves_requests_while_redis_is_down_and_delivers_once_it_is_up(
    down_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    delivered: list[tuple[str, str]] = []
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: int, delivery: Delivery) -> None:
        delivered.append((current_app.name, delivery.timer_id))

    app = redis_down_app(timers, down_redis, REDISTIMERS_RUN_IN_WEB=True)
    client = app.test_client()
    try:
        health = client.get("/health")  # the first request starts the scheduler...
        assert (health.status_code, health.text) == (200, "ok")  # ...and is served at once
        state = app.extensions["redistimers"]
        assert state.started_pid == os.getpid()
        assert state.scheduler.running
        assert not any("could not start" in r.getMessage() for r in caplog.records)
        where = f"127.0.0.1:{down_redis.port}"

        def waiting() -> list[str]:
            return [m for r in caplog.records if "waiting for Redis" in (m := r.getMessage())]

        wait_for(waiting, DEADLINE)  # its threads wait in the background
        assert where in waiting()[0]
        assert client.post("/ping").status_code == 503
        assert client.get("/health").status_code == 200

        down_redis.start()
        answer = client.post("/ping")
        assert answer.status_code == 200, answer.text
        assert answer.get_json()["running"] is True
        wait_for(lambda: delivered, DEADLINE)
        assert delivered == [("down_app", answer.get_json()["timer_id"])]
        assert len(waiting()) == 1, waiting()  # one line for the whole wait
        assert len(_started_records(caplog)) == 1
    finally:
        assert timers.stop_in_process(app, timeout=5)


@pytest.mark.slow
def test_in_process_mode_after_fork_starts_again_in_the_child_and_delivers_there(
    redis_client: redis.Redis, redis_url: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_flask_fork.py"), redis_url, "forking"],
        capture_output=True, text=True, cwd=REPO, timeout=DEADLINE * 2, check=False,
    )
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, detail
    report = json.loads(result.stdout.strip().splitlines()[-1])
    child = report["pid"]
    assert report["running_before"] is False, detail  # the parent's start is not inherited
    assert report["running_after"] is True, detail
    assert report["started_pid"] == child, detail
    assert report["delivered"] == [f"{child} {report['timer_id']}"], detail


