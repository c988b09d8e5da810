"""Inspection and repair queries of stored timers: topics, counts, pages in due order,
moves, purges and dead letters. Every operation touches one topic's cluster slot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .. import defaults
from ..connect import RedisClient
from .keys import Keys
from .scripts import Op, Replication, Scripts, chunks, text


@attrs.frozen
class StoredTimer:
    """A timer as stored, for inspection."""

    envelope: bytes | str
    score_ms: float
    server_now_ms: float
    attempts: int
    leased: bool


@attrs.frozen
class StoredStats:
    """Counts of one topic, with the server's now."""

    server_now_ms: float
    pending: int
    due: int
    leased: int
    dead: int
    first_ms: float | None


@attrs.frozen
class ListedTimer:
    """One timer of a listing."""

    timer_id: str
    score_ms: float
    #: The score exactly as Redis wrote it, for a cursor that lands on it again.
    score_text: str
    leased: bool
    attempts: int
    envelope: bytes | str


@attrs.frozen
class StoredServerInfo:
    """What INFO says of the Redis server: its version and memory, in bytes."""

    version: str
    used_memory: int
    #: 0 when no limit is set.
    maxmemory: int


@attrs.frozen
class DeadRecord:
    """A dead-lettered timer as stored."""

    timer_id: str
    died_ms: float
    record: bytes | str


