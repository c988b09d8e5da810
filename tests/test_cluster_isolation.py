"""One worker of a Cluster runs a poller per master its topics live on: a master that
stalls (SIGSTOP for 3 s, long enough for its replica to be promoted) stalls only its own
topics; those on the other masters go on firing, and its own fire once it is back or its
replica has taken over."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from redis.crc import key_slot

from redistimers import Router, TimerScheduler
from redistimers.testing import RedisClusterNodes

from .helpers import wait_for

pytestmark = pytest.mark.slow


def test_a_stalled_master_stalls_only_its_own_topics(
    fresh_cluster_nodes: RedisClusterNodes,
) -> None:
    cluster = fresh_cluster_nodes
    candidates = ["invoices", "reminders", "reports", "alerts", "digests", "payouts"]
    by_master: dict[int, str] = {}
    for topic in candidates:
        by_master.setdefault(cluster.master_of(key_slot(topic.encode())).port, topic)
    assert len(by_master) == 3, by_master
    stalled_port, stalled_topic = next(iter(by_master.items()))
    others = [topic for port, topic in by_master.items() if port != stalled_port]
    fired: dict[str, float] = {}
    lock = threading.Lock()
    router = Router()
    for topic in by_master.values():

        @router.handler(topic)
        def handle(payload: str) -> None:
            with lock:
                fired.setdefault(payload, time.monotonic())

    worker = TimerScheduler.from_url(cluster.url, routers=[router])
    scheduler = TimerScheduler.from_url(cluster.url)
    for topic in by_master.values():
        scheduler.set_timer(topic, f"{topic}-before", activate_in=0)
    pid = int(cluster.master_of(key_slot(stalled_topic.encode())).client().info("server")[
        "process_id"
    ])
    with worker:
        wait_for(lambda: len(fired) == 3, 10)
        scheduler.set_timer(stalled_topic, f"{stalled_topic}-during", activate_in=0.5)
        os.kill(pid, signal.SIGSTOP)
        try:
            stalled_at = time.monotonic()
            time.sleep(0.3)  # the worker's next round trip to that master now hangs
            for topic in others:
                scheduler.set_timer(topic, f"{topic}-during", activate_in=0)
            wait_for(lambda: all(f"{t}-during" in fired for t in others), 10)
            assert all(fired[f"{t}-during"] - stalled_at < 3 for t in others), fired
            assert f"{stalled_topic}-during" not in fired
            time.sleep(max(0.0, stalled_at + 3 - time.monotonic()))  # its replica may take over
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: f"{stalled_topic}-during" in fired, 30)
    # Its outcome may have gone to the master that was demoted meanwhile: then the timer
    # is delivered again when its lease expires (at least once), never lost.
    assert scheduler.stats(stalled_topic).dead == 0
