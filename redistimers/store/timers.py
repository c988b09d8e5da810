"""TimerStore: timers in, timers out, fenced by tokens; the one door to Redis."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import redis
from redis.cluster import RedisCluster

from .. import defaults
from ..connect import RedisClient
from .batch import Batch, claim_result
from .inspection import StoredTimer, StoreInspection
from .keys import Keys, TopicKeys
from .registry import WorkerRegistry
from .scripts import NotReplicated, Op, Replication, Scripts, chunks, text


class ScheduleEntry(NamedTuple):
    """One timer to write: at an epoch millisecond, or after a delay from Redis's now.

    Times are milliseconds with a fraction: scores keep microseconds.
    """

    timer_id: str
    envelope: str
    at_ms: float | None = None
    delay_ms: float | None = None



@attrs.define
class Written:
    """What a write did: the topics whose earliest timer changed (a wake-up was published),
    and, when asked for, each timer's due time as Redis computed it, with Redis's now."""

    woke: set[str] = attrs.Factory(set)
    #: Due ms of the timers of each topic, in the order written.
    due_ms: dict[str, list[float]] = attrs.Factory(dict)
    server_now_ms: float | None = None




class TimerStore:
    """Timers of one namespace in one Redis: schedule, claim, settle, inspect."""

    def __init__(
        self, client: RedisClient, namespace: str, replication: Replication | None = None
    ) -> None:
        self.client = client
        self.namespace = namespace
        #: Replicas every write waits for (None: none, as Redis does by default).
        self.replication = replication
        self._keys = Keys(namespace)
        self._scripts = Scripts(client)
        #: Inspection and repair queries (counts, pages, moves, purges, dead letters).
        self.inspection = StoreInspection(client, self._keys, self._scripts, replication)
        #: The registry of live workers.
        self.workers = WorkerRegistry(client, self._keys)
        #: Redis's clock minus this machine's, in ms, as of the last claim.
        self.clock_offset_ms = 0.0

    def server_now_ms(self) -> float:
        """An estimate of the Redis server's now, from the clock offset seen at claims."""
        return time.time() * 1000 + self.clock_offset_ms

    def keys(self, topic: str) -> TopicKeys:
        """The keys of `topic`."""
        return self._keys.topic(topic)

    def wake_channel(self, topic: str) -> str:
        """The pub/sub channel where writes say `topic` has a new earliest timer."""
        return self._keys.topic(topic).wake

    def master_of(self, topic: str) -> str:
        """The Cluster master that holds `topic`'s keys now, as host:port ("" on one
        server, or when the Cluster client does not know yet)."""
        if not isinstance(self.client, RedisCluster):
            return ""
        try:
            node = self.client.get_node_from_key(self._keys.topic(topic).due)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return ""
        return f"{node.host}:{node.port}" if node is not None else ""

    def batch(self, claimer: str | None = None) -> Batch:
        """A batch of operations; its claims are `claimer`'s (a new id when None)."""
        return Batch(self._keys, claimer)

    def schedule_many(
        self, entries_by_topic: Mapping[str, Sequence[ScheduleEntry]], with_due: bool = False
    ) -> Written:
        """Write timers of several topics (a same id replaces): a script call per chunk of
        SCHEDULE_BATCH_MAX timers, SCHEDULE_CALLS_PER_ROUND_TRIP calls per pipelined round
        trip. With `with_due`, the scripts also say each timer's due time (bulk writes
        skip formatting them).

        Every chunk is encoded before the first is sent, and each is written whole or not
        at all (one script call). The first round trip that fails ends the write: it
        raises WriteFailed, saying which timers were written (with replication: those
        that too few replicas confirmed are unconfirmed, their cause NotReplicated).
        """
        calls = [
            call
            for topic, entries in entries_by_topic.items()
            for call in self._schedule_ops(topic, entries, with_due)
        ]
        written = Written()
        new_topics: set[str] = set()
        ids: list[str] = []
        step = defaults.SCHEDULE_CALLS_PER_ROUND_TRIP
        short: NotReplicated | None = None
        for start in range(0, len(calls), step):
            group = calls[start : start + step]
            try:
                replies = self.run(
                    [op for op, _ids in group], raise_on_error=False, replicated=True
                )
            except redis.RedisError as exc:  # no answer: the group may or may not be written
                sent = [i for _op, group_ids in group for i in group_ids]
                raise WriteFailed(exc, ids, _ids_of(calls[start + step :]), sent) from exc
            except NotReplicated as exc:  # written, but maybe not for good: no more groups
                short, replies = exc, exc.replies
            refused: Exception | None = None
            unwritten: list[str] = []
            for (op, op_ids), reply in zip(group, replies, strict=True):
                if isinstance(reply, Exception):
                    refused = refused or reply
                    unwritten += op_ids
                    continue
                ids += op_ids
                if reply[0]:
                    written.woke.add(op.topic)
                if reply[2]:
                    new_topics.add(op.topic)
                if with_due:
                    due = written.due_ms.setdefault(op.topic, [])
                    due += [float(d) for d in text(reply[1]).split(",")]
                    written.server_now_ms = float(reply[3])
            if refused is not None:
                unwritten += _ids_of(calls[start + step :])
                raise WriteFailed(refused, ids, unwritten, []) from refused
            if short is not None:
                unconfirmed = [i for _op, group_ids in group for i in group_ids]
                failed = WriteFailed(
                    short, ids[: len(ids) - len(unconfirmed)], _ids_of(calls[start + step :]),
                    unconfirmed,
                )
                break
        else:
            failed = None
        if new_topics:
            # Only when a topic had no pending timer: a set of topics written on every call
            # would cost each set_timer a command, and on a cluster a second node.
            try:
                self.client.sadd(self._keys.topics, *sorted(new_topics))
            except redis.RedisError as exc:
                raise WriteFailed(exc, ids, [], []) from exc
        if failed is not None:
            raise failed from failed.cause
        return written

    def _schedule_ops(
        self, topic: str, entries: Sequence[ScheduleEntry], with_due: bool
    ) -> list[tuple[Op, list[str]]]:
        k = self.keys(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.dead, k.dead_body)
        flag = "1" if with_due else "0"
        calls = []
        for chunk in chunks(entries, defaults.SCHEDULE_BATCH_MAX):
            records = "\x1e".join(
                f"{e.timer_id}\x1fat\x1f{e.at_ms!r}\x1f{e.envelope}"
                if e.at_ms is not None
                else f"{e.timer_id}\x1fin\x1f{float(e.delay_ms or 0)!r}\x1f{e.envelope}"
                for e in chunk
            )
            # Encoded here, before anything is sent: a string that cannot be encoded must
            # fail the whole call, not a chunk halfway through it.
            op = Op("schedule", topic, "schedule", keys, (k.wake, records.encode(), flag))
            calls.append((op, [e.timer_id for e in chunk]))
        return calls

    def cancel(self, topic: str, timer_id: str) -> bool:
        """Remove a timer; True if it existed."""
        k = self.keys(topic)
        ops = [Op("cancel", topic, "cancel", (k.due, k.body, k.lease, k.attempts), (timer_id,))]
        return bool(self.run(ops, replicated=True)[0])

    def inspect(self, topic: str, timer_id: str) -> StoredTimer | None:
        """A stored timer and the server's now, read by one script (it works in a full
        Redis, where a MULTI is refused)."""
        k = self.keys(topic)
        op = Op("get", topic, "get", (k.due, k.body, k.lease, k.attempts), (timer_id,))
        now, score, envelope, leased, attempts = self.run([op])[0]
        if not score or envelope is None:
            return None
        return StoredTimer(
            envelope=envelope,
            score_ms=float(score),
            server_now_ms=float(now),
            attempts=int(attempts or 0),
            leased=bool(leased),
        )

    def server_time_ms(self) -> float:
        """The Redis server's clock, in ms since the epoch (one round trip)."""
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) / 1000

    def execute(self, batch: Batch) -> list[Any]:
        """Run a batch in one round trip: a ClaimResult per claim, stale ids per settle.
        With replication, a batch that settles deliveries waits for the replicas; too few
        in time is told by `batch.unreplicated`, not raised (the results count)."""
        try:
            replies = self.run(batch.ops, replicated=batch.settles)
        except NotReplicated as exc:
            batch.unreplicated, replies = exc, exc.replies
        results: list[Any] = []
        received_ms = time.time() * 1000
        for op, reply in zip(batch.ops, replies, strict=True):
            if op.kind == "claim":
                claim = claim_result(op.topic, reply)
                if claim.server_now_ms is not None:
                    self.clock_offset_ms = claim.server_now_ms - received_ms
                results.append(claim)
            elif op.kind == "solo":
                results.append(text(reply))
            else:
                results.append([text(x) for x in reply])
        return results

    def run(
        self, ops: Sequence[Op], raise_on_error: bool = True, replicated: bool = False
    ) -> list[Any]:
        """EVALSHA every op in one pipeline (see `Scripts.run`); `replicated` writes wait
        for this store's replicas."""
        return self._scripts.run(ops, raise_on_error, self.replication if replicated else None)

    def load_scripts(self) -> None:
        """Load every script into Redis's script cache (one round trip)."""
        self._scripts.load()


def _ids_of(calls: Sequence[tuple[Op, list[str]]]) -> list[str]:
    return [timer_id for _op, ids in calls for timer_id in ids]



class WriteFailed(Exception):
    """Redis failed while timers were being written: `written` ids it confirmed,
    `unwritten` ids it refused or never received, `unconfirmed` ids it received without
    answering (they may or may not be written). `cause` is Redis's error."""

    def __init__(
        self,
        cause: Exception,
        written: Sequence[str],
        unwritten: Sequence[str],
        unconfirmed: Sequence[str],
    ) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.written = tuple(written)
        self.unwritten = tuple(unwritten)
        self.unconfirmed = tuple(unconfirmed)
