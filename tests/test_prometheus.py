"""Prometheus metrics: GET /metrics and GET /workers of the HTTP admin API (werkzeug in a
thread, the Flask blueprint, and a real `redistimers serve`), a worker's own metrics
server, and a scrape while Redis is down. Real redis-servers and real HTTP; every scrape
is read by prometheus_client's own parser."""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import subprocess
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from redistimers import (
    ConfigurationError,
    Delivery,
    RejectTimer,
    RetryPolicy,
    Router,
    TimerScheduler,
)
from redistimers.contrib.http_api import create_app, create_blueprint
from redistimers.contrib.prometheus import start_worker_metrics_server
from redistimers.jsonforms import workers_json

from ._http_support import TOKEN, Api, ServeFactory, api_servers, http_server
from ._prometheus_support import Scrape, urlopen_text
from .helpers import (
    SchedulerFactory,
    ServerFactory,
    cli_command,
    cli_environment,
    closed_port,
    wait_for,
)

#: Two attempts, the second 10 ms after the first: dead letters come quickly.
TWO_TRIES = RetryPolicy(max_attempts=2, initial=0.01, factor=1.0, maximum=0.01, jitter=False)
#: A worker that polls often and beats its heart often, so that tests wait little.
FAST = {"max_poll_interval": 0.05, "heartbeat_interval": 0.2}

#: The timers of topic "jobs" (id -> payload) and what `by_payload` makes of them.
JOBS = {"ok-1": "ok", "ok-2": "ok", "ok-3": "ok", "flaky": "fail-once",
        "doomed": "always-fail", "unwanted": "reject"}
#: ok x3 and flaky's second attempt succeed; flaky's and doomed's first attempts are
#: retried; doomed's second is dead-lettered; unwanted is rejected.
OUTCOMES = {"succeeded": 4, "retried": 2, "dead_lettered": 1, "rejected": 1}
FAILURES = 3  # the handler raised: flaky once, doomed twice (RejectTimer is no failure)
DELIVERIES = sum(OUTCOMES.values())


def by_payload(payload: str, delivery: Delivery) -> None:
    if payload == "fail-once" and delivery.attempt == 1:
        raise ValueError("the first attempt fails")
    if payload == "always-fail":
        raise ValueError("every attempt fails")
    if payload == "reject":
        raise RejectTimer("not wanted")


def nothing(payload: Any) -> None:
    """A handler that does nothing."""


def jobs_worker(make_scheduler: SchedulerFactory, *other_topics: str) -> TimerScheduler:
    """A scheduler (not started) whose handler of "jobs" is `by_payload`, and of each of
    `other_topics` does nothing."""
    router = Router()
    router.handler("jobs", retry=TWO_TRIES)(by_payload)
    for topic in other_topics:
        router.handler(topic)(nothing)
    return make_scheduler(router, **FAST)


def run_jobs(worker: TimerScheduler) -> None:
    """Set the timers of JOBS and wait until the started `worker` has delivered them all."""
    for timer_id, payload in JOBS.items():
        worker.set_timer("jobs", payload, activate_in=0, timer_id=timer_id)
    wait_for(lambda: worker.metrics().delivered == DELIVERIES
             and worker.stats("jobs").pending == 0)


def outcomes(scrape: Scrape, topic: str) -> dict[str, float]:
    return {outcome: scrape.value("redistimers_deliveries_total", topic=topic, outcome=outcome)
            for outcome in OUTCOMES}


