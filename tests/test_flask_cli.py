"""``flask redistimers``: the worker and the forwarded `redistimers` commands, with Flask's
CLI runner, against real redis-servers."""


from __future__ import annotations

import threading
from typing import Any

import redis
from flask import Flask, current_app

from redistimers import TimerScheduler
from redistimers.contrib.flask import Timers
from redistimers.testing import RedisServer

from ._flask_support import (
    DEADLINE,
    AppFactory,
    redis_down_app,
)
from .helpers import wait_for

# -- the `flask redistimers` group -------------------------------------------------------


def test_cli_group_forwards_stats_and_list_to_the_redistimers_command(
    make_app: AppFactory,
) -> None:
    timers = Timers()
    app = make_app(timers, REDISTIMERS_NAMESPACE="clins")
    with app.app_context():
        timers.set_timer("invoices", {"n": 1}, activate_in=600, timer_id="inv-1")
        timers.set_timer("invoices", {"n": 2}, activate_in=900, timer_id="inv-2")
    runner = app.test_cli_runner()

    stats = runner.invoke(args=["redistimers", "stats"])
    assert stats.exit_code == 0, stats.output
    assert "invoices" in stats.output

    listed = runner.invoke(args=["redistimers", "list", "invoices"])
    assert listed.exit_code == 0, listed.output
    assert "inv-1" in listed.output
    assert "inv-2" in listed.output

    unknown = runner.invoke(args=["redistimers", "no-such-command"])
    assert unknown.exit_code == 2, unknown.output


def test_cli_group_lists_worker_and_the_library_commands(make_app: AppFactory) -> None:
    app = make_app(Timers())
    result = app.test_cli_runner().invoke(args=["redistimers", "--help"])
    assert result.exit_code == 0, result.output
    assert "deliver this app's timers" in result.output  # worker, the group's own
    for command in ("stats", "list", "get", "schedule", "cancel", "dead"):
        assert f"\n  {command} " in result.output, result.output
    assert "demo" not in result.output  # it would not use the app's Redis


def test_cli_worker_delivers_with_the_apps_handlers_and_concurrency_until_stopped(
    make_app: AppFactory, redis_url: str
) -> None:
    release = threading.Event()
    running: list[str] = []
    timers = Timers()

    @timers.handler("reports", max_concurrent=10)
    def report(payload: int) -> None:
        running.append(current_app.config["GREETING"])
        release.wait(DEADLINE)

    app = make_app(timers, GREETING="hi")
    outsider = TimerScheduler.from_url(redis_url, namespace="web")  # schedules, as a web app
    for n in range(5):
        outsider.set_timer("reports", n, activate_in=0)

    results: list[Any] = []
    runner = app.test_cli_runner()
    thread = threading.Thread(
        target=lambda: results.append(
            runner.invoke(args=["redistimers", "worker", "--concurrency", "2",
                                "--shutdown-timeout", "5s"])
        )
    )
    thread.start()
    try:
        wait_for(lambda: len(running) == 2, DEADLINE)
        state = app.extensions["redistimers"]
        wait_for(lambda: state.created and state.scheduler.running, DEADLINE)
        assert state.scheduler.metrics().in_flight == {"reports": 2}  # --concurrency 2, not 10
    finally:
        release.set()
    wait_for(lambda: outsider.stats("reports").pending == 0, DEADLINE)
    state.scheduler.stop(5)  # run_forever returns, as it does on SIGTERM
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert results[0].exit_code == 0, results[0].output
    assert running == ["hi"] * 5


def test_cli_worker_with_wrong_credentials_exits_saying_so() -> None:
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: object) -> None: ...

    with RedisServer() as url:
        with redis.Redis.from_url(url) as admin:
            admin.acl_setuser("timers", enabled=True, passwords=["+s3cret"], keys=["*"],
                              commands=["+@all"])
        app = Flask("wrong_password")
        app.config["REDISTIMERS_URL"] = url.replace("redis://", "redis://timers:wrong@")
        timers.init_app(app)
        result = app.test_cli_runner().invoke(args=["redistimers", "worker"])
    assert result.exit_code == 2, result.output
    assert "redistimers: error: Redis at 127.0.0.1:" in result.output
    assert "refused to authenticate" in result.output


def test_cli_forwarded_command_while_redis_is_down_is_one_line_naming_it(
    down_redis: RedisServer,
) -> None:
    app = redis_down_app(Timers(), down_redis)
    result = app.test_cli_runner().invoke(args=["redistimers", "stats"])
    assert result.exit_code == 2, result.output
    assert f"cannot reach Redis at 127.0.0.1:{down_redis.port}" in result.output
    assert "Traceback" not in result.output


def test_cli_worker_without_handlers_refuses_to_start(make_app: AppFactory) -> None:
    app = make_app(Timers())
    result = app.test_cli_runner().invoke(args=["redistimers", "worker"])
    assert result.exit_code == 2
    assert "registers no timer handlers" in result.output

