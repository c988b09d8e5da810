"""The inspection and repair API of TimerScheduler: topics, stats, list_timers and its
cursor, reschedule and purge, against a real redis-server (and one in cluster mode)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from redistimers import (
    InvalidTimerError,
    RetryPolicy,
    RetryTimer,
    Router,
    TimerScheduler,
    TimerSpec,
    TopicStats,
)
from redistimers.testing import RedisServer

from .helpers import UTC, InvoiceDue, Recorder, SchedulerFactory, running, server_now, wait_for

#: A retry policy that sends a timer to dead letters at its first failure.
ONCE = RetryPolicy(max_attempts=1)


def _fail(payload: Any) -> None:
    raise ValueError(f"card declined: {payload}")


def _dead_on(scheduler_factory: SchedulerFactory, topic: str, *timer_ids: str) -> None:
    """Make dead letters of `timer_ids` on `topic`, through a handler that fails once."""
    router = Router()
    router.handler(topic, retry=ONCE)(_fail)
    scheduler = scheduler_factory(router)
    for timer_id in timer_ids:
        scheduler.set_timer(topic, timer_id, activate_in=0, timer_id=timer_id)
    assert scheduler.run_pending() == len(timer_ids)


def _blocking_router(topic: str, release: threading.Event, client: redis.Redis) -> tuple[
    Router, Recorder
]:
    """A router whose `topic` handler holds its timer (one at a time) until `release`."""
    router = Router()
    recorder = Recorder(client, lambda payload, delivery: release.wait(10) and None)
    router.handler(topic, max_concurrent=1, lease_ttl=30.0)(recorder)
    return router, recorder


# -- topics -----------------------------------------------------------------------------------


def test_topics_lists_every_topic_of_its_namespace_sorted(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    other = make_scheduler(namespace="other-app")
    assert scheduler.topics() == []
    for topic in ("reminders", "invoices", "Zeta", "a.b-c"):
        scheduler.set_timer(topic, 1, activate_in=60)
    other.set_timer("elsewhere", 1, activate_in=60)
    assert scheduler.topics() == ["Zeta", "a.b-c", "invoices", "reminders"]
    assert other.topics() == ["elsewhere"]


# -- stats ------------------------------------------------------------------------------------


def test_stats_counts_pending_due_leased_and_dead_timers_and_the_oldest_due_lag(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    _dead_on(make_scheduler, "bad", "d1", "d2")
    router, recorder = _blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    admin = make_scheduler()
    now = server_now(redis_client)
    admin.set_timer("jobs", 0, activate_at=now - dt.timedelta(seconds=5), timer_id="late")
    admin.set_timer("jobs", 1, activate_in=0, timer_id="due-1")
    admin.set_timer("jobs", 2, activate_in=0, timer_id="due-2")
    admin.set_timer("jobs", 3, activate_in=3600, timer_id="later-1")
    admin.set_timer("jobs", 4, activate_in=7200, timer_id="later-2")
    before = admin.stats("jobs")
    assert (before.pending, before.due, before.leased, before.dead) == (5, 3, 0, 0)
    assert before.oldest_due_lag is not None
    assert dt.timedelta(seconds=5) <= before.oldest_due_lag < dt.timedelta(seconds=7)
    with running(worker, release):
        recorder.wait_calls(1)  # "late" is held by its handler; the other two wait
        during = admin.stats("jobs")
        assert (during.topic, during.pending, during.due, during.leased, during.dead) == (
            "jobs", 5, 2, 1, 0,
        )
        assert during.oldest_due_lag is not None
        assert during.oldest_due_lag < dt.timedelta(seconds=2)  # due-1 is the oldest now
        everything = admin.stats()
    assert sorted(everything) == ["bad", "jobs"]
    assert (everything["jobs"].pending, everything["jobs"].leased) == (5, 1)
    bad = everything["bad"]
    assert (bad.topic, bad.pending, bad.due, bad.leased, bad.dead) == ("bad", 0, 0, 0, 2)
    assert bad.oldest_due_lag is None


def test_stats_of_a_topic_with_nothing_due_has_no_lag_and_unknown_topics_count_zero(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("later", 1, activate_in=60)
    assert scheduler.stats("later").oldest_due_lag is None
    unknown = scheduler.stats("never-used")
    assert (unknown.pending, unknown.due, unknown.leased, unknown.dead) == (0, 0, 0, 0)
    assert scheduler.stats("never-used").oldest_due_lag is None
    assert scheduler.topics() == ["later"]  # counting creates nothing
    with pytest.raises(InvalidTimerError):
        scheduler.stats("bad{topic}")


# -- list_timers ------------------------------------------------------------------------------


def test_list_timers_is_in_due_order_with_equal_times_by_id_and_decodes_known_payloads(
    make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    typed = make_scheduler(router)
    untyped = make_scheduler()
    base = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    plan = {"c": 30, "a": 10, "b": 10, "B": 10, "d": 20, "a2": 10}
    for timer_id, minutes in plan.items():
        typed.set_timer(
            "invoices", InvoiceDue(timer_id, minutes), timer_id=timer_id,
            activate_at=base + dt.timedelta(minutes=minutes), headers={"k": timer_id},
        )
    page = typed.list_timers("invoices")
    assert [t.timer_id for t in page.timers] == ["B", "a", "a2", "b", "d", "c"]
    assert page.cursor is None
    assert [t.due_at for t in page.timers] == [
        base + dt.timedelta(minutes=plan[t.timer_id]) for t in page.timers
    ]
    first = page.timers[0]
    assert first.payload == InvoiceDue("B", 10)
    assert dict(first.headers) == {"k": "B"}
    assert (first.topic, first.attempts, first.leased) == ("invoices", 0, False)
    assert dt.timedelta(minutes=69) < first.remaining <= dt.timedelta(minutes=70)
    assert untyped.list_timers("invoices").timers[0].payload == {
        "invoice_id": "B", "amount_cents": 10,
    }


def test_list_timers_shows_a_leased_timer_at_its_lease_expiry(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router, recorder = _blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    worker.set_timer("jobs", "held", activate_in=0, timer_id="held")
    worker.set_timer("jobs", "waiting", activate_in=10, timer_id="waiting")
    with running(worker, release):
        recorder.wait_calls(1)
        timers = worker.list_timers("jobs").timers
    assert [(t.timer_id, t.leased, t.attempts) for t in timers] == [
        ("waiting", False, 0), ("held", True, 1),
    ]
    assert dt.timedelta(seconds=28) < timers[1].remaining <= dt.timedelta(seconds=30)


def test_list_timers_due_before_keeps_only_timers_due_earlier(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    base = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=1)
    for minutes in range(10):
        scheduler.set_timer(
            "t", minutes, activate_at=base + dt.timedelta(minutes=minutes), timer_id=f"m{minutes}"
        )
    cutoff = base + dt.timedelta(minutes=4)
    listed = scheduler.list_timers("t", due_before=cutoff).timers
    assert [t.timer_id for t in listed] == ["m0", "m1", "m2", "m3"]  # m4 is not *before*
    first = scheduler.list_timers("t", due_before=cutoff, limit=3)
    assert [t.timer_id for t in first.timers] == ["m0", "m1", "m2"]
    assert first.cursor is not None
    rest = scheduler.list_timers("t", due_before=cutoff, limit=3, cursor=first.cursor)
    assert ([t.timer_id for t in rest.timers], rest.cursor) == (["m3"], None)
    in_berlin = cutoff.astimezone(dt.timezone(dt.timedelta(hours=1)))  # same instant
    assert len(scheduler.list_timers("t", due_before=in_berlin).timers) == 4
    assert scheduler.list_timers("t", due_before=base).timers == []


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "5", None])
def test_list_timers_refuses_a_limit_that_is_not_a_positive_int(
    make_scheduler: SchedulerFactory, limit: Any
) -> None:
    with pytest.raises(InvalidTimerError, match="limit"):
        make_scheduler().list_timers("t", limit=limit)


def _cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _cursor_of("just a string"),
        _cursor_of({"score": "1", "id": "x"}),
        _cursor_of(["not a number", "x"]),
        _cursor_of([1.5, "x"]),
        _cursor_of(["1.5", 7]),
        _cursor_of(["1.5", "x", "extra"]),
    ],
)
def test_list_timers_refuses_a_cursor_it_did_not_return(
    make_scheduler: SchedulerFactory, cursor: str
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", 1, activate_in=60)
    with pytest.raises(InvalidTimerError, match="cursor"):
        scheduler.list_timers("t", cursor=cursor)


@pytest.mark.parametrize(
    ("score", "timer_id"),
    [("nan", "x"), ("inf", "x"), ("1_0", "zz"), (" 10", "x"), ("0x10", "x"), ("1e", "x"),
     ("10", ""), ("10", "a\nb")],
)
def test_list_timers_refuses_a_cursor_with_a_score_or_id_no_timer_can_have(
    make_scheduler: SchedulerFactory, score: str, timer_id: str
) -> None:
    """Not a raw Redis error from the list script: Python's float() reads "1_0" as 10.0,
    Lua's tonumber does not."""
    scheduler = make_scheduler()
    scheduler.set_timer("t", 1, activate_in=60, timer_id="x")
    with pytest.raises(InvalidTimerError, match="cursor"):
        scheduler.list_timers("t", cursor=_cursor_of([score, timer_id]))


