"""The Lua protocol through TimerStore, against the session's real redis-server.

Every test runs twice: with a client returning bytes and with one created with
decode_responses=True, since the store must work with whatever client the application has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from redistimers import defaults
from redistimers.store import (
    SCRIPT_NAMES,
    ClaimedTimer,
    ClaimResult,
    ScheduleEntry,
    TimerStore,
    TopicKeys,
    script_sha,
)
from redistimers.testing import RedisServer

from .helpers import wait_for

TOPIC = "invoices"
LEASE_MS = 30_000


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def store(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[TimerStore]:
    client = redis_server.client(decode_responses=request.param)
    yield TimerStore(client, defaults.NAMESPACE)
    client.close()


@pytest.fixture
def keys(store: TimerStore) -> TopicKeys:
    return store.keys(TOPIC)


def server_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) / 1000


def text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def envelope(payload: Any) -> str:
    return json.dumps({"v": 1, "p": payload, "t": 0}, separators=(",", ":"))


def at(timer_id: str, at_ms: int, payload: Any = None) -> ScheduleEntry:
    body = envelope(payload if payload is not None else timer_id)
    return ScheduleEntry(timer_id, body, at_ms=at_ms)


def after(timer_id: str, delay_ms: int, payload: Any = None) -> ScheduleEntry:
    body = envelope(payload if payload is not None else timer_id)
    return ScheduleEntry(timer_id, body, delay_ms=delay_ms)


def schedule(
    store: TimerStore, topic: str, entries: list[ScheduleEntry]
) -> tuple[bool, list[float]]:
    """Write timers of one topic: (a wake-up was published, the due ms of each)."""
    written = store.schedule_many({topic: entries}, with_due=True)
    return topic in written.woke, written.due_ms[topic]


def claim(
    store: TimerStore, topic: str = TOPIC, lease_ms: int = LEASE_MS, limit: int = 100
) -> ClaimResult:
    batch = store.batch()
    batch.claim(topic, lease_ms, limit)
    (result,) = store.execute(batch)
    assert isinstance(result, ClaimResult)
    return result


def settle(store: TimerStore, kind: str, *args: Any) -> list[str]:
    batch = store.batch()
    if kind == "ack":  # (id, token) pairs: acks that remove the timer (no next occurrence)
        topic, items = args
        args = (topic, [(timer_id, token, None) for timer_id, token in items])
    getattr(batch, kind)(*args)
    stale: list[str] = []
    for result in store.execute(batch):  # one list of stale ids per script call
        assert isinstance(result, list)
        stale += result
    return stale


def state(client: redis.Redis, keys: TopicKeys, timer_id: str) -> dict[str, Any]:
    """Everything Redis holds about one timer."""
    return {
        "score": client.zscore(keys.due, timer_id),
        "body": text(client.hget(keys.body, timer_id)),
        "lease": text(client.hget(keys.lease, timer_id)),
        "attempts": text(client.hget(keys.attempts, timer_id)),
    }


GONE = {"score": None, "body": None, "lease": None, "attempts": None}


@pytest.fixture
def past(redis_client: redis.Redis) -> int:
    """A server-clock millisecond one minute ago: timers due then are due now."""
    return server_ms(redis_client) - 60_000


@pytest.fixture
def future(redis_client: redis.Redis) -> int:
    """A server-clock millisecond one hour ahead."""
    return server_ms(redis_client) + 3_600_000


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
