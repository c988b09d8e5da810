"""Settling deliveries: ack, retry, release, extend and bury, fenced by tokens."""

from __future__ import annotations

import json

import redis

from redistimers import defaults
from redistimers.store import (
    ClaimedTimer,
    TimerStore,
    TopicKeys,
)

from ..helpers import wait_for
from .support import (
    GONE,
    TOPIC,
    at,
    claim,
    envelope,
    schedule,
    server_ms,
    settle,
    state,
    text,
)

# -- ack --------------------------------------------------------------------------------


def test_ack_with_the_right_token_removes_everything(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past), at("b", past)])
    a, b = claim(store).timers
    assert settle(store, "ack", TOPIC, [(a.timer_id, a.token)]) == []
    assert state(redis_client, keys, "a") == GONE
    assert state(redis_client, keys, "b")["lease"] == b.token


def test_ack_after_reschedule_is_stale_and_keeps_the_new_version(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int, future: int
) -> None:
    schedule(store, TOPIC, [at("a", past, payload="old")])
    (old,) = claim(store).timers
    schedule(store, TOPIC, [at("a", future, payload="new")])
    assert settle(store, "ack", TOPIC, [("a", old.token)]) == ["a"]
    assert state(redis_client, keys, "a") == {
        "score": float(future),
        "body": envelope("new"),
        "lease": None,
        "attempts": None,
    }


def test_ack_after_reschedule_and_new_claim_keeps_the_new_delivery(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past, payload="old")])
    (old,) = claim(store).timers
    schedule(store, TOPIC, [at("a", past, payload="new")])
    (new,) = claim(store).timers
    assert text(new.envelope) == envelope("new")
    assert new.attempt == 1
    assert settle(store, "ack", TOPIC, [("a", old.token)]) == ["a"]
    assert state(redis_client, keys, "a")["lease"] == new.token
    assert settle(store, "ack", TOPIC, [("a", new.token)]) == []
    assert state(redis_client, keys, "a") == GONE


def test_ack_after_cancel_is_stale_and_writes_nothing(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (timer,) = claim(store).timers
    assert store.cancel(TOPIC, "a") is True
    assert settle(store, "ack", TOPIC, [("a", timer.token)]) == ["a"]
    assert state(redis_client, keys, "a") == GONE


def test_ack_of_an_expired_lease_claimed_again_is_stale(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (first,) = claim(store, lease_ms=50).timers
    again: list[ClaimedTimer] = []
    wait_for(lambda: again.extend(claim(store).timers) or again)
    assert settle(store, "ack", TOPIC, [("a", first.token)]) == ["a"]
    assert state(redis_client, keys, "a")["lease"] == again[0].token
    assert state(redis_client, keys, "a")["body"] is not None


def test_ack_of_many_reports_only_the_stale_ones(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past), at("b", past), at("c", past)])
    a, b, c = claim(store).timers
    stale = settle(store, "ack", TOPIC, [("a", a.token), ("b", "wrong"), ("c", c.token)])
    assert stale == ["b"]
    assert state(redis_client, keys, "a") == GONE
    assert state(redis_client, keys, "c") == GONE
    assert state(redis_client, keys, "b")["lease"] == b.token


