"""Prometheus metrics of redistimers, read when Prometheus scrapes: no counter of its own.

Two collectors: the topics' (`scheduler.stats()` and `scheduler.workers()`, one scrape =
these two Redis calls; served at ``GET /metrics`` of the HTTP admin API) and a worker's
own (`scheduler.metrics()`, no Redis call; served by `start_worker_metrics_server`, and at
``GET /metrics`` of a scheduler that runs handlers). Needs ``redistimers[prometheus]``.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Iterator
from types import TracebackType
from wsgiref.simple_server import WSGIServer

import redis

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
        start_http_server,
    )
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as exc:  # the optional `prometheus` extra
    raise ImportError(
        "Prometheus metrics need prometheus_client: pip install 'redistimers[prometheus]'"
    ) from exc

from ..errors import ConfigurationError, RedisCallError
from ..metrics import Histogram, TopicMetrics
from ..models import TopicStats
from ..scheduler import TimerScheduler

__all__ = [
    "MetricsServer",
    "TopicCollector",
    "WorkerCollector",
    "metrics_text",
    "start_worker_metrics_server",
    "topic_registry",
    "worker_registry",
]

log = logging.getLogger("redistimers.prometheus")

#: The outcomes of a delivery that ran a handler (the `outcome` label).
OUTCOMES = ("succeeded", "retried", "dead_lettered", "rejected")


# -- the topics: what Redis holds ---------------------------------------------------------


class TopicCollector:
    """The timers of every topic and the live workers, read from Redis at each scrape.
    When Redis does not answer, only ``redistimers_redis_up 0`` (logged once per outage)."""

    def __init__(self, scheduler: TimerScheduler) -> None:
        self.scheduler = scheduler
        self._lock = threading.Lock()
        self._down = False

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.scheduler.stats()
            workers = self.scheduler.workers()
        except (RedisCallError, redis.exceptions.RedisError) as exc:
            self._answered(False, exc)
            yield GaugeMetricFamily("redistimers_redis_up", _REDIS_UP_HELP, value=0)
            return
        self._answered(True)
        yield GaugeMetricFamily("redistimers_redis_up", _REDIS_UP_HELP, value=1)
        serving: dict[str, int] = {}
        for worker in workers:
            for topic in worker.topics:
                serving[topic] = serving.get(topic, 0) + 1
        topics = sorted(set(stats) | set(serving))
        empty = TopicStats("", pending=0, due=0, leased=0, dead=0, oldest_due_lag=None)
        gauges = {
            name: GaugeMetricFamily(name, help_text, labels=["topic"])
            for name, help_text in _TOPIC_GAUGES
        }
        for topic in topics:
            one = stats.get(topic, empty)
            lag = one.oldest_due_lag.total_seconds() if one.oldest_due_lag else 0.0
            for name, value in (
                ("redistimers_timers_pending", one.pending),
                ("redistimers_timers_due", one.due),
                ("redistimers_timers_leased", one.leased),
                ("redistimers_timers_dead", one.dead),
                ("redistimers_oldest_due_lag_seconds", lag),
                ("redistimers_topic_workers", serving.get(topic, 0)),
            ):
                gauges[name].add_metric([topic], value)
        yield from gauges.values()
        yield GaugeMetricFamily("redistimers_workers", "Live workers of this namespace "
                                "(started schedulers with handlers, by heartbeat).",
                                value=len(workers))

    def _answered(self, answered: bool, exc: Exception | None = None) -> None:
        """Log the first failed scrape of an outage, and the first answer after it."""
        with self._lock:
            was_down, self._down = self._down, not answered
        if not answered and not was_down:
            log.warning("Prometheus scrape: Redis does not answer (redistimers_redis_up 0 "
                        "until it does): %s", exc)
        elif answered and was_down:
            log.info("Prometheus scrape: Redis answers again")


_REDIS_UP_HELP = "1 when Redis answered this scrape's reads, 0 when it did not."
_TOPIC_GAUGES = (
    ("redistimers_timers_pending", "Timers stored and not dead (running ones included)."),
    ("redistimers_timers_due", "Timers due now that no handler holds: the backlog."),
    ("redistimers_timers_leased", "Timers a handler holds right now."),
    ("redistimers_timers_dead", "Dead-lettered timers."),
    ("redistimers_oldest_due_lag_seconds",
     "How late the oldest due timer is (0 when none is due)."),
    ("redistimers_topic_workers", "Live workers with a handler of the topic."),
)


# -- a worker: what its handlers did ------------------------------------------------------


class WorkerCollector:
    """What this process's scheduler delivered since it was created (`scheduler.metrics()`:
    no Redis call), per topic it handles."""

    def __init__(self, scheduler: TimerScheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        metrics = self.scheduler.metrics()
        names = sorted({*self.scheduler.topics_handled, *metrics.topics, *metrics.in_flight})
        topics = [metrics.topics.get(name) or TopicMetrics(name) for name in names]
        deliveries = CounterMetricFamily(
            "redistimers_deliveries", "Handler calls that ended, by outcome.",
            labels=["topic", "outcome"],
        )
        failures = CounterMetricFamily(
            "redistimers_handler_failures",
            "Handler calls that raised an exception (then retried or dead-lettered).",
            labels=["topic"],
        )
        running = GaugeMetricFamily("redistimers_handlers_running", "Handlers running now.",
                                    labels=["topic"])
        durations = HistogramMetricFamily(
            "redistimers_handler_duration_seconds", "How long handlers ran.", labels=["topic"]
        )
        lateness = HistogramMetricFamily(
            "redistimers_delivery_lateness_seconds",
            "How late deliveries started after their due time (by Redis's clock).",
            labels=["topic"],
        )
        for topic in topics:
            for outcome in OUTCOMES:
                deliveries.add_metric([topic.topic, outcome], getattr(topic, outcome))
            failures.add_metric([topic.topic], topic.failed)
            running.add_metric([topic.topic], metrics.in_flight.get(topic.topic, 0))
            durations.add_metric([topic.topic], *_buckets(topic.handler_seconds))
            lateness.add_metric([topic.topic], *_buckets(topic.lateness_seconds))
        yield from (deliveries, failures, running, durations, lateness)
        for name, help_text, value in (
            ("redistimers_timers_claimed", "Timers this worker leased for delivery.",
             metrics.claimed),
            ("redistimers_redis_errors", "Redis calls of this worker that failed.",
             metrics.redis_errors),
            ("redistimers_redis_outages",
             "Times this worker's threads found Redis unreachable or stalled.",
             metrics.redis_outages),
        ):
            yield CounterMetricFamily(name, help_text, value=value)


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    """A histogram as HistogramMetricFamily takes it: cumulative buckets (+Inf last), sum."""
    buckets: list[tuple[str, float]] = [
        ("+Inf" if math.isinf(bound) else repr(float(bound)), count)
        for bound, count in histogram.cumulative()
    ]
    return buckets, histogram.total


# -- registries and the exposition ----------------------------------------------------------


def _registry(*collectors: TopicCollector | WorkerCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)  # registering reads nothing
    for collector in collectors:
        registry.register(collector)
    return registry


def topic_registry(scheduler: TimerScheduler) -> CollectorRegistry:
    """A registry of the topics' metrics (two Redis reads per scrape)."""
    return _registry(TopicCollector(scheduler))


