"""Live workers: every started scheduler with handlers keeps a record of itself in Redis,
renewed by its heartbeat, removed when it stops, expiring when its process dies."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import redistimers
from redistimers import Router, TimerScheduler, WorkerInfo

from .helpers import REPO, SchedulerFactory, ServerFactory, blocked_until, wait_for

HEARTBEAT = 0.2  # seconds; a record then expires after 0.6 s without one


def _router(*topics: str, max_concurrent: int = 3) -> Router:
    router = Router()
    for topic in topics:
        router.handler(topic, max_concurrent=max_concurrent)(lambda payload: None)
    return router


def _only(scheduler: TimerScheduler) -> WorkerInfo:
    workers = scheduler.workers()
    assert len(workers) == 1, workers
    return workers[0]


def test_a_started_scheduler_is_listed_with_what_it_is_and_does(
    make_scheduler: SchedulerFactory, release: threading.Event
) -> None:
    router = Router()
    router.handler("invoices", max_concurrent=4)(blocked_until(release))
    router.handler("reports", max_concurrent=2)(lambda payload: None)
    worker = make_scheduler(router, heartbeat_interval=HEARTBEAT)
    observer = make_scheduler()
    assert observer.workers() == []
    before = dt.datetime.now(dt.timezone.utc)
    with worker:
        wait_for(lambda: len(observer.workers()) == 1, 5)
        info = _only(observer)
        assert info.worker_id == worker.worker_id
        assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
        assert info.version == redistimers.__version__
        assert info.namespace == "redistimers"
        assert dict(info.topics) == {"invoices": 4, "reports": 2}
        assert info.healthy
        assert info.heartbeat_interval == dt.timedelta(seconds=HEARTBEAT)
        assert before - dt.timedelta(seconds=1) <= info.started_at <= info.last_seen
        assert info.last_seen <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)

        # A handler running now, and totals, as of the next heartbeat.
        observer.set_timer("invoices", 1, activate_in=0, timer_id="held")
        observer.set_timer("reports", 2, activate_in=0, timer_id="done")
        wait_for(lambda: _only(observer).running.get("invoices") == 1, 5)
        wait_for(lambda: _only(observer).succeeded == 1, 5)
        release.set()
        wait_for(lambda: (_only(observer).delivered, _only(observer).running["invoices"])
                 == (2, 0), 5)
        seen = _only(observer).last_seen
        wait_for(lambda: _only(observer).last_seen > seen, 5)  # kept fresh
    assert observer.workers() == []  # gone at once on a clean stop


def test_only_started_schedulers_with_handlers_are_listed(
    make_scheduler: SchedulerFactory, redis_url: str
) -> None:
    idle = make_scheduler(heartbeat_interval=HEARTBEAT)
    with idle:  # no handlers: it delivers nothing, and is no worker
        time.sleep(3 * HEARTBEAT)
        assert idle.workers() == []
        assert idle.worker_id is None
    inline = make_scheduler(_router("ticks"), heartbeat_interval=HEARTBEAT)
    inline.set_timer("ticks", 1, activate_in=0)
    assert inline.run_pending() == 1  # run_pending is no worker either
    assert inline.workers() == []
    other = TimerScheduler.from_url(
        redis_url, [_router("ticks")], namespace="elsewhere", heartbeat_interval=HEARTBEAT
    )
    with other:  # another namespace's worker is not this one's
        wait_for(lambda: len(other.workers()) == 1, 5)
        assert inline.workers() == []
        assert other.workers()[0].namespace == "elsewhere"


def test_every_started_scheduler_is_listed_and_a_restart_is_a_new_worker(
    make_scheduler: SchedulerFactory,
) -> None:
    first = make_scheduler(_router("a"), heartbeat_interval=HEARTBEAT)
    second = make_scheduler(_router("b", max_concurrent=7), heartbeat_interval=HEARTBEAT)
    with first, second:
        wait_for(lambda: len(first.workers()) == 2, 5)
        listed = {w.worker_id: dict(w.topics) for w in first.workers()}
        assert listed == {first.worker_id: {"a": 3}, second.worker_id: {"b": 7}}
        old_id = second.worker_id
    with second:
        wait_for(lambda: len(second.workers()) == 1, 5)
        assert second.worker_id != old_id
        assert [w.worker_id for w in second.workers()] == [second.worker_id]


_KILLABLE = textwrap.dedent("""
    import sys
    from redistimers import Router, TimerScheduler

    router = Router()
    router.handler("ticks")(lambda payload: None)
    url, interval = sys.argv[1], float(sys.argv[2])
    scheduler = TimerScheduler.from_url(url, [router], heartbeat_interval=interval)
    scheduler.run_forever()
