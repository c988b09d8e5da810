"""A worker draining timers of three topics on the three masters of a real Redis Cluster
while one master is killed and its replica promoted: every timer fires (at least once,
never early), and the topics of the masters still standing keep firing during the
failover: on time while the Cluster serves them, that is, all along with
``cluster-require-full-coverage no``, and except for the second or so during which a
Cluster requiring full coverage (Redis's default) answers every command with CLUSTERDOWN
(from the lost master being marked as failed until its replica is promoted)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis

from redistimers import Delivery, Router, TimerScheduler, TimerSpec
from redistimers.testing import RedisClusterNodes, RedisServer

from .helpers import UTC, wait_for

#: Topics whose slots three different masters serve.
TOPICS = ("reports", "jobs", "invoices")
#: How much earlier than its due time a handler may see a timer (clocks read in two
#: processes of one machine).
TOLERANCE = dt.timedelta(milliseconds=5)
#: How late a timer of a master still standing may fire while another master fails over,
#: counted from its due time or, if the Cluster was down then, from when it served again.
ON_TIME = dt.timedelta(seconds=1)


@attrs.frozen
class Seen:
    delivery: Delivery
    local_now: dt.datetime


class Deliveries:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str], list[Seen]] = {}

    def __call__(self, payload: Any, delivery: Delivery) -> None:
        seen = Seen(delivery, dt.datetime.now(UTC))
        with self.lock:
            self.seen.setdefault((delivery.topic, delivery.timer_id), []).append(seen)

    def distinct(self) -> int:
        with self.lock:
            return len(self.seen)

    def first_calls(self) -> list[Seen]:
        with self.lock:
            return [calls[0] for calls in self.seen.values()]


class ClusterDownProbe:
    """A thread writing to a master still standing every 10 ms: when it answered
    CLUSTERDOWN (the Cluster refusing every command for want of full coverage)."""

    def __init__(self, master: RedisServer, key: str) -> None:
        self._client = master.client(socket_timeout=1.0)
        self._key = key
        self._stop = threading.Event()
        self.down: list[dt.datetime] = []
        self._thread = threading.Thread(target=self._run, name="clusterdown-probe")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self._client.set(self._key, 1)
            except redis.exceptions.ClusterDownError:
                self.down.append(dt.datetime.now(UTC))
            except redis.exceptions.RedisError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()

    @property
    def served_again(self) -> dt.datetime | None:
        """When the last CLUSTERDOWN was answered (None: never)."""
        return self.down[-1] if self.down else None


@attrs.frozen
class Drained:
    """What a drain across a failover saw: how long the failover took, until when the
    Cluster answered CLUSTERDOWN, and the first deliveries of the other masters' timers
    due while the failover lasted."""

    took: float
    served_again: dt.datetime | None
    during: list[Seen]

    def late(self) -> list[tuple[dt.timedelta, str, str]]:
        """Timers of the other masters that fired later than ON_TIME after their due time
        or, for those due while the Cluster was down, after it served again."""
        late = []
        for seen in self.during:
            due = seen.delivery.due_at
            if self.served_again is not None and due < self.served_again:
                due = self.served_again
            if seen.local_now - due > ON_TIME:
                late.append((seen.local_now - due, seen.delivery.topic, seen.delivery.timer_id))
        return sorted(late)

    def explain(self, late: list[tuple[dt.timedelta, str, str]]) -> str:
        down = "no CLUSTERDOWN" if self.served_again is None else "CLUSTERDOWN for a while"
        return (
            f"{len(late)} of {len(self.during)} timers of the other masters were late during "
            f"a {self.took:.1f}s failover ({down}); the latest: {late[-3:]}"
        )


def _drain_across_a_failover(
    cluster: RedisClusterNodes,
    victim_topic: str,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> Drained:
    """Drain timers of TOPICS due over 6 s while the master of `victim_topic` is killed;
    check every timer fires, none early, and the outage is logged once, as the killed
    master's, and its end once."""
    caplog.set_level(logging.WARNING, logger="redistimers.outage")
    masters = {topic: cluster.master_of(f"redistimers:{{{topic}}}:due") for topic in TOPICS}
    assert len({master.port for master in masters.values()}) == 3
    victim = masters[victim_topic]
    standing = next(topic for topic in TOPICS if topic != victim_topic)

    handler = Deliveries()
    router = Router()
    for topic in TOPICS:
        router.handler(topic, max_concurrent=20)(handler)
    worker = TimerScheduler.from_url(
        cluster.url, routers=[router], socket_timeout=2.0, socket_connect_timeout=1.0
    )
    stopped_at_teardown.append(worker)
    per_topic, spread = 300, 6.0
    specs = [
        TimerSpec(topic, i, activate_in=0.5 + spread * i / per_topic, timer_id=f"{topic}-{i}")
        for topic in TOPICS
        for i in range(per_topic)
    ]
    worker.set_timers(specs)
    plain = victim.client()
    try:  # every timer of the victim is on its replica before it goes
        assert plain.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]
    finally:
        plain.close()
    worker.start()

    wait_for(lambda: handler.distinct() >= 3 * per_topic // 6, timeout=10)
    probe = ClusterDownProbe(masters[standing], f"probe:{{{standing}}}")
    try:
        killed_at = dt.datetime.now(UTC)
        killed = cluster.kill_master(cluster.masters().index(victim))
        assert killed is victim
        started = time.monotonic()
        cluster.wait_for_failover(timeout=20)
        failed_over_at = dt.datetime.now(UTC)
        took = time.monotonic() - started
    finally:
        probe.stop()
    assert handler.distinct() < len(specs), "the drain ended before the failover did"

    wait_for(lambda: handler.distinct() == len(specs), timeout=15)
    seen = handler.first_calls()
    assert {(s.delivery.topic, s.delivery.timer_id) for s in seen} == {
        (spec.topic, spec.timer_id) for spec in specs
    }
    with handler.lock:
        every_call = [call for calls in handler.seen.values() for call in calls]
    assert [s for s in every_call if s.local_now + TOLERANCE < s.delivery.due_at] == []
    wait_for(lambda: worker.healthy, timeout=10)

    during = [
        s for s in seen
        if s.delivery.topic != victim_topic and killed_at <= s.delivery.due_at <= failed_over_at
    ]
    assert len(during) >= 2 * per_topic * took / spread * 0.5, (len(during), took)

    lines = [r.getMessage() for r in caplog.records if r.name == "redistimers.outage"]
    assert len(lines) == 2, lines
    assert all(line.startswith(f"Redis at 127.0.0.1:{victim.port} (a master of ") for line in lines)
    assert "unavailable" in lines[0]
    assert "answering again" in lines[1]
    return Drained(took, probe.served_again, during)


@pytest.fixture
def partial_coverage_cluster() -> Iterator[RedisClusterNodes]:
    """A Cluster of this test alone whose masters go on serving their slots while another
    master's slots have no master (``cluster-require-full-coverage no``)."""
    cluster = RedisClusterNodes(config={"cluster-require-full-coverage": "no"})
    cluster.start()
    yield cluster
    cluster.close()


@pytest.mark.slow
def test_every_timer_fires_across_a_master_failover_and_the_others_once_the_cluster_serves(
    fresh_cluster_nodes: RedisClusterNodes,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The master killed is not the first node of the URL (redis-py's default node)."""
    cluster = fresh_cluster_nodes
    victim_topic = TOPICS[1]
    assert cluster.master_of(victim_topic).port != cluster.masters()[0].port
    drained = _drain_across_a_failover(cluster, victim_topic, stopped_at_teardown, caplog)
    assert drained.served_again is not None, "the Cluster never answered CLUSTERDOWN"
    late = drained.late()
    assert late == [], drained.explain(late)


@pytest.mark.slow
def test_the_other_masters_topics_fire_on_time_while_a_master_fails_over(
    partial_coverage_cluster: RedisClusterNodes,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = partial_coverage_cluster
    victim_topic = TOPICS[1]
    assert cluster.master_of(victim_topic).port != cluster.masters()[0].port
    drained = _drain_across_a_failover(cluster, victim_topic, stopped_at_teardown, caplog)
    assert drained.served_again is None  # the other masters served all along
    late = drained.late()
    assert late == [], drained.explain(late)


@pytest.mark.slow
def test_every_timer_fires_across_the_failover_of_the_first_master_of_the_url(
    fresh_cluster_nodes: RedisClusterNodes,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The master killed is the first node of the URL: redis-py's default node, which its
    ClusterPipeline would ask for the keys of every EVALSHA (COMMAND GETKEYS)."""
    cluster = fresh_cluster_nodes
    victim_topic = TOPICS[0]
    first = cluster.url.removeprefix("redis+cluster://").split(",")[0]
    assert first == f"127.0.0.1:{cluster.master_of(victim_topic).port}"
    drained = _drain_across_a_failover(cluster, victim_topic, stopped_at_teardown, caplog)
    late = drained.late()
    assert late == [], drained.explain(late)
