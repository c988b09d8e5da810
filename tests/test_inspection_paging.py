"""list_timers and its cursor: due order, filters, and pages that stay exact while timers
come and go."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import threading
from typing import Any

import pytest
import redis

from redistimers import (
    InvalidTimerError,
    Router,
)

from ._inspection_support import blocking_router
from .helpers import UTC, InvoiceDue, SchedulerFactory, running

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
    router, recorder = blocking_router("jobs", release, redis_client)
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


