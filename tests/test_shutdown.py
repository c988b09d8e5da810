"""Shutting down: stop(timeout) semantics, run_forever() and signals, workers that die in
their handler, and a scheduler inherited across os.fork().

In-process tests use the session's redis-server. Worker processes run
`tests/_worker_shutdown.py` with `sys.executable` and report through Redis lists outside
the redistimers namespace (see that script's docstring); every one is killed at teardown.

Timers "claimed but not started" exist for a moment between a claim's reply and the handler
thread picking the timer up. To make that moment long and certain, some tests hold Redis
busy with a Lua script while the poller's claim waits in Redis's input queue, and call
stop() meanwhile: the claim's reply then arrives after stop() began, so none of the timers
it leases may start.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redistimers import Delivery

from .helpers import (
    RecordingFactory,
    SchedulerFactory,
    WorkerProcesses,
    blocked_until,
    redis_list,
    redistimers_threads,
    wait_for,
)

WORKER = Path(__file__).resolve().parent / "_worker_shutdown.py"

#: Deadline for things that involve other processes on a busy two-core machine.
PROCESS_DEADLINE = 20.0


# -- holding Redis busy ----------------------------------------------------------------------

_BUSY_LOOP = """
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = start
while now - start < tonumber(ARGV[1]) do
  t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