@pytest.mark.parametrize("score", ["1796289808123.456", "-5", "1.5e+20", "0"])
def test_list_timers_takes_a_cursor_with_any_score_redis_writes(
    make_scheduler: SchedulerFactory, score: str
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", 1, activate_in=60, timer_id="x")
    scheduler.list_timers("t", cursor=_cursor_of([score, "x"]))


def _random_id(rng: random.Random) -> str:
    alphabet = "ABYZabyz019-_."  # upper case sorts before lower case, as Redis orders bytes
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))


def test_cursor_paging_stays_exact_while_timers_come_and_go_across_runs_of_equal_times(
    make_scheduler: SchedulerFactory,
) -> None:
    """Each page is exactly the first `limit` timers after the last one seen, in (due
    time, id) order, whatever was added or removed since: nothing twice, nothing skipped.
    Most timers share one due time, so many page boundaries fall inside that run."""
    scheduler = make_scheduler()
    rng = random.Random(20261123)
    base = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=1)
    run_ms, other_ms = 5_000, [0, 1_000, 2_500, 7_000, 9_999]
    model: dict[str, int] = {}  # id -> ms after base

    def add(timer_id: str, offset_ms: int) -> None:
        at = base + dt.timedelta(milliseconds=offset_ms)
        scheduler.set_timer("t", None, activate_at=at, timer_id=timer_id)
        model[timer_id] = offset_ms

    def remove(timer_id: str) -> None:
        assert scheduler.cancel_timer("t", timer_id)
        del model[timer_id]

    while len(model) < 240:
        add(_random_id(rng), run_ms if rng.random() < 0.75 else rng.choice(other_ms))
    present_throughout = set(model)
    seen: list[str] = []
    last: tuple[int, str] | None = None
    cursor = None
    for _page_number in range(1000):
        page = scheduler.list_timers("t", limit=7, cursor=cursor)
        got = [(round((t.due_at - base) / dt.timedelta(milliseconds=1)), t.timer_id)
               for t in page.timers]
        expected = sorted(
            (offset, timer_id) for timer_id, offset in model.items()
            if last is None or (offset, timer_id) > last
        )[:7]
        assert got == expected
        seen += [timer_id for _, timer_id in got]
        if page.cursor is None:
            break
        cursor, last = page.cursor, got[-1]
        for _ in range(rng.randint(0, 3)):  # new timers, before and after the cursor
            timer_id = _random_id(rng)
            if timer_id not in model:
                add(timer_id, run_ms if rng.random() < 0.7 else rng.choice(other_ms))
        for timer_id in rng.sample(sorted(model), rng.randint(0, 2)):
            remove(timer_id)
            present_throughout.discard(timer_id)
        if rng.random() < 0.3 and last[1] in model:  # even the timer the cursor names
            remove(last[1])
            present_throughout.discard(last[1])
    else:
        pytest.fail("paging never ended")
    assert len(seen) == len(set(seen)), "a timer was listed twice"
    assert present_throughout <= set(seen), "a timer present all along was skipped"


