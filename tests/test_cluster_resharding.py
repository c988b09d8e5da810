"""Resharding a Cluster while a worker drains: a topic's slot moves to another master as
`redis-cli --cluster reshard` moves it (IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE), and
no timer is lost, none is left stuck, and no ASK, MOVED or TRYAGAIN reaches the user."""

from __future__ import annotations

import threading
import time

import pytest
from redis.crc import key_slot

from redistimers import Router, TimerScheduler, TimerSpec
from redistimers.testing import RedisClusterNodes, RedisServer

from .helpers import wait_for

pytestmark = pytest.mark.slow

TOPIC = "invoices"


def _move_slot(cluster: RedisClusterNodes, slot: int, target: RedisServer) -> None:
    """Move `slot` to `target` key by key, as redis-cli --cluster reshard does."""
    source = cluster.master_of(slot)
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    client = source.client()
    while True:
        keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1)
        if not keys:
            break
        client.execute_command(
            "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
        )
        time.sleep(0.05)  # one key at a time, while the worker runs its scripts
    for master in [*cluster.masters(), target]:
        master.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


def test_moving_a_topics_slot_while_a_worker_drains_loses_and_strands_nothing(
    fresh_cluster_nodes: RedisClusterNodes,
) -> None:
    cluster = fresh_cluster_nodes
    slot = key_slot(TOPIC.encode())
    source = cluster.master_of(slot)
    target = next(master for master in cluster.masters() if master.port != source.port)
    url = cluster.url
    seen: set[int] = set()
    lock = threading.Lock()
    router = Router()

    @router.handler(TOPIC, max_concurrent=20)
    def handle(payload: int) -> None:
        with lock:
            seen.add(payload)

    scheduler = TimerScheduler.from_url(url)
    scheduler.set_timers(
        [TimerSpec(TOPIC, n, activate_in=n / 1000, timer_id=f"t{n}") for n in range(2000)]
    )
    errors: list[BaseException] = []
    late = list(range(2000, 2300))

    def keep_scheduling() -> None:
        for n in late:
            try:
                scheduler.set_timer(TOPIC, n, activate_in=0, timer_id=f"t{n}")
            except BaseException as exc:  # what would reach the user
                errors.append(exc)
            time.sleep(0.005)

    worker = TimerScheduler.from_url(url, routers=[router])
    with worker:
        writer = threading.Thread(target=keep_scheduling)
        writer.start()
        _move_slot(cluster, slot, target)
        writer.join(30)
        wait_for(lambda: len(seen) == 2300, 30)
    assert errors == []
    assert cluster.master_of(slot).port == target.port
    assert seen == set(range(2300))
    assert scheduler.stats(TOPIC).pending == 0
    assert scheduler.stats(TOPIC).dead == 0
