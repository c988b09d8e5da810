"""The registry of live workers: each started scheduler's record, renewed by its
heartbeat, gone when it stops or a few heartbeats after it dies."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..connect import RedisClient
from .keys import Keys
from .scripts import Op, Scripts, text


@attrs.frozen
class StoredWorker:
    """A live worker's record as its heartbeat wrote it."""

    worker_id: str
    record: str
    #: Its last heartbeat, by the server's clock (epoch ms).
    seen_ms: float


class WorkerRegistry:
    """Heartbeats in, live workers out: one command per heartbeat, two round trips per
    listing (three when it finds expired records), whatever the number of topics."""

    def __init__(self, client: RedisClient, keys: Keys, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    def beat(self, worker_id: str, record: str, ttl_ms: int) -> float:
        """Write the record of `worker_id`, kept for `ttl_ms`; returns the server's now (ms)."""
        op = Op("heartbeat", "", "heartbeat",
                (self._keys.workers, self._keys.worker(worker_id)), (worker_id, record, ttl_ms))
        return float(text(self._scripts.run([op])[0]))

    def leave(self, worker_id: str) -> None:
        """Remove the record of a worker that stops."""
        pipe = self._client.pipeline(transaction=False)
        pipe.unlink(self._keys.worker(worker_id))
        pipe.zrem(self._keys.workers, worker_id)
        pipe.execute()

    def live(self) -> list[StoredWorker]:
        """The records of the workers alive (those whose record has not expired), in the
        order they were last seen; ids whose record expired are dropped from the index."""
        entries: list[tuple[bytes | str, float]] = self._client.zrange(  # type: ignore[assignment]
            self._keys.workers, 0, -1, withscores=True
        )
        ids = [text(worker_id) for worker_id, _score in entries]
        scores = [float(score) for _worker_id, score in entries]
        records: Sequence[bytes | str | None] = (
            self._client.mget([self._keys.worker(i) for i in ids]) if ids else []
        )
        live, expired = [], []
        for worker_id, score, record in zip(ids, scores, records, strict=True):
            if record is None:
                expired.append(worker_id)
            else:
                live.append(StoredWorker(worker_id, text(record), score))
        if expired:
            self._client.zrem(self._keys.workers, *expired)
        return live
