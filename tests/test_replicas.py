"""`min_replicas`: writes that wait for replicas (Redis's WAIT) survive a primary killed
right after they returned; a write no replica confirms raises RedisReplicationError
saying which timers are unconfirmed (and they are there, on the primary); a worker logs a
replica shortfall once and its end once; without `min_replicas` nothing waits; on a
Cluster each master's replica confirms the writes of its topics. Real servers only."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from redistimers import (
    Delivery,
    RedisCallError,
    RedisReplicationError,
    RetryPolicy,
    Router,
    TimerScheduler,
    TimerSpec,
)
from redistimers.testing import RedisClusterNodes, RedisSentinelGroup, RedisServer

from .helpers import Recorder, SchedulerFactory, ServerFactory, wait_for

#: Topics whose slots three different masters of a cluster serve.
CLUSTER_TOPICS = ("reports", "jobs", "invoices")
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)
SHORT = 0.2  # replica_timeout where no replica will answer: each write waits this long
STAYS = "it stays unless the primary fails before a replica has it"


def _info(server: RedisServer, section: str = "replication") -> dict[str, Any]:
    client = server.client(decode_responses=True)
    try:
        return client.info(section)
    finally:
        client.close()


def _replica_of(own_server: ServerFactory, primary: RedisServer) -> RedisServer:
    """A new server replicating `primary`, once in sync."""
    replica = own_server(config_lines=[f"replicaof 127.0.0.1 {primary.port}"])

    def in_sync() -> bool:
        info = _info(primary)
        return info.get("connected_slaves") == 1 and "online" in str(info.get("slave0"))

    wait_for(in_sync, timeout=10)
    return replica


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "redistimers.outage"]


# -- (a) a write that waited survives the primary's death ----------------------------------------


@pytest.mark.slow
def test_timers_set_with_min_replicas_survive_the_primary_killed_right_after(
    fresh_sentinel_group: RedisSentinelGroup, stopped_at_teardown: list[TimerScheduler]
) -> None:
    group = fresh_sentinel_group
    scheduler = TimerScheduler.from_url(group.url, min_replicas=1, replica_timeout=5)
    stopped_at_teardown.append(scheduler)
    ids = [
        scheduler.set_timer("invoices", {"n": i}, activate_in=3600, timer_id=f"inv-{i}")
        for i in range(200)
    ]
    killed = group.kill_primary()  # SIGKILL, right after the last set_timer returned
    promoted = group.wait_for_failover(timeout=20)
    assert promoted is not killed

    after = TimerScheduler.from_url(group.url)
    stopped_at_teardown.append(after)
    assert after.stats("invoices").pending == 200
    for i, timer_id in enumerate(ids):
        info = after.get_timer("invoices", timer_id)
        assert info is not None, timer_id
        assert info.payload == {"n": i}
    plain = promoted.client()
    try:
        assert plain.zcard("redistimers:{invoices}:due") == 200  # on the promoted replica
    finally:
        plain.close()


# -- (b) no replica confirms: a clear error, the write stays on the primary ----------------------


@pytest.fixture
def unreplicated(make_scheduler: SchedulerFactory) -> TimerScheduler:
    """A scheduler of the session's redis-server (which has no replica) that waits for one."""
    return make_scheduler(min_replicas=1, replica_timeout=SHORT)


def test_set_timer_that_no_replica_confirms_raises_and_the_timer_is_on_the_primary(
    unreplicated: TimerScheduler, make_scheduler: SchedulerFactory
) -> None:
    started = time.monotonic()
    with pytest.raises(RedisReplicationError) as caught:
        unreplicated.set_timer("invoices", {"n": 1}, activate_in=60, timer_id="INV-1")
    assert time.monotonic() - started >= SHORT * 0.9  # it waited replica_timeout
    error = caught.value
    assert isinstance(error, RedisCallError)
    message = str(error)
    assert "ran the write, but only 0 of the 1 replicas required (min_replicas)" in message
    assert f"within {SHORT:g}s (replica_timeout)" in message
    assert STAYS in message
    assert "timer 'INV-1' is in its unconfirmed_ids" in message
    assert "setting it again with the same timer_id is safe" in message
    assert (error.written_ids, error.unconfirmed_ids, error.unwritten_ids) == ((), ("INV-1",), ())

    for reader in (unreplicated, make_scheduler()):  # reads do not wait
        info = reader.get_timer("invoices", "INV-1")
        assert info is not None
        assert info.payload == {"n": 1}
    assert unreplicated.topics() == ["invoices"]

    with pytest.raises(RedisReplicationError) as again:
        unreplicated.set_timer_and_get("invoices", {"n": 2}, activate_in=60, timer_id="INV-1")
    assert again.value.unconfirmed_ids == ("INV-1",)
    replaced = unreplicated.get_timer("invoices", "INV-1")
    assert replaced is not None
    assert replaced.payload == {"n": 2}