return 1
"""


def hold_redis_busy(url: str, seconds: float) -> threading.Thread:
    """Run a Lua busy loop for `seconds` on its own connection, in a thread: Redis serves
    nobody else meanwhile; commands sent to it wait in its input queue."""
    client = redis.Redis.from_url(url)

    def run() -> None:
        try:
            client.eval(_BUSY_LOOP, 0, int(seconds * 1_000_000))
        finally:
            client.close()

    thread = threading.Thread(target=run, name="test-busy-redis", daemon=True)
    thread.start()
    return thread


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# -- stop(timeout), in process ---------------------------------------------------------------


def test_stop_lets_running_handlers_finish_claims_nothing_new_and_returns_true(
    recording: RecordingFactory, make_scheduler: SchedulerFactory, release: threading.Event
) -> None:
    worker, handler = recording("work", blocked_until(release), handler={"max_concurrent": 5})
    other = make_scheduler()  # schedules only
    worker.start()
    for i in range(3):
        worker.set_timer("work", i, activate_in=0, timer_id=f"slow-{i}")
    handler.wait_calls(3)

    result: list[bool] = []
    stopper = threading.Thread(target=lambda: result.append(worker.stop(timeout=5)))
    stopper.start()
    wait_for(lambda: not worker.running, 5)
    time.sleep(0.2)
    # Two slots are free and this timer is due: a scheduler that still claimed would take
    # it within milliseconds (the wake-up is published to it).
    other.set_timer("work", "late", activate_in=0, timer_id="late")
    time.sleep(0.4)
    assert stopper.is_alive(), "stop() returned while its handlers were still blocked"

    release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert result == [True]
    assert sorted(call.delivery.timer_id for call in handler.calls if call.delivery) == [
        "slow-0", "slow-1", "slow-2",
    ]
    for i in range(3):
        assert other.get_timer("work", f"slow-{i}") is None  # acked before stop() returned
    late = other.get_timer("work", "late")
    assert late is not None
    assert (late.attempts, late.leased) == (0, False)
    metrics = worker.metrics()
    assert (metrics.claimed, metrics.succeeded, metrics.released) == (3, 3, 0)
    assert metrics.in_flight == {"work": 0}


def test_stop_hands_back_claimed_but_unstarted_leases_at_once_and_another_worker_fires_them_within_1s(  # noqa: E501
    recording: RecordingFactory,
    make_scheduler: SchedulerFactory,
    redis_url: str,
    release: threading.Event,
) -> None:
    topic, count = "handback", 20
    long_started = threading.Event()

    def first_behaviour(payload: Any, delivery: Delivery | None) -> None:
        if payload == "long":
            long_started.set()
            release.wait(10)

    options = {"max_concurrent": count + 1, "lease_ttl": 30}
    first, first_handler = recording(topic, first_behaviour, handler=options)
    second, second_handler = recording(topic, handler=options)
    scheduling = make_scheduler()
    first.start()
    # A handler that keeps running through stop(), so stop() is still waiting for it
    # when the other leases must already be back.
    first.set_timer(topic, "long", activate_in=0, timer_id="long")
    assert long_started.wait(10)

    began = time.monotonic()
    ids = [
        scheduling.set_timer(topic, i, activate_in=0.5, timer_id=f"t-{i:02d}")
        for i in range(count)
    ]
    # Redis is busy from now until about began + 1.2 s; the poller's claim of the timers
    # due at began + 0.5 s waits in Redis's queue, and stop() is called before it is served.
    busy = hold_redis_busy(redis_url, 1.2)
    _sleep_until(began + 0.85)
    assert busy.is_alive(), "the machine is too slow for this test's timing"
    result: list[bool] = []
    stopper = threading.Thread(target=lambda: result.append(first.stop(timeout=10)))
    stopper.start()
    busy.join(5)

    wait_for(lambda: first.metrics().released == count, 5)
    assert stopper.is_alive(), "stop() must still wait for the running handler"
    assert [call.payload for call in first_handler.calls] == ["long"]  # none of them started
    for timer_id in ids:
        info = scheduling.get_timer(topic, timer_id)
        assert info is not None
        # Handed back: not leased, the attempt not counted, due now (not in 30 s).
        assert (info.leased, info.attempts) == (False, 0), timer_id
        assert info.remaining.total_seconds() == 0, timer_id
    long_info = scheduling.get_timer(topic, "long")
    assert long_info is not None
    assert long_info.leased

    second.start()
    handed_over = time.monotonic()
    wait_for(lambda: len(second_handler.calls) >= count, 5)
    elapsed = time.monotonic() - handed_over
    assert elapsed < 1.0, f"another worker took {elapsed:.2f}s (lease_ttl is 30s)"
    calls = second_handler.calls
    assert sorted(call.delivery.timer_id for call in calls if call.delivery) == ids
    assert {call.delivery.attempt for call in calls if call.delivery} == {1}
    assert stopper.is_alive(), "the leases came back only because stop() had finished"

    release.set()
    stopper.join(5)
    assert result == [True]
    assert scheduling.get_timer(topic, "long") is None  # the running one was acked
    metrics = first.metrics()
    assert (metrics.claimed, metrics.released, metrics.succeeded) == (count + 1, count, 1)
    assert metrics.stale_acks == 0


def test_release_at_stop_is_fenced_so_a_timer_reset_meanwhile_keeps_its_new_version(
    recording: RecordingFactory,
    make_scheduler: SchedulerFactory,
    redis_url: str,
    release: threading.Event,
) -> None:
    topic, count = "fenced", 5
    worker, handler = recording(topic, handler={"max_concurrent": count, "lease_ttl": 30})
    scheduling = make_scheduler()
    worker.start()
    time.sleep(0.2)  # its first claim (of nothing) is done

    began = time.monotonic()
    for i in range(count):
        scheduling.set_timer(topic, f"old-{i}", activate_in=0.5, timer_id=f"t-{i}")
    busy = hold_redis_busy(redis_url, 1.2)
    # The poller's claim (sent at began + 0.5 s) waits in Redis's queue; this re-set is
    # queued after it, so Redis runs it after the claim and before the release.
    _sleep_until(began + 0.7)
    resetter = threading.Thread(
        target=lambda: scheduling.set_timer(topic, "new", activate_in=60, timer_id="t-2")
    )
    resetter.start()
    _sleep_until(began + 0.9)
    assert busy.is_alive(), "the machine is too slow for this test's timing"
    assert worker.stop(timeout=5) is True
    resetter.join(5)
    busy.join(5)

    metrics = worker.metrics()
    assert (metrics.claimed, metrics.released) == (count, count)
    assert metrics.stale_acks == 1  # the release of t-2 held a stale token
    assert handler.calls == []
    reset = scheduling.get_timer(topic, "t-2")
    assert reset is not None
    assert reset.payload == "new"
    assert (reset.leased, reset.attempts) == (False, 0)
    assert reset.remaining.total_seconds() > 50  # not made due now by the old release
    for i in (0, 1, 3, 4):
        info = scheduling.get_timer(topic, f"t-{i}")
        assert info is not None
        assert (info.payload, info.leased, info.attempts) == (f"old-{i}", False, 0)
        assert info.remaining.total_seconds() == 0


def test_stop_racing_a_busy_drain_leaves_no_timer_leased_and_another_worker_takes_the_rest_within_1s(  # noqa: E501
    recording: RecordingFactory,
) -> None:
    topic, total = "drain", 300
    first, first_handler = recording(
        topic, lambda payload, delivery: time.sleep(0.02),
        handler={"max_concurrent": 20, "lease_ttl": 30},
    )
    second, second_handler = recording(topic, handler={"max_concurrent": 100, "lease_ttl": 30})
    ids = {
        first.set_timer(topic, i, activate_in=0, timer_id=f"d-{i:03d}") for i in range(total)
    }

    first.start()
    first_handler.wait_calls(40)
    assert first.stop(timeout=5) is True  # claims race this stop

    done = {call.delivery.timer_id for call in first_handler.calls if call.delivery}
    assert len(done) == len(first_handler.calls)
    assert done < ids
    metrics = first.metrics()
    assert metrics.succeeded == len(done)
    assert metrics.claimed == metrics.succeeded + metrics.released
    assert metrics.in_flight == {topic: 0}
    left = ids - done
    for timer_id in sorted(ids):
        info = first.get_timer(topic, timer_id)
        if timer_id in done:
            assert info is None, f"{timer_id} ran but was not acked"
        else:
            assert info is not None, f"{timer_id} vanished without running"
            assert (info.leased, info.attempts) == (False, 0), timer_id

    second.start()
    handed_over = time.monotonic()
    wait_for(lambda: len(second_handler.calls) >= len(left), 5)
    elapsed = time.monotonic() - handed_over
    assert elapsed < 1.0, f"another worker took {elapsed:.2f}s for {len(left)} timers"
    calls = second_handler.calls
    assert sorted(call.delivery.timer_id for call in calls if call.delivery) == sorted(left)
    assert {call.delivery.attempt for call in calls if call.delivery} == {1}


def test_run_forever_outside_the_main_thread_installs_no_signal_handlers_and_ends_on_stop(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("bg")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            scheduler.run_forever(shutdown_timeout=5)
        except BaseException as exc:
            errors.append(exc)

    threads_before = redistimers_threads()
    runner = threading.Thread(target=run, name="test-run-forever", daemon=True)
    runner.start()
    wait_for(lambda: scheduler.running or not runner.is_alive(), 5)
    assert errors == []
    scheduler.set_timer("bg", 1, activate_in=0)
    handler.wait_calls(1)
    assert {s: signal.getsignal(s) for s in before} == before

    assert scheduler.stop(timeout=5) is True
    runner.join(3)
    assert not runner.is_alive(), "run_forever() did not return after stop()"
    assert errors == []
    assert {s: signal.getsignal(s) for s in before} == before
    assert not (redistimers_threads() - threads_before)


# -- worker processes ------------------------------------------------------------------------


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[WorkerProcesses]:
    pool = WorkerProcesses(WORKER, redis_url, tmp_path, PROCESS_DEADLINE)
    try:
        yield pool
    finally:
        pool.end_all()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_run_forever_process_with_exit_code_0_after_in_flight_handlers_complete(
    signum: signal.Signals,
    workers: WorkerProcesses,
    redis_client: redis.Redis,
    make_scheduler: SchedulerFactory,
) -> None:
    topic = "graceful"
    process = workers.spawn(
        "w1", "--topic", topic, "--mode", "slow", "--handler-seconds", "1.0",
        "--max-concurrent", "5", "--shutdown-timeout", "10",
    )
    workers.wait_ready(redis_client, "w1")
    scheduling = make_scheduler()
    ids = [scheduling.set_timer(topic, i, activate_in=0, timer_id=f"g-{i}") for i in range(3)]
    wait_for(lambda: len(redis_list(redis_client, "test:started")) >= 3, PROCESS_DEADLINE)
    process.send_signal(signum)
    signalled = time.monotonic()
    wait_for(lambda: f"received {signum.name}" in workers.log("w1"), PROCESS_DEADLINE)
    # What the signal does, and how to stop at once, said when it is received.
    again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert (
        f"received {signum.name}: stopping; the 3 handler(s) running have up to 10s to "
        f"finish ({again} again stops at once)"
    ) in workers.log("w1")
    time.sleep(0.1)
    # Due now, with free slots: a worker still claiming would start it at once.
    scheduling.set_timer(topic, "late", activate_in=0, timer_id="late")

    try:
        code = process.wait(PROCESS_DEADLINE)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit:\n{workers.logs()}") from None
    elapsed = time.monotonic() - signalled
    assert code == 0, workers.logs()
    finished = sorted(redis_list(redis_client, "test:finished"))
    assert finished == [f"w1 {timer_id} 1" for timer_id in ids], workers.logs()
    assert sorted(redis_list(redis_client, "test:started")) == finished  # "late" never started
    assert elapsed < 8  # well within the 10 s shutdown timeout, not waiting it out
    for timer_id in ids:
        assert scheduling.get_timer(topic, timer_id) is None  # acked before the exit
    late = scheduling.get_timer(topic, "late")
    assert late is not None
    assert (late.leased, late.attempts) == (False, 0)
    (exited,) = redis_list(redis_client, "test:exited")
    assert json.loads(exited.split(" ", 1)[1]) == {"restored": True, "running": False}


def test_second_sigterm_stops_run_forever_at_once_without_waiting_for_handlers(
    workers: WorkerProcesses, redis_client: redis.Redis, make_scheduler: SchedulerFactory
) -> None:
    topic = "stubborn"
    process = workers.spawn(
        "w1", "--topic", topic, "--mode", "slow", "--handler-seconds", "30",
        "--shutdown-timeout", "20",
    )
    workers.wait_ready(redis_client, "w1")
    scheduling = make_scheduler()
    scheduling.set_timer(topic, "x", activate_in=0, timer_id="stuck")
    wait_for(lambda: redis_list(redis_client, "test:started") == ["w1 stuck 1"], PROCESS_DEADLINE)

    process.send_signal(signal.SIGTERM)
    wait_for(lambda: "received SIGTERM" in workers.log("w1"), PROCESS_DEADLINE)
    time.sleep(0.3)
    assert process.poll() is None, "the first SIGTERM must wait for the running handler"
    process.send_signal(signal.SIGTERM)
    second = time.monotonic()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker ignored the second SIGTERM:\n{workers.logs()}") from None
    elapsed = time.monotonic() - second
    assert elapsed < 2.0, f"exit took {elapsed:.2f}s after the second signal\n{workers.logs()}"
    log = workers.log("w1")
    assert "received SIGTERM again: stopping now, without waiting for the 1 handler(s)" in log
    # Not "still running after 20.0s" (the shutdown timeout) when it stopped within 2 s.
    waited = [float(s) for s in re.findall(r"still running after ([0-9.]+)s", log)]
    assert all(seconds < 5 for seconds in waited), log
    assert redis_list(redis_client, "test:finished") == []
    # Nobody settled it: the timer stays leased, to come back when its lease expires.
    info = scheduling.get_timer(topic, "stuck")
    assert info is not None
    assert (info.leased, info.attempts) == (True, 1)


def test_timer_whose_handler_os_exits_every_time_ends_in_dead_letters_after_max_attempts(
    workers: WorkerProcesses, redis_client: redis.Redis, make_scheduler: SchedulerFactory
) -> None:
    topic, max_attempts = "killer", 2
    scheduling = make_scheduler()
    scheduling.set_timer(topic, {"boom": True}, activate_in=0, timer_id="k-1")

    exit_codes: list[int] = []
    survivor: subprocess.Popen[bytes] | None = None
    for n in range(1, 6):  # restart workers as they die, as a supervisor would
        name = f"w{n}"
        process = workers.spawn(
            name, "--topic", topic, "--mode", "exit", "--lease-ttl", "0.5",
            "--max-attempts", str(max_attempts),
        )

        def settled(process: subprocess.Popen[bytes] = process) -> bool:
            return process.poll() is not None or bool(scheduling.dead_timers(topic))

        try:
            wait_for(settled, PROCESS_DEADLINE, interval=0.02)
        except AssertionError:
            raise AssertionError(f"neither died nor buried:\n{workers.logs()}") from None
        if process.poll() is None:
            survivor = process
            break
        exit_codes.append(process.returncode)

    assert exit_codes == [1] * max_attempts, workers.logs()
    assert survivor is not None, workers.logs()
    assert redis_list(redis_client, "test:started") == [
        f"w{n} k-1 {n}" for n in range(1, max_attempts + 1)
    ]
    (dead,) = scheduling.dead_timers(topic)
    assert dead.timer_id == "k-1"
    assert dead.reason == "lease expired"
    assert dead.payload == {"boom": True}
    assert dead.attempts >= max_attempts
    assert scheduling.get_timer(topic, "k-1") is None
    time.sleep(0.3)
    assert survivor.poll() is None, "burying the timer must not take its worker down too"


def test_forked_child_does_not_pretend_to_run_the_parents_scheduler_and_start_there_delivers(
    workers: WorkerProcesses, redis_client: redis.Redis
) -> None:
    process = workers.spawn("forker", "--topic", "forked", "--mode", "fork")
    try:
        code = process.wait(PROCESS_DEADLINE)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"fork worker hung:\n{workers.logs()}") from None
    assert code == 0, workers.logs()
    (child_json,) = redis_list(redis_client, "test:child")
    (parent_json,) = redis_list(redis_client, "test:parent")
    child, parent = json.loads(child_json), json.loads(parent_json)
    assert "error" not in child, child.get("error")

    # In the child, the inherited scheduler says it does not run: its threads are not there.
    assert child["running_after_fork"] is False
    assert child["healthy_after_fork"] is False
    assert child["threads_after_fork"] == []
    assert child["stop_before_start"] is True
    assert child["stop_before_start_seconds"] < 1.0
    # start() there starts it properly, with the child's own threads, and it delivers.
    assert child["parent_stopped"] is True
    assert child["running_after_start"] is True
    assert child["healthy_after_start"] is True
    assert "redistimers-poller" in child["threads_after_start"]
    assert child["delivered_in_child"] is True
    assert child["stopped"] is True
    assert child["threads_after_stop"] == []

    # The parent's scheduler was not disturbed by the fork.
    assert parent["running_after_fork"] is True
    assert parent["healthy_after_fork"] is True
    assert parent["delivered_after_fork"] is True
    assert parent["stopped"] is True
    assert parent["child_exit"] == 0
    assert child["pid"] == parent["child_pid"] != parent["pid"]
    assert sorted(redis_list(redis_client, "test:delivered")) == sorted([
        f"{parent['pid']} before-fork",
        f"{parent['pid']} parent-after-fork",
        f"{child['pid']} child-timer",
    ])
