"""Redis that stalls (SIGSTOP) past the client's socket timeout: requests sent twice must
not lease timers no worker runs (ghost claims), writes whose fate is unknown say so, and
the worker logs the stall and its end once each."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from redistimers import (
    Delivery,
    RedisUnavailableError,
    RetryPolicy,
    Router,
    TimerScheduler,
    TimerSpec,
    defaults,
)
from redistimers.store import TimerStore
from redistimers.testing import RedisServer
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    stalling = RedisServer()
    stalling.start()
    yield stalling
    stalling.close()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    client.flushall()
    yield client
    client.close()


@contextlib.contextmanager
def stopped(client: redis.Redis) -> Iterator[None]:
    """redis-server SIGSTOPped (it keeps its connections and reads them when continued)."""
    pid = int(client.info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_claim_run_twice_answers_the_second_time_with_the_timers_of_the_first(
    client: redis.Redis,
) -> None:
    """What Redis does with a pipeline sent again after a read timeout: both copies run.
    The second must neither lease other timers nor count other attempts."""
    store = TimerStore(client, defaults.NAMESPACE)
    store.schedule_many({"jobs": [store_entry(f"t{n}") for n in range(5)]})
    batch = store.batch("worker-1")
    batch.claim("jobs", 30_000, 3)
    (first,) = store.execute(batch)
    (again,) = store.execute(batch)  # the same request, run a second time
    assert not first.replayed
    assert again.replayed
    assert [(t.timer_id, t.token, t.attempt) for t in again.timers] == [
        (t.timer_id, t.token, t.attempt) for t in first.timers
    ]
    assert [t.envelope for t in again.timers] == [t.envelope for t in first.timers]
    assert client.hlen("redistimers:{jobs}:lease") == 3  # t3 and t4 are still free
    assert {k.decode() for k in client.hkeys("redistimers:{jobs}:attempts")} == {"t0", "t1", "t2"}
    other = store.batch("worker-1")  # a new request of the same worker claims afresh
    other.claim("jobs", 30_000, 3)
    (rest,) = store.execute(other)
    assert [t.timer_id for t in rest.timers] == ["t3", "t4"]
    assert not rest.replayed


def test_a_replayed_claim_leaves_out_timers_settled_since(client: redis.Redis) -> None:
    store = TimerStore(client, defaults.NAMESPACE)
    store.schedule_many({"jobs": [store_entry("a"), store_entry("b")]})
    batch = store.batch("w")
    batch.claim("jobs", 30_000, 10)
    (first,) = store.execute(batch)
    settle = store.batch("w")
    a = first.timers[0]
    settle.ack("jobs", [(a.timer_id, a.token, None)])
    store.execute(settle)
    (again,) = store.execute(batch)
    assert [t.timer_id for t in again.timers] == ["b"]


def store_entry(timer_id: str) -> object:
    from redistimers.store import ScheduleEntry

    return ScheduleEntry(timer_id, '{"v":1,"p":1}', delay_ms=0)


def test_a_stall_past_the_socket_timeout_during_a_claim_leaves_no_ghost_claims(
    server: RedisServer, client: redis.Redis
) -> None:
    """Every timer is delivered once, at its first attempt, soon after Redis is back:
    none waits out a lease leased by a copy of the claim whose answer was lost."""
    router = Router()
    delivered: list[tuple[str, int]] = []
    lock = threading.Lock()

    @router.handler("jobs", max_concurrent=50, retry=RetryPolicy(max_attempts=1))
    def record(payload: int, delivery: Delivery) -> None:
        with lock:
            delivered.append((delivery.timer_id, delivery.attempt))

    worker = TimerScheduler.from_url(server.url, routers=[router], socket_timeout=0.3)
    scheduler = TimerScheduler.from_url(server.url)
    scheduler.set_timers(TimerSpec("jobs", n, activate_in=1.0, timer_id=f"t{n}")
                         for n in range(40))
    with worker:
        time.sleep(0.6)
        with stopped(client):  # the claim at 1.0 s is sent, times out, and is sent again
            time.sleep(1.5)
        resumed = time.monotonic()
        wait_for(lambda: len(delivered) >= 40, 10)
        assert time.monotonic() - resumed < 10  # a ghost would wait out the 30 s lease
    assert sorted(delivered) == sorted((f"t{n}", 1) for n in range(40))
    assert scheduler.dead_timers("jobs") == []


def test_set_timer_whose_write_was_not_confirmed_says_the_timer_may_exist(
    server: RedisServer, client: redis.Redis
) -> None:
    scheduler = TimerScheduler.from_url(server.url, socket_timeout=0.3)
    scheduler.stats("jobs")  # connected: the write below reaches Redis, which then stops
    with stopped(client), pytest.raises(
        RedisUnavailableError, match="may or may not have been written"
    ) as e:
        scheduler.set_timer("jobs", 1, activate_in=60)
    (timer_id,) = e.value.unconfirmed_ids
    assert e.value.written_ids == e.value.unwritten_ids == ()
    assert f"timer {timer_id!r}" in str(e.value)
    # Redis had the request and ran it once continued: the timer may well exist.
    wait_for(lambda: scheduler.get_timer("jobs", timer_id) is not None, 5)
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id=timer_id)  # safe to set again
    assert scheduler.stats("jobs").pending == 1


def test_a_worker_logs_a_stall_and_its_end_once_each(
    server: RedisServer, client: redis.Redis, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(defaults, "REDIS_STALL_NOTICE", 0.5)
    router = Router()
    done = threading.Event()
    router.handler("jobs")(lambda payload: done.set())
    worker = TimerScheduler.from_url(server.url, routers=[router], socket_timeout=30)
    worker.set_timer("jobs", 1, activate_in=0.5)
    caplog.set_level(logging.INFO, logger="redistimers")
    with worker:
        with stopped(client):
            wait_for(lambda: not worker.healthy, 5)
        assert done.wait(10)
        wait_for(lambda: worker.healthy, 5)
    stalls = [r.getMessage() for r in caplog.records if "has not answered" in r.getMessage()]
    backs = [r.getMessage() for r in caplog.records if "answering again" in r.getMessage()]
    assert len(stalls) == 1, caplog.text
    assert len(backs) == 1, caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_a_poller_turn_that_keeps_failing_is_logged_once_not_every_second(
    server: RedisServer, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A key of the wrong type makes every claim fail with the same error (not an outage)."""
    client.set("redistimers:{jobs}:due", "not a sorted set")
    router = Router()
    router.handler("jobs")(lambda payload: None)
    worker = TimerScheduler.from_url(server.url, routers=[router])
    caplog.set_level(logging.INFO, logger="redistimers")
    with worker:
        time.sleep(3.5)  # turns at 0, 1, 3 s (backoff)
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1, caplog.text
        assert "WRONGTYPE" in caplog.text
        client.delete("redistimers:{jobs}:due")
        wait_for(lambda: "poller turns work again" in caplog.text, 10)