""")


@pytest.fixture
def killable(tmp_path: Path, redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    script = tmp_path / "killable.py"
    script.write_text(_KILLABLE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(script), redis_url, str(HEARTBEAT)],
                               env=env, stderr=subprocess.DEVNULL)
    yield process
    process.kill()
    process.wait()


def test_a_killed_worker_expires_a_few_heartbeats_later(
    killable: subprocess.Popen[bytes], make_scheduler: SchedulerFactory
) -> None:
    observer = make_scheduler()
    wait_for(lambda: [w.pid for w in observer.workers()] == [killable.pid], 15)
    seen = observer.workers()[0].last_seen
    wait_for(lambda: observer.workers()[0].last_seen > seen, 5)  # it beats
    killable.send_signal(signal.SIGKILL)  # no clean stop: nothing removes the record
    killable.wait()
    killed = time.monotonic()
    wait_for(lambda: observer.workers() == [], 5)
    # It expired: three missed heartbeats, not a removal at once.
    assert time.monotonic() - killed <= 3 * HEARTBEAT + 2


def test_the_heartbeat_costs_one_command_each_whatever_the_number_of_topics(
    own_server: ServerFactory,
) -> None:
    """The idle-load budget: an idle worker's only regular command is its heartbeat (the
    poller claims at max_poll_interval, and is woken by pub/sub)."""
    server = own_server()
    client = server.client()
    interval, window = 0.1, 2.0
    counts = []
    for topics in (1, 100):
        scheduler = TimerScheduler.from_url(
            server.url, [_router(*(f"t{i}" for i in range(topics)))],
            heartbeat_interval=interval, max_poll_interval=300,
        )
        with scheduler:
            wait_for(lambda s=scheduler: len(s.workers()) == 1, 5)
            time.sleep(0.3)  # start-up claims are done
            before = _calls(client)
            time.sleep(window)
            after = _calls(client)
        counts.append({name: after.get(name, 0) - before.get(name, 0) for name in after})
    for topics, delta in zip((1, 100), counts, strict=True):
        heartbeats = window / interval
        # One HSET per heartbeat; this test's own INFO aside, nothing else.
        assert heartbeats - 3 <= delta.get("hset", 0) <= heartbeats + 3, (topics, delta)
        others = {k: v for k, v in delta.items() if k not in ("hset", "info") and v}
        assert others == {}, (topics, delta)


def _calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_a_record_this_version_cannot_read_is_skipped(make_scheduler: SchedulerFactory) -> None:
    worker = make_scheduler(_router("ticks"), heartbeat_interval=HEARTBEAT)
    with worker:
        wait_for(lambda: len(worker.workers()) == 1, 5)
        now_ms = time.time() * 1000
        worker._store.workers.beat("odd:1:abc", '{"not": "a record"}', now_ms, 10_000)
        worker._store.workers.beat("odd:2:abc", "not json", now_ms, 10_000)
        assert [w.worker_id for w in worker.workers()] == [worker.worker_id]


def test_the_record_comes_back_after_redis_restarts_without_a_warning_per_beat(
    own_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_server()
    worker = TimerScheduler.from_url(server.url, [_router("ticks")], heartbeat_interval=HEARTBEAT)
    with worker:
        wait_for(lambda: len(worker.workers()) == 1, 5)
        server.kill()
        time.sleep(5 * HEARTBEAT)  # beats fail meanwhile
        server.restart()
        server.client().flushall()  # an empty Redis: the next beat writes the record again
        wait_for(lambda: len(worker.workers()) == 1, 10)
    heartbeat_lines = [r for r in caplog.records if r.name == "redistimers.liveness"
                       and r.levelname in ("WARNING", "ERROR")]
    assert heartbeat_lines == []  # the outage is the poller's to report, once


def test_on_a_cluster_workers_are_listed_from_one_slot(cluster_url: str) -> None:
    router = _router("a", "b", "c", "d")
    worker = TimerScheduler.from_url(cluster_url, [router], heartbeat_interval=HEARTBEAT)
    observer = TimerScheduler.from_url(cluster_url)
    with worker:
        wait_for(lambda: len(observer.workers()) == 1, 10)
        assert dict(observer.workers()[0].topics) == {"a": 3, "b": 3, "c": 3, "d": 3}
    assert observer.workers() == []