def test_cursor_paging_through_a_long_run_of_equal_due_times_lists_each_once(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    at = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    ids = [f"t{i:03d}" for i in range(250)]
    for timer_id in reversed(ids):
        scheduler.set_timer("t", None, activate_at=at, timer_id=timer_id)
    listed: list[str] = []
    cursor = None
    while True:
        page = scheduler.list_timers("t", limit=100, cursor=cursor)
        listed += [t.timer_id for t in page.timers]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert listed == ids


# -- reschedule -------------------------------------------------------------------------------


def test_reschedule_moves_a_pending_timer_keeping_payload_headers_and_attempts(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()

    @router.handler("invoices", payload=InvoiceDue)
    def later(invoice: InvoiceDue) -> None:
        raise RetryTimer(3600)

    scheduler = make_scheduler(router)
    scheduler.set_timer(
        "invoices", InvoiceDue("INV-1", 995), activate_in=0, timer_id="INV-1",
        headers={"tenant": "acme"}, correlation_id="req-42",
    )
    assert scheduler.run_pending() == 1  # attempt 1 asks to be retried in an hour
    before = scheduler.get_timer("invoices", "INV-1")
    assert before is not None
    assert before.attempts == 1
    assert scheduler.reschedule("invoices", "INV-1", activate_in=dt.timedelta(hours=5))
    after = scheduler.get_timer("invoices", "INV-1")
    assert after is not None
    assert dt.timedelta(hours=4, minutes=59) < after.remaining <= dt.timedelta(hours=5)
    assert (after.payload, dict(after.headers), after.correlation_id, after.attempts) == (
        InvoiceDue("INV-1", 995), {"tenant": "acme"}, "req-42", 1,
    )
    moment = dt.datetime(2031, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert scheduler.reschedule("invoices", "INV-1", activate_at=moment)
    moved = scheduler.get_timer("invoices", "INV-1")
    assert moved is not None
    assert moved.due_at == moment


def test_reschedule_keeps_a_periodic_timers_period(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("reports", "daily", every=dt.timedelta(days=1), timer_id="r")
    assert scheduler.reschedule("reports", "r", activate_in=60)
    timer = scheduler.get_timer("reports", "r")
    assert timer is not None
    assert timer.every == dt.timedelta(days=1)
    assert timer.remaining <= dt.timedelta(seconds=60)


def test_reschedule_refuses_a_timer_whose_handler_is_running(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router, recorder = _blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    admin = make_scheduler()
    admin.set_timer("jobs", "x", activate_in=0, timer_id="held")
    with running(worker, release):
        recorder.wait_calls(1)
        leased = admin.get_timer("jobs", "held")
        assert leased is not None
        assert leased.leased
        assert not admin.reschedule("jobs", "held", activate_in=3600)
        still = admin.get_timer("jobs", "held")
        assert still is not None
        assert still.leased
        assert still.due_at == leased.due_at  # not moved under its handler
        release.set()
        wait_for(lambda: admin.get_timer("jobs", "held") is None)  # acked: done, not moved
    assert len(recorder.calls) == 1


def test_reschedule_of_an_unknown_timer_returns_false_and_creates_nothing(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="known")
    assert not scheduler.reschedule("jobs", "unknown", activate_in=1)
    assert not scheduler.reschedule("no-such-topic", "known", activate_in=1)
    assert scheduler.get_timer("jobs", "unknown") is None
    assert [t.timer_id for t in scheduler.list_timers("jobs").timers] == ["known"]
    assert not any(b"no-such-topic" in key for key in redis_client.keys("*"))


@pytest.mark.parametrize(
    "when",
    [
        {},
        {"activate_in": 1, "activate_at": dt.datetime(2031, 1, 1, tzinfo=UTC)},
        {"activate_in": -1},
        {"activate_at": dt.datetime(2031, 1, 1)},
    ],
    ids=["neither", "both", "negative", "naive"],
)
def test_reschedule_refuses_a_bad_time(make_scheduler: SchedulerFactory, when: Any) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="j")
    with pytest.raises(InvalidTimerError):
        scheduler.reschedule("jobs", "j", **when)
    timer = scheduler.get_timer("jobs", "j")
    assert timer is not None
    assert timer.remaining > dt.timedelta(seconds=50)


@pytest.mark.parametrize("moved_by", ["the worker itself", "another scheduler"])
def test_reschedule_earlier_wakes_a_running_worker_so_the_timer_fires_promptly(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, moved_by: str
) -> None:
    router = Router()
    recorder = Recorder(redis_client)
    router.handler("jobs")(recorder)
    worker = make_scheduler(router, max_poll_interval=60)  # it would sleep for a minute
    mover = worker if moved_by == "the worker itself" else make_scheduler()
    worker.set_timer("jobs", "x", activate_in=3600, timer_id="j")
    with worker:
        time.sleep(0.2)  # the poller has claimed nothing and gone to sleep
        moved_at = time.monotonic()
        assert mover.reschedule("jobs", "j", activate_in=0)
        recorder.wait_calls(1, timeout=5)
        assert time.monotonic() - moved_at < 1.0


def test_reschedule_later_keeps_a_timer_from_firing_at_its_old_time(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    recorder = Recorder(redis_client)
    router.handler("jobs")(recorder)
    worker = make_scheduler(router)
    worker.set_timer("jobs", "x", activate_in=0.4, timer_id="j")
    with worker:
        assert worker.reschedule("jobs", "j", activate_in=3600)
        time.sleep(0.8)
    assert recorder.calls == []
    timer = worker.get_timer("jobs", "j")
    assert timer is not None
    assert timer.remaining > dt.timedelta(minutes=59)


# -- purge ------------------------------------------------------------------------------------


def test_purge_removes_every_pending_timer_of_a_topic_and_keeps_its_dead_letters(
    make_scheduler: SchedulerFactory,
) -> None:
    _dead_on(make_scheduler, "jobs", "dead-1", "dead-2")
    scheduler = make_scheduler()
    for i in range(3):
        scheduler.set_timer("jobs", i, activate_in=60 * (i + 1), timer_id=f"p{i}")
    scheduler.set_timer("other", 1, activate_in=60, timer_id="stays")
    assert scheduler.purge("jobs") == 3
    stats = scheduler.stats("jobs")
    assert (stats.pending, stats.due, stats.leased, stats.dead) == (0, 0, 0, 2)
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["dead-1", "dead-2"]
    assert scheduler.get_timer("jobs", "p0") is None
    assert scheduler.list_timers("jobs").timers == []
    assert scheduler.get_timer("other", "stays") is not None
    assert scheduler.purge("jobs") == 0
    assert scheduler.purge("never-used") == 0
    scheduler.set_timer("jobs", "again", activate_in=60, timer_id="again")  # still usable
    assert [t.timer_id for t in scheduler.list_timers("jobs").timers] == ["again"]
    assert "jobs" in scheduler.topics()


def test_purge_while_a_handler_runs_counts_it_and_its_ack_brings_nothing_back(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router, recorder = _blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    worker.set_timer("jobs", "held", activate_in=0, timer_id="held")
    worker.set_timer("jobs", "waiting", activate_in=60, timer_id="waiting")
    with running(worker, release):
        recorder.wait_calls(1)
        assert worker.purge("jobs") == 2
        release.set()
        wait_for(lambda: worker.metrics().stale_acks == 1)
    assert worker.stats("jobs").pending == 0
    assert worker.get_timer("jobs", "held") is None


# -- one cluster slot per operation -----------------------------------------------------------

KEY = re.compile(r"^(?P<ns>[^:]+):\{(?P<topic>[^}]+)\}:(?P<kind>\w+)(:[0-9a-f]+)?$")


def _exercise_everything(scheduler: TimerScheduler, worker: TimerScheduler) -> None:
    """Every inspection and repair operation, on two topics with timers in every state."""
    for topic in ("invoices", "reminders"):
        scheduler.set_timer(topic, 1, activate_in=60, timer_id="pending", headers={"a": "b"})
        scheduler.set_timer(topic, 2, activate_in=0, timer_id="fails")
    assert worker.run_pending() == 2  # "fails" of both topics: dead letters
    assert scheduler.topics() == ["invoices", "reminders"]
    assert scheduler.stats()["invoices"].dead == 1
    assert scheduler.stats("reminders").pending == 1
    page = scheduler.list_timers("invoices", limit=1)
    assert scheduler.list_timers("invoices", limit=1, cursor=page.cursor).timers == []
    assert scheduler.get_timer("invoices", "pending") is not None
    assert scheduler.reschedule("invoices", "pending", activate_in=120)
    assert [d.timer_id for d in scheduler.dead_timers("invoices")] == ["fails"]
    assert scheduler.requeue_dead("invoices", "fails") == 1
    assert scheduler.requeue_dead("reminders") == 1
    assert worker.run_pending() == 2
    assert scheduler.purge_dead("reminders") == 1
    assert scheduler.cancel_timer("reminders", "pending")
    assert scheduler.purge("invoices") == 1


def test_every_key_of_a_topic_hashes_to_the_topics_one_cluster_slot(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    failing = Router()
    for topic in ("invoices", "reminders"):
        failing.handler(topic, retry=ONCE)(_fail)
    scheduler = make_scheduler()
    _exercise_everything(scheduler, make_scheduler(failing))
    router, recorder = _blocking_router("invoices", release, redis_client)
    worker = make_scheduler(router)
    scheduler.set_timer("invoices", "held", activate_in=0, timer_id="held")
    scheduler.set_timer("invoices", "waiting", activate_in=60, timer_id="waiting")
    _dead_on(make_scheduler, "reminders", "dead")
    with running(worker, release):
        recorder.wait_calls(1)  # a lease exists now
        keys = sorted(k.decode() for k in redis_client.scan_iter(match="redistimers:*"))
    kinds: dict[str, set[str]] = {}
    for key in keys:
        if key == "redistimers:topics":
            continue
        match = KEY.match(key)
        assert match is not None, f"key {key!r} does not carry its topic as hash tag"
        topic = match["topic"]
        assert key_slot(key.encode()) == key_slot(topic.encode()), key
        kinds.setdefault(topic, set()).add(match["kind"])
    assert kinds["invoices"] >= {"due", "body", "lease", "attempts", "seq"}
    assert kinds["reminders"] >= {"dead", "dead_body"}
    assert key_slot(b"invoices") != key_slot(b"reminders")  # the check means something


def _cluster_port() -> int:
    """A free port under 55536 whose cluster bus port (10000 higher) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """A redis-server in cluster mode owning every slot: a command or script whose keys
    are in more than one slot fails there with CROSSSLOT."""
    server = RedisServer(
        port=_cluster_port(),
        config={"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"},
    )
    url = server.start()
    client = server.client(decode_responses=True)
    client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
    wait_for(lambda: "cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), 20)
    client.close()
    yield url
    server.close()


@pytest.mark.slow
def test_every_operation_runs_on_a_cluster_node_that_refuses_cross_slot_commands(
    cluster_url: str,
) -> None:
    client = redis.Redis.from_url(cluster_url)
    with pytest.raises(redis.exceptions.ResponseError, match="same slot"):  # the control
        client.execute_command(
            "EVAL", "return 1", 2, "redistimers:{invoices}:due", "redistimers:{reminders}:due"
        )
    failing = Router()
    for topic in ("invoices", "reminders"):
        failing.handler(topic, retry=ONCE)(_fail)
    scheduler = TimerScheduler.from_url(cluster_url)
    worker = TimerScheduler.from_url(cluster_url, routers=[failing])
    _exercise_everything(scheduler, worker)
    ok = Router()
    recorder = Recorder(client)
    ok.handler("invoices")(recorder)
    with TimerScheduler.from_url(cluster_url, routers=[ok]) as delivering:
        scheduler.set_timer("invoices", "live", activate_in=0)
        recorder.wait_calls(1)
        assert delivering.healthy
    client.close()


def test_a_topic_is_listed_again_when_timers_come_back_after_an_external_flushall(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """Topics are added to the list whenever a write finds them empty, not once per
    process: a FLUSHALL (or a restore) must not hide a topic until restarts."""
    scheduler = make_scheduler()
    scheduler.set_timer("a", 1, activate_in=60)
    assert scheduler.topics() == ["a"]
    redis_client.flushall()
    assert scheduler.topics() == []
    scheduler.set_timer("a", 1, activate_in=60)
    assert scheduler.topics() == ["a"]
    redis_client.flushall()
    scheduler.set_timers([TimerSpec("a", 1, activate_in=60), TimerSpec("b", 1, activate_in=60)])
    assert scheduler.topics() == ["a", "b"]


def test_topics_are_exactly_those_with_pending_timers_or_dead_letters(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """Not every topic ever scheduled: a purged topic is gone from the list, a topic
    with dead letters only stays, and a topic another process wrote appears."""
    failing = Router()
    failing.handler("dying", retry=ONCE)(lambda payload: 1 / 0)
    scheduler = make_scheduler(failing)
    scheduler.set_timer("kept", 1, activate_in=60)
    scheduler.set_timer("purged", 1, activate_in=60)
    scheduler.set_timer("dying", 1, activate_in=0)
    assert scheduler.run_pending() == 1
    assert scheduler.topics() == ["dying", "kept", "purged"]
    assert scheduler.purge("purged") == 1
    assert scheduler.topics() == ["dying", "kept"]
    assert scheduler.purge_dead("dying") == 1
    assert scheduler.topics() == ["kept"]
    assert scheduler.stats("purged") == TopicStats(  # asked about, it has nothing: no error
        topic="purged", pending=0, due=0, leased=0, dead=0, oldest_due_lag=None
    )
    assert set(scheduler.stats()) == {"kept"}
    other = make_scheduler()
    other.set_timer("purged", 2, activate_in=60)  # set again, from another process
    assert scheduler.topics() == ["kept", "purged"]
