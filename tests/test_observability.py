"""Observability: scheduler.metrics(), the on_success/on_failure/on_dead hooks, and logging
(standard `logging` under the "redistimers" logger, with topic/timer_id/attempt on every
delivery-level record, and never print())."""

from __future__ import annotations

import ast
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from redistimers import (
    Delivery,
    RejectTimer,
    RetryPolicy,
    RetryTimer,
    Router,
    TimerScheduler,
)
from redistimers.metrics import Metrics

from .helpers import (
    InvoiceDue,
    Recorder,
    RecordingFactory,
    SchedulerFactory,
    ServerFactory,
    blocked_until,
    timer_gone,
    wait_for,
)

PACKAGE = Path(__file__).resolve().parent.parent / "redistimers"

#: Two attempts, retried after 10 ms: dead letters come quickly and predictably.
TWO_TRIES = RetryPolicy(max_attempts=2, initial=0.01, factor=2.0, maximum=0.02, jitter=False)
ONE_TRY = RetryPolicy(max_attempts=1, initial=0.01, factor=2.0, maximum=0.02, jitter=False)


def _fail_first_attempt(exc_type: type[Exception]) -> Callable[[Any, Delivery], None]:
    def handle(payload: Any, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise exc_type(f"{delivery.timer_id} failed once")

    return handle


def _always_fail(payload: Any, delivery: Delivery) -> None:
    raise ValueError(f"{delivery.timer_id} always fails")


def _retry_once(payload: Any, delivery: Delivery) -> None:
    if delivery.attempt == 1:
        raise RetryTimer(0.01)


def _reject(payload: Any, delivery: Delivery) -> None:
    raise RejectTimer("not wanted")


def _outcomes_router() -> Router:
    """One topic per outcome; with `_schedule_outcomes`, the expected counts are
    claimed 9, succeeded 3, retried 3, dead-lettered 2, rejected 1."""
    router = Router()
    router.handler("ok")(lambda payload, delivery: None)
    router.handler("flaky", retry=TWO_TRIES)(_fail_first_attempt(ValueError))
    router.handler("again", retry=TWO_TRIES)(_retry_once)
    router.handler("doomed", retry=TWO_TRIES)(_always_fail)
    router.handler("reject")(_reject)
    router.handler("typed", payload=InvoiceDue)(lambda payload, delivery: None)
    return router


def _schedule_outcomes(scheduling: TimerScheduler) -> dict[str, str]:
    """Schedule one timer per topic of `_outcomes_router`, from a scheduler without
    handlers (so the "typed" payload is not checked and fails to decode). id -> topic."""
    timers = {
        "obs-ok": "ok",
        "obs-flaky": "flaky",
        "obs-again": "again",
        "obs-doomed": "doomed",
        "obs-reject": "reject",
        "obs-typed": "typed",
    }
    for timer_id, topic in timers.items():
        payload: Any = {"not": "an invoice"} if topic == "typed" else timer_id
        scheduling.set_timer(topic, payload, activate_in=0, timer_id=timer_id)
    return timers


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_count_claims_and_every_outcome(make_scheduler: SchedulerFactory) -> None:
    router = _outcomes_router()
    scheduler = make_scheduler(router, max_poll_interval=0.5)
    idle = dict.fromkeys(router.topics, 0)
    assert scheduler.metrics() == Metrics(in_flight=idle)

    timers = _schedule_outcomes(make_scheduler())
    expected = Metrics(
        claimed=9, delivered=9, succeeded=3, retried=3, dead_lettered=2, rejected=1, failed=3,
        in_flight=idle,
    )

    def totals() -> Metrics:
        return attrs.evolve(scheduler.metrics(), topics={})

    with scheduler:
        try:
            wait_for(lambda: totals() == expected, 10)
        except AssertionError:
            raise AssertionError(f"{totals()} != {expected}") from None
        for timer_id, topic in timers.items():
            wait_for(timer_gone(scheduler, topic, timer_id), 5)
        time.sleep(0.2)  # nothing more trickles in
        assert totals() == expected
    assert totals() == expected  # counts outlive stop()
    per_topic = scheduler.metrics().topics
    # "typed" never reached its handler (its payload did not decode): dead, not failed.
    assert {t: (m.delivered, m.succeeded, m.retried, m.dead_lettered, m.rejected, m.failed)
            for t, m in per_topic.items()} == {
        "again": (2, 1, 1, 0, 0, 0),
        "doomed": (2, 0, 1, 1, 0, 2),
        "flaky": (2, 1, 1, 0, 0, 1),
        "ok": (1, 1, 0, 0, 0, 0),
        "reject": (1, 0, 0, 0, 1, 0),
        "typed": (1, 0, 0, 1, 0, 0),
    }
    for topic, counts in per_topic.items():  # every delivery is in both histograms
        assert counts.handler_seconds.count == counts.delivered, topic
        assert counts.lateness_seconds.count == counts.delivered, topic
        assert counts.lateness_seconds.cumulative()[-1] == (float("inf"), counts.delivered)


def test_metrics_in_flight_counts_handlers_running_now_per_topic(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router = Router()
    slow = Recorder(redis_client, blocked_until(release))
    router.handler("slow", max_concurrent=5)(slow)
    router.handler("idle")(lambda payload: None)
    scheduler = make_scheduler(router)
    assert scheduler.metrics().in_flight == {"slow": 0, "idle": 0}
    scheduler.start()
    scheduler.set_timer("slow", 1, activate_in=0)
    scheduler.set_timer("slow", 2, activate_in=0)
    slow.wait_calls(2)
    wait_for(lambda: scheduler.metrics().in_flight == {"slow": 2, "idle": 0}, 5)
    time.sleep(0.1)
    assert scheduler.metrics().in_flight == {"slow": 2, "idle": 0}
    release.set()
    wait_for(lambda: scheduler.metrics().in_flight == {"slow": 0, "idle": 0}, 5)
    assert scheduler.metrics().succeeded == 2


def test_metrics_in_flight_still_counts_handlers_that_stop_is_waiting_for(
    recording: RecordingFactory, release: threading.Event
) -> None:
    scheduler, slow = recording("slow", blocked_until(release), handler={"max_concurrent": 5})
    scheduler.start()
    scheduler.set_timer("slow", 1, activate_in=0)
    slow.wait_calls(1)
    wait_for(lambda: scheduler.metrics().in_flight == {"slow": 1}, 5)
    stopper = threading.Thread(target=scheduler.stop, kwargs={"timeout": 5})
    stopper.start()
    try:
        wait_for(lambda: not scheduler.running, 5)
        time.sleep(0.1)
        assert stopper.is_alive()  # stop() waits for the handler, which is running now
        assert scheduler.metrics().in_flight == {"slow": 1}
    finally:
        release.set()
        stopper.join(5)
    assert scheduler.metrics().in_flight == {"slow": 0}
    assert scheduler.metrics().succeeded == 1


def test_metrics_count_lease_renewals_of_a_handler_running_past_its_lease_ttl(
    recording: RecordingFactory, release: threading.Event
) -> None:
    # Its lease is renewed every 0.2 s.
    scheduler, handler = recording("long", blocked_until(release), handler={"lease_ttl": 0.6})
    scheduler.start()
    scheduler.set_timer("long", "x", activate_in=0, timer_id="long-1")
    handler.wait_calls(1)
    assert scheduler.metrics().lease_renewals == 0
    wait_for(lambda: scheduler.metrics().lease_renewals >= 3, 5)  # 0.6 s or more: past the ttl
    info = scheduler.get_timer("long", "long-1")
    assert info is not None
    assert (info.leased, info.attempts) == (True, 1)
    release.set()
    wait_for(timer_gone(scheduler, "long", "long-1"), 5)
    metrics = scheduler.metrics()
    assert (metrics.claimed, metrics.succeeded, metrics.leases_lost, metrics.stale_acks) == (
        1, 1, 0, 0,
    )
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1]


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_metrics_count_a_stale_ack_when_the_timer_is_reset_during_its_handler(
    outcome: str, recording: RecordingFactory, release: threading.Event
) -> None:
    def block_then_end(payload: Any, delivery: Delivery | None) -> None:
        release.wait(10)
        if outcome == "raises":
            raise ValueError("old version failed")

    scheduler, handler = recording("resets", block_then_end, handler={"retry": TWO_TRIES})
    scheduler.start()
    scheduler.set_timer("resets", "v1", activate_in=0, timer_id="r-1")
    handler.wait_calls(1)
    scheduler.set_timer("resets", "v2", activate_in=60, timer_id="r-1")
    assert scheduler.metrics().stale_acks == 0
    release.set()
    wait_for(lambda: scheduler.metrics().stale_acks == 1, 5)
    info = scheduler.get_timer("resets", "r-1")
    assert info is not None
    assert (info.payload, info.leased, info.attempts) == ("v2", False, 0)
    assert info.remaining.total_seconds() > 50
    assert scheduler.metrics().claimed == 1
    assert len(handler.calls) == 1


def test_metrics_count_redis_errors_of_an_outage_and_delivery_goes_on_after_it(
    own_server: ServerFactory,
) -> None:
    server = own_server()  # this test's alone, to kill and restart
    delivered: list[str] = []
    router = Router()
    router.handler("outage")(lambda payload, delivery: delivered.append(delivery.timer_id))
    scheduler = TimerScheduler.from_url(server.url, routers=[router], max_poll_interval=0.2)
    try:
        scheduler.start()
        scheduler.set_timer("outage", 1, activate_in=0, timer_id="before")
        wait_for(lambda: delivered == ["before"], 5)
        assert scheduler.metrics().redis_errors == 0

        server.kill()
        wait_for(lambda: not scheduler.healthy, 10)
        wait_for(lambda: scheduler.metrics().redis_errors >= 1, 5)
        server.start()
        wait_for(lambda: scheduler.healthy, 10)
        errors = scheduler.metrics().redis_errors
        assert errors >= 1

        scheduler.set_timer("outage", 2, activate_in=0, timer_id="after")
        wait_for(lambda: delivered == ["before", "after"], 5)
        time.sleep(0.3)
        metrics = scheduler.metrics()
        assert metrics.redis_errors == errors  # Redis is back: no new errors
        assert (metrics.claimed, metrics.succeeded) == (2, 2)
    finally:
        scheduler.stop(5)


# -- hooks ----------------------------------------------------------------------------------


class HookLog:
    """Records hook calls in order, as (hook, delivery, error or message)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, Delivery, Any]] = []

    def on_success(self, delivery: Delivery) -> None:
        with self.lock:
            self.calls.append(("success", delivery, None))

    def on_failure(self, delivery: Delivery, exc: BaseException) -> None:
        with self.lock:
            self.calls.append(("failure", delivery, exc))

    def on_dead(self, delivery: Delivery, message: str) -> None:
        with self.lock:
            self.calls.append(("dead", delivery, message))

    def of(self, timer_id: str) -> list[tuple[str, int, Any]]:
        with self.lock:
            return [(h, d.attempt, x) for h, d, x in self.calls if d.timer_id == timer_id]


@pytest.mark.parametrize("made_by", ["from_url", "constructor"])
def test_hooks_get_the_delivery_and_the_error_of_each_success_failure_and_death(
    made_by: str, make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    raised: list[BaseException] = []

    def flaky(payload: Any, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raised.append(ValueError("flaky once"))
            raise raised[-1]

    def doomed(payload: Any, delivery: Delivery) -> None:
        raised.append(KeyError(f"doomed {delivery.attempt}"))
        raise raised[-1]

    router = Router()
    router.handler("ok")(lambda payload, delivery: None)
    router.handler("flaky", retry=TWO_TRIES)(flaky)
    router.handler("doomed", retry=TWO_TRIES)(doomed)
    router.handler("typed", payload=InvoiceDue)(lambda payload, delivery: None)
    hooks = HookLog()
    options = {"on_success": hooks.on_success, "on_failure": hooks.on_failure,
               "on_dead": hooks.on_dead}
    if made_by == "from_url":
        scheduler = make_scheduler(router, **options)
    else:
        scheduler = TimerScheduler(redis_client, routers=[router], **options)  # type: ignore[arg-type]
    scheduling = make_scheduler()
    scheduling.set_timer("ok", 1, activate_in=0, timer_id="h-ok",
                         headers={"tenant": "acme"}, correlation_id="req-1")
    scheduling.set_timer("flaky", 2, activate_in=0, timer_id="h-flaky")
    scheduling.set_timer("doomed", 3, activate_in=0, timer_id="h-doomed")
    scheduling.set_timer("typed", {"not": "an invoice"}, activate_in=0, timer_id="h-typed")
    try:
        scheduler.start()
        wait_for(lambda: len(hooks.calls) >= 7, 10)
        for topic in ("ok", "flaky", "doomed", "typed"):
            wait_for(timer_gone(scheduler, topic, f"h-{topic}"), 5)
        time.sleep(0.1)
    finally:
        scheduler.stop(5)

    assert len(hooks.calls) == 7
    (ok,) = [d for h, d, _ in hooks.calls if d.timer_id == "h-ok"]
    assert (ok.topic, ok.attempt, dict(ok.headers), ok.correlation_id) == (
        "ok", 1, {"tenant": "acme"}, "req-1",
    )
    assert ok.due_at.tzinfo is not None
    assert hooks.of("h-ok") == [("success", 1, None)]
    assert hooks.of("h-flaky") == [("failure", 1, raised[0]), ("success", 2, None)]
    assert hooks.of("h-flaky")[0][2] is raised[0]  # the very exception the handler raised
    doomed_calls = hooks.of("h-doomed")
    doomed_errors = [e for e in raised if isinstance(e, KeyError)]
    assert [(h, a) for h, a, _ in doomed_calls] == [("failure", 1), ("failure", 2), ("dead", 2)]
    assert doomed_calls[0][2] is doomed_errors[0]
    assert doomed_calls[1][2] is doomed_errors[1]
    assert isinstance(doomed_calls[2][2], str)
    assert "doomed 2" in doomed_calls[2][2]
    typed_calls = hooks.of("h-typed")
    assert [(h, a) for h, a, _ in typed_calls] == [("dead", 1)]  # no on_failure: never ran
    assert isinstance(typed_calls[0][2], str)
    assert typed_calls[0][2]
    assert {d.topic for _, d, _ in hooks.calls if d.timer_id == "h-typed"} == {"typed"}


def test_raising_hooks_are_logged_and_never_change_what_becomes_of_the_timer(
    make_scheduler: SchedulerFactory,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="redistimers")
    called: list[str] = []

    def boom(*args: Any) -> None:
        called.append(type(args[-1]).__name__ if len(args) > 1 else "success")
        raise RuntimeError("hook boom")

    ok = Recorder(redis_client)
    flaky = Recorder(redis_client, _fail_first_attempt(ValueError))  # type: ignore[arg-type]
    doomed = Recorder(redis_client, _always_fail)  # type: ignore[arg-type]
    router = Router()
    router.handler("ok")(ok)
    router.handler("flaky", retry=TWO_TRIES)(flaky)
    router.handler("doomed", retry=ONE_TRY)(doomed)
    scheduler = make_scheduler(router, on_success=boom, on_failure=boom, on_dead=boom)
    scheduler.set_timer("ok", 1, activate_in=0, timer_id="b-ok")
    scheduler.set_timer("flaky", 2, activate_in=0, timer_id="b-flaky")
    scheduler.set_timer("doomed", 3, activate_in=0, timer_id="b-doomed")
    expected = Metrics(claimed=4, delivered=4, succeeded=2, retried=1, dead_lettered=1,
                       failed=2, in_flight={"ok": 0, "flaky": 0, "doomed": 0})

    def totals() -> Metrics:
        return attrs.evolve(scheduler.metrics(), topics={})

    with scheduler:
        try:
            wait_for(lambda: totals() == expected, 10)
        except AssertionError:
            raise AssertionError(f"{totals()} != {expected}") from None
        time.sleep(0.3)  # an ack turned into a retry by a raising hook would show by now
        assert totals() == expected
    assert len(ok.calls) == 1
    assert [c.delivery.attempt for c in flaky.calls if c.delivery] == [1, 2]
    assert len(doomed.calls) == 1
    for topic in ("ok", "flaky", "doomed"):
        assert scheduler.get_timer(topic, f"b-{topic}") is None
    (dead,) = scheduler.dead_timers("doomed")
    assert (dead.timer_id, dead.reason) == ("b-doomed", "failed")
    assert "always fails" in dead.error  # the handler's error, not the hook's
    assert sorted(called) == sorted(["success", "success", "ValueError", "ValueError", "str"])

    hook_records = [
        r for r in caplog.records
        if r.name.startswith("redistimers") and r.exc_info and r.exc_info[1] is not None
        and "hook boom" in str(r.exc_info[1])
    ]
    assert len(hook_records) == 5
    assert {r.levelno for r in hook_records} == {logging.ERROR}
    messages = " ".join(r.getMessage() for r in hook_records)
    for name in ("on_success", "on_failure", "on_dead"):
        assert name in messages


@pytest.mark.parametrize("hook", ["on_success", "on_failure"])
def test_hook_raising_system_exit_neither_repeats_a_delivery_nor_strands_its_timer(
    hook: str, recording: RecordingFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine keeps a handler's SystemExit from losing its slot; a hook's must not
    do worse: the timer ends as its handler decided, and its slot is freed."""
    caplog.set_level(logging.DEBUG, logger="redistimers")

    def exits(*args: Any) -> None:
        raise SystemExit("hook exits")

    # on_success: the handler succeeds at once; on_failure: it fails once, then succeeds.
    if hook == "on_success":
        behaviour, attempts = None, [1]
    else:
        behaviour, attempts = _fail_first_attempt(ValueError), [1, 2]
    scheduler, handler = recording(
        "hooked", behaviour, handler={"retry": TWO_TRIES}, **{hook: exits}
    )
    scheduler.set_timer("hooked", "x", activate_in=0, timer_id="hx")
    scheduler.start()
    try:
        wait_for(lambda: scheduler.get_timer("hooked", "hx") is None
                 or scheduler.dead_timers("hooked"), 3)
        time.sleep(0.2)
        metrics = scheduler.metrics()
    finally:
        drained = scheduler.stop(timeout=1)
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == attempts
    assert scheduler.dead_timers("hooked") == []
    assert scheduler.get_timer("hooked", "hx") is None
    assert metrics.succeeded == 1
    assert metrics.in_flight == {"hooked": 0}
    assert drained is True


def test_log_record_of_a_raising_hook_names_its_delivery_topic_timer_id_and_attempt(
    recording: RecordingFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="redistimers")

    def boom(delivery: Delivery) -> None:
        raise RuntimeError("hook boom")

    scheduler, _ = recording("ok", on_success=boom)
    scheduler.set_timer("ok", 1, activate_in=0, timer_id="hooked")
    with scheduler:
        wait_for(lambda: scheduler.metrics().succeeded == 1, 5)
    (record,) = [
        r for r in caplog.records
        if r.name.startswith("redistimers") and r.exc_info and "hook boom" in str(r.exc_info[1])
    ]
    fields = {name: getattr(record, name, "<missing>") for name in ("topic", "timer_id", "attempt")}
    assert fields == {"topic": "ok", "timer_id": "hooked", "attempt": 1}


# -- logging ---------------------------------------------------------------------------------


def _delivery_level(record: logging.LogRecord, timer_ids: set[str]) -> bool:
    """A record about one delivery: logged by the delivery code or in a handler thread,
    or naming one of the test's timers."""
    return (
        record.name == "redistimers.delivery"
        or record.threadName.startswith("redistimers-handler")
        or any(timer_id in record.getMessage() for timer_id in timer_ids)
    )


def test_every_delivery_level_log_record_carries_topic_timer_id_and_attempt(
    make_scheduler: SchedulerFactory,
    redis_client: redis.Redis,
    release: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="redistimers")
    router = _outcomes_router()
    router.handler("expiry", retry=TWO_TRIES)(lambda payload: None)
    lossy = Recorder(redis_client, blocked_until(release))
    router.handler("lossy", lease_ttl=0.3)(lossy)
    scheduler = make_scheduler(router, max_poll_interval=0.5)
    timers = _schedule_outcomes(make_scheduler())
    timers["obs-expired"] = "expiry"
    scheduler.set_timer("expiry", "x", activate_in=0, timer_id="obs-expired")
    # As if two workers had died in its handler: this delivery is attempt 3 of 2.
    redis_client.hset("redistimers:{expiry}:attempts", "obs-expired", 2)
    redis_client.hset("redistimers:{expiry}:lease", "obs-expired", "9*")  # lost, run alone

    with scheduler:
        wait_for(lambda: scheduler.metrics().dead_lettered == 3, 10)
        timers["obs-lost"] = "lossy"
        scheduler.set_timer("lossy", "x", activate_in=0, timer_id="obs-lost")
        lossy.wait_calls(1)
        scheduler.cancel_timer("lossy", "obs-lost")  # its lease is lost at the next renewal
        wait_for(lambda: scheduler.metrics().leases_lost == 1, 5)
        release.set()
        wait_for(lambda: scheduler.metrics().stale_acks == 1, 5)
        for timer_id, topic in timers.items():
            wait_for(timer_gone(scheduler, topic, timer_id), 5)

    ids = set(timers)
    records = [
        r for r in caplog.records
        if r.name.startswith("redistimers") and _delivery_level(r, ids)
    ]
    missing = [
        f"{r.name} {r.levelname} {r.getMessage()!r}"
        for r in records
        if not all(hasattr(r, name) for name in ("topic", "timer_id", "attempt"))
    ]
    assert missing == []
    for record in records:
        timer_id: str = record.timer_id  # type: ignore[attr-defined]
        assert timer_id in ids, record.getMessage()
        assert record.topic == timers[timer_id], record.getMessage()  # type: ignore[attr-defined]
        assert isinstance(record.attempt, int), record.getMessage()  # type: ignore[attr-defined]
        assert record.attempt >= 1  # type: ignore[attr-defined]
    # Every failing scenario logged something, so the check above is not vacuous.
    logged = {(r.timer_id, r.attempt) for r in records}  # type: ignore[attr-defined]
    assert logged >= {
        ("obs-flaky", 1), ("obs-again", 1), ("obs-reject", 1), ("obs-doomed", 1),
        ("obs-doomed", 2), ("obs-typed", 1), ("obs-expired", 3), ("obs-lost", 1),
    }


def test_library_never_prints_to_stdout_or_stderr(
    make_scheduler: SchedulerFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="redistimers")

    def boom(*args: Any) -> None:
        raise RuntimeError("hook boom")

    router = _outcomes_router()
    scheduler = make_scheduler(router, on_success=boom, on_failure=boom, on_dead=boom)
    scheduling = make_scheduler()
    timers = _schedule_outcomes(scheduling)
    with scheduler:
        wait_for(lambda: scheduler.metrics().dead_lettered == 2, 10)
        for timer_id, topic in timers.items():
            wait_for(timer_gone(scheduler, topic, timer_id), 5)
    scheduling.set_timer("typed", {"still": "not an invoice"}, activate_in=60, timer_id="t")
    assert scheduler.get_timer("typed", "t") is not None  # logs a warning: JSON returned
    scheduler.set_timer("flaky", 1, activate_in=0)
    assert scheduler.run_pending() == 1
    assert any(r.levelno >= logging.WARNING for r in caplog.records)  # there was much to say
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")


def test_library_logs_only_through_redistimers_loggers_and_has_no_print_calls() -> None:
    """Static check of the package (the `redistimers` CLI and its demo print by design)."""
    offenders: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("cli.py", "demo.py") or path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                offenders.append(f"{where} print()")
            if isinstance(func, ast.Attribute) and func.attr == "write" and (
                isinstance(func.value, ast.Attribute) and func.value.attr in ("stdout", "stderr")
            ):
                offenders.append(f"{where} sys.{func.value.attr}.write()")
            if isinstance(func, ast.Attribute) and func.attr == "getLogger":
                name = node.args[0] if node.args else None
                if not (
                    isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                    and (name.value == "redistimers" or name.value.startswith("redistimers."))
                ):
                    offenders.append(f"{where} getLogger() outside 'redistimers'")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "logging"
                and func.attr in ("debug", "info", "warning", "error", "exception", "critical",
                                  "log", "basicConfig")
            ):
                offenders.append(f"{where} logging.{func.attr}() on the root logger")
    assert offenders == []
