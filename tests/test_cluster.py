"""A scheduler and its worker on a real Redis Cluster (3 masters, 3 replicas): timers of
topics served by three different masters are scheduled one by one and in bulk, delivered
(never early by the clock of the master serving them), retried, dead-lettered, repeated,
moved, cancelled, inspected, and reached through the CLI and the HTTP API."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from redis.cluster import RedisCluster

from redistimers import (
    Delivery,
    RetryPolicy,
    RetryTimer,
    Router,
    TimerScheduler,
    TimerSpec,
)
from redistimers.contrib.http_api import create_app
from redistimers.testing import RedisClusterNodes

from ._cli_support import ENVIRONMENT, Result, cli_runner
from ._http_support import TOKEN, Api, http_server
from .helpers import FAST_RETRY, UTC, scheduler_factory, wait_for

#: Topics whose slots three different masters of the session cluster serve (checked by
#: test_the_topics_of_these_tests_are_served_by_three_different_masters).
TOPICS = ("reports", "jobs", "invoices")
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=UTC)

ClusterSchedulers = Callable[..., TimerScheduler]


@attrs.frozen
class Seen:
    """One handler call: the delivery, and the clock of the master serving its topic."""

    delivery: Delivery
    server_now: dt.datetime


class MasterClocks:
    """Plain clients of the masters, by topic: what time the master serving a topic says."""

    def __init__(self, cluster: RedisClusterNodes, topics: tuple[str, ...]) -> None:
        self._clients = {topic: cluster.master_of(topic).client() for topic in topics}

    def now(self, topic: str) -> dt.datetime:
        seconds, micros = self._clients[topic].time()
        return dt.datetime.fromtimestamp(int(seconds), UTC) + dt.timedelta(
            microseconds=int(micros)
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class Deliveries:
    """A handler for several topics recording every call with the master's clock."""

    def __init__(self, clocks: MasterClocks) -> None:
        self.clocks = clocks
        self.lock = threading.Lock()
        self.seen: dict[str, list[Seen]] = {}

    def __call__(self, payload: Any, delivery: Delivery) -> None:
        seen = Seen(delivery, self.clocks.now(delivery.topic))
        with self.lock:
            self.seen.setdefault(delivery.timer_id, []).append(seen)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def calls(self) -> list[Seen]:
        with self.lock:
            return [seen for calls in self.seen.values() for seen in calls]


@pytest.fixture
def cluster_schedulers(
    cluster_url: str, stopped_at_teardown: list[TimerScheduler]
) -> ClusterSchedulers:
    """make(*routers, **options): schedulers of the (flushed) session cluster, stopped at
    teardown."""
    return scheduler_factory(cluster_url, stopped_at_teardown)


@pytest.fixture
def clocks(redis_cluster: RedisClusterNodes, cluster_url: str) -> Iterator[MasterClocks]:
    master_clocks = MasterClocks(redis_cluster, TOPICS)
    yield master_clocks
    master_clocks.close()


def _router_of(handler: Callable[[Any, Delivery], None], **options: Any) -> Router:
    router = Router()
    for topic in TOPICS:
        router.handler(topic, **options)(handler)
    return router


# -- the topics' masters -----------------------------------------------------------------------