def test_ack_of_more_timers_than_one_script_call_settles(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    count = defaults.SETTLE_BATCH_MAX + 200
    schedule(store, TOPIC, [at(f"t{i}", past + i) for i in range(count)])
    claimed = claim(store, limit=count).timers + claim(store, limit=count).timers
    assert len(claimed) == count
    assert settle(store, "ack", TOPIC, [(t.timer_id, t.token) for t in claimed]) == []
    assert redis_client.exists(keys.due, keys.body, keys.lease, keys.attempts) == 0


# -- retry and release ------------------------------------------------------------------


def test_retry_moves_the_score_and_clears_the_lease_keeping_attempts(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (timer,) = claim(store).timers
    before = server_ms(redis_client)
    assert settle(store, "retry", TOPIC, [("a", timer.token, 7_000)]) == []
    after_ms = server_ms(redis_client)
    now_state = state(redis_client, keys, "a")
    assert before + 7_000 <= now_state["score"] <= after_ms + 7_000
    assert now_state["lease"] is None
    assert now_state["attempts"] == "1"
    assert now_state["body"] == envelope("a")


def test_retry_without_delay_is_claimed_again_as_the_next_attempt(
    store: TimerStore, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (first,) = claim(store).timers
    settle(store, "retry", TOPIC, [("a", first.token, 0)])
    (second,) = claim(store).timers
    assert second.attempt == 2
    assert second.token != first.token


def test_retry_with_a_stale_token_changes_nothing(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (timer,) = claim(store).timers
    before = state(redis_client, keys, "a")
    assert settle(store, "retry", TOPIC, [("a", "not-the-token", 0)]) == ["a"]
    assert state(redis_client, keys, "a") == before
    assert before["lease"] == timer.token


def test_retry_after_cancel_does_not_bring_the_timer_back(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (timer,) = claim(store).timers
    store.cancel(TOPIC, "a")
    assert settle(store, "retry", TOPIC, [("a", timer.token, 0)]) == ["a"]
    assert state(redis_client, keys, "a") == GONE


def test_retry_that_becomes_the_earliest_publishes_a_wake_up(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int, future: int
) -> None:
    schedule(store, TOPIC, [at("a", past), at("later", future)])
    (timer,) = claim(store).timers
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.wake)
    try:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        settle(store, "retry", TOPIC, [("a", timer.token, 1_000)])
        message = pubsub.get_message(timeout=5)
        assert message is not None
        assert message["data"] == b"1"
    finally:
        pubsub.close()


def test_release_hands_the_timer_back_without_counting_the_attempt(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (first,) = claim(store).timers
    assert settle(store, "release", TOPIC, [("a", first.token, "")]) == []
    released = state(redis_client, keys, "a")
    assert released["lease"] is None
    assert released["attempts"] is None
    assert released["score"] <= server_ms(redis_client)
    (again,) = claim(store).timers
    assert again.attempt == 1


def test_release_after_a_failed_attempt_keeps_that_attempt(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (first,) = claim(store).timers
    settle(store, "retry", TOPIC, [("a", first.token, 0)])
    (second,) = claim(store).timers
    assert second.attempt == 2
    settle(store, "release", TOPIC, [("a", second.token, "")])
    assert state(redis_client, keys, "a")["attempts"] == "1"
    (third,) = claim(store).timers
    assert third.attempt == 2


def test_release_with_a_stale_token_changes_nothing(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    claim(store)
    before = state(redis_client, keys, "a")
    assert settle(store, "release", TOPIC, [("a", "0", "")]) == ["a"]
    assert state(redis_client, keys, "a") == before


# -- extend -----------------------------------------------------------------------------


def test_extend_renews_only_leases_whose_token_matches(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past), at("b", past), at("c", past)])
    a, _, c = claim(store, lease_ms=1_000).timers
    b_score = redis_client.zscore(keys.due, "b")
    store.cancel(TOPIC, "c")
    before = server_ms(redis_client)
    lost = settle(
        store, "extend", TOPIC, 60_000, [("a", a.token), ("b", "wrong"), ("c", c.token)]
    )
    after_ms = server_ms(redis_client)
    assert lost == ["b", "wrong", "c", c.token]  # (id, token) of each lost lease
    a_score = redis_client.zscore(keys.due, "a")
    assert a_score is not None
    assert before + 60_000 <= a_score <= after_ms + 60_000
    assert redis_client.zscore(keys.due, "b") == b_score
    assert state(redis_client, keys, "c") == GONE  # a lost lease is not brought back
    assert state(redis_client, keys, "a")["lease"] == a.token


def test_extend_reports_a_lease_lost_to_a_reschedule(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int, future: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (timer,) = claim(store).timers
    schedule(store, TOPIC, [at("a", future)])
    assert settle(store, "extend", TOPIC, 60_000, [("a", timer.token)]) == ["a", timer.token]
    assert redis_client.zscore(keys.due, "a") == future


# -- bury -------------------------------------------------------------------------------


def test_bury_moves_the_timer_to_the_dead_letters(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    (timer,) = claim(store).timers
    record = json.dumps({"envelope": envelope("a"), "error": {"reason": "failed"}})
    before = server_ms(redis_client)
    assert settle(store, "bury", TOPIC, [("a", timer.token, record)]) == []
    after_ms = server_ms(redis_client)
    assert state(redis_client, keys, "a") == GONE
    dead_at = redis_client.zscore(keys.dead, "a")
    assert dead_at is not None
    assert before <= dead_at <= after_ms
    assert redis_client.hget(keys.dead_body, "a") == record.encode()
    assert claim(store).timers == []


def test_bury_with_a_stale_token_changes_nothing(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    claim(store)
    before = state(redis_client, keys, "a")
    assert settle(store, "bury", TOPIC, [("a", "stale", "{}")]) == ["a"]
    assert state(redis_client, keys, "a") == before
    assert redis_client.exists(keys.dead, keys.dead_body) == 0


