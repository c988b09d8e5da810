"""Every inspection and repair operation touches one topic's cluster slot (checked on a
redis-server in cluster mode), and the set of topics follows what Redis holds."""

from __future__ import annotations

import random
import re
import socket
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from redistimers import (
    Router,
    TimerScheduler,
    TimerSpec,
    TopicStats,
)
from redistimers.testing import RedisServer

from ._inspection_support import ONCE, blocking_router, dead_on, fail
from .helpers import Recorder, SchedulerFactory, running, wait_for

# -- one cluster slot per operation -----------------------------------------------------------

KEY = re.compile(r"^(?P<ns>[^:]+):\{(?P<topic>[^}]+)\}:(?P<kind>\w+)(:[0-9a-f]+)?$")


def _exercise_everything(scheduler: TimerScheduler, worker: TimerScheduler) -> None:
    """Every inspection and repair operation, on two topics with timers in every state."""
    for topic in ("invoices", "reminders"):
        scheduler.set_timer(topic, 1, activate_in=60, timer_id="pending", headers={"a": "b"})
        scheduler.set_timer(topic, 2, activate_in=0, timer_id="fails")
    assert worker.run_pending() == 2  # "fails" of both topics: dead letters
    assert scheduler.topics() == ["invoices", "reminders"]
    assert scheduler.stats()["invoices"].dead == 1
    assert scheduler.stats("reminders").pending == 1
    page = scheduler.list_timers("invoices", limit=1)
    assert scheduler.list_timers("invoices", limit=1, cursor=page.cursor).timers == []
    assert scheduler.get_timer("invoices", "pending") is not None
    assert scheduler.reschedule("invoices", "pending", activate_in=120)
    assert [d.timer_id for d in scheduler.dead_timers("invoices")] == ["fails"]
    assert scheduler.requeue_dead("invoices", "fails") == 1
    assert scheduler.requeue_dead("reminders") == 1
    assert worker.run_pending() == 2
    assert scheduler.purge_dead("reminders") == 1
    assert scheduler.cancel_timer("reminders", "pending")
    assert scheduler.purge("invoices") == 1


def test_every_key_of_a_topic_hashes_to_the_topics_one_cluster_slot(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    failing = Router()
    for topic in ("invoices", "reminders"):
        failing.handler(topic, retry=ONCE)(fail)
    scheduler = make_scheduler()
    _exercise_everything(scheduler, make_scheduler(failing))
    router, recorder = blocking_router("invoices", release, redis_client)
    worker = make_scheduler(router)
    scheduler.set_timer("invoices", "held", activate_in=0, timer_id="held")
    scheduler.set_timer("invoices", "waiting", activate_in=60, timer_id="waiting")
    dead_on(make_scheduler, "reminders", "dead")
    with running(worker, release):
        recorder.wait_calls(1)  # a lease exists now
        keys = sorted(k.decode() for k in redis_client.scan_iter(match="redistimers:*"))
    kinds: dict[str, set[str]] = {}
    for key in keys:
        if key == "redistimers:topics":
            continue
        if key == "redistimers:workers:{redistimers}":  # the live workers: one slot
            assert key_slot(key.encode()) == key_slot(b"redistimers")
            continue
        match = KEY.match(key)
        assert match is not None, f"key {key!r} does not carry its topic as hash tag"
        topic = match["topic"]
        assert key_slot(key.encode()) == key_slot(topic.encode()), key
        kinds.setdefault(topic, set()).add(match["kind"])
    assert kinds["invoices"] >= {"due", "body", "lease", "attempts", "seq"}
    assert kinds["reminders"] >= {"dead", "dead_body"}
    assert key_slot(b"invoices") != key_slot(b"reminders")  # the check means something


def _cluster_port() -> int:
    """A free port under 55536 whose cluster bus port (10000 higher) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """A redis-server in cluster mode owning every slot: a command or script whose keys
    are in more than one slot fails there with CROSSSLOT."""
    server = RedisServer(
        port=_cluster_port(),
        config={"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"},
    )
    url = server.start()
    client = server.client(decode_responses=True)
    client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
    wait_for(lambda: "cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), 20)
    client.close()
    yield url
    server.close()


@pytest.mark.slow
def test_every_operation_runs_on_a_cluster_node_that_refuses_cross_slot_commands(
    cluster_url: str,
) -> None:
    client = redis.Redis.from_url(cluster_url)
    with pytest.raises(redis.exceptions.ResponseError, match="same slot"):  # the control
        client.execute_command(
            "EVAL", "return 1", 2, "redistimers:{invoices}:due", "redistimers:{reminders}:due"
        )
    failing = Router()
    for topic in ("invoices", "reminders"):
        failing.handler(topic, retry=ONCE)(fail)
    scheduler = TimerScheduler.from_url(cluster_url)
    worker = TimerScheduler.from_url(cluster_url, routers=[failing])
    _exercise_everything(scheduler, worker)
    ok = Router()
    recorder = Recorder(client)
    ok.handler("invoices")(recorder)
    with TimerScheduler.from_url(cluster_url, routers=[ok]) as delivering:
        scheduler.set_timer("invoices", "live", activate_in=0)
        recorder.wait_calls(1)
        assert delivering.healthy
    client.close()


def test_a_topic_is_listed_again_when_timers_come_back_after_an_external_flushall(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """Topics are added to the list whenever a write finds them empty, not once per
    process: a FLUSHALL (or a restore) must not hide a topic until restarts."""
    scheduler = make_scheduler()
    scheduler.set_timer("a", 1, activate_in=60)
    assert scheduler.topics() == ["a"]
    redis_client.flushall()
    assert scheduler.topics() == []
    scheduler.set_timer("a", 1, activate_in=60)
    assert scheduler.topics() == ["a"]
    redis_client.flushall()
    scheduler.set_timers([TimerSpec("a", 1, activate_in=60), TimerSpec("b", 1, activate_in=60)])
    assert scheduler.topics() == ["a", "b"]


def test_topics_are_exactly_those_with_pending_timers_or_dead_letters(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """Not every topic ever scheduled: a purged topic is gone from the list, a topic
    with dead letters only stays, and a topic another process wrote appears."""
    failing = Router()
    failing.handler("dying", retry=ONCE)(lambda payload: 1 / 0)
    scheduler = make_scheduler(failing)
    scheduler.set_timer("kept", 1, activate_in=60)
    scheduler.set_timer("purged", 1, activate_in=60)
    scheduler.set_timer("dying", 1, activate_in=0)
    assert scheduler.run_pending() == 1
    assert scheduler.topics() == ["dying", "kept", "purged"]
    assert scheduler.purge("purged") == 1
    assert scheduler.topics() == ["dying", "kept"]
    assert scheduler.purge_dead("dying") == 1
    assert scheduler.topics() == ["kept"]
    assert scheduler.stats("purged") == TopicStats(  # asked about, it has nothing: no error
        topic="purged", pending=0, due=0, leased=0, dead=0, oldest_due_lag=None
    )
    assert set(scheduler.stats()) == {"kept"}
    other = make_scheduler()
    other.set_timer("purged", 2, activate_in=60)  # set again, from another process
    assert scheduler.topics() == ["kept", "purged"]
