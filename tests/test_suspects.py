"""Suspects: timers whose previous delivery never reported back (its worker died or hung
past the lease). A timer whose handler ends its worker every time goes to the dead
letters; timers that merely shared a worker with it are delivered, never dead-lettered
for its crashes: a suspect runs alone, and only a suspect that ran alone is blamed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from redistimers import RetryPolicy, Router, TimerScheduler, defaults
from redistimers.store import ScheduleEntry, TimerStore
from tests.helpers import SchedulerFactory, wait_for

REPO = Path(__file__).resolve().parent.parent
POISON_WORKER = Path(__file__).resolve().parent / "_worker_poison.py"

TOPIC = "jobs"
ENVELOPE = '{"v":1,"p":"x"}'


def _strings(client: redis.Redis, key: str) -> list[str]:
    return [item.decode() for item in client.lrange(key, 0, -1)]


@pytest.mark.slow
def test_a_timer_that_ends_its_worker_takes_no_neighbour_to_the_dead_letters(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    scheduler = TimerScheduler.from_url(redis_url)
    innocents = [f"i{n}" for n in range(9)]
    scheduler.set_timer(TOPIC, "poison", activate_in=0, timer_id="m-poison")
    for timer_id in innocents:
        scheduler.set_timer(TOPIC, "fine", activate_in=0, timer_id=timer_id)

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "worker.log").open("wb")
    worker: subprocess.Popen[bytes] | None = None
    restarts = 0

    def settled() -> bool:
        nonlocal worker, restarts
        if worker is None or worker.poll() is not None:
            restarts += worker is not None
            worker = subprocess.Popen(
                [sys.executable, str(POISON_WORKER), redis_url, "--name", f"w{restarts}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(REPO), env=env,
            )
        done = {line.split()[0] for line in _strings(redis_client, "test:done")}
        return done >= set(innocents) and bool(scheduler.dead_timers(TOPIC))

    try:
        wait_for(settled, 60, interval=0.1)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(5)
        log.close()
    (dead,) = scheduler.dead_timers(TOPIC)
    assert dead.timer_id == "m-poison"
    assert dead.reason == "lease expired"
    assert dead.attempts == 2
    assert "ran alone" in dead.error
    assert scheduler.stats(TOPIC).pending == 0
    started = _strings(redis_client, "test:started")
    assert [s for s in started if s.startswith("m-poison")] == ["m-poison 1", "m-poison 2"]
    assert restarts == 2, (tmp_path / "worker.log").read_text()


def _store(client: redis.Redis) -> TimerStore:
    return TimerStore(client, defaults.NAMESPACE)


def _claim(store: TimerStore, lease_ms: int = 30_000) -> list[object]:
    batch = store.batch()
    batch.claim(TOPIC, lease_ms, 10)
    (result,) = store.execute(batch)
    return list(result.timers)


def test_a_claim_marks_timers_whose_previous_delivery_never_reported_back(
    redis_client: redis.Redis,
) -> None:
    store = _store(redis_client)
    store.schedule_many({TOPIC: [ScheduleEntry("a", ENVELOPE, delay_ms=0)]})
    (first,) = _claim(store, lease_ms=1)
    assert first.mark == ""
    assert not first.suspect
    time.sleep(0.01)  # the lease runs out: its worker died
    (second,) = _claim(store, lease_ms=1)
    assert (second.mark, second.attempt) == ("!", 2)
    batch = store.batch()
    batch.solo(TOPIC, 1, "a", second.token)
    (alone_token,) = store.execute(batch)
    assert alone_token == second.token + "*"
    again = store.batch()
    again.solo(TOPIC, 1, "a", second.token)  # sent again after a timeout: same answer
    assert store.execute(again) == [alone_token]
    time.sleep(0.01)  # it ran alone, and never reported back
    (third,) = _claim(store)
    assert (third.mark, third.attempt) == ("*", 3)
    assert third.ended_its_worker


def test_a_released_suspect_keeps_its_mark(redis_client: redis.Redis) -> None:
    """A suspect handed back at stop() before it ran is still a suspect for the next
    worker, and its attempt is not counted."""
    store = _store(redis_client)
    store.schedule_many({TOPIC: [ScheduleEntry("a", ENVELOPE, delay_ms=0)]})
    _claim(store, lease_ms=1)
    time.sleep(0.01)
    (suspect,) = _claim(store)
    assert suspect.mark == "!"
    batch = store.batch()
    batch.release(TOPIC, [("a", suspect.token, suspect.mark)])
    assert store.execute(batch) == [[]]
    (again,) = _claim(store)
    assert (again.mark, again.attempt) == ("!", 2)


def test_a_suspect_whose_last_delivery_ran_beside_others_gets_one_more_delivery_alone(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """Past its attempts, but not blamed: a neighbour's crash may have ended it."""
    runs: list[int] = []
    router = Router()
    router.handler(TOPIC, retry=RetryPolicy(max_attempts=1))(lambda payload: runs.append(1))
    scheduler = make_scheduler(router)
    scheduler.set_timer(TOPIC, "x", activate_in=0, timer_id="a")
    redis_client.hset("redistimers:{jobs}:attempts", "a", 3)
    redis_client.hset("redistimers:{jobs}:lease", "a", "12")  # lost, not alone
    assert scheduler.run_pending() == 1
    assert runs == [1]
    assert scheduler.dead_timers(TOPIC) == []
    assert scheduler.metrics().succeeded == 1


