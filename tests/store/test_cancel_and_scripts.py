"""Cancel and inspect, batches of several topics, and scripts loaded again after a flush."""

from __future__ import annotations

import redis

from redistimers.store import (
    SCRIPT_NAMES,
    TimerStore,
    TopicKeys,
    script_sha,
)

from .support import (
    GONE,
    LEASE_MS,
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

# -- cancel and inspect -----------------------------------------------------------------


def test_cancel_removes_a_pending_timer(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, future: int
) -> None:
    schedule(store, TOPIC, [at("a", future), at("b", future)])
    assert store.cancel(TOPIC, "a") is True
    assert state(redis_client, keys, "a") == GONE
    assert state(redis_client, keys, "b")["body"] is not None
    assert store.cancel(TOPIC, "a") is False


def test_cancel_removes_a_leased_timer_with_its_lease_and_attempts(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    schedule(store, TOPIC, [at("a", past)])
    claim(store)
    assert store.cancel(TOPIC, "a") is True
    assert state(redis_client, keys, "a") == GONE


def test_cancel_of_an_unknown_timer_is_false(store: TimerStore) -> None:
    assert store.cancel(TOPIC, "nope") is False


def test_inspect_reads_a_stored_timer_with_the_server_now(
    store: TimerStore, redis_client: redis.Redis, past: int, future: int
) -> None:
    schedule(store, TOPIC, [at("a", future)])
    before = server_ms(redis_client)
    stored = store.inspect(TOPIC, "a")
    assert stored is not None
    assert text(stored.envelope) == envelope("a")
    assert stored.score_ms == future
    assert before <= stored.server_now_ms <= server_ms(redis_client)
    assert stored.attempts == 0
    assert stored.leased is False
    assert store.inspect(TOPIC, "unknown") is None


def test_inspect_shows_a_leased_timer(store: TimerStore, past: int) -> None:
    schedule(store, TOPIC, [at("a", past)])
    result = claim(store, lease_ms=20_000)
    stored = store.inspect(TOPIC, "a")
    assert stored is not None
    assert stored.leased is True
    assert stored.attempts == 1
    assert stored.score_ms == result.server_now_ms + 20_000


# -- batches and scripts ----------------------------------------------------------------


def test_one_batch_claims_several_topics_and_settles_in_one_round_trip(
    store: TimerStore, redis_client: redis.Redis, past: int
) -> None:
    schedule(store, "x", [at("x1", past)])
    schedule(store, "y", [at("y1", past)])
    (x1,) = claim(store, "x").timers
    schedule(store, "x", [at("x2", past)])
    batch = store.batch()
    assert not batch
    batch.ack("x", [("x1", x1.token, None)])
    batch.claim("x", LEASE_MS, 10)
    batch.claim("y", LEASE_MS, 10)
    assert batch
    acked, claim_x, claim_y = store.execute(batch)
    assert acked == []
    assert [t.timer_id for t in claim_x.timers] == ["x2"]
    assert [t.timer_id for t in claim_y.timers] == ["y1"]
    assert redis_client.zscore(store.keys("x").due, "x1") is None


def test_scripts_are_loaded_again_after_script_flush(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int
) -> None:
    redis_client.script_flush()
    schedule(store, TOPIC, [at("a", past), at("b", past)])  # NOSCRIPT on a fresh cache
    assert all(redis_client.script_exists(*(script_sha(name) for name in SCRIPT_NAMES)))
    redis_client.script_flush()
    a, b = claim(store).timers
    redis_client.script_flush()
    batch = store.batch()
    batch.ack(TOPIC, [("a", a.token, None)])
    batch.retry(TOPIC, [("b", b.token, 0)])
    batch.claim(TOPIC, LEASE_MS, 10)
    acked, retried, claimed = store.execute(batch)
    assert acked == []
    assert retried == []
    assert [(t.timer_id, t.attempt) for t in claimed.timers] == [("b", 2)]
    assert state(redis_client, keys, "a") == GONE
    redis_client.script_flush()
    assert store.cancel(TOPIC, "b") is True


def test_load_scripts_loads_every_script(store: TimerStore, redis_client: redis.Redis) -> None:
    redis_client.script_flush()
    store.load_scripts()
    assert redis_client.script_exists(*(script_sha(name) for name in SCRIPT_NAMES)) == [True] * len(
        SCRIPT_NAMES
    )


def test_timer_ids_with_any_characters_survive_the_protocol(
    store: TimerStore, redis_client: redis.Redis, past: int
) -> None:
    ids = ["with space", "ünïcode-✓", "{braces}", "colon:id", "x" * 256]
    schedule(store, TOPIC, [at(i, past + n) for n, i in enumerate(ids)])
    claimed = claim(store).timers
    assert [t.timer_id for t in claimed] == ids
    assert settle(store, "ack", TOPIC, [(t.timer_id, t.token) for t in claimed]) == []
    assert redis_client.exists(store.keys(TOPIC).due) == 0
