"""Several OS processes, crashes and Redis outages, against real redis-server processes.

Workers are `tests/_worker_timers.py` run with `sys.executable`; they report through
Redis lists outside the redistimers namespace (see that script's docstring).
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redistimers import Delivery, Router, TimerScheduler

from .helpers import (
    RecordingFactory,
    SchedulerFactory,
    ServerFactory,
    WorkerProcesses,
    redis_list,
    redistimers_threads,
    wait_for,
)

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "_worker_timers.py"

#: Deadlines for things that involve other processes on a busy two-core machine.
PROCESS_DEADLINE = 30.0


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[WorkerProcesses]:
    pool = WorkerProcesses(WORKER, redis_url, tmp_path, PROCESS_DEADLINE)
    try:
        yield pool
    finally:
        pool.end_all(grace=5)


# -- two processes share the work -----------------------------------------------------------


def test_two_worker_processes_deliver_2000_timers_exactly_once_between_them(
    redis_client: redis.Redis, redis_url: str, workers: WorkerProcesses
) -> None:
    namespace, topic, total = "proc", "jobs", 2000
    for name in ("w1", "w2"):
        workers.spawn(
            name, "--topic", topic, "--mode", "record", "--namespace", namespace,
            "--lease-ttl", "1",
        )
    workers.wait_ready(redis_client, "w1", "w2")

    scheduler = TimerScheduler.from_url(redis_url, namespace=namespace)  # schedules only
    expected = {f"t{i:04d}" for i in range(total)}
    for i, timer_id in enumerate(sorted(expected)):
        scheduler.set_timer(topic, {"n": i}, activate_in=(i % 1000) / 1000, timer_id=timer_id)

    def all_recorded() -> bool:
        for name, process in workers.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"worker {name} died:\n{workers.log(name)}")
        return redis_client.llen("test:delivered") >= total

    try:
        wait_for(all_recorded, PROCESS_DEADLINE, interval=0.05)
        # Every timer acked (none left in its topic), then a while longer for a late
        # duplicate from a handler that might still have been running.
        due_key = f"{namespace}:{{{topic}}}:due"
        wait_for(lambda: redis_client.zcard(due_key) == 0, PROCESS_DEADLINE, interval=0.05)
        time.sleep(1.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers.logs()}") from exc

    records = [line.split() for line in redis_list(redis_client, "test:delivered")]
    delivered = collections.Counter(timer_id for _name, timer_id, _attempt in records)
    duplicates = {timer_id: n for timer_id, n in delivered.items() if n > 1}
    assert duplicates == {}
    assert set(delivered) == expected
    assert len(records) == total
    by_worker = collections.Counter(name for name, _timer_id, _attempt in records)
    assert by_worker["w1"] > 0
    assert by_worker["w2"] > 0
    assert {attempt for _name, _timer_id, attempt in records} == {"1"}


# -- a worker killed mid-handler -----------------------------------------------------------


def test_timer_of_a_worker_killed_mid_handler_is_delivered_again_as_attempt_2(
    redis_client: redis.Redis,
    workers: WorkerProcesses,
    make_scheduler: SchedulerFactory,
    recording: RecordingFactory,
) -> None:
    topic = "crashy"
    process = workers.spawn("doomed", "--topic", topic, "--mode", "hang", "--lease-ttl", "1")
    scheduler = make_scheduler()
    scheduler.set_timer(topic, {"job": 1}, activate_in=0, timer_id="job-1")

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{workers.log('doomed')}")
        return redis_client.llen("test:started") > 0

    wait_for(started, PROCESS_DEADLINE, interval=0.02)
    assert redis_list(redis_client, "test:started") == ["doomed job-1 1"]
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = time.monotonic()

    survivor, handler = recording(topic, handler={"lease_ttl": 1})
    survivor.start()
    handler.wait_calls(1, PROCESS_DEADLINE)  # the killed worker's timer came back
    # The dead worker renewed a 1 s lease while it ran: the timer is back within about
    # that long after the kill, not after some much longer timeout.
    assert time.monotonic() - killed_at < 10
    wait_for(lambda: survivor.get_timer(topic, "job-1") is None, PROCESS_DEADLINE)
    assert [(c.delivery.timer_id, c.delivery.attempt) for c in handler.calls if c.delivery] == [
        ("job-1", 2)
    ]


# -- lease renewal -------------------------------------------------------------------------


def test_handler_running_three_times_its_lease_ttl_is_delivered_once_despite_a_ready_rival(
    recording: RecordingFactory,
) -> None:
    topic = "long"
    finished = threading.Event()
    release = threading.Event()  # only set at teardown, so a stuck handler still ends

    def three_seconds(payload: object, delivery: Delivery | None) -> None:
        release.wait(3.0)
        finished.set()

    first, held = recording(topic, three_seconds, handler={"lease_ttl": 1})
    rival, rivals = recording(topic, handler={"lease_ttl": 1})
    try:
        first.start()
        first.set_timer(topic, "payload", activate_in=0, timer_id="long-1")
        held.wait_calls(1, PROCESS_DEADLINE)
        rival.start()  # ready to take the timer the moment its lease runs out
        info = None
        for _ in range(2):  # well past the 1 s lease, twice
            time.sleep(0.75)
            info = first.get_timer(topic, "long-1")
            assert info is not None
            assert info.leased
            assert info.attempts == 1
        assert finished.wait(PROCESS_DEADLINE)
        wait_for(lambda: first.get_timer(topic, "long-1") is None, PROCESS_DEADLINE)
    finally:
        release.set()
    assert [c.delivery.attempt for c in held.calls if c.delivery] == [1]
    assert rivals.calls == []


# -- Redis outages -------------------------------------------------------------------------


def test_scheduler_rides_out_redis_stop_and_restart_and_delivers_everything(
    own_server: ServerFactory,
) -> None:
    server = own_server(appendonly=True)
    delivered: list[str] = []
    lock = threading.Lock()
    router = Router()

    @router.handler("outage")
    def handle(payload: int, delivery: Delivery) -> None:
        with lock:
            delivered.append(delivery.timer_id)

    def delivered_ids() -> set[str]:
        with lock:
            return set(delivered)

    scheduler = TimerScheduler.from_url(server.url, routers=[router])
    try:
        before = {
            scheduler.set_timer("outage", i, activate_in=2.0, timer_id=f"before-{i}")
            for i in range(20)
        }
        threads_before = redistimers_threads()
        scheduler.start()
        scheduler_threads = redistimers_threads() - threads_before
        assert {t.name for t in scheduler_threads} >= {"redistimers-poller", "redistimers-wakeup"}
        assert scheduler.healthy

        server.stop()
        wait_for(lambda: not scheduler.healthy, 20)
        time.sleep(0.5)  # still down for a while: nothing dies, nothing gives up
        assert not scheduler.healthy
        assert scheduler.running
        assert all(t.is_alive() for t in scheduler_threads)
        assert delivered_ids() == set()

        server.start()
        wait_for(lambda: delivered_ids() >= before, PROCESS_DEADLINE)
        after = scheduler.set_timer("outage", 99, activate_in=0, timer_id="after-restart")
        wait_for(lambda: after in delivered_ids(), PROCESS_DEADLINE)
        wait_for(lambda: scheduler.healthy, 10)
        assert delivered_ids() == before | {after}
        assert all(t.is_alive() for t in scheduler_threads)
    finally:
        scheduler.stop(5)


def test_stop_returns_within_its_timeout_and_leaves_no_thread_when_redis_is_down(
    own_server: ServerFactory,
) -> None:
    server = own_server()
    router = Router()

    @router.handler("idle")
    def handle(payload: object) -> None:
        raise AssertionError("nothing is scheduled")

    threads_before = redistimers_threads()
    scheduler = TimerScheduler.from_url(server.url, routers=[router], max_poll_interval=0.2)
    try:
        scheduler.start()
        assert redistimers_threads() - threads_before
        server.kill()
        wait_for(lambda: not scheduler.healthy, 20)  # the poller retries against a dead Redis

        timeout = 2.0
        began = time.monotonic()
        drained = scheduler.stop(timeout)
        elapsed = time.monotonic() - began
    finally:
        scheduler.stop(1)  # a no-op once stopped

    assert elapsed < timeout + 0.5
    assert drained is True  # no handler was running
    assert not scheduler.running
    assert {t.name for t in redistimers_threads() - threads_before if t.is_alive()} == set()


def test_stop_with_a_handler_running_while_redis_is_down_returns_in_time_then_threads_end(
    own_server: ServerFactory,
) -> None:
    server = own_server()
    started = threading.Event()
    release = threading.Event()
    router = Router()

    @router.handler("busy", lease_ttl=1)
    def handle(payload: object) -> None:
        started.set()
        release.wait(30)

    threads_before = redistimers_threads()
    scheduler = TimerScheduler.from_url(server.url, routers=[router], max_poll_interval=0.2)
    try:
        scheduler.start()
        scheduler.set_timer("busy", "x", activate_in=0)
        assert started.wait(20)
        server.kill()
        # Lease renewal (every 1/3 s) fails against the dead Redis.
        wait_for(lambda: not scheduler.healthy, 20)

        timeout = 1.0
        began = time.monotonic()
        drained = scheduler.stop(timeout)
        elapsed = time.monotonic() - began
        assert elapsed < timeout + 0.5
        assert drained is False  # the handler is still running
    finally:
        release.set()
    # Once the handler returns, its late outcome cannot reach Redis; that is logged, and
    # every thread of the scheduler ends.
    wait_for(lambda: not (redistimers_threads() - threads_before), 10)