def test_the_topics_of_these_tests_are_served_by_three_different_masters(
    redis_cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    masters = {redis_cluster.master_of(f"redistimers:{{{topic}}}:due").port for topic in TOPICS}
    assert len(masters) == 3
    assert masters == {master.port for master in redis_cluster.masters()}


def test_a_scheduler_takes_a_redis_cluster_client(cluster_client: RedisCluster) -> None:
    scheduler = TimerScheduler(cluster_client)
    ids = [scheduler.set_timer(topic, {"on": topic}, activate_in=60) for topic in TOPICS]
    for topic, timer_id in zip(TOPICS, ids, strict=True):
        info = scheduler.get_timer(topic, timer_id)
        assert info is not None
        assert info.payload == {"on": topic}
    assert scheduler.topics() == sorted(TOPICS)
    assert "Redis Cluster" in repr(scheduler)


# -- scheduling, inspecting, moving, cancelling ----------------------------------------------


def test_set_get_reschedule_and_cancel_timers_on_every_master(
    cluster_schedulers: ClusterSchedulers, redis_cluster: RedisClusterNodes
) -> None:
    scheduler = cluster_schedulers()
    for topic in TOPICS:
        assert scheduler.set_timer(
            topic, {"n": 1}, activate_in=600, timer_id="a", headers={"tenant": "acme"},
            correlation_id="req-1",
        ) == "a"
        info = scheduler.set_timer_and_get(topic, {"n": 2}, activate_in=1200, timer_id="b")
        assert (info.topic, info.timer_id, info.payload, info.attempts) == (topic, "b", {"n": 2}, 0)
        assert dt.timedelta(minutes=19) < info.remaining <= dt.timedelta(minutes=20)

        got = scheduler.get_timer(topic, "a")
        assert got is not None
        assert (got.payload, dict(got.headers), got.correlation_id) == (
            {"n": 1}, {"tenant": "acme"}, "req-1"
        )
        assert dt.timedelta(minutes=9) < got.remaining <= dt.timedelta(minutes=10)
        assert scheduler.get_timer(topic, "missing") is None

        assert scheduler.reschedule(topic, "a", activate_in=3600)
        moved = scheduler.get_timer(topic, "a")
        assert moved is not None
        assert dt.timedelta(minutes=59) < moved.remaining <= dt.timedelta(hours=1)
        assert moved.payload == {"n": 1}
        assert not scheduler.reschedule(topic, "missing", activate_in=1)
        moved_b = scheduler.reschedule_and_get(topic, "b", activate_in=30)
        assert moved_b is not None
        assert dt.timedelta(seconds=29) < moved_b.remaining <= dt.timedelta(seconds=30)

        assert scheduler.cancel_timer(topic, "b")
        assert not scheduler.cancel_timer(topic, "b")
        assert scheduler.get_timer(topic, "b") is None

        # The timer's keys are on the master serving the topic, not elsewhere.
        master = redis_cluster.master_of(topic)
        plain = master.client()
        try:
            assert plain.zscore(f"redistimers:{{{topic}}}:due", "a") is not None
        finally:
            plain.close()

    assert scheduler.topics() == sorted(TOPICS)
    stats = scheduler.stats()
    assert sorted(stats) == sorted(TOPICS)
    for topic in TOPICS:
        assert (stats[topic].pending, stats[topic].due, stats[topic].leased,
                stats[topic].dead) == (1, 0, 0, 0)
        assert scheduler.stats(topic) == stats[topic]
    assert scheduler.purge(TOPICS[0]) == 1
    assert scheduler.stats(TOPICS[0]).pending == 0


def test_list_timers_pages_with_a_cursor_on_every_master(
    cluster_schedulers: ClusterSchedulers,
) -> None:
    scheduler = cluster_schedulers()
    base = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    scheduler.set_timers(
        TimerSpec(topic, {"i": i}, activate_at=base + dt.timedelta(seconds=i), timer_id=f"t{i:02}")
        for topic in TOPICS
        for i in range(25)
    )
    for topic in TOPICS:
        ids: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = scheduler.list_timers(topic, limit=10, cursor=cursor)
            pages += 1
            ids += [timer.timer_id for timer in page.timers]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert pages == 3
        assert ids == [f"t{i:02}" for i in range(25)]
        before = scheduler.list_timers(topic, due_before=base + dt.timedelta(seconds=5))
        assert [timer.timer_id for timer in before.timers] == [f"t{i:02}" for i in range(5)]
        assert before.cursor is None


# -- delivering --------------------------------------------------------------------------------


def test_set_timers_in_bulk_on_three_masters_all_fire_once_and_never_early(
    cluster_schedulers: ClusterSchedulers, clocks: MasterClocks
) -> None:
    per_topic = 1000
    handler = Deliveries(clocks)
    scheduler = cluster_schedulers(_router_of(handler))
    specs = [
        TimerSpec(topic, {"i": i}, activate_in=0.3 + i / per_topic, timer_id=f"{topic}-{i}")
        for topic in TOPICS
        for i in range(per_topic)
    ]
    ids = scheduler.set_timers(specs)
    assert ids == [spec.timer_id for spec in specs]
    stats = scheduler.stats()
    assert {topic: stats[topic].pending for topic in TOPICS} == dict.fromkeys(TOPICS, per_topic)

    scheduler.start()
    wait_for(lambda: handler.count() == len(specs), timeout=30)
    calls = handler.calls()
    assert len(calls) == len(specs), "a timer fired twice"
    assert set(handler.seen) == set(ids)
    early = [seen for seen in calls if seen.server_now < seen.delivery.due_at]
    assert early == []
    assert {seen.delivery.topic for seen in calls} == set(TOPICS)
    wait_for(lambda: all(s.pending == 0 for s in scheduler.stats().values()))
    metrics = scheduler.metrics()
    assert metrics.succeeded == len(specs)


def test_a_handler_s_retry_requests_deliver_again_on_every_master(
    cluster_schedulers: ClusterSchedulers, clocks: MasterClocks
) -> None:
    handler = Deliveries(clocks)

    def retry_twice(payload: Any, delivery: Delivery) -> None:
        handler(payload, delivery)
        if delivery.attempt < 3:
            raise RetryTimer(0.05)

    scheduler = cluster_schedulers(_router_of(retry_twice, retry=FAST_RETRY))
    for topic in TOPICS:
        scheduler.set_timer(topic, "again", activate_in=0, timer_id=f"{topic}-again")
    scheduler.start()
    wait_for(lambda: len(handler.calls()) == 3 * len(TOPICS), timeout=15)
    wait_for(lambda: all(s.pending == 0 for s in scheduler.stats().values()))
    for topic in TOPICS:
        with handler.lock:
            calls = list(handler.seen[f"{topic}-again"])
        assert [seen.delivery.attempt for seen in calls] == [1, 2, 3]
        for earlier, later in itertools.pairwise(calls):
            # each retry is due 50 ms after the master's clock when it was asked for
            assert later.delivery.due_at >= earlier.server_now + dt.timedelta(milliseconds=50)
        assert all(seen.server_now >= seen.delivery.due_at for seen in calls)
    metrics = scheduler.metrics()
    assert (metrics.succeeded, metrics.retried) == (3, 6)


def test_dead_letters_are_listed_requeued_and_purged_on_every_master(
    cluster_schedulers: ClusterSchedulers,
) -> None:
    attempts: dict[tuple[str, str], list[int]] = {}
    lock = threading.Lock()

    def fail(payload: Any, delivery: Delivery) -> None:
        with lock:
            attempts.setdefault((delivery.topic, delivery.timer_id), []).append(delivery.attempt)
        raise ValueError(f"card declined on {delivery.topic}")

    scheduler = cluster_schedulers(_router_of(fail, retry=ONE_ATTEMPT))
    for topic in TOPICS:
        scheduler.set_timer(topic, {"on": topic}, activate_in=0, timer_id="dies",
                            headers={"tenant": "acme"})
    scheduler.start()

    def dead_everywhere() -> bool:
        stats = scheduler.stats()
        return all((stats[t].pending, stats[t].dead) == (0, 1) for t in TOPICS)

    wait_for(dead_everywhere, timeout=15)
    for topic in TOPICS:
        assert attempts[(topic, "dies")] == [1]
        [dead] = scheduler.dead_timers(topic)
        assert (dead.timer_id, dead.payload, dead.reason, dead.attempts) == (
            "dies", {"on": topic}, "failed", 1
        )
        assert dead.error == f"ValueError: card declined on {topic}"
        assert dict(dead.headers) == {"tenant": "acme"}

    first, *others = TOPICS
    assert scheduler.requeue_dead(first, "dies") == 1
    wait_for(lambda: len(attempts[(first, "dies")]) == 2, timeout=10)
    wait_for(lambda: scheduler.stats(first).dead == 1)  # it failed again
    assert attempts[(first, "dies")] == [1, 1]  # attempts reset by the requeue
    assert all(attempts[(topic, "dies")] == [1] for topic in others)
    for topic in TOPICS:
        assert scheduler.purge_dead(topic) == 1
        assert scheduler.dead_timers(topic) == []
        assert scheduler.stats(topic).dead == 0
    assert scheduler.metrics().dead_lettered == 4


def test_a_periodic_timer_fires_on_its_grid_until_cancelled_on_every_master(
    cluster_schedulers: ClusterSchedulers, clocks: MasterClocks
) -> None:
    handler = Deliveries(clocks)
    scheduler = cluster_schedulers(_router_of(handler))
    every = dt.timedelta(milliseconds=200)
    for topic in TOPICS:
        scheduler.set_timer(topic, "tick", every=every, timer_id=f"tick-{topic}")
    scheduler.start()

    def fired_twice() -> bool:
        with handler.lock:
            return all(len(handler.seen.get(f"tick-{t}", [])) >= 2 for t in TOPICS)

    wait_for(fired_twice, timeout=10)
    for topic in TOPICS:
        assert scheduler.cancel_timer(topic, f"tick-{topic}")
    for topic in TOPICS:
        with handler.lock:
            first, second = handler.seen[f"tick-{topic}"][:2]
        assert first.delivery.occurrence_at is not None
        assert second.delivery.occurrence_at == first.delivery.occurrence_at + every
        for seen in (first, second):
            assert seen.server_now >= seen.delivery.due_at
    assert all(scheduler.get_timer(topic, f"tick-{topic}") is None for topic in TOPICS)


def test_run_pending_delivers_the_due_timers_of_every_master(
    cluster_schedulers: ClusterSchedulers, clocks: MasterClocks
) -> None:
    handler = Deliveries(clocks)
    scheduler = cluster_schedulers(_router_of(handler))
    for topic in TOPICS:
        for i in range(3):
            scheduler.set_timer(topic, i, activate_at=LONG_AGO, timer_id=f"{topic}-due-{i}")
        scheduler.set_timer(topic, "later", activate_in=3600, timer_id=f"{topic}-later")
    assert scheduler.run_pending() == 9
    assert sorted(handler.seen) == sorted(f"{t}-due-{i}" for t in TOPICS for i in range(3))
    assert {topic: scheduler.stats(topic).pending for topic in TOPICS} == dict.fromkeys(TOPICS, 1)
    assert scheduler.run_pending() == 0


# -- the CLI and the HTTP API ------------------------------------------------------------------


@pytest.fixture
def cli(
    cluster_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return cli_runner(cluster_url, capsys)


def test_the_cli_schedules_lists_and_counts_on_a_cluster(
    cli: Callable[..., Result], cluster_schedulers: ClusterSchedulers
) -> None:
    for topic in TOPICS:
        for i in range(3):
            scheduled = cli("schedule", topic, "--in", f"{10 + i}m", "--id", f"{topic}-{i}",
                            "--payload", f'{{"n": {i}}}', "--header", "source=cli")
            assert (scheduled.code, scheduled.err) == (0, ""), scheduled
            assert scheduled.out.startswith(f"scheduled timer {topic}-{i} on topic '{topic}'")

    stats = cli("stats", "--json")
    assert stats.code == 0, stats
    assert sorted(stats.json["topics"]) == sorted(TOPICS)
    for topic in TOPICS:
        assert stats.json["topics"][topic] == {
            "topic": topic, "pending": 3, "due": 0, "leased": 0, "dead": 0,
            "oldest_due_lag_s": None,
        }
    table = cli("stats")
    assert table.code == 0
    assert sorted(line.split()[0] for line in table.out.splitlines()[1:]) == sorted(TOPICS)

    for topic in TOPICS:
        first = cli("list", topic, "--limit", "2", "--json")
        assert first.code == 0, first
        assert [t["id"] for t in first.json["timers"]] == [f"{topic}-0", f"{topic}-1"]
        assert first.json["timers"][0]["payload"] == {"n": 0}
        assert first.json["timers"][0]["headers"] == {"source": "cli"}
        rest = cli("list", topic, "--cursor", first.json["next_cursor"], "--json")
        assert rest.json == {"timers": rest.json["timers"], "next_cursor": None}
        assert [t["id"] for t in rest.json["timers"]] == [f"{topic}-2"]

    assert cli("topics", "--json").json == {"topics": sorted(TOPICS)}
    got = cli("get", TOPICS[0], f"{TOPICS[0]}-1", "--json")
    assert (got.code, got.json["id"], got.json["payload"]) == (0, f"{TOPICS[0]}-1", {"n": 1})
    assert cli("cancel", TOPICS[1], f"{TOPICS[1]}-0").code == 0
    assert cluster_schedulers().stats(TOPICS[1]).pending == 2


def test_the_http_api_creates_reads_and_counts_timers_on_a_cluster(
    cluster_schedulers: ClusterSchedulers,
) -> None:
    with contextlib.ExitStack() as stack:
        api = Api(stack.enter_context(http_server(create_app(cluster_schedulers(), token=TOKEN))))
        for topic in TOPICS:
            created = api.call("POST", f"/topics/{topic}/timers",
                               {"payload": {"on": topic}, "in": "30s", "id": "T-1"})
            assert created.status == 201, created.raw
            assert created.headers["Location"] == f"/topics/{topic}/timers/T-1"
            got = api.call("GET", created.headers["Location"])
            assert got.status == 200, got.raw
            assert (got.json["id"], got.json["payload"], got.json["attempts"]) == (
                "T-1", {"on": topic}, 0
            )
            assert 28 < got.json["remaining_s"] <= 30
            one = api.call("GET", f"/topics/{topic}/stats")
            assert one.json == {"topic": topic, "pending": 1, "due": 0, "leased": 0,
                                "dead": 0, "oldest_due_lag_s": None}
        every = api.call("GET", "/stats")
        assert every.status == 200
        assert sorted(every.json["topics"]) == sorted(TOPICS)
        assert api.call("GET", "/topics").json == {"topics": sorted(TOPICS)}
        assert api.call("DELETE", f"/topics/{TOPICS[2]}/timers/T-1").status in (200, 204)
        assert api.call("GET", f"/topics/{TOPICS[2]}/timers/T-1").status == 404