def test_set_timers_that_no_replica_confirms_raise_with_every_id_unconfirmed(
    unreplicated: TimerScheduler,
) -> None:
    specs = [
        TimerSpec(topic, i, activate_in=60, timer_id=f"{topic}-{i}")
        for topic in ("invoices", "reminders")
        for i in range(50)
    ]
    with pytest.raises(RedisReplicationError) as caught:
        unreplicated.set_timers(specs)
    error = caught.value
    assert sorted(error.unconfirmed_ids) == sorted(f"{spec.topic}-{spec.payload}" for spec in specs)
    assert (error.written_ids, error.unwritten_ids) == ((), ())
    message = str(error)
    assert STAYS in message
    assert "of 100 timers, 100 were written but not confirmed by the replicas (unconfirmed_ids)" \
        in message
    assert "setting timers again with the same ids is safe" in message
    assert {t: unreplicated.stats(t).pending for t in ("invoices", "reminders")} == {
        "invoices": 50, "reminders": 50,
    }


def test_a_bulk_write_stops_at_the_first_round_trip_no_replica_confirms(
    unreplicated: TimerScheduler,
) -> None:
    """10,000 timers go per round trip: the first is written unconfirmed, the rest not sent."""
    specs = [TimerSpec("bulk", i, activate_in=60, timer_id=f"b{i}") for i in range(12_000)]
    with pytest.raises(RedisReplicationError) as caught:
        unreplicated.set_timers(specs)
    error = caught.value
    assert error.written_ids == ()
    assert error.unconfirmed_ids == tuple(f"b{i}" for i in range(10_000))
    assert error.unwritten_ids == tuple(f"b{i}" for i in range(10_000, 12_000))
    assert "10,000 were written but not confirmed" in str(error)
    assert "2,000 were not (unwritten_ids)" in str(error)
    assert unreplicated.stats("bulk").pending == 10_000
    assert unreplicated.get_timer("bulk", "b9999") is not None
    assert unreplicated.get_timer("bulk", "b10000") is None


def test_every_other_write_that_no_replica_confirms_raises_and_is_made(
    unreplicated: TimerScheduler, make_scheduler: SchedulerFactory
) -> None:
    router = Router()

    @router.handler("jobs", retry=ONE_ATTEMPT)
    def fail(payload: Any) -> None:
        raise ValueError("card declined")

    plain = make_scheduler(router)  # no min_replicas: sets up without errors
    for timer_id in ("cancelled", "moved", "purged"):
        plain.set_timer("invoices", timer_id, activate_in=60, timer_id=timer_id)
    for timer_id in ("d1", "d2"):
        plain.set_timer("jobs", timer_id, activate_in=0, timer_id=timer_id)
    assert plain.run_pending() == 2
    assert plain.stats("jobs").dead == 2

    with pytest.raises(RedisReplicationError, match=STAYS):
        unreplicated.cancel_timer("invoices", "cancelled")
    assert plain.get_timer("invoices", "cancelled") is None  # cancelled all the same

    with pytest.raises(RedisReplicationError, match=STAYS):
        unreplicated.reschedule("invoices", "moved", activate_in=7200)
    moved = plain.get_timer("invoices", "moved")
    assert moved is not None
    assert moved.remaining.total_seconds() > 3600

    with pytest.raises(RedisReplicationError, match=STAYS):
        unreplicated.requeue_dead("jobs", "d1")
    assert (plain.stats("jobs").pending, plain.stats("jobs").dead) == (1, 1)

    with pytest.raises(RedisReplicationError, match=STAYS):
        unreplicated.purge_dead("jobs")
    assert plain.stats("jobs").dead == 0

    with pytest.raises(RedisReplicationError, match=STAYS):
        unreplicated.purge("invoices")
    assert plain.stats("invoices").pending == 0


