"""The registry of live workers: each started scheduler's record, renewed by its
heartbeat, gone when it stops or a few heartbeats after it dies.

One hash holds them all, worker id -> ``<seen ms>:<ttl ms>:<record>``: a heartbeat is one
HSET, whatever the number of topics. A record whose ttl has passed since it was seen (by
the Redis server's clock, which the worker estimates) is not listed, and is deleted by
the listing that finds it.
"""

from __future__ import annotations

import attrs

from ..connect import RedisClient
from .keys import Keys
from .scripts import text


@attrs.frozen
class StoredWorker:
    """A live worker's record as its heartbeat wrote it."""

    worker_id: str
    record: str
    #: Its last heartbeat, by the server's clock (epoch ms).
    seen_ms: float


class WorkerRegistry:
    """Heartbeats in, live workers out."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def beat(self, worker_id: str, record: str, seen_ms: float, ttl_ms: int) -> None:
        """Write the record of `worker_id`, seen at `seen_ms` (the server's clock) and live
        for `ttl_ms` after it."""
        self._client.hset(self._keys.workers, worker_id, f"{seen_ms:.0f}:{ttl_ms}:{record}")

    def leave(self, worker_id: str) -> None:
        """Remove the record of a worker that stops."""
        self._client.hdel(self._keys.workers, worker_id)

    def live(self) -> list[StoredWorker]:
        """The records of the workers alive now, by the server's clock; records past their
        ttl (or unreadable) are deleted."""
        seconds, micros = self._client.time()
        now_ms = int(seconds) * 1000 + int(micros) / 1000
        entries: dict[bytes | str, bytes | str] = self._client.hgetall(self._keys.workers)
        live, gone = [], []
        for key, value in entries.items():
            worker_id = text(key)
            seen, _, rest = text(value).partition(":")
            ttl, _, record = rest.partition(":")
            try:
                seen_ms, ttl_ms = float(seen), int(ttl)
            except ValueError:
                gone.append(worker_id)
                continue
            if seen_ms + ttl_ms < now_ms:
                gone.append(worker_id)
            else:
                live.append(StoredWorker(worker_id, record, seen_ms))
        if gone:
            self._client.hdel(self._keys.workers, *gone)
        return live
