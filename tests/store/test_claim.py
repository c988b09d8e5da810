"""Claims: due timers in due order by the server clock, leases and attempts."""

from __future__ import annotations

import redis

from redistimers.store import (
    ClaimedTimer,
    ScheduleEntry,
    TimerStore,
    TopicKeys,
)

from ..helpers import wait_for
from .support import (
    GONE,
    TOPIC,
    after,
    at,
    claim,
    envelope,
    schedule,
    server_ms,
    state,
    text,
)

# -- claim ------------------------------------------------------------------------------


def test_claim_takes_only_due_timers_in_due_order(
    store: TimerStore, redis_client: redis.Redis, past: int, future: int
) -> None:
    schedule(
        store,
        TOPIC,
        [at("late", future), at("c", past + 300), at("a", past + 100), at("b", past + 200)],
    )
    result = claim(store)
    assert [t.timer_id for t in result.timers] == ["a", "b", "c"]
    assert [t.due_ms for t in result.timers] == [past + 100, past + 200, past + 300]
    assert all(t.topic == TOPIC for t in result.timers)


def test_claim_uses_the_server_clock(
    store: TimerStore, redis_client: redis.Redis
) -> None:
    now = server_ms(redis_client)
    schedule(store, TOPIC, [at("just-due", now - 1), at("soon", now + 5_000)])
    _, (due,) = schedule(store, TOPIC, [after("in-200ms", 200)])
    first = claim(store)
    assert [t.timer_id for t in first.timers] == ["just-due"]
    assert first.server_now_ms < due
    wait_for(lambda: server_ms(redis_client) >= due)
    second = claim(store)
    assert [t.timer_id for t in second.timers] == ["in-200ms"]
    assert second.server_now_ms >= due


def test_claim_reports_the_server_now(
    store: TimerStore, redis_client: redis.Redis, future: int
) -> None:
    schedule(store, TOPIC, [at("later", future)])
    before = server_ms(redis_client)
    result = claim(store)
    after_ms = server_ms(redis_client)
    assert result.server_now_ms is not None
    assert before <= result.server_now_ms <= after_ms
    assert result.timers == []
    assert result.next_ms == future


def test_claim_of_an_empty_topic_reads_neither_clock_nor_anything_else(
    store: TimerStore, redis_client: redis.Redis
) -> None:
    redis_client.config_resetstat()
    result = claim(store)
    assert (result.timers, result.server_now_ms, result.next_ms) == ([], None, None)
    calls = {
        name: stats["calls"] for name, stats in redis_client.info("commandstats").items()
    }
    assert calls.get("cmdstat_time") is None  # one ZRANGE besides the script itself
    assert calls.get("cmdstat_zrange") == 1


def test_claim_takes_at_most_limit_timers_earliest_first(
    store: TimerStore, past: int
) -> None:
    schedule(store, TOPIC, [at(f"t{i}", past + i) for i in range(5)])
    assert [t.timer_id for t in claim(store, limit=2).timers] == ["t0", "t1"]
    assert [t.timer_id for t in claim(store, limit=2).timers] == ["t2", "t3"]
    assert [t.timer_id for t in claim(store, limit=2).timers] == ["t4"]
    assert claim(store, limit=2).timers == []


def test_claim_with_limit_zero_takes_nothing(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    result = claim(store, limit=0)
    assert result.timers == []
    assert result.next_ms == past
    assert state(redis_client, keys, "a")["lease"] is None


def test_claim_leases_each_timer_with_a_fresh_token(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past), at("b", past + 1)])
    result = claim(store, lease_ms=45_000)
    a, b = result.timers
    assert a.token != b.token
    for timer in (a, b):
        assert timer.attempt == 1
        assert state(redis_client, keys, timer.timer_id) == {
            "score": float(result.server_now_ms + 45_000),
            "body": envelope(timer.timer_id),
            "lease": timer.token,
            "attempts": "1",
        }
    # A leased timer is not due again until its lease runs out.
    assert claim(store).timers == []
    schedule(store, TOPIC, [at("c", past)])
    (c,) = claim(store).timers
    assert c.token not in (a.token, b.token)
    assert int(c.token) > max(int(a.token), int(b.token))


def test_claim_returns_the_stored_envelope(store: TimerStore, past: int) -> None:
    body = envelope({"invoice_id": "INV-1", "amount_cents": 995})
    schedule(store, TOPIC, [ScheduleEntry("a", body, at_ms=past)])
    (timer,) = claim(store).timers
    assert text(timer.envelope) == body
    expected_type = str if store.client.get_encoder().decode_responses else bytes
    assert type(timer.envelope) is expected_type
    assert isinstance(timer.token, str)
    assert isinstance(timer.timer_id, str)


def test_claim_counts_an_attempt_each_time_an_expired_lease_is_claimed_again(
    store: TimerStore, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (first,) = claim(store, lease_ms=50).timers
    assert first.attempt == 1
    results: list[ClaimedTimer] = []
    wait_for(lambda: results.extend(claim(store, lease_ms=50).timers) or results)
    (second,) = results
    assert second.timer_id == "a"
    assert second.attempt == 2
    assert second.token != first.token
    # The delivery after a lost lease is due at the old lease's expiry.
    assert second.due_ms > past


def test_claim_reports_the_next_score_left_in_the_topic(
    store: TimerStore, past: int, future: int
) -> None:
    assert claim(store).next_ms is None
    schedule(store, TOPIC, [at("due", past), at("later", future)])
    first = claim(store, lease_ms=10_000)
    # The next score is the lease expiry of the timer just claimed.
    assert first.next_ms == first.server_now_ms + 10_000
    second = claim(store)
    assert second.timers == []
    assert second.next_ms == first.next_ms
    store.cancel(TOPIC, "due")
    assert claim(store).next_ms == future


def test_claim_next_score_is_a_due_timer_left_behind_by_the_limit(
    store: TimerStore, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past), at("b", past + 5)])
    result = claim(store, limit=1)
    assert [t.timer_id for t in result.timers] == ["a"]
    assert result.next_ms == past + 5


def test_claim_removes_a_due_id_without_a_body(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("real", past + 1)])
    redis_client.zadd(keys.due, {"orphan": past})
    redis_client.hset(keys.attempts, "orphan", 3)
    redis_client.hset(keys.lease, "orphan", "999")
    result = claim(store)
    assert [t.timer_id for t in result.timers] == ["real"]
    assert state(redis_client, keys, "orphan") == GONE


def test_claim_skips_topics_it_is_not_asked_for(store: TimerStore, past: int) -> None:
    schedule(store, "other", [at("x", past)])
    assert claim(store, TOPIC).timers == []
    assert [t.timer_id for t in claim(store, "other").timers] == ["x"]


