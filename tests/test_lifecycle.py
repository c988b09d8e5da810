"""Starting and stopping: threads, timeouts, restarts, health."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from redistimers import Delivery, SchedulerStateError

from .helpers import (
    RecordingFactory,
    SchedulerFactory,
    blocked_until,
    redistimers_threads,
    timer_gone,
    wait_for,
)

# -- lifecycle --------------------------------------------------------------------------


def test_with_scheduler_starts_and_stops_it(recording: RecordingFactory) -> None:
    scheduler, _ = recording("ticks")
    before = redistimers_threads()
    assert scheduler.running is False
    with scheduler as entered:
        assert entered is scheduler
        assert scheduler.running is True
        assert any(t.name == "redistimers-poller" for t in redistimers_threads() - before)
    assert scheduler.running is False
    assert redistimers_threads() - before == set()


def test_start_twice_raises_scheduler_state_error(recording: RecordingFactory) -> None:
    scheduler, _ = recording("ticks")
    with scheduler, pytest.raises(SchedulerStateError):
        scheduler.start()


def test_scheduler_can_be_started_again_after_stop(recording: RecordingFactory) -> None:
    scheduler, handler = recording("ticks")
    with scheduler:
        scheduler.set_timer("ticks", 1, activate_in=0)
        handler.wait_calls(1)
    with scheduler:
        scheduler.set_timer("ticks", 2, activate_in=0)
        handler.wait_calls(2)
    assert handler.payloads == [1, 2]


def test_stop_of_an_idle_scheduler_is_quick_and_leaves_no_thread_behind(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("ticks")
    before = redistimers_threads()
    scheduler.start()
    scheduler.set_timer("ticks", 1, activate_in=0)
    handler.wait_calls(1)
    started = time.monotonic()
    assert scheduler.stop(timeout=5) is True
    assert time.monotonic() - started < 5
    assert redistimers_threads() - before == set()


def test_stop_returns_within_its_timeout_while_a_handler_still_runs(
    recording: RecordingFactory, release: threading.Event
) -> None:
    scheduler, handler = recording("ticks", blocked_until(release))
    before = redistimers_threads()
    scheduler.start()
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    handler.wait_calls(1)
    started = time.monotonic()
    drained = scheduler.stop(timeout=0.5)
    elapsed = time.monotonic() - started
    assert drained is False
    assert 0.5 <= elapsed < 1.0
    assert scheduler.running is False
    # Only the stuck handler's thread is left, and it ends when its handler returns.
    assert all(t.name.startswith("redistimers-handler") for t in redistimers_threads() - before)
    release.set()
    wait_for(lambda: not (redistimers_threads() - before))
    # Its outcome was still settled: the timer is acked, not left to a lease expiry,
    # and counted like any other.
    wait_for(timer_gone(scheduler, "ticks", "x"))
    wait_for(lambda: scheduler.metrics().succeeded == 1)
    assert scheduler.metrics().claimed == 1


def test_stop_waits_for_a_running_handler_to_finish(recording: RecordingFactory) -> None:
    started, finished = threading.Event(), threading.Event()

    def slow(payload: Any, delivery: Delivery | None) -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    scheduler, _ = recording("ticks", slow)
    before = redistimers_threads()
    scheduler.start()
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    assert started.wait(10)
    assert scheduler.stop(timeout=5) is True
    assert finished.is_set()
    assert scheduler.get_timer("ticks", "x") is None
    assert redistimers_threads() - before == set()


def test_stop_of_a_scheduler_never_started_returns_true(make_scheduler: SchedulerFactory) -> None:
    assert make_scheduler().stop(timeout=0) is True


def test_healthy_is_true_while_running(recording: RecordingFactory) -> None:
    scheduler, _ = recording("ticks")
    with scheduler:
        assert scheduler.running is True
        assert scheduler.healthy is True
    assert scheduler.healthy is True


def test_a_pub_sub_connection_that_stops_answering_is_replaced_and_wake_ups_flow_again(
    recording: RecordingFactory,
    make_scheduler: SchedulerFactory,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redistimers import defaults

    monkeypatch.setattr(defaults, "LISTENER_KEEPALIVE", 0.3)
    monkeypatch.setattr(defaults, "LISTENER_PING_TIMEOUT", 0.3)
    scheduler, handler = recording("ticks")
    with scheduler:
        time.sleep(0.2)
        redis_client.execute_command("CLIENT", "PAUSE", 1500)  # every client hears nothing
        wait_for(lambda: scheduler.metrics().redis_errors >= 1, timeout=5)
        assert "did not answer a PING" in caplog.text
        wait_for(lambda: scheduler.healthy, timeout=10)
        time.sleep(0.5)  # the new subscription is in place
        # Scheduled by another process's scheduler: only a wake-up can bring it in time.
        make_scheduler().set_timer("ticks", "after", activate_in=0.2)
        handler.wait_calls(1, timeout=3)
    assert handler.payloads == ["after"]


def test_run_forever_fails_when_its_threads_end_without_a_stop(
    recording: RecordingFactory,
) -> None:
    """A worker whose threads are gone delivers nothing: run_forever says so with an error
    (`redistimers worker` then exits non-zero), so that its supervisor restarts it."""
    scheduler, _handler = recording("ticks")
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            scheduler.run_forever(shutdown_timeout=1)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: scheduler.running, 5)
    engines = scheduler._poller
    assert engines is not None
    engines.stop_now()  # the threads end, and nobody called stop()
    thread.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], SchedulerStateError)
    assert "threads ended without being stopped" in str(outcome[0])
    assert not scheduler.running
