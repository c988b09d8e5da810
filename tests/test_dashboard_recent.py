"""The overview's "delivered, 5 min" and "failed, 5 min": from the live workers' counters
per topic, remembered at each look of the dashboard."""

from __future__ import annotations

import datetime as dt
import math

import attrs

from redistimers import RetryPolicy, Router, WorkerInfo
from redistimers.contrib.dashboard.recent import RecentDeliveries
from redistimers.metrics import LATENESS_BUCKETS

from .helpers import SchedulerFactory, wait_for
from .test_dashboard import signed_in


def worker(worker_id: str, started_ago_s: float, delivered: dict[str, int],
           failed: dict[str, int] | None = None) -> WorkerInfo:
    now = dt.datetime.now(dt.timezone.utc)  # at each call: a module's import is long past
    return WorkerInfo(
        worker_id=worker_id, host="h", pid=1, version="v", namespace="n",
        topics=dict.fromkeys(delivered, 1), running={}, delivered=sum(delivered.values()),
        succeeded=0, retried=0, dead_lettered=0, failed=sum((failed or {}).values()),
        healthy=True, started_at=now - dt.timedelta(seconds=started_ago_s), last_seen=now,
        heartbeat_interval=dt.timedelta(seconds=5), delivered_per_topic=delivered,
        failed_per_topic=failed or {},
    )


def test_a_new_worker_counts_from_zero_and_an_old_one_from_the_first_look() -> None:
    recent = RecentDeliveries(window_s=300)
    first = recent.observe([worker("new", 10, {"a": 7}, {"a": 2}),
                            worker("old", 3600, {"a": 1000, "b": 5})], now=0)
    assert (first.delivered, first.failed) == ({"a": 7, "b": 0}, {"a": 2, "b": 0})
    later = recent.observe([worker("new", 70, {"a": 9}, {"a": 2}),
                            worker("old", 3660, {"a": 1010, "b": 5})], now=60)
    assert (later.delivered, later.failed) == ({"a": 19, "b": 0}, {"a": 2, "b": 0})
    assert later.seconds == 60


def test_looks_older_than_the_window_are_forgotten_and_restarts_do_not_go_negative() -> None:
    recent = RecentDeliveries(window_s=300)
    recent.observe([worker("old", 3600, {"a": 100})], now=0)
    recent.observe([worker("old", 3900, {"a": 400})], now=300)
    gone = recent.observe([worker("old", 4000, {"a": 450})], now=400)
    assert gone.delivered == {"a": 50}  # since the look at 300 s, the one at 0 forgotten
    restarted = recent.observe([worker("old", 4100, {"a": 3})], now=500)
    assert restarted.delivered == {"a": 0}  # its counters began again: no negative count


def test_the_overview_shows_what_each_topic_delivered_lately(
    make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("lately", retry=RetryPolicy(max_attempts=1))(_fail_on_odd)
    running = make_scheduler(router, heartbeat_interval=0.1)
    for i in range(3):
        running.set_timer("lately", i, activate_in=0)
    with running:
        wait_for(lambda: [w.delivered for w in running.workers()] == [3], 10)
        client = signed_in(make_scheduler())
        page = client.get("/").get_data(as_text=True)
        assert '<td class="num delivered" data-value="3">' in page
        assert '<td class="num failed" data-value="1">' in page
        body = client.get("/ui/overview.json").get_json()
        (topic,) = [t for t in body["topics"] if t["topic"] == "lately"]
        assert (topic["delivered"], topic["failed"]) == (3, 1)


def _fail_on_odd(payload: int) -> None:
    if payload % 2:
        raise ValueError("odd")


def late(worker_id: str, counts: list[int]) -> WorkerInfo:
    one = worker(worker_id, 3600, {"a": sum(counts)})
    return attrs.evolve(one, lateness_counts=tuple(counts))


def test_lateness_between_looks_comes_from_the_workers_histograms() -> None:
    buckets = len(LATENESS_BUCKETS) + 1
    recent = RecentDeliveries(window_s=300)
    recent.observe([late("w", [0] * buckets)], now=0)
    fast = [0] * buckets
    fast[1] = 99  # ≤ 2.5 ms
    fast[4] = 1  # ≤ 25 ms
    seen = recent.observe([late("w", fast)], now=5)
    (point,) = seen.lateness
    assert (point.deliveries, point.p50_s, point.p99_s) == (100, 0.0025, 0.0025)
    slow = list(fast)
    slow[-1] += 100  # over 300 s
    seen = recent.observe([late("w", slow)], now=10)
    assert [(p.ago_s, p.deliveries) for p in seen.lateness] == [(5, 100), (0, 100)]
    assert seen.lateness[-1].p99_s == math.inf
    restarted = recent.observe([late("w", [1] + [0] * (buckets - 1))], now=15)
    assert len(restarted.lateness) == 2  # the restart's stretch is left out, not negative


def test_the_overview_draws_the_lateness_between_its_looks(
    make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("charted")(lambda payload: None)
    running = make_scheduler(router, heartbeat_interval=0.1)
    client = signed_in(make_scheduler())
    with running:
        wait_for(lambda: len(running.workers()) == 1, 10)
        assert 'id="no-lateness"' in client.get("/").get_data(as_text=True)
        for i in range(5):
            running.set_timer("charted", i, activate_in=0)
        wait_for(lambda: [w.delivered for w in running.workers()] == [5], 10)
        page = client.get("/").get_data(as_text=True)
    assert '<svg id="lateness-chart"' in page
    assert 'data-count="5"' in page
    assert "5 deliveries, p50 ≤" in page
