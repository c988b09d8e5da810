"""The scheduler's queries the dashboard reads: the id-prefix filter of list_timers (paging
stays exact), due_per_minute and server_info, against the session's real redis-server."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from redistimers import InvalidTimerError, ServerInfo, TimerScheduler, TimerSpec, defaults

from .helpers import SchedulerFactory


def _all_pages(scheduler: TimerScheduler, topic: str, **options: object) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = scheduler.list_timers(topic, cursor=cursor, **options)  # type: ignore[arg-type]
        pages.append([t.timer_id for t in page.timers])
        cursor = page.cursor
        if cursor is None:
            return pages


def test_an_id_prefix_lists_only_matching_timers_each_once_in_full_pages(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    for n in range(30):
        scheduler.set_timer("jobs", n, activate_in=60 + n, timer_id=f"{'a' if n % 3 else 'b'}-{n}")
    pages = _all_pages(scheduler, "jobs", limit=4, id_prefix="b-")
    expected = [f"b-{n}" for n in range(0, 30, 3)]
    assert [i for page in pages for i in page] == expected
    assert [len(page) for page in pages] == [4, 4, 2]
    assert [i for page in _all_pages(scheduler, "jobs", limit=7, id_prefix="") for i in page] == [
        t.timer_id for t in scheduler.list_timers("jobs", limit=100).timers
    ]


def test_an_id_prefix_combines_with_due_before(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    for n in range(6):
        scheduler.set_timer("jobs", n, activate_in=60 * (n + 1), timer_id=f"x{n}")
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60 * 3 + 30)
    page = scheduler.list_timers("jobs", id_prefix="x", due_before=soon)
    assert [t.timer_id for t in page.timers] == ["x0", "x1", "x2"]
    assert scheduler.list_timers("jobs", id_prefix="y").timers == []


def test_a_prefix_that_is_not_text_is_refused(make_scheduler: SchedulerFactory) -> None:
    with pytest.raises(InvalidTimerError, match="id_prefix"):
        make_scheduler().list_timers("jobs", id_prefix=3)  # type: ignore[arg-type]


def test_due_per_minute_counts_each_coming_minute(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    for seconds in (5, 10, 70, 130, 135, 140, 3 * 3600):
        scheduler.set_timer("jobs", seconds, activate_in=seconds)
    scheduler.set_timer("jobs", "late", activate_in=0)  # due already: not ahead
    forecast = scheduler.due_per_minute("jobs", minutes=60)
    assert forecast.topic == "jobs"
    assert len(forecast.counts) == 60
    assert forecast.counts[:4] == [2, 1, 3, 0]
    assert sum(forecast.counts) == 6
    assert abs((forecast.start - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 5
    assert scheduler.due_per_minute("empty", minutes=3).counts == [0, 0, 0]


@pytest.mark.parametrize("minutes", [-1, 24 * 60 + 1])
def test_due_per_minute_refuses_a_range_it_cannot_count_cheaply(
    make_scheduler: SchedulerFactory, minutes: int
) -> None:
    with pytest.raises(InvalidTimerError, match="minutes"):
        make_scheduler().due_per_minute("jobs", minutes=minutes)


def test_server_info_is_what_info_says(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    info = make_scheduler().server_info()
    assert isinstance(info, ServerInfo)
    raw = redis_client.info()
    assert info.version == raw["redis_version"]
    assert info.used_memory > 0
    assert info.maxmemory == (raw["maxmemory"] or None)


def test_a_rare_prefix_walks_a_bounded_stretch_per_call_and_pages_go_on(
    make_scheduler: SchedulerFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A script blocks Redis while it runs: a prefix's walk past other ids stops after
    LIST_WALK_MAX timers with a short page and a cursor, and paging still finds each
    matching timer once."""
    monkeypatch.setattr(defaults, "LIST_WALK_MAX", 250)
    scheduler = make_scheduler()
    scheduler.set_timers([
        TimerSpec("walk", i, activate_in=60 + i, timer_id=f"{'hit' if i % 300 == 7 else 'x'}-{i}")
        for i in range(1000)
    ])
    pages, found, cursor = 0, [], None
    while True:
        page = scheduler.list_timers("walk", limit=2, cursor=cursor, id_prefix="hit-")
        pages += 1
        found += [t.timer_id for t in page.timers]
        cursor = page.cursor
        if cursor is None:
            break
    assert found == ["hit-7", "hit-307", "hit-607", "hit-907"]
    assert pages >= 1000 // 250  # the walk was cut into calls of 250 at most