def test_a_worker_logs_a_replica_shortfall_once_and_its_end_once(
    own_server: ServerFactory,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="redistimers.outage")
    primary = own_server()
    client = primary.client()
    try:
        handler = Recorder(client)
        router = Router()
        router.handler("ticks")(handler)
        worker = TimerScheduler.from_url(
            primary.url, routers=[router], min_replicas=1, replica_timeout=0.1
        )
        setter = TimerScheduler.from_url(primary.url)
        stopped_at_teardown += [worker, setter]
        worker.start()
        for i in range(5):  # one at a time: several settles, each short of a replica
            setter.set_timer("ticks", i, activate_in=0, timer_id=f"before-{i}")
            handler.wait_calls(i + 1)
        wait_for(lambda: setter.stats("ticks").pending == 0)  # delivered all the same
        lines = _outage_lines(caplog)
        assert len(lines) == 1, lines
        assert "0 of 1 replicas (min_replicas) confirmed the write within 0.1s" in lines[0]
        assert "this worker goes on" in lines[0]

        _replica_of(own_server, primary)
        for i in range(5):
            setter.set_timer("ticks", i, activate_in=0, timer_id=f"after-{i}")
            handler.wait_calls(6 + i)
        wait_for(lambda: len(_outage_lines(caplog)) == 2, timeout=5)
        lines = _outage_lines(caplog)
        assert "the replicas confirm writes again after" in lines[1], lines
        assert sorted(handler.payloads) == sorted([*range(5), *range(5)])
        assert worker.healthy
    finally:
        client.close()


# -- (c) without min_replicas, nothing waits ----------------------------------------------------


def test_without_min_replicas_nothing_waits_for_a_killed_replica(
    own_server: ServerFactory,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="redistimers.outage")
    primary = own_server()
    replica = _replica_of(own_server, primary)
    replica.kill()
    wait_for(lambda: _info(primary).get("connected_slaves") == 0, timeout=10)

    client = primary.client()
    try:
        handler = Recorder(client)
        router = Router()
        router.handler("ticks")(handler)
        # replica_timeout is set but ignored: min_replicas is 0
        scheduler = TimerScheduler.from_url(primary.url, routers=[router], replica_timeout=5)
        waiting = TimerScheduler.from_url(primary.url, min_replicas=1, replica_timeout=SHORT)
        stopped_at_teardown += [scheduler, waiting]
        started = time.monotonic()
        for i in range(10):
            scheduler.set_timer("ticks", i, activate_in=0, timer_id=f"t{i}")
        scheduler.set_timers(TimerSpec("later", i, activate_in=60) for i in range(100))
        scheduler.set_timer("later", "x", activate_in=60, timer_id="x")
        assert scheduler.cancel_timer("later", "x")
        assert time.monotonic() - started < 5, "a write waited for the lost replica"

        scheduler.start()
        handler.wait_calls(10)
        wait_for(lambda: scheduler.stats("ticks").pending == 0)
        assert _outage_lines(caplog) == []  # nothing to say about replicas it does not want

        with pytest.raises(RedisReplicationError):  # the same primary, when waited for
            waiting.set_timer("later", "y", activate_in=60, timer_id="y")
    finally:
        client.close()


# -- (d) a Cluster: each master's replica confirms ----------------------------------------------


def _replica_counts(cluster: RedisClusterNodes, topic: str) -> int:
    """The topic's pending timers as the replica of its master has them."""
    replica = cluster.replica_of(cluster.master_of(topic))
    client = replica.client()
    try:
        pipe: Any = client.pipeline(transaction=False)  # one connection: READONLY holds
        pipe.execute_command("READONLY")
        pipe.zcard(f"redistimers:{{{topic}}}:due")
        return int(pipe.execute()[1])
    finally:
        client.close()