def test_the_poller_runs_a_suspect_alone_after_the_handlers_before_it(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    import threading

    events: list[str] = []
    lock = threading.Lock()
    gate = threading.Event()

    def handle(payload: str) -> None:
        with lock:
            events.append(f"start {payload}")
        if payload == "slow":
            gate.wait(5)
        with lock:
            events.append(f"end {payload}")

    router = Router()
    router.handler(TOPIC, max_concurrent=5)(handle)
    scheduler = make_scheduler(router)
    scheduler.set_timer(TOPIC, "slow", activate_in=0, timer_id="s")
    with scheduler:
        wait_for(lambda: "start slow" in events)
        # A suspect comes due: it waits until "slow" ends; nothing else starts meanwhile.
        scheduler.set_timer(TOPIC, "suspect", activate_in=0.3, timer_id="x")
        redis_client.hset("redistimers:{jobs}:lease", "x", "7")  # before it is due
        wait_for(lambda: scheduler.metrics().claimed == 2)
        cpu = time.process_time()
        scheduler.set_timer(TOPIC, "later", activate_in=0, timer_id="l")  # a wake-up
        time.sleep(0.5)
        assert events == ["start slow"]
        # The wake-up waits for the isolation to end; the poller does not spin meanwhile.
        assert time.process_time() - cpu < 0.25
        gate.set()
        wait_for(lambda: len(events) == 6)
    assert events[:4] == ["start slow", "end slow", "start suspect", "end suspect"]
    assert scheduler.metrics().isolated == 1


def test_a_claim_run_twice_marks_its_suspects_the_same_both_times(
    redis_client: redis.Redis,
) -> None:
    store = _store(redis_client)
    store.schedule_many({TOPIC: [ScheduleEntry(i, ENVELOPE, delay_ms=0) for i in ("a", "b", "c")]})
    _claim(store, lease_ms=1)
    time.sleep(0.01)
    store.schedule_many({TOPIC: [ScheduleEntry("b", ENVELOPE, delay_ms=0)]})  # b set again: fresh
    batch = store.batch()
    batch.claim(TOPIC, 30_000, 10)
    (first,) = store.execute(batch)
    (again,) = store.execute(batch)
    assert again.replayed
    assert {t.timer_id: t.mark for t in first.timers} == {"a": "!", "b": "", "c": "!"}
    assert [(t.timer_id, t.mark, t.token) for t in again.timers] == [
        (t.timer_id, t.mark, t.token) for t in first.timers
    ]
