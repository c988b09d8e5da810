"""Keys carry the topic as hash tag; schedule writes, replaces and wakes."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from redistimers.store import (
    ScheduleEntry,
    TimerStore,
    TopicKeys,
)

from .support import (
    TOPIC,
    after,
    at,
    claim,
    envelope,
    schedule,
    server_ms,
    settle,
    state,
)

# -- keys -------------------------------------------------------------------------------


def test_topic_keys_follow_the_documented_layout(store: TimerStore) -> None:
    keys = store.keys("invoices")
    assert keys.due == "redistimers:{invoices}:due"
    assert keys.body == "redistimers:{invoices}:body"
    assert keys.lease == "redistimers:{invoices}:lease"
    assert keys.attempts == "redistimers:{invoices}:attempts"
    assert keys.seq == "redistimers:{invoices}:seq"
    assert keys.dead == "redistimers:{invoices}:dead"
    assert keys.dead_body == "redistimers:{invoices}:dead_body"
    assert TimerStore(store.client, "app").keys("t").due == "app:{t}:due"


@pytest.mark.parametrize("topic", ["invoices", "orders:eu", "a b c", "ünï"])
def test_every_key_written_carries_the_topic_hash_tag(
    store: TimerStore, redis_client: redis.Redis, past: int, topic: str
) -> None:
    schedule(store, topic, [at("a", past), at("b", past), at("c", past), at("d", past + 10**9)])
    timers = claim(store, topic).timers
    assert len(timers) == 3
    a, b, _ = timers
    settle(store, "bury", topic, [(a.timer_id, a.token, "{}")])
    settle(store, "retry", topic, [(b.timer_id, b.token, 60_000)])
    written = sorted(k.decode() for k in redis_client.keys("*"))
    topic_keys = [k for k in written if k != "redistimers:topics"]
    assert "redistimers:topics" in written
    kinds = {k.rsplit(":", 1)[1] for k in topic_keys if ":claim:" not in k}
    assert kinds == {"due", "body", "lease", "attempts", "seq", "dead", "dead_body"}
    records = [k for k in topic_keys if ":claim:" in k]  # the claim's record (claim.lua)
    assert len(records) == 1
    for key in topic_keys:
        assert key.startswith(f"redistimers:{{{topic}}}:")
    assert len({key_slot(k.encode()) for k in topic_keys}) == 1
    assert key_slot(topic_keys[0].encode()) == key_slot(topic.encode())


def test_schedule_registers_the_topic(store: TimerStore, redis_client: redis.Redis) -> None:
    schedule(store, "a", [after("x", 1000)])
    schedule(store, "b", [after("y", 1000)])
    assert redis_client.smembers("redistimers:topics") == {b"a", b"b"}


# -- schedule ---------------------------------------------------------------------------


def test_schedule_in_is_due_after_the_delay_by_the_server_clock(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys
) -> None:
    before = server_ms(redis_client)
    woke, (due,) = schedule(store, TOPIC, [after("a", 5_000)])
    after_ms = server_ms(redis_client)
    assert woke is True
    assert before + 5_000 <= due <= after_ms + 5_000 + 1
    assert redis_client.zscore(keys.due, "a") == due


def test_schedule_at_is_due_at_the_given_millisecond(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys
) -> None:
    _, dues = schedule(store, TOPIC, [at("a", 1_893_456_000_123)])
    assert dues == [1_893_456_000_123]
    assert redis_client.zscore(keys.due, "a") == 1_893_456_000_123


def test_schedule_stores_the_envelope_as_given(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys
) -> None:
    body = envelope({"amount": 995, "note": "ünï"})
    schedule(store, TOPIC, [ScheduleEntry("a", body, delay_ms=1000)])
    assert redis_client.hget(keys.body, "a") == body.encode()


def test_schedule_several_timers_in_one_call(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, future: int
) -> None:
    woke, dues = schedule(store, TOPIC, [at("a", future + 2), at("b", future), at("c", future + 1)])
    assert woke is True
    assert dues == [future + 2, future, future + 1]
    assert redis_client.zrange(keys.due, 0, -1) == [b"b", b"c", b"a"]


def test_schedule_of_many_timers_in_one_call(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, future: int
) -> None:
    entries = [at(f"t{i}", future + i) for i in range(5000)]
    _, dues = schedule(store, TOPIC, entries)
    assert dues == [future + i for i in range(5000)]
    assert redis_client.zcard(keys.due) == 5000
    assert redis_client.hlen(keys.body) == 5000


def test_schedule_wakes_only_when_a_timer_becomes_the_earliest(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, future: int
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.wake)
    try:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]

        def next_message() -> bytes:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, "no message published"
            data: bytes = message["data"]
            return data

        assert schedule(store, TOPIC, [at("a", future)])[0] is True
        assert next_message() == b"1"
        assert schedule(store, TOPIC, [at("b", future + 1000)])[0] is False
        redis_client.publish(keys.wake, "sentinel")  # the next message must be this one
        assert next_message() == b"sentinel"
        assert schedule(store, TOPIC, [at("c", future - 1000)])[0] is True
        assert next_message() == b"1"
        # Re-setting the earliest timer later than another: no longer the earliest.
        assert schedule(store, TOPIC, [at("c", future + 5000)])[0] is False
        redis_client.publish(keys.wake, "sentinel")
        assert next_message() == b"sentinel"
    finally:
        pubsub.close()


def test_schedule_same_id_replaces_body_and_time_and_starts_fresh(
    store: TimerStore, redis_client: redis.Redis, keys: TopicKeys, past: int, future: int
) -> None:
    schedule(store, TOPIC, [at("a", past, payload="old")])
    (claimed,) = claim(store).timers
    assert state(redis_client, keys, "a")["lease"] == claimed.token
    schedule(store, TOPIC, [at("a", future, payload="new")])
    assert state(redis_client, keys, "a") == {
        "score": float(future),
        "body": envelope("new"),
        "lease": None,
        "attempts": None,
    }
    assert redis_client.zcard(keys.due) == 1


