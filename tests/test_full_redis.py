"""A Redis over its maxmemory (noeviction): new timers are refused with RedisFullError,
nothing is half-written, and workers go on delivering (which is what frees memory), with
one log line when Redis fills up and one when it has room again."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator

import pytest
import redis

from redistimers import (
    Delivery,
    RedisFullError,
    RedisTimersError,
    RetryPolicy,
    Router,
    TimerScheduler,
    TimerSpec,
)
from redistimers.testing import RedisServer
from tests.helpers import FAST_RETRY, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with_limit = RedisServer(config={"maxmemory-policy": "noeviction"})
    with_limit.start()
    yield with_limit
    with_limit.close()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    client.config_set("maxmemory", 0)
    client.flushall()
    yield client
    client.config_set("maxmemory", 0)
    client.close()


def fill_up(client: redis.Redis) -> None:
    """Put Redis well over its maxmemory, for the rest of the test (until lifted)."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "x")


def lift(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)


def test_set_timer_in_a_full_redis_raises_redis_full_error_and_writes_nothing(
    server: RedisServer, client: redis.Redis
) -> None:
    scheduler = TimerScheduler.from_url(server.url)
    scheduler.set_timer("jobs", "before", activate_in=60, timer_id="before")
    fill_up(client)
    with pytest.raises(RedisFullError, match=r"full.*maxmemory") as caught:
        scheduler.set_timer("jobs", "x", activate_in=60, timer_id="new")
    assert isinstance(caught.value, RedisTimersError)
    assert "'new' was not written" in str(caught.value)
    assert caught.value.unwritten_ids == ("new",)
    assert caught.value.written_ids == caught.value.unconfirmed_ids == ()
    assert scheduler.get_timer("jobs", "new") is None
    assert scheduler.get_timer("jobs", "before") is not None
    assert scheduler.metrics().redis_full == 1
    assert scheduler.healthy  # a call's error is its caller's: no worker runs here


def test_set_timers_in_a_full_redis_raises_with_every_timer_unwritten(
    server: RedisServer, client: redis.Redis
) -> None:
    scheduler = TimerScheduler.from_url(server.url)
    fill_up(client)
    specs = [TimerSpec("jobs", n, activate_in=60, timer_id=f"t{n}") for n in range(2500)]
    with pytest.raises(RedisFullError) as caught:
        scheduler.set_timers(specs)
    assert caught.value.written_ids == ()
    assert caught.value.unwritten_ids == tuple(f"t{n}" for n in range(2500))
    lift(client)
    assert scheduler.stats("jobs").pending == 0


def test_set_timers_that_fill_redis_part_way_say_exactly_which_timers_were_written(
    server: RedisServer, client: redis.Redis
) -> None:
    """Each chunk of 1,000 is written whole or not at all, and the error names them."""
    scheduler = TimerScheduler.from_url(server.url)
    scheduler.set_timer("jobs", "x", activate_in=60, timer_id="x")  # the topic exists
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 1_000_000)  # room for a few chunks, not twenty
    specs = [TimerSpec("jobs", {"n": n, "pad": "p" * 100}, activate_in=60, timer_id=f"t{n}")
             for n in range(20_000)]
    with pytest.raises(RedisFullError) as caught:
        scheduler.set_timers(specs)
    error = caught.value
    assert 0 < len(error.written_ids) < 20_000
    assert len(error.written_ids) % 1000 == 0
    assert set(error.written_ids) | set(error.unwritten_ids) == {s.timer_id for s in specs}
    assert error.unconfirmed_ids == ()
    assert f"{len(error.written_ids):,} were written" in str(error)
    stored = {i.decode() for i in client.zrange("redistimers:{jobs}:due", 0, -1)}
    assert stored - {"x"} == set(error.written_ids)
    assert len(stored) - 1 == len(error.written_ids)