@pytest.fixture
def serve_api(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    with api_servers(make_scheduler) as serve:
        yield serve


# -- GET /metrics of a scheduler that runs handlers ---------------------------------------


def test_a_scrape_of_a_running_worker_agrees_with_stats_and_its_deliveries(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    worker = jobs_worker(make_scheduler)
    worker.set_timer("later", "x", activate_in=3600, timer_id="L1")
    worker.set_timer("later", "x", activate_in=3600, timer_id="L2")
    worker.set_timer("orphan", "x", activate_in=0, timer_id="O1")  # due; nobody handles it
    worker.start()
    run_jobs(worker)
    wait_for(lambda: len(worker.workers()) == 1)
    api = serve_api(worker)

    reply = api.call("GET", "/metrics")
    assert reply.status == 200, reply.raw
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    scrape = Scrape.parse(reply.raw)
    stats = worker.stats()
    assert set(stats) == {"jobs", "later", "orphan"}
    for name, field in (("redistimers_timers_pending", "pending"),
                        ("redistimers_timers_due", "due"),
                        ("redistimers_timers_leased", "leased"),
                        ("redistimers_timers_dead", "dead")):
        assert scrape.types[name] == "gauge"
        assert scrape.by_topic(name) == {t: getattr(s, field) for t, s in stats.items()}, name
    assert (stats["jobs"].dead, stats["later"].pending, stats["orphan"].due) == (1, 2, 1)
    lag = scrape.by_topic("redistimers_oldest_due_lag_seconds")
    assert lag["jobs"] == lag["later"] == 0  # nothing due there
    orphan_lag = worker.stats("orphan").oldest_due_lag
    assert orphan_lag is not None
    assert 0 < lag["orphan"] <= orphan_lag.total_seconds()
    assert scrape.by_topic("redistimers_topic_workers") == {"jobs": 1, "later": 0, "orphan": 0}
    assert scrape.value("redistimers_workers") == 1
    assert scrape.value("redistimers_redis_up") == 1

    # The worker's own metrics: this scheduler runs the handlers.
    assert scrape.types["redistimers_deliveries"] == "counter"
    assert outcomes(scrape, "jobs") == OUTCOMES
    assert scrape.value("redistimers_handler_failures_total", topic="jobs") == FAILURES
    assert scrape.value("redistimers_handlers_running", topic="jobs") == 0
    metrics = worker.metrics()
    assert scrape.value("redistimers_timers_claimed_total") == metrics.claimed >= DELIVERIES
    assert scrape.value("redistimers_redis_errors_total") == 0
    assert scrape.value("redistimers_redis_outages_total") == 0
    for name, histogram in (
        ("redistimers_handler_duration_seconds", metrics.topics["jobs"].handler_seconds),
        ("redistimers_delivery_lateness_seconds", metrics.topics["jobs"].lateness_seconds),
    ):
        assert scrape.types[name] == "histogram"
        assert scrape.value(f"{name}_count", topic="jobs") == DELIVERIES
        buckets = scrape.buckets(name, "jobs")
        assert [le for le, _ in buckets] == [*histogram.bounds, math.inf]
        counts = [count for _, count in buckets]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == DELIVERIES  # +Inf holds every observation
        assert counts == [count for _, count in histogram.cumulative()]
        assert scrape.value(f"{name}_sum", topic="jobs") == pytest.approx(histogram.total)


def test_a_worker_exposes_zeros_for_its_topics_before_any_delivery(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    worker = jobs_worker(make_scheduler, "idle")
    worker.start()
    scrape = Scrape.parse(serve_api(worker).call("GET", "/metrics").raw)
    for topic in ("jobs", "idle"):
        assert outcomes(scrape, topic) == dict.fromkeys(OUTCOMES, 0)
        assert scrape.value("redistimers_handler_duration_seconds_count", topic=topic) == 0
        assert scrape.buckets("redistimers_delivery_lateness_seconds", topic)[-1] == (math.inf, 0)


# -- authentication, the Flask blueprint, GET /workers --------------------------------------


def test_metrics_and_workers_need_the_bearer_token(serve_api: ServeFactory) -> None:
    api = serve_api()
    for path in ("/metrics", "/workers"):
        missing = api.call("GET", path, token=None)
        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="redistimers"'
        assert b"redistimers_" not in missing.raw
        assert api.call("GET", path, token=TOKEN + "x").status == 401
        assert api.call("GET", path).status == 200


def test_the_flask_blueprint_serves_metrics_under_its_prefix(
    make_scheduler: SchedulerFactory,
) -> None:
    app = flask.Flask("host")
    app.register_blueprint(create_blueprint(make_scheduler(), token=TOKEN), url_prefix="/timers")
    with http_server(app) as port:
        api = Api(port)
        assert api.call("GET", "/timers/metrics", token=None).status == 401
        reply = api.call("GET", "/timers/metrics")
        assert reply.status == 200, reply.raw
        assert Scrape.parse(reply.raw).value("redistimers_redis_up") == 1


def test_get_workers_agrees_with_scheduler_workers(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    worker = jobs_worker(make_scheduler, "idle")
    worker.start()
    wait_for(lambda: len(worker.workers()) == 1)
    api = serve_api()  # another scheduler, without handlers: it reads the worker's record

    def steady(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in w.items() if k != "last_seen"} for w in body["workers"]]

    reply = api.call("GET", "/workers")
    assert reply.status == 200
    assert steady(reply.json) == steady(workers_json(worker.workers()))
    (shown,) = reply.json["workers"]
    assert shown["id"] == worker.worker_id
    assert set(shown["topics"]) == {"jobs", "idle"}  # each with its max_concurrent
    worker.stop(timeout=5)
    assert api.call("GET", "/workers").json == {"workers": []}


# -- a real `redistimers serve` -----------------------------------------------------------


@contextlib.contextmanager
def redistimers_serve(redis_url: str, log_file: Path) -> Iterator[Api]:
    """`redistimers serve` on a free port with TOKEN, until the end of the block."""
    port = closed_port()
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=cli_environment(REDISTIMERS_API_TOKEN=TOKEN),
        )

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {log_file.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    try:
        wait_for(listening, 15, interval=0.05)
        yield Api(port)
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
def test_redistimers_serve_counts_a_topics_live_worker_until_it_stops(
    redis_url: str, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    worker = jobs_worker(make_scheduler, "idle")
    worker.set_timer("jobs", "ok", activate_in=3600, timer_id="J1")
    with redistimers_serve(redis_url, tmp_path / "serve.log") as api:
        assert api.call("GET", "/metrics", token=None).status == 401
        before = Scrape.parse(api.call("GET", "/metrics").raw)
        assert before.by_topic("redistimers_topic_workers") == {"jobs": 0}
        worker.start()
        wait_for(lambda: len(worker.workers()) == 1)
        running = Scrape.parse(api.call("GET", "/metrics").raw)
        # "idle" has no timers yet, but a worker serves it.
        assert running.by_topic("redistimers_topic_workers") == {"jobs": 1, "idle": 1}
        assert running.by_topic("redistimers_timers_pending") == {"jobs": 1, "idle": 0}
        assert running.value("redistimers_workers") == 1
        # serve runs no handlers: no worker metrics of its own.
        assert not {n for n in running.names if n.startswith("redistimers_deliveries")}
        worker.stop(timeout=5)
        stopped = Scrape.parse(api.call("GET", "/metrics").raw)
        assert stopped.by_topic("redistimers_topic_workers") == {"jobs": 0}
        assert stopped.value("redistimers_workers") == 0


# -- a worker's own metrics server --------------------------------------------------------


def test_the_worker_metrics_server_serves_the_workers_own_metrics_over_http(
    make_scheduler: SchedulerFactory,
) -> None:
    worker = jobs_worker(make_scheduler)
    port = closed_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with start_worker_metrics_server(worker, port, "127.0.0.1") as server:
        assert server.port == port
        content_type, text = urlopen_text(url)
        assert content_type.startswith("text/plain")
        idle = Scrape.parse(text)
        assert outcomes(idle, "jobs") == dict.fromkeys(OUTCOMES, 0)
        # The worker's collector alone: no stats() of every topic at each scrape.
        assert not {n for n in idle.names if n.startswith(("redistimers_timers_pending",
                                                           "redistimers_redis_up"))}
        worker.start()
        run_jobs(worker)
        busy = Scrape.parse(urlopen_text(url)[1])
        assert outcomes(busy, "jobs") == OUTCOMES
        assert busy.value("redistimers_handler_duration_seconds_count", topic="jobs") == (
            DELIVERIES
        )
    with pytest.raises(urllib.error.URLError):  # shut down: the port is closed
        urlopen_text(url)


def test_a_metrics_port_in_use_is_a_configuration_error_naming_it(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"port {port}"):
            start_worker_metrics_server(scheduler, port, "127.0.0.1")
    for bad in (-1, 70000, True, "9464"):
        with pytest.raises(ConfigurationError, match="port"):
            start_worker_metrics_server(scheduler, bad, "127.0.0.1")  # type: ignore[arg-type]


# -- Redis down at scrape time --------------------------------------------------------------


def test_a_scrape_while_redis_is_down_says_redis_up_0_and_logs_the_outage_once(
    own_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_server()
    scheduler = TimerScheduler.from_url(server.url)
    scheduler.set_timer("jobs", "x", activate_in=3600)
    caplog.set_level(logging.INFO, logger="redistimers.prometheus")
    with http_server(create_app(scheduler, token=TOKEN)) as port:
        api = Api(port)
        assert Scrape.parse(api.call("GET", "/metrics").raw).value("redistimers_redis_up") == 1
        server.stop()
        for _ in range(3):
            reply = api.call("GET", "/metrics")
            assert reply.status == 200, reply.raw
            down = Scrape.parse(reply.raw)
            assert down.value("redistimers_redis_up") == 0
            assert "redistimers_timers_pending" not in down.names
        logged = [r for r in caplog.records if r.name == "redistimers.prometheus"]
        assert [r.levelno for r in logged] == [logging.WARNING]
        assert "Redis does not answer" in logged[0].getMessage()
        server.start()
        back = Scrape.parse(api.call("GET", "/metrics").raw)
        assert back.value("redistimers_redis_up") == 1
        logged = [r for r in caplog.records if r.name == "redistimers.prometheus"]
        assert [r.levelno for r in logged] == [logging.WARNING, logging.INFO]
        assert "answers again" in logged[-1].getMessage()