def worker_registry(scheduler: TimerScheduler) -> CollectorRegistry:
    """A registry of this process's worker metrics (no Redis call per scrape)."""
    return _registry(WorkerCollector(scheduler))


class _Registries:
    """A scheduler's registries for `metrics_text`: the topics', and the topics' with the
    worker's. One TopicCollector in both, so an outage is logged once whichever is read."""

    def __init__(self, scheduler: TimerScheduler) -> None:
        topics = TopicCollector(scheduler)
        self.topics = _registry(topics)
        self.both = _registry(topics, WorkerCollector(scheduler))


_registries: weakref.WeakKeyDictionary[TimerScheduler, _Registries] = (
    weakref.WeakKeyDictionary()
)
_registries_lock = threading.Lock()


def metrics_text(scheduler: TimerScheduler, include_worker: bool) -> tuple[bytes, str]:
    """The body and content type of a scrape: the topics' metrics, and this process's
    worker metrics too when `include_worker`. A scheduler keeps its collectors between
    calls, so a Redis outage is logged once, not at every scrape."""
    with _registries_lock:
        registries = _registries.get(scheduler)
        if registries is None:
            registries = _registries[scheduler] = _Registries(scheduler)
    registry = registries.both if include_worker else registries.topics
    return generate_latest(registry), CONTENT_TYPE_LATEST


# -- a worker's own HTTP server -----------------------------------------------------------


class MetricsServer:
    """A worker's metrics server (prometheus_client's, in a daemon thread); `shutdown()`
    stops it and frees its port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._server, self._thread = server, thread
        self.host = host
        #: The port it listens on (the one the system chose when asked for port 0).
        self.port: int = server.server_port

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    close = shutdown

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def start_worker_metrics_server(
    scheduler: TimerScheduler, port: int, host: str = "0.0.0.0"
) -> MetricsServer:
    """Serve this worker's own metrics (`WorkerCollector` alone: a worker does not read
    every topic's stats at each scrape) at http://host:port/metrics, in a daemon thread.
    ConfigurationError naming the port when it cannot listen there (say, it is in use)."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(f"the metrics port must be an int from 0 to 65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ConfigurationError(f"the metrics host must be a non-empty str, got {host!r}")
    try:
        server, thread = start_http_server(port, host, registry=worker_registry(scheduler))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve Prometheus metrics on {host}:{port}: {exc.strerror or exc} "
            f"(is another process using port {port}?)"
        ) from None
    served = MetricsServer(server, thread, host)
    shown = f"[{host}]" if ":" in host else host
    log.debug("Prometheus metrics of this worker on http://%s:%d/metrics", shown, served.port)
    return served