def test_a_full_redis_still_delivers_retries_renews_and_dead_letters(
    server: RedisServer, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()
    delivered: list[str] = []
    lock = threading.Lock()

    @router.handler("ok", max_concurrent=20)
    def ok(payload: str) -> None:
        with lock:
            delivered.append(payload)

    @router.handler("failing", retry=RetryPolicy(max_attempts=2, initial=0.01, jitter=False))
    def failing(payload: str) -> None:
        raise ValueError("no")

    ticks: list[int] = []

    @router.handler("periodic")
    def periodic(payload: str, delivery: Delivery) -> None:
        ticks.append(delivery.attempt)

    slow_done = threading.Event()

    @router.handler("slow", lease_ttl=0.3, retry=FAST_RETRY)
    def slow(payload: str) -> None:  # outlives its lease three times over: renewed
        slow_done.wait(1.0)

    flaky_runs: list[int] = []

    @router.handler("flaky", retry=FAST_RETRY)
    def flaky(payload: str, delivery: Delivery) -> None:
        flaky_runs.append(delivery.attempt)
        if delivery.attempt == 1:
            raise ValueError("once")

    scheduler = TimerScheduler.from_url(server.url, routers=[router])
    scheduler.set_timers(TimerSpec("ok", f"ok-{n}", activate_in=0) for n in range(300))
    scheduler.set_timers(TimerSpec("failing", n, activate_in=0) for n in range(3))
    scheduler.set_timer("periodic", "p", every=0.05, activate_in=0, timer_id="p")
    scheduler.set_timer("slow", "s", activate_in=0, timer_id="s")
    scheduler.set_timer("flaky", "f", activate_in=0, timer_id="f")
    fill_up(client)
    caplog.set_level(logging.INFO, logger="redistimers")
    with scheduler:
        wait_for(lambda: len(delivered) == 300, 30)
        wait_for(lambda: len(scheduler.dead_timers("failing")) == 3, 10)
        wait_for(lambda: len(ticks) >= 3, 10)
        wait_for(lambda: flaky_runs == [1, 2] and scheduler.get_timer("flaky", "f") is None, 10)
        wait_for(lambda: scheduler.get_timer("slow", "s") is None, 10)
        assert not scheduler.healthy
        metrics = scheduler.metrics()
        assert metrics.redis_full > 0
        assert metrics.leases_lost == 0
        assert metrics.lease_renewals > 0
        assert {d.reason for d in scheduler.dead_timers("failing")} == {"failed"}
        assert len(set(delivered)) == 300
        with pytest.raises(RedisFullError):
            scheduler.set_timer("ok", "refused", activate_in=0)

        full_logs = [r for r in caplog.records if r.name.startswith("redistimers")
                     and r.levelno >= logging.ERROR and "failed" not in r.getMessage()
                     and "dead letters" not in r.getMessage()]
        assert [r.getMessage() for r in full_logs] == [
            f"Redis at 127.0.0.1:{server.port} is full (used memory over maxmemory): it "
            "refuses new timers; this worker goes on delivering, which frees memory"
        ]
        assert not [r for r in caplog.records if r.exc_info and "poller" in r.getMessage()]

        lift(client)
        scheduler.set_timer("ok", "after", activate_in=0)
        wait_for(lambda: "after" in delivered, 10)
        wait_for(lambda: scheduler.healthy, 10)
    room = [r for r in caplog.records if "has room again" in r.getMessage()]
    assert len(room) == 1


def test_an_idle_worker_learns_that_redis_has_room_again(
    server: RedisServer, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """With nothing due, its claims probe (rewriting a score with itself) while it
    believes Redis full."""
    router = Router()
    router.handler("jobs")(lambda payload: None)
    scheduler = TimerScheduler.from_url(server.url, routers=[router])
    scheduler.set_timer("jobs", "due", activate_in=0)
    scheduler.set_timer("jobs", "later", activate_in=3600)
    fill_up(client)
    caplog.set_level(logging.INFO, logger="redistimers")
    with scheduler:
        wait_for(lambda: not scheduler.healthy, 10)
        wait_for(lambda: scheduler.stats("jobs").pending == 1, 10)
        lift(client)
        wait_for(lambda: scheduler.healthy, 15)
    assert [r for r in caplog.records if "has room again" in r.getMessage()]


def test_reading_and_repairing_work_in_a_full_redis(
    server: RedisServer, client: redis.Redis
) -> None:
    """An operator needs them most then: a MULTI is refused in a full Redis, scripts and
    plain reads are not."""
    router = Router()
    router.handler("jobs", retry=RetryPolicy(max_attempts=1))(lambda payload: 1 / 0)
    worker = TimerScheduler.from_url(server.url, routers=[router])
    scheduler = TimerScheduler.from_url(server.url)
    scheduler.set_timers(TimerSpec("jobs", n, activate_in=0, timer_id=f"d{n}") for n in range(3))
    assert worker.run_pending() == 3
    scheduler.set_timers(
        TimerSpec("jobs", n, activate_in=dt.timedelta(hours=1), timer_id=f"p{n}")
        for n in range(3)
    )
    fill_up(client)
    info = scheduler.get_timer("jobs", "p0")
    assert info is not None
    assert info.payload == 0
    assert scheduler.topics() == ["jobs"]
    assert scheduler.stats("jobs").pending == 3
    assert [t.timer_id for t in scheduler.list_timers("jobs").timers] == ["p0", "p1", "p2"]
    assert len(scheduler.dead_timers("jobs")) == 3
    assert scheduler.cancel_timer("jobs", "p0") is True
    assert scheduler.purge_dead("jobs") == 3
    assert scheduler.purge("jobs") == 2