class StoreInspection:
    """Read and repair queries on the timers of one namespace."""

    def __init__(
        self, client: RedisClient, keys: Keys, scripts: Scripts,
        replication: Replication | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._replication = replication  # what writes wait for

    def topics(self) -> list[str]:
        """The topics of this namespace that have pending timers or dead letters now: those
        of the set of topics (every write that finds a topic empty adds it) whose keys
        exist, checked in one round trip."""
        known = sorted(text(t) for t in self._client.smembers(self._keys.topics))
        if not known:
            return []
        pipe: Any = self._client.pipeline(transaction=False)
        for topic in known:
            k = self._keys.topic(topic)
            pipe.exists(k.due, k.dead)
        return [topic for topic, found in zip(known, pipe.execute(), strict=True) if found]

    def stats(self, topics: Sequence[str]) -> list[StoredStats]:
        """Counts of each topic, one script call each, in one round trip."""
        ops = []
        for topic in topics:
            k = self._keys.topic(topic)
            ops.append(Op("stats", topic, "stats", (k.due, k.lease, k.dead), ()))
        return [
            StoredStats(
                server_now_ms=float(now), pending=int(pending), due=int(due),
                leased=int(leased), dead=int(dead), first_ms=float(first) if first else None,
            )
            for now, pending, due, leased, dead, first in self._scripts.run(ops)
        ] if ops else []

    def list_page(
        self, topic: str, after: tuple[str, str] | None, due_before_ms: float | None, limit: int,
        id_prefix: str = "",
    ) -> tuple[float, list[ListedTimer], tuple[str, str] | None]:
        """A page of timers in due order after `after` (a score as Redis wrote it, an id),
        only those whose ids start with `id_prefix` (every one when it is ""), and where
        to go on from when the walk past other ids stopped early (LIST_WALK_MAX timers
        per call: a script blocks Redis while it runs), else None."""
        k = self._keys.topic(topic)
        args = (
            *(after or ("-inf", "")),
            "+inf" if due_before_ms is None else f"({due_before_ms!r}",
            limit,
            id_prefix,
            defaults.LIST_WALK_MAX,
        )
        op = Op("list", topic, "list", (k.due, k.body, k.lease, k.attempts), args)
        reply = self._scripts.run([op])
        now, resume_id, resume_score, *items = reply[0]
        resume = (text(resume_score), text(resume_id)) if text(resume_id) else None
        return float(now), [
            ListedTimer(
                timer_id=text(items[i]),
                score_ms=float(items[i + 1]),
                score_text=text(items[i + 1]),
                leased=bool(int(items[i + 2])),
                attempts=int(items[i + 3]),
                envelope=items[i + 4],
            )
            for i in range(0, len(items), 5)
        ], resume

    def due_per_minute(self, topic: str, start_ms: float, minutes: int) -> list[int]:
        """How many timers of `topic` fall due in each of `minutes` minutes from `start_ms`
        (leased ones at their lease's expiry): a ZCOUNT per minute, in one round trip."""
        due = self._keys.topic(topic).due
        pipe: Any = self._client.pipeline(transaction=False)
        for minute in range(minutes):
            low = start_ms + minute * 60_000
            pipe.zcount(due, repr(low), f"({low + 60_000!r}")
        return [int(n) for n in pipe.execute()] if minutes else []

    def server_info(self) -> StoredServerInfo:
        """The server's version and memory from INFO (no keys: on a Cluster, the node the
        client picks answers)."""
        info: Any = self._client.info()
        if "redis_version" not in info and info:  # a Cluster's answer: by node
            info = next(iter(info.values()))
        return StoredServerInfo(
            version=str(info.get("redis_version", "")),
            used_memory=int(info.get("used_memory", 0)),
            maxmemory=int(info.get("maxmemory", 0)),
        )

    def reschedule(
        self, topic: str, timer_id: str, at_ms: float | None, delay_ms: float | None
    ) -> tuple[int, StoredTimer | None]:
        """Move a pending timer: (1, the timer as moved), (-1, the timer a handler holds,
        not moved), or (0, None) when there is no such timer."""
        k = self._keys.topic(topic)
        mode, ms = ("at", at_ms) if at_ms is not None else ("in", delay_ms or 0.0)
        args = (k.wake, timer_id, mode, repr(float(ms)))
        keys = (k.due, k.body, k.lease, k.attempts)
        reply = self._scripts.run(
            [Op("reschedule", topic, "reschedule", keys, args)], replication=self._replication
        )[0]
        status = int(reply[0])
        if status == 0:
            return 0, None
        _status, now, score, envelope, attempts = reply
        return status, StoredTimer(
            envelope=envelope, score_ms=float(score), server_now_ms=float(now),
            attempts=int(attempts), leased=status == -1,
        )

    def purge(self, topic: str) -> int:
        """Remove every pending timer of a topic; returns how many."""
        k = self._keys.topic(topic)
        keys = (k.due, k.body, k.lease, k.attempts)
        return int(self._scripts.run(
            [Op("purge", topic, "purge", keys, ())], replication=self._replication
        )[0])

    def dead(self, topic: str, limit: int, offset: int) -> list[DeadRecord]:
        """Dead letters of a topic, the oldest first: a page of `limit` from `offset`."""
        k = self._keys.topic(topic)
        entries: list[tuple[Any, float]] = self._client.zrange(  # type: ignore[assignment]
            k.dead, offset, offset + limit - 1, withscores=True
        )
        if not entries:
            return []
        ids = [text(member) for member, _score in entries]
        records = self._client.hmget(k.dead_body, ids)
        return [
            DeadRecord(timer_id, float(score), record)
            for timer_id, (_member, score), record in zip(ids, entries, records, strict=True)
            if record is not None
        ]

    def requeue_dead(self, topic: str, timer_ids: Sequence[str] | None) -> int:
        """Make dead letters due now again (all of them when `timer_ids` is None)."""
        k = self._keys.topic(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.dead, k.dead_body)
        if timer_ids is not None:
            ops = [
                Op("requeue", topic, "requeue", keys, (k.wake, len(chunk), *chunk))
                for chunk in chunks(timer_ids, defaults.SETTLE_BATCH_MAX)
            ]
            replies = self._scripts.run(ops, replication=self._replication) if ops else []
            return sum(int(n) for n in replies)
        total = 0
        while True:  # the oldest first, a bounded number per script call
            op = Op("requeue", topic, "requeue", keys, (k.wake, defaults.SETTLE_BATCH_MAX))
            back = int(self._scripts.run([op], replication=self._replication)[0])
            total += back
            if not self._client.zcard(k.dead):
                return total

    def purge_dead(self, topic: str) -> int:
        """Delete every dead letter of a topic; returns how many there were."""
        k = self._keys.topic(topic)
        op = Op("purge_dead", topic, "purge_dead", (k.dead, k.dead_body), ())
        return int(self._scripts.run([op], replication=self._replication)[0])