def test_on_a_cluster_each_master_s_replica_confirms_the_writes_of_its_topics(
    redis_cluster: RedisClusterNodes,
    cluster_url: str,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="redistimers.outage")
    masters = {redis_cluster.master_of(f"redistimers:{{{t}}}:due").port for t in CLUSTER_TOPICS}
    assert len(masters) == 3
    delivered: list[str] = []

    def record(payload: Any, delivery: Delivery) -> None:
        delivered.append(delivery.timer_id)

    router = Router()
    for topic in CLUSTER_TOPICS:
        router.handler(topic)(record)
    scheduler = TimerScheduler.from_url(
        cluster_url, routers=[router], min_replicas=1, replica_timeout=5
    )
    stopped_at_teardown.append(scheduler)
    for topic in CLUSTER_TOPICS:
        assert scheduler.set_timer(topic, 0, activate_in=3600, timer_id=f"{topic}-one")
        info = scheduler.set_timer_and_get(topic, 1, activate_in=3600, timer_id=f"{topic}-two")
        assert info.timer_id == f"{topic}-two"
    ids = scheduler.set_timers(
        TimerSpec(topic, i, activate_in=3600, timer_id=f"{topic}-{i}")
        for topic in CLUSTER_TOPICS
        for i in range(1000)
    )
    assert len(ids) == 3000
    for topic in CLUSTER_TOPICS:
        assert scheduler.stats(topic).pending == 1002
        assert _replica_counts(redis_cluster, topic) == 1002  # WAIT returned: they have it
        assert scheduler.cancel_timer(topic, f"{topic}-one")
        assert scheduler.reschedule(topic, f"{topic}-two", activate_in=0)

    scheduler.start()
    wait_for(lambda: len(delivered) == 3, timeout=10)
    assert sorted(delivered) == sorted(f"{topic}-two" for topic in CLUSTER_TOPICS)
    wait_for(lambda: all(scheduler.stats(t).leased == 0 for t in CLUSTER_TOPICS))
    assert _outage_lines(caplog) == []
    assert scheduler.healthy


@pytest.mark.slow
def test_on_a_cluster_a_master_without_its_replica_fails_the_writes_of_its_topics_only(
    fresh_cluster_nodes: RedisClusterNodes, stopped_at_teardown: list[TimerScheduler]
) -> None:
    cluster = fresh_cluster_nodes
    lonely = cluster.master_of(f"redistimers:{{{CLUSTER_TOPICS[0]}}}:due")
    cluster.replica_of(lonely).kill()
    wait_for(lambda: _info(lonely).get("connected_slaves") == 0, timeout=10)
    scheduler = TimerScheduler.from_url(cluster.url, min_replicas=1, replica_timeout=SHORT)
    stopped_at_teardown.append(scheduler)

    with pytest.raises(RedisReplicationError, match=STAYS) as caught:
        scheduler.set_timer(CLUSTER_TOPICS[0], 0, activate_in=60, timer_id="lonely")
    assert caught.value.unconfirmed_ids == ("lonely",)
    for topic in CLUSTER_TOPICS[1:]:  # their masters' replicas are there
        assert scheduler.set_timer(topic, 0, activate_in=60, timer_id="fine") == "fine"

    specs = [
        TimerSpec(topic, i, activate_in=60, timer_id=f"{topic}-{i}")
        for topic in CLUSTER_TOPICS
        for i in range(10)
    ]
    with pytest.raises(RedisReplicationError) as bulk:
        scheduler.set_timers(specs)
    error = bulk.value
    every = {spec.timer_id for spec in specs}
    assert set(error.written_ids) | set(error.unconfirmed_ids) == every
    assert {f"{CLUSTER_TOPICS[0]}-{i}" for i in range(10)} <= set(error.unconfirmed_ids)
    assert error.unwritten_ids == ()
    checker = TimerScheduler.from_url(cluster.url)
    stopped_at_teardown.append(checker)
    assert {t: checker.stats(t).pending for t in CLUSTER_TOPICS} == {
        CLUSTER_TOPICS[0]: 11, CLUSTER_TOPICS[1]: 11, CLUSTER_TOPICS[2]: 11,
    }

