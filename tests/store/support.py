"""What the store tests share: timers to write, claims, settles, and what Redis holds."""

from __future__ import annotations

import json
from typing import Any

import redis

from redistimers.store import (
    ClaimResult,
    ScheduleEntry,
    TimerStore,
    TopicKeys,
)

TOPIC = "invoices"
LEASE_MS = 30_000

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


